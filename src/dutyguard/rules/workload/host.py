"""hostPath volumes that hand the node to the container: runtime sockets and sensitive host directories.

Pod Security Standards baseline forbids every hostPath (``pss.*``); these rules say which ones are a
node takeover, so that a waiver for a log collector's ``/var/log`` never covers ``/var/run/docker.sock``.
Paths are compared after normalisation (``//``, ``.``, ``..`` and trailing slashes removed): the
API server refuses ``..`` in a hostPath, we resolve it anyway rather than trust that.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator

from dutyguard.core import jsonview as jv
from dutyguard.core.model import JSONPath, Severity
from dutyguard.core.policy import Policy
from dutyguard.core.rule import Rule, RuleMeta, Violation
from dutyguard.rules._podview import PodView
from dutyguard.rules.workload._view import PACK
from dutyguard.sources.kubernetes import K8sObject

RUNTIME_SOCKETS: dict[str, str] = {
    "/var/run/docker.sock": "Docker",
    "/run/docker.sock": "Docker",
    "/var/run/dockershim.sock": "dockershim",
    "/run/dockershim.sock": "dockershim",
    "/var/run/cri-dockerd.sock": "cri-dockerd",
    "/run/cri-dockerd.sock": "cri-dockerd",
    "/var/run/containerd/containerd.sock": "containerd",
    "/run/containerd/containerd.sock": "containerd",
    "/run/k3s/containerd/containerd.sock": "containerd (k3s)",
    "/var/snap/microk8s/common/run/containerd.sock": "containerd (microk8s)",
    "/var/run/crio/crio.sock": "CRI-O",
    "/run/crio/crio.sock": "CRI-O",
    "/var/run/podman/podman.sock": "Podman",
    "/run/podman/podman.sock": "Podman",
    "/run/buildkit/buildkitd.sock": "BuildKit",
}
"""Well-known container runtime API sockets: whoever talks to one can start a privileged container."""

_SOCKET_NAMES: dict[str, str] = {
    "docker.sock": "Docker",
    "dockershim.sock": "dockershim",
    "cri-dockerd.sock": "cri-dockerd",
    "containerd.sock": "containerd",
    "docker-containerd.sock": "containerd",
    "crio.sock": "CRI-O",
    "podman.sock": "Podman",
    "buildkitd.sock": "BuildKit",
}
"""The same sockets found at a non-standard location."""

_TOO_WIDE = frozenset({"/", "/var", "/var/snap", "/var/snap/microk8s", "/var/snap/microk8s/common"})


def _socket_dirs() -> dict[str, str]:
    """Directories holding a runtime socket (``/run``, ``/var/run/containerd``...); wider parents
    (``/``, ``/var``) belong to the sensitive-host-path rule."""
    out: dict[str, str] = {}
    for sock, runtime in RUNTIME_SOCKETS.items():
        d = posixpath.dirname(sock)
        while d not in _TOO_WIDE:
            out.setdefault(d, runtime)
            d = posixpath.dirname(d)
    return out


_SOCKET_DIRS = _socket_dirs()

SENSITIVE_EXACT = frozenset(
    {"/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib32", "/lib64", "/proc", "/root",
     "/sbin", "/sys", "/usr", "/var", "/var/lib"}
)  # fmt: skip
"""Host directories whose whole tree is the node's system (mounting a subdirectory may be legitimate)."""

SENSITIVE_TREES = (
    "/boot",
    "/root",
    "/etc/kubernetes",
    "/etc/containerd",
    "/etc/docker",
    "/etc/crio",
    "/etc/cni",
    "/opt/cni",
    "/etc/ssh",
    "/etc/sudoers",
    "/etc/sudoers.d",
    "/etc/shadow",
    "/etc/passwd",
    "/etc/cron.d",
    "/etc/crontab",
    "/etc/systemd",
    "/etc/ld.so.preload",
    "/var/lib/kubelet",
    "/var/lib/docker",
    "/var/lib/containerd",
    "/var/lib/crio",
    "/var/lib/etcd",
    "/proc/sys",
    "/sys/kernel",
    "/sys/fs/cgroup",
    "/dev/mem",
    "/dev/kmem",
    "/dev/port",
)
"""Trees that hold node credentials (kubelet, etcd, SSH), other pods' data, runtime state, or code the
node runs as root (CNI plugins, cron, systemd), or kernel interfaces used for escapes (cgroup
release_agent, /proc/sys)."""


