"""Restricted-level PSA checks (run only when the policy's level is restricted).

Four of them replace a baseline check at restricted (PSA ``OverrideCheckIDs``):
restrictedVolumes -> hostPathVolumes, capabilities_restricted -> capabilities_baseline,
seccompProfile_restricted -> seccompProfile_baseline, procMount_restricted -> procMount.
The baseline rules stay silent then (see ``pss_common.overridden``), so these rules also report
what the baseline check would have, at the baseline severity.
"""

from __future__ import annotations

from collections.abc import Iterator

from dutyguard.core import jsonview as jv
from dutyguard.core.model import Severity
from dutyguard.core.policy import Policy, PSSLevel
from dutyguard.core.rule import Violation
from dutyguard.rules._podview import Field, PodView, container_field, lookup
from dutyguard.rules.pss_common import (
    BASELINE_CAPABILITIES,
    CAPABILITY_ALL,
    RESTRICTED_ADDABLE_CAPABILITY,
    RESTRICTED_VOLUME_SOURCES,
    SECCOMP_TYPES,
    SEVERITY_CAPABILITY_ADD,
    SEVERITY_HOST_PATH,
    SEVERITY_PROC_MOUNT,
    SEVERITY_SECCOMP_PROFILE,
    Profile,
    PSSRule,
    check_profile,
    escalate,
    is_int,
    proc_mount_violations,
    pss_meta,
    quote,
    show,
    unverifiable,
)

_R = PSSLevel.RESTRICTED


class RestrictedVolumes(PSSRule):
    meta = pss_meta(
        "restrictedVolumes",
        level=_R,
        title="Volume type not allowed by the restricted policy",
        severity=Severity.MEDIUM,
        description=(
            "Restricted pods may only use configMap, csi, downwardAPI, emptyDir, ephemeral, image, "
            "persistentVolumeClaim, projected and secret volumes. Other inline sources (hostPath, nfs, "
            "iscsi, rbd, gitRepo, flexVolume...) reach the node or storage outside the cluster's control."
        ),
        remediation=(
            "Replace the volume with one of the allowed types: a persistentVolumeClaim bound to a "
            "PersistentVolume managed by the platform team, or configMap/secret/projected/emptyDir. "
            "Never mount host paths into application pods."
        ),
        controls=(
            "nist-800-190:4.4.3",
            "nist-800-190:4.5.5",
            "cis-k8s:5.2.12",
            "nsa:pod-security",
            "nist-800-53:CM-7",
        ),
        equivalents={"trivy": ("KSV028",)},
    )

    def check_pod(self, pod: PodView, policy: Policy) -> Iterator[Violation]:
        vols = pod.field("volumes")
        if vols.unset:
            return
        seq = jv.as_list(vols.value)
        if seq is None:
            yield Violation(unverifiable("pod", vols, "its volume types", "a list"), path=vols.path)
            return
        for i, vol in enumerate(seq):
            vpath = (*vols.path, i)
            m = jv.as_map(vol)
            if m is None:
                yield Violation(
                    f"pod: volume #{i} is not a mapping, so its type cannot be verified", path=vpath
                )
                continue
            name = jv.as_str(m.get("name")) or f"#{i}"
            # Anything besides the name is a source; PSA admits the volume only through an allowed one,
            # and the API server refuses a volume with two sources, so any other key is a violation.
            sources = [k for k, v in m.items() if k != "name" and v is not None]
            if not sources:
                yield Violation(
                    f'volume {quote(name)} has no volume source (PSA counts it as the restricted type "unknown")',
                    path=vpath,
                )
            for key in sources:
                spath = (*vpath, key)
                if key not in RESTRICTED_VOLUME_SOURCES:
                    sev = escalate(policy, self.meta, SEVERITY_HOST_PATH) if key == "hostPath" else None
                    yield Violation(
                        f"volume {quote(name)} must not use restricted volume type {quote(key)}",
                        path=spath,
                        severity=sev,
                    )
                elif jv.as_map(m[key]) is None:
                    yield Violation(
                        f"volume {quote(name)}: {key} is not a mapping, so the volume cannot be verified",
                        path=spath,
                    )


