"""What every Pod Security Standards rule shares: PSA's allowed values, metadata, profile checks.

The facts below follow pod-security-admission at its latest policy version
(kubernetes/kubernetes ``staging/src/k8s.io/pod-security-admission/policy/check_*.go``); each
constant names the check it comes from. PSA reads a typed ``corev1.PodSpec``; the manifests we scan
are untyped, so rules read them through :mod:`dutyguard.rules._podview`, where every field is unset,
set or malformed, and treat a value of the wrong type as a violation (fail closed): only the values
PSA allows pass.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from dutyguard.core.model import JSONPath, Severity, render_path
from dutyguard.core.policy import Policy, PSSLevel
from dutyguard.core.rule import RuleMeta, Violation
from dutyguard.rules._podview import Field, PodRule, PodView, container_field, lookup

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


def is_int(value: object) -> bool:
    """A JSON integer (``True`` is an int in Python, never in Kubernetes)."""
    return type(value) is int


def show(value: object) -> str:
    """A value for a message: strings quoted, long values cut."""
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 80 else text[:77] + "..."


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


class PSSRule(PodRule):
    """A PSA check over the pod spec of any pod-bearing kind (Pod, workload templates, PodTemplate)."""


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


def proc_mount_violations(pod: PodView) -> Iterator[Violation]:
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
