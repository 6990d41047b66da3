"""Baseline-level PSA checks (they run at baseline and at restricted).

At restricted, PSA drops four of them in favour of a stricter restricted check (``OverrideCheckIDs``):
those rules return early through ``overridden`` so one problem is reported once.
"""

from __future__ import annotations

from collections.abc import Iterator

from dutyguard.core import jsonview as jv
from dutyguard.core.model import JSONPath, Severity
from dutyguard.core.policy import Policy, PSSLevel
from dutyguard.core.rule import Violation
from dutyguard.rules._podview import Field, PodView, container_field, lookup
from dutyguard.rules.pss_common import (
    APPARMOR_ANNOTATION_DEFAULT,
    APPARMOR_ANNOTATION_LOCALHOST,
    APPARMOR_ANNOTATION_PREFIX,
    APPARMOR_TYPES,
    BASELINE_CAPABILITIES,
    HOST_HANDLERS,
    LIFECYCLE_HOOKS,
    PROBES,
    SAFE_SYSCTLS,
    SECCOMP_TYPES,
    SELINUX_TYPES,
    SEVERITY_CAPABILITY_ADD,
    SEVERITY_HOST_PATH,
    SEVERITY_PROC_MOUNT,
    SEVERITY_SECCOMP_PROFILE,
    Profile,
    PSSRule,
    check_profile,
    is_int,
    overridden,
    proc_mount_violations,
    pss_meta,
    quote,
    show,
    unverifiable,
)
from dutyguard.rules.pss_restricted import (
    CapabilitiesRestricted,
    ProcMountRestricted,
    RestrictedVolumes,
    SeccompProfileRestricted,
)

_B = PSSLevel.BASELINE


def _subjects(pod: PodView, *keys: str) -> Iterator[tuple[str, Field, str | None]]:
    """The pod-level ``securityContext.<keys>`` field, then each container's."""
    yield "pod", pod.security_context(*keys), None
    for c in pod.containers:
        yield f"container {quote(c.name)}", container_field(c, "securityContext", *keys), c.name


class WindowsHostProcess(PSSRule):
    meta = pss_meta(
        "windowsHostProcess",
        level=_B,
        title="Windows HostProcess container",
        severity=Severity.CRITICAL,
        description=(
            "A Windows HostProcess container runs directly on the node as a host process, with access to "
            "the host's network, filesystem and processes: the Windows equivalent of a privileged container."
        ),
        remediation="Remove windowsOptions.hostProcess (pod and containers) or set it to false.",
        controls=(
            "nist-800-190:4.4.3",
            "cis-k8s:5.2.11",
            "nsa:pod-security",
            "nist-800-53:AC-6",
            "nist-800-53:SC-39",
        ),
        equivalents={"trivy": ("KSV103",)},
    )

    def check_pod(self, pod: PodView, policy: Policy) -> Iterator[Violation]:
        for subject, f, container in _subjects(pod, "windowsOptions", "hostProcess"):
            if f.unset or f.value is False:
                continue
            if f.malformed:
                msg = unverifiable(subject, f, "windowsOptions.hostProcess")
            else:
                msg = f"{subject} must not set securityContext.windowsOptions.hostProcess={show(f.value)}"
            yield Violation(msg, path=f.path, container=container)


class HostNamespaces(PSSRule):
    meta = pss_meta(
        "hostNamespaces",
        level=_B,
        title="Pod shares a host namespace (hostNetwork, hostPID or hostIPC)",
        severity=Severity.HIGH,
        description=(
            "Sharing the node's network, PID or IPC namespace lets the pod sniff and bind host traffic, "
            "see and signal every process on the node (and read their environment), or attach to host "
            "shared memory."
        ),
        remediation="Remove spec.hostNetwork, spec.hostPID and spec.hostIPC, or set them to false.",
        controls=(
            "nist-800-190:4.4.3",
            "cis-k8s:5.2.3",
            "cis-k8s:5.2.4",
            "cis-k8s:5.2.5",
            "nsa:pod-security",
            "nist-800-53:SC-39",
            "nist-800-53:SC-7",
        ),
        equivalents={
            "checkov": ("CKV_K8S_17", "CKV_K8S_18", "CKV_K8S_19", "CKV_K8S_1", "CKV_K8S_3", "CKV_K8S_4"),
            "trivy": ("KSV008", "KSV009", "KSV010"),
            "kubesec": ("HostNetwork", "HostPID", "HostIPC"),
        },
    )

    def check_pod(self, pod: PodView, policy: Policy) -> Iterator[Violation]:
        for key in ("hostNetwork", "hostPID", "hostIPC"):
            f = pod.field(key)
            if f.unset or f.value is False:
                continue
            if f.value is True:
                msg = f"pod must not set {key}=true"
            else:
                msg = f"pod: {key} must be false or unset (found {show(f.value)})"
            yield Violation(msg, path=f.path)