class AllowPrivilegeEscalation(PSSRule):
    meta = pss_meta(
        "allowPrivilegeEscalation",
        level=_R,
        title="Container may gain privileges (allowPrivilegeEscalation not false)",
        severity=Severity.MEDIUM,
        description=(
            "Unless allowPrivilegeEscalation is explicitly false, a process can gain more privileges than "
            "its parent (setuid/setgid binaries, file capabilities): no_new_privs is not set."
        ),
        remediation="Set securityContext.allowPrivilegeEscalation: false on every container, init and ephemeral ones included.",
        controls=("nist-800-190:4.4.3", "cis-k8s:5.2.6", "nsa:pod-security", "nist-800-53:AC-6"),
        equivalents={
            "checkov": ("CKV_K8S_20", "CKV_K8S_5"),
            "trivy": ("KSV001",),
            "kubesec": ("AllowPrivilegeEscalation",),
        },
    )

    def check_pod(self, pod: PodView, policy: Policy) -> Iterator[Violation]:
        if pod.is_windows:  # allowPrivilegeEscalation_1_25: API validation forbids the field on Windows
            return
        for c in pod.containers:
            f = container_field(c, "securityContext", "allowPrivilegeEscalation")
            if f.value is False:
                continue
            subject = f"container {quote(c.name)}"
            if f.malformed:
                msg = unverifiable(subject, f, "securityContext.allowPrivilegeEscalation")
            elif f.unset:
                msg = f"{subject} must set securityContext.allowPrivilegeEscalation=false"
            else:
                msg = f"{subject} must set securityContext.allowPrivilegeEscalation=false (found {show(f.value)})"
            yield Violation(msg, path=f.path, container=c.name)


class RunAsNonRoot(PSSRule):
    meta = pss_meta(
        "runAsNonRoot",
        level=_R,
        title="Container may run as root (runAsNonRoot not true)",
        severity=Severity.MEDIUM,
        description=(
            "Without runAsNonRoot: true the kubelet starts an image whose user is root. A container may "
            "leave the field unset only when the pod sets it to true; any explicit false fails. Pods with "
            "hostUsers: false (a user namespace) are exempt since Kubernetes 1.35."
        ),
        remediation=(
            "Set spec.securityContext.runAsNonRoot: true (and do not set false on any container), and build "
            "the image with a numeric non-root USER."
        ),
        controls=(
            "nist-800-190:4.4.3",
            "nist-800-190:4.1.2",
            "cis-k8s:5.2.7",
            "nsa:non-root-containers",
            "nist-800-53:AC-6",
        ),
        equivalents={
            "checkov": ("CKV_K8S_23", "CKV_K8S_6"),
            "trivy": ("KSV012",),
            "kubesec": ("RunAsNonRoot",),
        },
    )

    def check_pod(self, pod: PodView, policy: Policy) -> Iterator[Violation]:
        if pod.in_user_namespace:  # runAsNonRoot 1.35: root in a user namespace is not root on the node
            return
        pf = pod.security_context("runAsNonRoot")
        pod_true = pf.value is True
        if pf.malformed:
            yield Violation(unverifiable("pod", pf, "securityContext.runAsNonRoot"), path=pf.path)
        elif not pf.unset and not pod_true:
            yield Violation(f"pod must not set securityContext.runAsNonRoot={show(pf.value)}", path=pf.path)
        for c in pod.containers:
            f = container_field(c, "securityContext", "runAsNonRoot")
            if f.value is True or (f.unset and pod_true):
                continue
            subject = f"container {quote(c.name)}"
            if f.malformed:
                msg = unverifiable(subject, f, "securityContext.runAsNonRoot")
            elif f.unset:
                msg = f"pod or {subject} must set securityContext.runAsNonRoot=true"
            else:
                msg = f"{subject} must not set securityContext.runAsNonRoot={show(f.value)}"
            yield Violation(msg, path=f.path, container=c.name)


