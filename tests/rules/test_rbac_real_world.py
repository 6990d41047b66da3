"""The rbac pack on real, unlabelled RBAC from argo-cd, ingress-nginx and kube-prometheus: which
object, which entry, which rule — and, as importantly, which objects stay quiet."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest

from dutyguard.core.model import Finding, Severity
from tests.rules.test_rbac import file_objects, findings, wide

BASE = "rbac-real-world"


def by_object(fs: list[Finding]) -> dict[tuple[str | None, str | None], set[tuple[str, str | None]]]:
    out: dict[tuple[str | None, str | None], set[tuple[str, str | None]]] = defaultdict(set)
    for f in fs:
        out[(f.location.kind, f.location.name)].add((f.rule_id, f.location.field))
    return out


def granted(fs: list[Finding]) -> dict[str | None, set[str]]:
    """Binding name -> rules whose capability ``rbac.effective-permission`` says it conveys."""
    out: dict[str | None, set[str]] = defaultdict(set)
    for f in fs:
        if f.rule_id == "rbac.effective-permission":
            out[f.location.name].add("rbac." + f.message.rsplit(" (rbac.", 1)[1].split(")")[0])
    return out


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.yaml") if p.name != "kustomization.yaml")


# --- argo-cd -------------------------------------------------------------------------------------------
def test_argocd_application_controller_is_cluster_admin_once(shared_data: Path) -> None:
    path = (
        shared_data
        / BASE
        / "argo-cd/manifests/cluster-rbac/application-controller/argocd-application-controller-clusterrole.yaml"
    )
    fs = findings(file_objects(path))
    assert by_object(fs) == {
        ("ClusterRole", "argocd-application-controller"): {
            ("rbac.cluster-admin-equivalent", "rules[0]"),
            ("rbac.wildcard", "rules[1]"),  # nonResourceURLs '*' with verbs '*'
        }
    }
    [r01] = [f for f in fs if f.rule_id == "rbac.cluster-admin-equivalent"]
    assert r01.severity is Severity.CRITICAL and r01.location.line == 10


def test_argocd_server_clusterrole_star_patch_is_many_powers(shared_data: Path) -> None:
    """'*'/'*' with get, patch, delete is not cluster-admin, but it reads every Secret, patches every
    workload, role, webhook and namespace, and reaches the kubelet (get nodes/proxy)."""
    path = shared_data / BASE / "argo-cd/manifests/cluster-rbac/server/argocd-server-clusterrole.yaml"
    fs = findings(file_objects(path))
    rules = {rule for rule, field in by_object(fs)[("ClusterRole", "argocd-server")] if field == "rules[0]"}
    assert rules == {
        "rbac.wildcard",
        "rbac.secrets-read",
        "rbac.workload-write",
        "rbac.pod-exec",
        "rbac.node-proxy",
        "rbac.node-taint-evict",
        "rbac.rbac-write",
        "rbac.configmap-write",
        "rbac.webhook-config-write",
        "rbac.admission-policy-write",
        "rbac.policy-exception-write",
        "rbac.crd-write",
        "rbac.namespace-write",
        "rbac.service-status-write",
        "rbac.status-write",
        "rbac.network-write",
        "rbac.act-and-erase",
    }
    # What get/patch/delete cannot do: escalate, bind, impersonate, approve CSRs, create pods or tokens.
    assert ("rbac.workload-write", "rules[5]") in by_object(fs)[
        ("ClusterRole", "argocd-server")
    ]  # jobs create
    for absent in ("rbac.escalate", "rbac.bind", "rbac.impersonate", "rbac.csr-approve", "rbac.token-create"):
        assert absent not in {f.rule_id for f in fs}


def test_argocd_whole_tree_bindings(shared_data: Path) -> None:
    root = shared_data / BASE / "argo-cd/manifests"
    fs = wide([file_objects(p, str(p.relative_to(root))) for p in _files(root)])
    g = granted(fs)
    assert g["argocd-application-controller"] >= {"rbac.cluster-admin-equivalent"}
    [controller] = [
        f
        for f in fs
        if f.location.kind == "ClusterRoleBinding" and f.location.name == "argocd-application-controller"
    ]
    assert controller.severity is Severity.CRITICAL
    assert (
        controller.location.file
        == "cluster-rbac/application-controller/argocd-application-controller-clusterrolebinding.yaml"
    )
    assert "ServiceAccount argocd/argocd-application-controller cluster-wide" in controller.message
    assert {"rbac.secrets-read", "rbac.rbac-write", "rbac.node-proxy"} <= g["argocd-server"]
    assert "argocd-redis" not in g  # its Role reads only the Secrets it names


def test_argocd_namespace_install_roles_read_their_namespace_secrets(shared_data: Path) -> None:
    fs = findings(file_objects(shared_data / BASE / "argo-cd/manifests/namespace-install.yaml"))
    assert sorted(
        (f.location.name, f.location.field, f.severity.value) for f in fs if f.rule_id == "rbac.secrets-read"
    ) == [
        ("argocd-application-controller", "rules[0]", "medium"),
        ("argocd-applicationset-controller", "rules[4]", "medium"),
        ("argocd-dex-server", "rules[0]", "medium"),
        ("argocd-notifications-controller", "rules[1]", "medium"),
        ("argocd-server", "rules[0]", "medium"),
    ]
    assert {f.rule_id for f in fs} == {"rbac.secrets-read", "rbac.configmap-write"}


# --- ingress-nginx ---------------------------------------------------------------------------------------
PROVIDERS = (
    "aws",
    "aws/nlb-with-tls-termination",
    "baremetal",
    "cloud",
    "do",
    "exoscale",
    "kind",
    "oracle",
    "scw",
)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_ingress_nginx_admission_can_rewrite_its_webhook(shared_data: Path, provider: str) -> None:
    path = shared_data / BASE / "ingress-nginx/deploy/static/provider" / provider / "deploy.yaml"
    got = by_object(findings(file_objects(path)))
    assert got == {
        ("ClusterRole", "ingress-nginx-admission"): {("rbac.webhook-config-write", "rules[0]")},
        ("ClusterRole", "ingress-nginx"): {("rbac.secrets-read", "rules[0]")},
        ("Role", "ingress-nginx"): {("rbac.secrets-read", "rules[1]")},
        ("Role", "ingress-nginx-admission"): {("rbac.secrets-read", "rules[0]")},
    }


def test_ingress_nginx_bindings_across_all_providers_resolve_in_their_own_file(shared_data: Path) -> None:
    """Nine deploy.yaml define the same names: each binding takes its own file's role."""
    root = shared_data / BASE / "ingress-nginx"
    fs = wide([file_objects(p, str(p.relative_to(root))) for p in _files(root)])
    admission = [
        f
        for f in fs
        if f.location.kind == "ClusterRoleBinding" and f.location.name == "ingress-nginx-admission"
    ]
    assert len(admission) == len(PROVIDERS)
    for f in admission:
        assert "(rbac.webhook-config-write)" in f.message and f.severity is Severity.HIGH
        assert "ServiceAccount ingress-nginx/ingress-nginx-admission cluster-wide" in f.message
    secrets = [
        f for f in fs if f.location.kind == "ClusterRoleBinding" and f.location.name == "ingress-nginx"
    ]
    assert len(secrets) == len(PROVIDERS) and {f.severity for f in secrets} == {Severity.CRITICAL}
    namespaced = [f for f in fs if f.location.kind == "RoleBinding"]
    assert {f.severity for f in namespaced} == {Severity.MEDIUM}