class Privileged(PSSRule):
    meta = pss_meta(
        "privileged",
        level=_B,
        title="Privileged container",
        severity=Severity.CRITICAL,
        description="A privileged container gets every capability and the host's devices: no isolation left.",
        remediation="Remove securityContext.privileged or set it to false.",
        controls=(
            "nist-800-190:4.4.3",
            "cis-k8s:5.2.2",
            "nsa:pod-security",
            "nist-800-53:AC-6",
            "nist-800-53:SC-39",
        ),
        equivalents={
            "checkov": ("CKV_K8S_16", "CKV_K8S_2"),
            "trivy": ("KSV017",),
            "kubesec": ("Privileged",),
            "kube-score": ("container-security-context-privileged",),
        },
    )

    def check_pod(self, pod: PodView, policy: Policy) -> Iterator[Violation]:
        for c in pod.containers:
            f = container_field(c, "securityContext", "privileged")
            if f.unset or f.value is False:
                continue
            subject = f"container {quote(c.name)}"
            if f.malformed:
                msg = unverifiable(subject, f, "securityContext.privileged")
            elif f.value is True:
                msg = f"{subject} must not set securityContext.privileged=true"
            else:
                msg = f"{subject}: securityContext.privileged must be false or unset (found {show(f.value)})"
            yield Violation(msg, path=f.path, container=c.name)


class CapabilitiesBaseline(PSSRule):
    meta = pss_meta(
        "capabilities_baseline",
        level=_B,
        title="Container adds a capability beyond the default set",
        severity=SEVERITY_CAPABILITY_ADD,
        description=(
            "Baseline allows adding only the container runtime's default capabilities (AUDIT_WRITE, CHOWN, "
            "DAC_OVERRIDE, FOWNER, FSETID, KILL, MKNOD, NET_BIND_SERVICE, SETFCAP, SETGID, SETPCAP, SETUID, "
            "SYS_CHROOT). Others such as SYS_ADMIN, NET_ADMIN, NET_RAW or SYS_PTRACE open container escapes."
        ),
        remediation="Remove the capability from securityContext.capabilities.add; redesign what needs it.",
        controls=(
            "nist-800-190:4.4.3",
            "cis-k8s:5.2.8",
            "cis-k8s:5.2.9",
            "nsa:pod-security",
            "nist-800-53:AC-6",
        ),
        equivalents={
            "checkov": ("CKV_K8S_25", "CKV_K8S_39", "CKV_K8S_24"),
            "trivy": ("KSV022", "KSV005", "KSV119", "KSV120"),
            "kubesec": ("CapSysAdmin",),
        },
    )

    def check_pod(self, pod: PodView, policy: Policy) -> Iterator[Violation]:
        if overridden(policy, CapabilitiesRestricted.meta):
            return
        for c in pod.containers:
            subject = f"container {quote(c.name)}"
            f = container_field(c, "securityContext", "capabilities", "add")
            if f.unset:
                continue
            added = None if f.malformed else jv.as_list(f.value)
            if added is None:
                expected = "a mapping" if f.malformed else "a list"
                yield Violation(
                    unverifiable(subject, f, "securityContext.capabilities.add", expected),
                    path=f.path,
                    container=c.name,
                )
                continue
            for i, cap in enumerate(added):
                if isinstance(cap, str) and cap in BASELINE_CAPABILITIES:
                    continue
                yield Violation(
                    f"{subject} must not include {show(cap)} in securityContext.capabilities.add",
                    path=(*f.path, i),
                    container=c.name,
                )


