"""Security-context hardening the Pod Security Standards do not require.

PSS restricted already covers privilege, escalation, root, seccomp and "drop ALL" (``pss.*``). These
rules add what NSA/CISA, CIS 5.2.8 / 5.7.3 and NIST SP 800-190 ask beyond it: an immutable root
filesystem, no NET_RAW, UIDs/GIDs that cannot collide with the node's, no root group, and an
explicit security context at all. Linux-only settings are skipped for ``spec.os.name: windows``.
"""

from __future__ import annotations

from collections.abc import Iterator

from dutyguard.core import jsonview as jv
from dutyguard.core.model import Severity
from dutyguard.core.policy import Policy
from dutyguard.core.rule import Rule, RuleMeta, Violation
from dutyguard.rules._podview import PodRule, PodView, container_field
from dutyguard.rules.workload._view import PACK, as_int, effective_security_context
from dutyguard.sources.kubernetes import K8sObject

HIGH_ID = 10000
"""UIDs/GIDs from here on are taken not to exist on the node (Checkov and kube-score: >= 10000)."""


def _capability(value: object) -> str | None:
    """Capability names as the runtime reads them: case-insensitive, with or without ``CAP_``."""
    if not isinstance(value, str):
        return None
    name = value.strip().upper()
    return name[4:] if name.startswith("CAP_") else name


class WritableRootFilesystem(PodRule):
    meta = RuleMeta(
        id="k8s.writable-root-filesystem",
        title="Root filesystem is writable",
        severity=Severity.MEDIUM,
        description=(
            "A writable root filesystem lets an intruder drop tools and binaries and tamper with the "
            "application; an immutable one forces every write into declared volumes."
        ),
        remediation="Set securityContext.readOnlyRootFilesystem: true and mount emptyDir volumes where writes are needed.",
        controls=("nist-800-190:4.4.3", "nsa:immutable-filesystems"),
        pack=PACK,
        equivalents={
            "checkov": ("CKV_K8S_22",),
            "trivy": ("KSV014",),
            "kubesec": ("ReadOnlyRootFilesystem",),
            "kube-score": ("container-security-context-readonlyrootfilesystem",),
        },
    )

    def check_pod(self, pod: PodView, policy: Policy) -> Iterator[Violation]:
        if pod.is_windows:
            return
        for c in pod.containers:
            f = container_field(c, "securityContext", "readOnlyRootFilesystem")
            if f.value is True:
                continue
            if f.malformed:
                why = "its securityContext is not a mapping"
            elif f.is_set:
                why = "readOnlyRootFilesystem is not true"
            else:
                why = "readOnlyRootFilesystem is not set"
            yield Violation(
                f"container {c.name!r} has a writable root filesystem ({why})",
                path=(*c.path, "securityContext", "readOnlyRootFilesystem"),
                container=c.name,
            )


class NetRawNotDropped(PodRule):
    meta = RuleMeta(
        id="k8s.net-raw-not-dropped",
        title="NET_RAW capability not dropped",
        severity=Severity.MEDIUM,
        description=(
            "Container runtimes grant NET_RAW by default. It allows crafting raw packets: ARP and DNS "
            "spoofing of neighbouring pods, and several kernel exploits (CVE-2020-14386)."
        ),
        remediation="Add NET_RAW (or ALL) to securityContext.capabilities.drop.",
        controls=("cis-k8s:5.2.8", "nist-800-190:4.4.3", "nsa:container-environments"),
        pack=PACK,
        equivalents={"checkov": ("CKV_K8S_28",)},
    )

    def check_pod(self, pod: PodView, policy: Policy) -> Iterator[Violation]:
        if pod.is_windows:
            return
        for c in pod.containers:
            f = container_field(c, "securityContext", "capabilities", "drop")
            drops = jv.as_list(f.value)
            dropped = {_capability(v) for v in drops or ()}
            if dropped & {"ALL", "NET_RAW"}:
                continue
            if f.malformed or (f.is_set and drops is None):
                why = "its capabilities cannot be read"
            else:
                why = "neither NET_RAW nor ALL is dropped"
            yield Violation(
                f"container {c.name!r} keeps NET_RAW ({why})",
                path=(*c.path, "securityContext", "capabilities", "drop"),
                container=c.name,
            )


class _IdRule(PodRule):
    """A container's effective runAsUser / runAsGroup must be at least :data:`HIGH_ID`."""

    key: str
    what: str

    def check_pod(self, pod: PodView, policy: Policy) -> Iterator[Violation]:
        if pod.is_windows or pod.in_user_namespace:
            return
        for c in pod.containers:
            f = effective_security_context(pod, c, self.key)
            value = as_int(f.value)
            if value is not None and value >= HIGH_ID:
                continue
            if f.malformed:
                why = "its securityContext is not a mapping"
                path = f.path
            elif not f.is_set:
                why = f"{self.key} is not set, so the image decides"
                path = (*c.path, "securityContext", self.key)
            elif value is None:
                why = f"{self.key} is not an integer"
                path = f.path
            else:
                why = f"{self.key} is {value}"
                path = f.path
            yield Violation(
                f"container {c.name!r} runs with a {self.what} below {HIGH_ID} ({why})",
                path=path,
                container=c.name,
            )