class RunAsUser(PSSRule):
    meta = pss_meta(
        "runAsUser",
        level=_R,
        title="Container runs as UID 0 (runAsUser: 0)",
        severity=Severity.HIGH,
        description=(
            "runAsUser: 0 at pod or container level runs the process as root, whatever the image says. "
            "Pods with hostUsers: false (a user namespace) are exempt since Kubernetes 1.35."
        ),
        remediation="Remove runAsUser: 0; set a non-zero UID (for example 10001) at pod or container level.",
        controls=(
            "nist-800-190:4.4.3",
            "nist-800-190:4.1.2",
            "cis-k8s:5.2.7",
            "nsa:non-root-containers",
            "nist-800-53:AC-6",
        ),
        equivalents={"trivy": ("KSV105",)},
    )

    def check_pod(self, pod: PodView, policy: Policy) -> Iterator[Violation]:
        if pod.in_user_namespace:  # runAsUser 1.35
            return
        fields: list[tuple[str, Field, str | None]] = [("pod", pod.security_context("runAsUser"), None)]
        fields += [
            (f"container {quote(c.name)}", container_field(c, "securityContext", "runAsUser"), c.name)
            for c in pod.containers
        ]
        for subject, f, container in fields:
            if f.unset or (is_int(f.value) and f.value != 0):
                continue
            if f.malformed:
                msg = unverifiable(subject, f, "securityContext.runAsUser")
            elif is_int(f.value):
                msg = f"{subject} must not set securityContext.runAsUser=0"
            else:
                msg = (
                    f"{subject}: securityContext.runAsUser must be a non-zero integer (found {show(f.value)})"
                )
            yield Violation(msg, path=f.path, container=container)


class SeccompProfileRestricted(PSSRule):
    meta = pss_meta(
        "seccompProfile_restricted",
        level=_R,
        title="Seccomp profile not set to RuntimeDefault or Localhost",
        severity=Severity.MEDIUM,
        description=(
            "Restricted pods must run under a seccomp profile: the pod sets seccompProfile.type to "
            "RuntimeDefault or Localhost, or every container does. Unconfined leaves every syscall open. "
            "Windows pods (spec.os.name: windows) are exempt."
        ),
        remediation="Set spec.securityContext.seccompProfile.type: RuntimeDefault (or Localhost with a reviewed profile).",
        controls=("nist-800-190:4.4.3", "cis-k8s:5.7.2", "nsa:pod-security", "nist-800-53:CM-6"),
        equivalents={
            "checkov": ("CKV_K8S_31", "CKV_K8S_32"),
            "trivy": ("KSV030",),
            "kubesec": ("SeccompAny",),
            "kube-score": ("container-seccomp-profile",),
        },
    )

    def check_pod(self, pod: PodView, policy: Policy) -> Iterator[Violation]:
        if pod.is_windows:  # seccompProfileRestricted_1_25
            return
        high = escalate(policy, self.meta, SEVERITY_SECCOMP_PROFILE)
        at_pod = check_profile(pod.security_context("seccompProfile"), SECCOMP_TYPES)
        if at_pod.verdict is Profile.FORBIDDEN:
            yield Violation(
                at_pod.message("pod", "seccompProfile"),
                path=at_pod.path,
                severity=high,
            )
        for c in pod.containers:
            subject = f"container {quote(c.name)}"
            got = check_profile(container_field(c, "securityContext", "seccompProfile"), SECCOMP_TYPES)
            if got.verdict is Profile.FORBIDDEN:
                yield Violation(
                    got.message(subject, "seccompProfile"),
                    path=got.path,
                    container=c.name,
                    severity=high,
                )
            elif got.verdict is Profile.UNSET and at_pod.verdict is not Profile.ALLOWED:
                yield Violation(
                    f'pod or {subject} must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost"',
                    path=got.path,
                    container=c.name,
                )