class HostPathVolumes(PSSRule):
    meta = pss_meta(
        "hostPathVolumes",
        level=_B,
        title="hostPath volume",
        severity=SEVERITY_HOST_PATH,
        description=(
            "A hostPath volume mounts a directory of the node into the pod: with / or the container "
            "runtime's socket that is root on the node, and anything can tamper with node files."
        ),
        remediation="Replace the hostPath volume with a persistentVolumeClaim, configMap, secret or emptyDir.",
        controls=(
            "nist-800-190:4.5.5",
            "nist-800-190:4.4.3",
            "cis-k8s:5.2.12",
            "nsa:pod-security",
            "nist-800-53:AC-6",
        ),
        equivalents={
            "checkov": ("CKV_K8S_27",),
            "trivy": ("KSV023", "KSV006"),
            "kubesec": ("DockerSock", "ProcMount"),
        },
    )

    def check_pod(self, pod: PodView, policy: Policy) -> Iterator[Violation]:
        if overridden(policy, RestrictedVolumes.meta):
            return
        vols = pod.field("volumes")
        if vols.unset:
            return
        seq = jv.as_list(vols.value)
        if seq is None:
            yield Violation(unverifiable("pod", vols, "hostPath volumes", "a list"), path=vols.path)
            return
        for i, vol in enumerate(seq):
            m = jv.as_map(vol)
            if m is None:
                yield Violation(
                    f"pod: volume #{i} is not a mapping, so it cannot be verified", path=(*vols.path, i)
                )
                continue
            hp = lookup(m, (*vols.path, i), "hostPath")
            if hp.unset:
                continue
            name = jv.as_str(m.get("name")) or f"#{i}"
            where = jv.as_str(jv.get(hp.value, ("path",)))
            detail = f" ({where})" if where else ""
            yield Violation(f"volume {quote(name)} must not use hostPath{detail}", path=hp.path)


class HostPorts(PSSRule):
    meta = pss_meta(
        "hostPorts",
        level=_B,
        title="Container binds a host port",
        severity=Severity.HIGH,
        description=(
            "hostPort binds the port on the node's own interfaces, bypassing Services and NetworkPolicy "
            "and pinning the pod to nodes where the port is free."
        ),
        remediation="Remove ports[*].hostPort (or set 0) and expose the port through a Service.",
        controls=(
            "nist-800-190:4.4.2",
            "cis-k8s:5.2.13",
            "nsa:pod-security",
            "nist-800-53:SC-7",
            "nist-800-53:CM-7",
        ),
        equivalents={"checkov": ("CKV_K8S_26",), "trivy": ("KSV024",)},
    )

    def check_pod(self, pod: PodView, policy: Policy) -> Iterator[Violation]:
        for c in pod.containers:
            subject = f"container {quote(c.name)}"
            ports = container_field(c, "ports")
            if ports.unset:
                continue
            seq = jv.as_list(ports.value)
            if seq is None:
                yield Violation(
                    unverifiable(subject, ports, "hostPort", "a list"), path=ports.path, container=c.name
                )
                continue
            for j, port in enumerate(seq):
                f = lookup(port, (*ports.path, j), "hostPort")
                if f.unset or (is_int(f.value) and f.value == 0):
                    continue
                if f.malformed:
                    msg = unverifiable(subject, f, "hostPort")
                else:
                    msg = f"{subject} must not set hostPort {show(f.value)}"
                yield Violation(msg, path=f.path, container=c.name)


class HostProbesAndHostLifecycle(PSSRule):
    meta = pss_meta(
        "hostProbesAndHostLifecycle",
        level=_B,
        title="Probe or lifecycle handler targets another host",
        severity=Severity.MEDIUM,
        description=(
            "httpGet/tcpSocket probes and lifecycle hooks with a host make the kubelet connect from the "
            "node to any address the pod author picks (node-local services, cloud metadata): a confused "
            "deputy. Forbidden by baseline since Kubernetes 1.34."
        ),
        remediation="Remove the host field so the kubelet targets the pod's own IP.",
        controls=("nist-800-190:4.4.2", "nsa:pod-security", "nist-800-53:SC-7"),
    )

    def check_pod(self, pod: PodView, policy: Policy) -> Iterator[Violation]:
        for c in pod.containers:
            subject = f"container {quote(c.name)}"
            places: list[tuple[str, ...]] = [(probe, h) for probe in PROBES for h in HOST_HANDLERS]
            places += [("lifecycle", hook, h) for hook in LIFECYCLE_HOOKS for h in HOST_HANDLERS]
            seen: set[JSONPath] = set()
            for keys in places:
                f = container_field(c, *keys, "host")
                if f.unset or f.value == "" or f.path in seen:
                    continue
                seen.add(f.path)
                if f.malformed:
                    msg = unverifiable(subject, f, "the probe and lifecycle hosts")
                else:
                    msg = f"{subject} must not set {'.'.join(keys)}.host to {show(f.value)}"
                yield Violation(msg, path=f.path, container=c.name)