# --- kube-prometheus ---------------------------------------------------------------------------------------
def test_kube_prometheus_roles(shared_data: Path) -> None:
    root = shared_data / BASE / "kube-prometheus/manifests"
    objs = [o for p in _files(root) for o in file_objects(p)]
    got = by_object(findings(objs))
    assert got == {
        ("ClusterRole", "kube-state-metrics"): {("rbac.secrets-read", "rules[0]")},
        ("ClusterRole", "resource-metrics-server-resources"): {("rbac.wildcard", "rules[0]")},
        ("ClusterRole", "prometheus-operator"): {
            ("rbac.wildcard", "rules[0]"),
            ("rbac.wildcard", "rules[1]"),
            ("rbac.wildcard", "rules[2]"),
            ("rbac.workload-write", "rules[1]"),
            ("rbac.secrets-read", "rules[2]"),
            ("rbac.configmap-write", "rules[2]"),
            ("rbac.token-create", "rules[2]"),
            ("rbac.network-write", "rules[4]"),
            ("rbac.network-write", "rules[10]"),
            ("rbac.network-write", "rules[11]"),
        },
    }
    # Quiet: prometheus-k8s (nodes/metrics is not nodes/proxy), the exporters, the adapter, and the
    # metrics reader that aggregates harmless rules into view/edit/admin.


def test_kube_prometheus_who_gets_what(shared_data: Path) -> None:
    root = shared_data / BASE / "kube-prometheus/manifests"
    fs = wide([file_objects(p, p.name) for p in _files(root)])
    assert dict(granted(fs)) == {
        "kube-state-metrics": {"rbac.secrets-read"},
        "prometheus-operator": {
            "rbac.workload-write",
            "rbac.secrets-read",
            "rbac.configmap-write",
            "rbac.token-create",
            "rbac.network-write",
        },
    }
    # Bindings to roles the scan does not hold (system:auth-delegator,
    # extension-apiserver-authentication-reader) are not guessed at.
    assert {f.location.file for f in fs} == {
        "kubeStateMetrics-clusterRoleBinding.yaml",
        "prometheusOperator-clusterRoleBinding.yaml",
    }
