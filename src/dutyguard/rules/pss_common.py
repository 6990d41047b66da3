"""What every Pod Security Standards rule shares: PSA's allowed values, a typed view of the pod.

The facts below follow pod-security-admission at its latest policy version
(kubernetes/kubernetes ``staging/src/k8s.io/pod-security-admission/policy/check_*.go``); each
constant names the check it comes from. PSA reads a typed ``corev1.PodSpec``, so a field is
"set" when its pointer is non-nil: a JSON ``null`` is the same as an absent key, ``{}`` is set.
Manifests we scan are untyped, so every accessor here reports one of three states and rules treat
a value of the wrong type as a violation (fail closed): only the values PSA allows pass.
"""

from __future__ import annotations

import enum
import re
from abc import abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from dutyguard.core import jsonview as jv
from dutyguard.core.model import JSONPath, Severity, render_path
from dutyguard.core.policy import Policy, PSSLevel
from dutyguard.core.rule import Rule, RuleMeta, Violation
from dutyguard.sources.kubernetes import ContainerRef, K8sObject

# check_capabilities_baseline.go: capabilities_allowed_1_0 (exact, case-sensitive names).
BASELINE_CAPABILITIES = frozenset(
    {
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_BIND_SERVICE",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
    }
)
# check_capabilities_restricted.go: drop must contain "ALL"; add may only hold NET_BIND_SERVICE.
CAPABILITY_ALL = "ALL"
RESTRICTED_ADDABLE_CAPABILITY = "NET_BIND_SERVICE"

# check_sysctls.go: the union of every version's allow-list (latest policy version).
SAFE_SYSCTLS = frozenset(
    {
        # 1.0
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_unprivileged_port_start",
        # 1.27
        "net.ipv4.ip_local_reserved_ports",
        # 1.29
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
        # 1.32
        "net.ipv4.tcp_rmem",
        "net.ipv4.tcp_wmem",
        # 1.37
        "net.ipv4.tcp_slow_start_after_idle",
        "net.ipv4.tcp_notsent_lowat",
    }
)

# check_seLinuxOptions.go: selinuxAllowedTypes (container_engine_t since 1.31); user and role must be empty.
SELINUX_TYPES = frozenset({"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"})

# check_seccompProfile_baseline.go validSeccomp; check_appArmorProfile.go allowedProfileType.
SECCOMP_TYPES = frozenset({"RuntimeDefault", "Localhost"})
APPARMOR_TYPES = frozenset({"RuntimeDefault", "Localhost"})
# check_appArmorProfile.go allowedAnnotationValue: "", "runtime/default" or "localhost/<name>".
APPARMOR_ANNOTATION_PREFIX = "container.apparmor.security.beta.kubernetes.io/"
APPARMOR_ANNOTATION_DEFAULT = "runtime/default"
APPARMOR_ANNOTATION_LOCALHOST = "localhost/"

# check_procMount_baseline.go / check_procMount_restricted.go.
PROC_MOUNT_DEFAULT = "Default"

# check_restrictedVolumes.go: the only inline sources restricted admits (image since 1.33).
RESTRICTED_VOLUME_SOURCES = frozenset(
    {
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "image",
        "persistentVolumeClaim",
        "projected",
        "secret",
    }
)

# check_hostProbesAndHostLifecycle.go (1.34+).
PROBES = ("livenessProbe", "readinessProbe", "startupProbe")
LIFECYCLE_HOOKS = ("postStart", "preStop")
HOST_HANDLERS = ("httpGet", "tcpSocket")


class State(enum.Enum):
    UNSET = "unset"
    """Absent or null: PSA sees a nil pointer."""
    SET = "set"
    MALFORMED = "malformed"
    """A parent on the way is not a mapping; the field cannot be read, so it cannot be trusted."""


@dataclass(frozen=True, slots=True)
class Field:
    state: State
    path: JSONPath
    """The field itself, or (MALFORMED) the parent that is not a mapping."""
    value: object = None

    @property
    def unset(self) -> bool:
        return self.state is State.UNSET

    @property
    def malformed(self) -> bool:
        return self.state is State.MALFORMED


def lookup(start: object, start_path: JSONPath, *keys: str) -> Field:
    """Follow ``keys`` from ``start`` (found at ``start_path``) without trusting any type."""
    cur = start
    path = start_path
    for key in keys:
        if cur is None:
            return Field(State.UNSET, (*start_path, *keys))
        m = jv.as_map(cur)
        if m is None:
            return Field(State.MALFORMED, path)
        cur = m.get(key)
        path = (*path, key)
    if cur is None:
        return Field(State.UNSET, path)
    return Field(State.SET, path, cur)


def is_int(value: object) -> bool:
    """A JSON integer (``True`` is an int in Python, never in Kubernetes)."""
    return type(value) is int


def show(value: object) -> str:
    """A value for a message: strings quoted, long values cut."""
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 80 else text[:77] + "..."


@dataclass(frozen=True, slots=True)
class Pod:
    """The pod spec PSA evaluates, with the paths rules report against."""

    resource: K8sObject
    spec: jv.JSONMap
    spec_path: JSONPath
    meta_path: JSONPath
    containers: tuple[ContainerRef, ...]

    @classmethod
    def of(cls, resource: K8sObject) -> Pod | None:
        spec_path = resource.pod_spec_path
        meta_path = resource.pod_meta_path
        spec = resource.pod_spec()
        if spec_path is None or meta_path is None or spec is None:
            return None
        return cls(resource, spec, spec_path, meta_path, tuple(resource.containers()))

    def field(self, *keys: str) -> Field:
        return lookup(self.spec, self.spec_path, *keys)

    def security_context(self, *keys: str) -> Field:
        return self.field("securityContext", *keys)

    @property
    def is_windows(self) -> bool:
        # PSA: podSpec.OS != nil && podSpec.OS.Name == "windows" (restricted checks relaxed from 1.25).
        return self.field("os", "name").value == "windows"

    @property
    def in_user_namespace(self) -> bool:
        # helpers.go relaxPolicyForUserNamespacePod: HostUsers != nil && !*HostUsers (unconditional from 1.35).
        return self.field("hostUsers").value is False