class AppArmorProfile(PSSRule):
    meta = pss_meta(
        "appArmorProfile",
        level=_B,
        title="AppArmor profile disabled or overridden",
        severity=Severity.HIGH,
        description=(
            "Baseline allows only the runtime's default AppArmor profile or a profile loaded on the node "
            "(Localhost). Unconfined removes the mandatory access control that blocks many escapes. Both "
            "the appArmorProfile fields and the legacy container.apparmor.security.beta.kubernetes.io/* "
            "annotations are checked."
        ),
        remediation=(
            "Set securityContext.appArmorProfile.type to RuntimeDefault (or Localhost), and give any legacy "
            "annotation the value runtime/default or localhost/<profile>."
        ),
        controls=("nist-800-190:4.4.3", "cis-k8s:5.7.3", "nsa:pod-security", "nist-800-53:CM-6"),
        equivalents={"trivy": ("KSV002",), "kubesec": ("ApparmorAny", "ApparmorUnconfined")},
    )

    def check_pod(self, pod: PodView, policy: Policy) -> Iterator[Violation]:
        for subject, f, container in _subjects(pod, "appArmorProfile"):
            got = check_profile(f, APPARMOR_TYPES)
            if got.verdict is Profile.FORBIDDEN:
                yield Violation(
                    got.message(subject, "appArmorProfile"),
                    path=got.path,
                    container=container,
                )
        meta = jv.get(pod.resource.doc, pod.meta_path)
        notes = lookup(meta, pod.meta_path, "annotations")
        if notes.unset:
            return
        m = None if notes.malformed else jv.as_map(notes.value)
        if m is None:
            yield Violation(unverifiable("pod", notes, "AppArmor annotations"), path=notes.path)
            return
        for key, value in m.items():
            if not key.startswith(APPARMOR_ANNOTATION_PREFIX):
                continue
            if isinstance(value, str) and (
                value in ("", APPARMOR_ANNOTATION_DEFAULT) or value.startswith(APPARMOR_ANNOTATION_LOCALHOST)
            ):
                continue
            yield Violation(
                f"annotation {key}={show(value)} sets a forbidden AppArmor profile "
                "(only runtime/default or localhost/*)",
                path=(*notes.path, key),
                container=key[len(APPARMOR_ANNOTATION_PREFIX) :] or None,
            )


class SELinuxOptions(PSSRule):
    meta = pss_meta(
        "seLinuxOptions",
        level=_B,
        title="Custom SELinux type, user or role",
        severity=Severity.HIGH,
        description=(
            "Baseline allows only the container SELinux types (container_t, container_init_t, "
            "container_kvm_t, container_engine_t) and no custom user or role: spc_t or unconfined_t "
            "turn SELinux confinement off."
        ),
        remediation="Remove seLinuxOptions.type/user/role, or use one of the container_* types.",
        controls=("nist-800-190:4.4.3", "cis-k8s:5.7.3", "nsa:pod-security", "nist-800-53:CM-6"),
        equivalents={"trivy": ("KSV025",)},
    )

    def check_pod(self, pod: PodView, policy: Policy) -> Iterator[Violation]:
        for subject, f, container in _subjects(pod, "seLinuxOptions"):
            if f.unset:
                continue
            if f.malformed or jv.as_map(f.value) is None:
                yield Violation(unverifiable(subject, f, "seLinuxOptions"), path=f.path, container=container)
                continue
            t = lookup(f.value, f.path, "type")
            if not (t.unset or (isinstance(t.value, str) and t.value in SELINUX_TYPES)):
                yield Violation(
                    f"{subject} must not set securityContext.seLinuxOptions.type to {show(t.value)}",
                    path=t.path,
                    container=container,
                )
            for key in ("user", "role"):
                g = lookup(f.value, f.path, key)
                if g.unset or g.value == "":
                    continue
                yield Violation(
                    f"{subject} must not set securityContext.seLinuxOptions.{key} (found {show(g.value)})",
                    path=g.path,
                    container=container,
                )