class LowUid(_IdRule):
    key = "runAsUser"
    what = "UID"
    meta = RuleMeta(
        id="k8s.low-uid",
        title="Container UID may exist on the node",
        severity=Severity.LOW,
        description=(
            f"A UID below {HIGH_ID} can coincide with a real user on the node, who then owns what the "
            "container writes to shared volumes, and after an escape (CVE-2019-5736) the container "
            "process acts as that user. Not checked with hostUsers: false (user namespaces)."
        ),
        remediation=f"Set securityContext.runAsUser to {HIGH_ID} or more, or run the pod with hostUsers: false.",
        controls=("nist-800-190:4.4.3", "nist-800-190:4.5.4", "nsa:non-root-containers"),
        pack=PACK,
        equivalents={
            "checkov": ("CKV_K8S_40",),
            "trivy": ("KSV020",),
            "kubesec": ("RunAsUser",),
            "kube-score": ("container-security-context-user-group-id",),
        },
    )


class LowGid(_IdRule):
    key = "runAsGroup"
    what = "GID"
    meta = RuleMeta(
        id="k8s.low-gid",
        title="Container GID may exist on the node",
        severity=Severity.LOW,
        description=(
            f"A primary GID below {HIGH_ID} (or none, which leaves the image's, often root) can coincide "
            "with a group on the node and grant its file access. Not checked with hostUsers: false."
        ),
        remediation=f"Set securityContext.runAsGroup to {HIGH_ID} or more.",
        controls=("nist-800-190:4.4.3", "nist-800-190:4.5.4", "nsa:non-root-containers"),
        pack=PACK,
        equivalents={
            "trivy": ("KSV021",),
            "kubesec": ("RunAsGroup",),
            "kube-score": ("container-security-context-user-group-id",),
        },
    )


class RootGroup(PodRule):
    meta = RuleMeta(
        id="k8s.root-group",
        title="Runs with the root group",
        severity=Severity.MEDIUM,
        description=(
            "GID 0 as primary group, fsGroup or supplemental group gives the process every file that is "
            "group-owned by root: in the image, on volumes, and on the node after an escape."
        ),
        remediation="Use non-zero runAsGroup, fsGroup and supplementalGroups.",
        controls=("nist-800-190:4.4.3", "nist-800-190:4.5.4", "nsa:non-root-containers"),
        pack=PACK,
        equivalents={"trivy": ("KSV116",)},
    )

    def check_pod(self, pod: PodView, policy: Policy) -> Iterator[Violation]:
        if pod.is_windows:
            return
        for key in ("runAsGroup", "fsGroup"):
            f = pod.field("securityContext", key)
            if f.is_set and as_int(f.value) == 0:
                yield Violation(f"the pod sets {key}: 0 (root group)", path=f.path)
        groups = pod.field("securityContext", "supplementalGroups")
        for i, gid in enumerate(jv.as_list(groups.value) or ()):
            if as_int(gid) == 0:
                yield Violation("the pod adds supplemental group 0 (root group)", path=(*groups.path, i))
        for c in pod.containers:
            f = container_field(c, "securityContext", "runAsGroup")
            if f.is_set and as_int(f.value) == 0:
                yield Violation(
                    f"container {c.name!r} sets runAsGroup: 0 (root group)", path=f.path, container=c.name
                )


def _empty_context(value: object) -> bool:
    m = jv.as_map(value)
    return m is None or not m


class PodSecurityContextMissing(Rule[K8sObject]):
    meta = RuleMeta(
        id="k8s.pod-security-context-missing",
        title="No pod security context",
        severity=Severity.LOW,
        description=(
            "The pod relies on the runtime's defaults for users, groups, fsGroup and seccomp instead of "
            "stating them. The specific risks have their own rules; this one asks for the statement."
        ),
        remediation="Set spec.securityContext (runAsNonRoot, runAsUser, runAsGroup, fsGroup, seccompProfile).",
        controls=("cis-k8s:5.7.3", "nsa:pod-security"),
        pack=PACK,
        equivalents={"checkov": ("CKV_K8S_29",), "trivy": ("KSV118",)},
    )
    target = K8sObject

    def check(self, resource: K8sObject, policy: Policy) -> Iterator[Violation]:
        spec_path = resource.pod_spec_path
        if spec_path is None:
            return
        spec = jv.get(resource.doc, spec_path)
        if jv.as_map(spec) is None:
            yield Violation("the pod spec is not a mapping, so it has no security context", path=spec_path)
        elif _empty_context(jv.get(spec, ("securityContext",))):
            yield Violation("the pod sets no securityContext", path=(*spec_path, "securityContext"))


class ContainerSecurityContextMissing(Rule[K8sObject]):
    meta = RuleMeta(
        id="k8s.container-security-context-missing",
        title="No container security context",
        severity=Severity.LOW,
        description=(
            "The container relies on defaults for privilege escalation, capabilities and its root "
            "filesystem instead of stating them."
        ),
        remediation=(
            "Set securityContext on every container (allowPrivilegeEscalation: false, "
            "readOnlyRootFilesystem: true, capabilities.drop: [ALL])."
        ),
        controls=("cis-k8s:5.7.3", "nsa:pod-security"),
        pack=PACK,
        equivalents={"checkov": ("CKV_K8S_30",), "trivy": ("KSV118",)},
    )
    target = K8sObject

    def check(self, resource: K8sObject, policy: Policy) -> Iterator[Violation]:
        for c in resource.containers():
            if _empty_context(c.spec.get("securityContext")):
                yield Violation(
                    f"container {c.name!r} sets no securityContext",
                    path=(*c.path, "securityContext"),
                    container=c.name,
                )