def container_field(c: ContainerRef, *keys: str) -> Field:
    return lookup(c.spec, c.path, *keys)


def quote(name: str) -> str:
    return f'"{name}"'


def overridden(policy: Policy, overrider: RuleMeta) -> bool:
    """Whether PSA replaces a baseline check by ``overrider`` under this policy (OverrideCheckIDs).

    Only when the restricted rule really runs: if Security switched it off, the baseline check
    stays on rather than leaving the field unchecked.
    """
    return policy.pss_level is PSSLevel.RESTRICTED and policy.applies(overrider)


def escalate(policy: Policy, meta: RuleMeta, severity: Severity) -> Severity | None:
    """A per-violation severity, unless Security set this rule's severity in the policy.

    Restricted rules that replace a baseline check report the baseline-level problems (a hostPath
    volume, SYS_ADMIN, an Unconfined profile) at the baseline rule's severity, so the default gate
    blocks them at either level.
    """
    if meta.id in policy.severity_overrides or not severity.rank > meta.severity.rank:
        return None
    return severity


def unverifiable(subject: str, f: Field, target: str, expected: str = "a mapping") -> str:
    """The message for a field PSA would read but whose parent (or itself) has the wrong type."""
    return f"{subject}: {render_path(f.path)} is not {expected}, so {target} cannot be verified"


# Severities of the baseline problems that restricted checks also catch once they replace the
# baseline check (OverrideCheckIDs): both levels report them at the same severity.
SEVERITY_HOST_PATH = Severity.HIGH
SEVERITY_CAPABILITY_ADD = Severity.HIGH
SEVERITY_SECCOMP_PROFILE = Severity.HIGH
SEVERITY_PROC_MOUNT = Severity.HIGH

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def rule_id(check_id: str) -> str:
    """``procMount_restricted`` -> ``pss.proc-mount-restricted``."""
    return "pss." + _CAMEL.sub("-", check_id).replace("_", "-").lower()


def pss_meta(
    check_id: str,
    *,
    level: PSSLevel,
    title: str,
    severity: Severity,
    description: str,
    remediation: str,
    controls: tuple[str, ...],
    equivalents: Mapping[str, tuple[str, ...]] | None = None,
) -> RuleMeta:
    """One rule per PSA check: the id, pack and ``pss:<checkId>`` control follow from the check id."""
    return RuleMeta(
        id=rule_id(check_id),
        title=title,
        severity=severity,
        description=description,
        remediation=remediation,
        controls=(f"pss:{check_id}", *controls),
        pack=f"pss-{level.value}",
        tags=("pss", level.value),
        equivalents=dict(equivalents or {}),
    )


class PSSRule(Rule[K8sObject]):
    """A PSA check over the pod spec of any pod-bearing kind (Pod, workload templates, PodTemplate)."""

    target = K8sObject

    def check(self, resource: K8sObject, policy: Policy) -> Iterator[Violation]:
        pod = Pod.of(resource)
        if pod is None:
            return iter(())
        return self.check_pod(pod, policy)

    @abstractmethod
    def check_pod(self, pod: Pod, policy: Policy) -> Iterator[Violation]: ...


class Profile(enum.Enum):
    UNSET = "unset"
    ALLOWED = "allowed"
    FORBIDDEN = "forbidden"


@dataclass(frozen=True, slots=True)
class ProfileCheck:
    verdict: Profile
    path: JSONPath
    """The ``type`` field (or the first part that is not a mapping)."""
    problem: str = ""
    """For FORBIDDEN: ``type 'Unconfined'``, ``no type`` or ``<path> is not a mapping``."""
    malformed: bool = False

    def message(self, subject: str, field: str) -> str:
        if self.malformed:
            return f"{subject}: {self.problem}, so securityContext.{field}.type cannot be verified"
        return f"{subject} must not set securityContext.{field} with {self.problem} (only RuntimeDefault or Localhost)"


def check_profile(f: Field, allowed: frozenset[str]) -> ProfileCheck:
    """A seccompProfile / appArmorProfile: unset, or set with an allowed ``type``.

    A profile that is set without a type has type "" for PSA, which no check allows.
    """
    if f.unset:
        return ProfileCheck(Profile.UNSET, (*f.path, "type"))
    t = f if f.malformed else lookup(f.value, f.path, "type")
    if t.malformed:
        return ProfileCheck(
            Profile.FORBIDDEN, t.path, f"{render_path(t.path)} is not a mapping", malformed=True
        )
    if isinstance(t.value, str) and t.value in allowed:
        return ProfileCheck(Profile.ALLOWED, t.path)
    found = "no type" if t.unset else f"type {show(t.value)}"
    return ProfileCheck(Profile.FORBIDDEN, t.path, found)


def proc_mount_violations(pod: Pod) -> Iterator[Violation]:
    """procMount_1_0: every container's procMount is unset or "Default"."""
    for c in pod.containers:
        f = container_field(c, "securityContext", "procMount")
        if f.unset or f.value == PROC_MOUNT_DEFAULT:
            continue
        subject = f"container {quote(c.name)}"
        if f.malformed:
            msg = unverifiable(subject, f, "securityContext.procMount")
        else:
            msg = (
                f"{subject} must not set securityContext.procMount to {show(f.value)} (only Default or unset)"
            )
        yield Violation(msg, path=f.path, container=c.name)