class ProcMount(PSSRule):
    meta = pss_meta(
        "procMount",
        level=_B,
        title="Container unmasks /proc (procMount not Default)",
        severity=SEVERITY_PROC_MOUNT,
        description=(
            "procMount: Unmasked exposes /proc paths the runtime normally masks. Since Kubernetes 1.35 "
            "baseline allows it for pods in a user namespace (hostUsers: false); restricted never does."
        ),
        remediation="Remove securityContext.procMount or set it to Default.",
        controls=("nist-800-190:4.4.3", "cis-k8s:5.7.3", "nsa:pod-security", "nist-800-53:SC-39"),
        equivalents={"trivy": ("KSV027",)},
    )

    def check_pod(self, pod: PodView, policy: Policy) -> Iterator[Violation]:
        if overridden(policy, ProcMountRestricted.meta) or pod.in_user_namespace:  # procMount1_35baseline
            return iter(())
        return proc_mount_violations(pod)


class SeccompProfileBaseline(PSSRule):
    meta = pss_meta(
        "seccompProfile_baseline",
        level=_B,
        title="Seccomp explicitly disabled (Unconfined)",
        severity=SEVERITY_SECCOMP_PROFILE,
        description=(
            "Baseline does not require a seccomp profile, but one that is set must be RuntimeDefault or "
            "Localhost: Unconfined opens every syscall to the container."
        ),
        remediation="Set seccompProfile.type to RuntimeDefault (or Localhost), or remove it.",
        controls=("nist-800-190:4.4.3", "cis-k8s:5.7.2", "nsa:pod-security", "nist-800-53:CM-6"),
        equivalents={"trivy": ("KSV104",), "kubesec": ("SeccompUnconfined",)},
    )

    def check_pod(self, pod: PodView, policy: Policy) -> Iterator[Violation]:
        if overridden(policy, SeccompProfileRestricted.meta):
            return
        for subject, f, container in _subjects(pod, "seccompProfile"):
            got = check_profile(f, SECCOMP_TYPES)
            if got.verdict is Profile.FORBIDDEN:
                yield Violation(
                    got.message(subject, "seccompProfile"),
                    path=got.path,
                    container=container,
                )


class Sysctls(PSSRule):
    meta = pss_meta(
        "sysctls",
        level=_B,
        title="Unsafe sysctl",
        severity=Severity.HIGH,
        description=(
            "Only namespaced sysctls isolated from other pods are allowed (kernel.shm_rmid_forced and a "
            "set of net.ipv4.* settings). Others change the whole node's kernel or disable protections."
        ),
        remediation="Remove the sysctl from spec.securityContext.sysctls; tune the node through its configuration.",
        controls=("nist-800-190:4.4.3", "cis-k8s:5.7.3", "nsa:pod-security", "nist-800-53:CM-7"),
        equivalents={"trivy": ("KSV026",)},
    )

    def check_pod(self, pod: PodView, policy: Policy) -> Iterator[Violation]:
        f = pod.security_context("sysctls")
        if f.unset:
            return
        seq = None if f.malformed else jv.as_list(f.value)
        if seq is None:
            expected = "a mapping" if f.malformed else "a list"
            yield Violation(unverifiable("pod", f, "its sysctls", expected), path=f.path)
            return
        for i, item in enumerate(seq):
            name = lookup(item, (*f.path, i), "name")
            if isinstance(name.value, str) and name.value in SAFE_SYSCTLS:
                continue
            if name.malformed:
                msg = unverifiable("pod", name, "the sysctl name")
            else:
                msg = f"pod must not set the sysctl {show(name.value)} (not in the safe set)"
            yield Violation(msg, path=name.path)


def rules() -> list[PSSRule]:
    return [
        WindowsHostProcess(),
        HostNamespaces(),
        Privileged(),
        CapabilitiesBaseline(),
        HostPathVolumes(),
        HostPorts(),
        HostProbesAndHostLifecycle(),
        AppArmorProfile(),
        SELinuxOptions(),
        ProcMount(),
        SeccompProfileBaseline(),
        Sysctls(),
    ]