class CapabilitiesRestricted(PSSRule):
    meta = pss_meta(
        "capabilities_restricted",
        level=_R,
        title="Container does not drop ALL capabilities, or adds more than NET_BIND_SERVICE",
        severity=Severity.MEDIUM,
        description=(
            "Restricted containers must drop ALL capabilities and may add back only NET_BIND_SERVICE. "
            "Windows pods (spec.os.name: windows) are exempt."
        ),
        remediation=(
            'Set securityContext.capabilities.drop: ["ALL"] on every container; add only NET_BIND_SERVICE '
            "if the process must bind a port below 1024."
        ),
        controls=(
            "nist-800-190:4.4.3",
            "cis-k8s:5.2.8",
            "cis-k8s:5.2.9",
            "cis-k8s:5.2.10",
            "nsa:pod-security",
            "nist-800-53:AC-6",
            "nist-800-53:CM-7",
        ),
        equivalents={
            "checkov": ("CKV_K8S_28", "CKV_K8S_37", "CKV_K8S_7", "CKV_K8S_36"),
            "trivy": ("KSV003", "KSV004", "KSV106"),
            "kubesec": ("CapDropAll", "CapDropAny"),
        },
    )

    def check_pod(self, pod: PodView, policy: Policy) -> Iterator[Violation]:
        if pod.is_windows:  # capabilitiesRestricted_1_25
            return
        high = escalate(policy, self.meta, SEVERITY_CAPABILITY_ADD)
        for c in pod.containers:
            subject = f"container {quote(c.name)}"
            caps = container_field(c, "securityContext", "capabilities")
            if caps.malformed or (not caps.unset and jv.as_map(caps.value) is None):
                yield Violation(
                    unverifiable(subject, caps, "securityContext.capabilities"),
                    path=caps.path,
                    container=c.name,
                )
                continue
            drop = lookup(caps.value, caps.path, "drop")
            dropped = jv.as_list(drop.value) or ()
            if CAPABILITY_ALL not in dropped:
                yield Violation(
                    f'{subject} must set securityContext.capabilities.drop=["ALL"]',
                    path=drop.path,
                    container=c.name,
                )
            add = lookup(caps.value, caps.path, "add")
            if add.unset:
                continue
            added = jv.as_list(add.value)
            if added is None:
                yield Violation(
                    unverifiable(subject, add, "securityContext.capabilities.add", "a list"),
                    path=add.path,
                    container=c.name,
                )
                continue
            for i, cap in enumerate(added):
                if cap == RESTRICTED_ADDABLE_CAPABILITY:
                    continue
                beyond_baseline = not (isinstance(cap, str) and cap in BASELINE_CAPABILITIES)
                yield Violation(
                    f"{subject} must not include {show(cap)} in securityContext.capabilities.add "
                    "(only NET_BIND_SERVICE)",
                    path=(*add.path, i),
                    container=c.name,
                    severity=high if beyond_baseline else None,
                )


class ProcMountRestricted(PSSRule):
    meta = pss_meta(
        "procMount_restricted",
        level=_R,
        title="Container unmasks /proc (procMount not Default)",
        severity=SEVERITY_PROC_MOUNT,
        description=(
            "procMount: Unmasked exposes /proc paths the runtime normally masks (kernel memory, sysrq, "
            "timers). Since Kubernetes 1.35 baseline allows it for pods with hostUsers: false; restricted "
            "never does."
        ),
        remediation="Remove securityContext.procMount or set it to Default.",
        controls=("nist-800-190:4.4.3", "cis-k8s:5.7.3", "nsa:pod-security", "nist-800-53:SC-39"),
        equivalents={"trivy": ("KSV027",)},
    )

    def check_pod(self, pod: PodView, policy: Policy) -> Iterator[Violation]:
        return proc_mount_violations(pod)


def rules() -> list[PSSRule]:
    return [
        RestrictedVolumes(),
        AllowPrivilegeEscalation(),
        RunAsNonRoot(),
        RunAsUser(),
        SeccompProfileRestricted(),
        CapabilitiesRestricted(),
        ProcMountRestricted(),
    ]