def normalise_host_path(path: str) -> str:
    """``/var//run/./docker.sock/`` -> ``/var/run/docker.sock``; relative paths are read from ``/``."""
    parts: list[str] = []
    for segment in path.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if parts:
                parts.pop()
            continue
        parts.append(segment)
    return "/" + "/".join(parts)


def runtime_socket(path: str) -> str | None:
    """The runtime whose API socket ``path`` (normalised) exposes, if any."""
    hit = RUNTIME_SOCKETS.get(path) or _SOCKET_DIRS.get(path)
    if hit is not None:
        return hit
    return _SOCKET_NAMES.get(posixpath.basename(path))


def sensitive_tree(path: str) -> str | None:
    """The sensitive host location ``path`` (normalised) is or lies in, if any."""
    if path in SENSITIVE_EXACT:
        return path
    for tree in SENSITIVE_TREES:
        if path == tree or path.startswith(tree + "/"):
            return tree
    return None


def _host_paths(resource: K8sObject) -> Iterator[tuple[JSONPath, str, object]]:
    """(path of hostPath.path, volume name, raw path value) for every hostPath volume."""
    if resource.kind == "PersistentVolume":
        hp = jv.get(resource.doc, ("spec", "hostPath"))
        if hp is not None:
            yield ("spec", "hostPath", "path"), resource.name or "", jv.get(hp, ("path",))
        return
    pod = PodView.of(resource)
    if pod is None:
        return
    volumes = pod.field("volumes")
    for i, volume in enumerate(jv.as_list(volumes.value) or ()):
        hp = jv.get(volume, ("hostPath",))
        if hp is not None:
            name = jv.as_str(jv.get(volume, ("name",))) or f"volumes[{i}]"
            yield (*volumes.path, i, "hostPath", "path"), name, jv.get(hp, ("path",))


class RuntimeSocketMount(Rule[K8sObject]):
    meta = RuleMeta(
        id="k8s.runtime-socket-mount",
        title="Container runtime socket mounted",
        severity=Severity.CRITICAL,
        description=(
            "A hostPath volume exposes a container runtime API socket (Docker, containerd, CRI-O, Podman, "
            "BuildKit) or its directory. Anyone in the pod can start a privileged container on the node: "
            "this is root on the node, outside every admission control."
        ),
        remediation="Remove the volume. Build images with a rootless builder; read runtime data through the kubelet API.",
        controls=("nist-800-190:4.4.3", "nist-800-190:4.5.5", "cis-k8s:5.2.12", "nsa:container-environments"),
        pack=PACK,
        equivalents={"checkov": ("CKV_K8S_27",), "trivy": ("KSV006",), "kubesec": ("DockerSock",)},
    )
    target = K8sObject

    def check(self, resource: K8sObject, policy: Policy) -> Iterator[Violation]:
        for path, volume, raw in _host_paths(resource):
            if not isinstance(raw, str):
                continue  # unreadable: reported by k8s.sensitive-host-path
            runtime = runtime_socket(normalise_host_path(raw))
            if runtime is not None:
                yield Violation(
                    f"volume {volume!r} mounts host path {raw!r}: the {runtime} API socket",
                    path=path,
                    key=volume,
                )


class SensitiveHostPath(Rule[K8sObject]):
    meta = RuleMeta(
        id="k8s.sensitive-host-path",
        title="Sensitive host path mounted",
        severity=Severity.HIGH,
        description=(
            "A hostPath volume mounts the node's root, system directories, kubelet/etcd/runtime state, "
            "credentials or code the node runs as root. Read access leaks other pods' secrets and node "
            "credentials; write access is a node takeover."
        ),
        remediation="Mount only the specific, non-sensitive host path needed, read-only, or use a CSI driver.",
        controls=("nist-800-190:4.5.5", "nist-800-190:4.4.3", "cis-k8s:5.2.12", "nsa:container-environments"),
        pack=PACK,
        equivalents={"trivy": ("KSV121",)},
    )
    target = K8sObject

    def check(self, resource: K8sObject, policy: Policy) -> Iterator[Violation]:
        for path, volume, raw in _host_paths(resource):
            if not isinstance(raw, str):
                yield Violation(
                    f"volume {volume!r} has a hostPath whose path is not a string (cannot be checked)",
                    path=path,
                    key=volume,
                )
                continue
            norm = normalise_host_path(raw)
            tree = sensitive_tree(norm)
            if tree is not None:
                shown = repr(raw) if norm == raw else f"{raw!r} (that is {norm})"
                inside = "" if tree == norm else f", inside {tree}"
                yield Violation(f"volume {volume!r} mounts host path {shown}{inside}", path=path, key=volume)
