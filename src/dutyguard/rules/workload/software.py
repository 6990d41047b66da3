"""Known-dangerous software in the cluster: Helm v2's Tiller, the Kubernetes Dashboard, git-sync overrides.

Detection is by image repository name (any registry, exact last path component) and by the labels
the upstream install manifests set, not by substrings of object names (``distiller`` is not Tiller).
"""

from __future__ import annotations

from collections.abc import Iterator

from dutyguard.core import jsonview as jv
from dutyguard.core.model import JSONPath, Severity
from dutyguard.core.policy import Policy
from dutyguard.core.rule import Rule, RuleMeta, Violation
from dutyguard.rules._podview import PodRule, PodView
from dutyguard.rules.workload._view import PACK, object_labels
from dutyguard.rules.workload.imageref import ImageReferenceError, parse_image
from dutyguard.sources.kubernetes import ContainerRef, K8sObject


def _repository(c: ContainerRef) -> str | None:
    try:
        return parse_image(c.spec.get("image")).repository
    except ImageReferenceError:
        return None


def _label_sets(resource: K8sObject, pod: PodView | None) -> Iterator[tuple[JSONPath, jv.JSONMap]]:
    yield ("metadata", "labels"), object_labels(resource)
    if pod is not None:
        yield (*pod.meta_path, "labels"), pod.labels()


def _is_tiller_labels(labels: jv.JSONMap) -> bool:
    # What `helm init` (Helm v2) puts on Tiller's Deployment, pods and Service.
    return labels.get("app") == "helm" and labels.get("name") == "tiller"


class TillerDeployed(Rule[K8sObject]):
    meta = RuleMeta(
        id="k8s.tiller-deployed",
        title="Helm v2 Tiller deployed",
        severity=Severity.CRITICAL,
        description=(
            "Tiller (Helm v2, end of life since 2020) serves an unauthenticated gRPC API on port 44134 "
            "and usually runs as cluster-admin: any pod that can reach it owns the cluster. Listening on "
            "localhost only still leaves it to every user with port-forward rights."
        ),
        remediation="Remove Tiller and its Service; migrate releases to Helm v3 (helm-2to3).",
        controls=("nist-800-190:4.3.1", "nist-800-190:4.4.4", "nsa:upgrades"),
        pack=PACK,
        equivalents={"checkov": ("CKV_K8S_34", "CKV_K8S_44", "CKV_K8S_45"), "trivy": ("KSV102",)},
    )
    target = K8sObject

    def check(self, resource: K8sObject, policy: Policy) -> Iterator[Violation]:
        if resource.kind == "Service":
            selector = jv.as_map(jv.get(resource.doc, ("spec", "selector"))) or {}
            if _is_tiller_labels(selector) or _is_tiller_labels(object_labels(resource)):
                yield Violation("Service exposes Tiller (app=helm, name=tiller)", path=("spec", "selector"))
            return
        pod = PodView.of(resource)
        if pod is None:
            return
        reported = False
        for c in pod.containers:
            repo = _repository(c)
            if repo is not None and repo.rsplit("/", 1)[-1] == "tiller":
                reported = True
                yield Violation(
                    f"container {c.name!r} runs Tiller ({repo})", path=(*c.path, "image"), container=c.name
                )
        if not reported:
            for path, labels in _label_sets(resource, pod):
                if _is_tiller_labels(labels):
                    yield Violation("labelled as Tiller (app=helm, name=tiller)", path=path)
                    break


_DASHBOARD_LABEL = "kubernetes-dashboard"
_DASHBOARD_REPOSITORIES = ("kubernetesui/dashboard", "kubernetesui/dashboard-api", "kubernetesui/dashboard-web",
                           "kubernetesui/dashboard-auth", "kubernetesui/dashboard-metrics-scraper")  # fmt: skip


class KubernetesDashboard(PodRule):
    meta = RuleMeta(
        id="k8s.kubernetes-dashboard",
        title="Kubernetes Dashboard deployed",
        severity=Severity.MEDIUM,
        description=(
            "The Dashboard is a web UI to the API server; exposed or bound to a powerful service account "
            "it has been the way into clusters (Tesla, 2018). Its use should be a decision Security knows of."
        ),
        remediation="Remove it, or keep it internal, behind SSO, with a read-only service account.",
        controls=("nist-800-190:4.3.2", "nist-800-190:4.3.1"),
        pack=PACK,
        equivalents={"checkov": ("CKV_K8S_33",)},
    )

    def check_pod(self, pod: PodView, policy: Policy) -> Iterator[Violation]:
        for c in pod.containers:
            repo = _repository(c)
            if repo is not None and (
                repo in _DASHBOARD_REPOSITORIES or repo.rsplit("/", 1)[-1].startswith(_DASHBOARD_LABEL)
            ):
                yield Violation(
                    f"container {c.name!r} runs the Kubernetes Dashboard ({repo})",
                    path=(*c.path, "image"),
                    container=c.name,
                )
                return
        for path, labels in _label_sets(pod.resource, pod):
            if _DASHBOARD_LABEL in (labels.get("app"), labels.get("k8s-app")):
                yield Violation("labelled as the Kubernetes Dashboard", path=path)
                return


_GIT_SYNC_ENV = frozenset({"GITSYNC_GIT", "GIT_SYNC_GIT", "GITSYNC_GIT_CONFIG", "GIT_SYNC_GIT_CONFIG"})
_GIT_SYNC_FLAGS = ("--git", "--git-config")


class GitSyncExecOverride(Rule[K8sObject]):
    meta = RuleMeta(
        id="k8s.git-sync-exec-override",
        title="git-sync told to run another git binary or git config",
        severity=Severity.MEDIUM,
        description=(
            "git-sync's GITSYNC_GIT / --git choose the binary it executes and GITSYNC_GIT_CONFIG / "
            "--git-config can set core.sshCommand or hooks: whoever controls these values (often a Helm "
            "value or a ConfigMap) runs code in the pod, with its credentials (Akamai, 2024)."
        ),
        remediation="Remove the override; use the git shipped in the git-sync image and no custom git config.",
        controls=("nist-800-190:4.4.4", "nist-800-190:4.4.3"),
        pack=PACK,
        equivalents={"checkov": ("CKV_K8S_159",)},
    )
    target = K8sObject

    def check(self, resource: K8sObject, policy: Policy) -> Iterator[Violation]:
        for c in resource.containers():
            for i, item in enumerate(jv.as_list(c.spec.get("env")) or ()):
                name = jv.get(item, ("name",))
                if isinstance(name, str) and name in _GIT_SYNC_ENV:
                    yield Violation(
                        f"container {c.name!r} sets {name}",
                        path=(*c.path, "env", i, "name"),
                        container=c.name,
                        key=name,
                    )
            repo = _repository(c)
            if repo is None or repo.rsplit("/", 1)[-1] != "git-sync":
                continue
            for field in ("command", "args"):
                for j, arg in enumerate(jv.as_list(c.spec.get(field)) or ()):
                    flag = arg.split("=", 1)[0] if isinstance(arg, str) else None
                    if flag in _GIT_SYNC_FLAGS:
                        yield Violation(
                            f"container {c.name!r} passes {flag}",
                            path=(*c.path, field, j),
                            container=c.name,
                            key=flag,
                        )
