"""The rbac pack against Checkov's own RBAC fixtures, resource by resource.

Per-object checks (CKV_K8S_42, 49, 155–158): the example directory is read through our Kubernetes
source, and each resource Checkov evaluates is passed or failed by the rule(s) that claim the check
(``registry.translate``). Expected lists are Checkov's (EXPECTED_SUMMARY.json names the resources
for all but CKV_K8S_42, whose lists are derived from the files and checked against its counts).

Graph checks (CKV2_K8S_1–5): each ``graph/checks/resources/<Check>`` directory is one scan, every
file one input; a binding fails when ``rbac.effective-permission`` reports it for the capability
that check is about, and the bindings and results are compared with ``expected.yaml``.

Where we deliberately differ, ``ours_*`` says what we do and ``why`` says why.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import pytest
import yaml

from dutyguard.core.model import Finding
from tests.rules.test_rbac import REGISTRY, file_objects, findings, wide

ROLE_KINDS = frozenset({"Role", "ClusterRole"})
BINDING_KINDS = frozenset({"RoleBinding", "ClusterRoleBinding"})


def rid(kind: str | None, namespace: str | None, name: str | None) -> str:
    """Checkov's resource id: ``Kind.namespace.name`` (``default`` when unset)."""
    return f"{kind}.{namespace or 'default'}.{name}"


@dataclass(frozen=True)
class Case:
    check: str
    example: str
    failed: tuple[str, ...]
    passed: tuple[str, ...]
    kinds: frozenset[str] = ROLE_KINDS
    ours_failed: tuple[str, ...] | None = None
    ours_passed: tuple[str, ...] | None = None
    why: str = ""


CASES = [
    Case("CKV_K8S_49", "example_WildcardRoles", failed=(), passed=()),  # lists from EXPECTED_SUMMARY
    Case("CKV_K8S_155", "example_RbacControlWebhooks", failed=(), passed=()),
    Case("CKV_K8S_156", "example_RbacApproveCertificateSigningRequests", failed=(), passed=()),
    Case(
        "CKV_K8S_157",
        "example_RbacBindRoleBindings",
        failed=(),
        passed=(),
        ours_failed=("Role.test.test-should-fail-2",),
        ours_passed=(
            "ClusterRole.test.test-should-pass-1",
            "Role.test.test-should-pass-2",
            "ClusterRole.test.test-should-fail-1",
        ),
        why=(
            "test-should-fail-1 grants 'bind' on rolebindings. The API server checks 'bind' on the role a "
            "binding refers to (roles/clusterroles), never on bindings: that entry grants nothing, and its "
            "'delete' on rolebindings cannot escalate. rbac.bind reports 'bind' on roles only."
        ),
    ),
    Case("CKV_K8S_158", "example_RbacEscalateRoles", failed=(), passed=()),
    Case(
        "CKV_K8S_42",
        "example_DefaultServiceAccountBinding",
        failed=("RoleBinding.whoa.read-pods", "ClusterRoleBinding.default.destroy-k8s"),
        passed=(
            "RoleBinding.whoa.read-pods",
            "RoleBinding.whoa.read-pods2",
            "ClusterRoleBinding.default.read-secrets-global",
        ),
        kinds=BINDING_KINDS,
    ),
]


def _summary(shared_data: Path, check: str) -> dict[str, object]:
    rows = json.loads((shared_data / "checkov" / "EXPECTED_SUMMARY.json").read_text())
    return next(r for r in rows if r.get("check_id") == check and r["test"] == "test_summary")


def _evaluate(
    directory: Path, kinds: frozenset[str], rule_ids: set[str]
) -> tuple[Counter[str], Counter[str]]:
    failed: Counter[str] = Counter()
    passed: Counter[str] = Counter()
    for path in sorted(directory.rglob("*.yaml")):
        for obj in file_objects(path):
            if obj.kind not in kinds:
                continue
            hit = any(f.rule_id in rule_ids for f in findings([obj]))
            (failed if hit else passed)[rid(obj.kind, obj.namespace, obj.name)] += 1
    return failed, passed


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.check)
def test_per_object_checks_match_checkov(shared_data: Path, case: Case) -> None:
    summary = _summary(shared_data, case.check)
    counts = summary["expected_summary"]
    assert isinstance(counts, dict)
    exp_failed = tuple(cast(list[str], summary.get("failed_resources", case.failed)))
    exp_passed = tuple(cast(list[str], summary.get("passed_resources", case.passed)))
    assert (len(exp_failed), len(exp_passed)) == (counts["failed"], counts["passed"])
    ours = set(REGISTRY.translate(case.check))
    assert ours, f"no rbac rule claims {case.check}"
    failed, passed = _evaluate(
        shared_data / "checkov/tests/kubernetes/checks" / case.example, case.kinds, ours
    )
    want_failed = case.ours_failed if case.ours_failed is not None else exp_failed
    want_passed = case.ours_passed if case.ours_passed is not None else exp_passed
    assert failed == Counter(want_failed), case.why
    assert passed == Counter(want_passed), case.why
    if case.why:  # a documented difference must be a real one
        assert Counter(want_failed) != Counter(exp_failed)


@dataclass(frozen=True)
class GraphCase:
    check: str
    directory: str
    capabilities: frozenset[str]
    ours_failed: tuple[str, ...] | None = None
    ours_passed: tuple[str, ...] | None = None
    why: str = ""
    elsewhere: tuple[tuple[str, str], ...] = ()
    """(binding, rule) pairs: a binding we pass for this capability but report for another one."""


ONLY_SA = (
    "Checkov's graph checks only consider ServiceAccount and Node subjects; a User or Group holding the "
    "same role holds the same power, so we report every subject."
)

GRAPH_CASES = [
    GraphCase("CKV2_K8S_3", "ImpersonatePermissions", frozenset({"rbac.impersonate"})),
    GraphCase("CKV2_K8S_5", "ReadAllSecrets", frozenset({"rbac.secrets-read"})),
    GraphCase(
        "CKV2_K8S_1",
        "RoleBindingPE",
        frozenset({"rbac.bind", "rbac.rbac-write"}),
        ours_failed=(
            "ClusterRoleBinding.default.failing-crb1",
            "ClusterRoleBinding.default.failing-crb2",
            "RoleBinding.kube-system.failing-rb3",
            "ClusterRoleBinding.default.passing-crb2",
        ),
        ours_passed=("ClusterRoleBinding.default.passing-crb1", "ClusterRoleBinding.default.passing-crb3"),
        why=ONLY_SA + " passing-crb2 gives a User bind and create on every RBAC resource.",
    ),
    GraphCase(
        "CKV2_K8S_2",
        "NoCreateNodesProxyOrPodsExec",
        frozenset({"rbac.pod-exec", "rbac.node-proxy"}),
        ours_failed=(
            "ClusterRoleBinding.default.failing-crb1",
            "ClusterRoleBinding.default.failing-crb2",
            "ClusterRoleBinding.default.passing-crb2",
        ),
        ours_passed=(
            "RoleBinding.kube-system.failing-rb3",
            "ClusterRoleBinding.default.failing-crb4",
            "ClusterRoleBinding.default.passing-crb1",
        ),
        why=(
            "passing-crb2 grants 'get' on nodes/proxy: not read-only, the kubelet API gives exec in every "
            "pod of the node (DOMAIN R08). failing-rb3's Role names nodes/proxy, a cluster-scoped resource "
            "a Role cannot grant; failing-crb4's role is rbac.authorization.k8s.io '*', which holds no "
            "pods/exec or nodes/proxy (Checkov ignores API groups). Both are reported for what they do grant."
        ),
        elsewhere=(
            ("RoleBinding.kube-system.failing-rb3", "rbac.workload-write"),
            ("ClusterRoleBinding.default.failing-crb4", "rbac.bind"),
            ("ClusterRoleBinding.default.passing-crb1", "rbac.workload-write"),
        ),
    ),
    GraphCase(
        "CKV2_K8S_4",
        "ModifyServicesStatus",
        frozenset({"rbac.service-status-write"}),
        ours_failed=(),
        ours_passed=(
            "ClusterRoleBinding.default.failing-crb1",
            "ClusterRoleBinding.default.failing-crb2",
            "ClusterRoleBinding.default.passing-crb1",
            "ClusterRoleBinding.default.passing-crb2",
        ),
        why=(
            "Both failing roles name resources of rbac.authorization.k8s.io, which has no services/status "
            "(Checkov ignores API groups): nothing there can set a Service's load-balancer IP. failing-crb2 "
            "(bind and update on every RBAC resource) is reported by rbac.bind and rbac.rbac-write instead, "
            "and so is passing-crb2's User."
        ),
        elsewhere=(
            ("ClusterRoleBinding.default.failing-crb2", "rbac.bind"),
            ("ClusterRoleBinding.default.failing-crb2", "rbac.rbac-write"),
            ("ClusterRoleBinding.default.passing-crb2", "rbac.bind"),
        ),
    ),
]


def _graph(directory: Path) -> tuple[list[Finding], list[str]]:
    groups = [file_objects(p, str(p.relative_to(directory))) for p in sorted(directory.rglob("*.yaml"))]
    found = wide(groups)
    bindings = [rid(o.kind, o.namespace, o.name) for g in groups for o in g if o.kind in BINDING_KINDS]
    return found, bindings


def _granted(f: Finding) -> str:
    return "rbac." + f.message.rsplit(" (rbac.", 1)[1].split(")")[0]


@pytest.mark.parametrize("case", GRAPH_CASES, ids=lambda c: c.check)
def test_graph_checks_match_checkov(shared_data: Path, case: GraphCase) -> None:
    directory = shared_data / "checkov/tests/kubernetes/graph/checks/resources" / case.directory
    expected = yaml.safe_load((directory / "expected.yaml").read_text())
    assert set(REGISTRY.translate(case.check)) == {"rbac.effective-permission"}
    found, bindings = _graph(directory)
    assert sorted(bindings) == sorted(expected["pass"] + expected["fail"])
    effective = [f for f in found if f.rule_id == "rbac.effective-permission"]
    failed = {
        rid(f.location.kind, f.location.namespace, f.location.name)
        for f in effective
        if _granted(f) in case.capabilities
    }
    passed = set(bindings) - failed
    want_failed = set(case.ours_failed if case.ours_failed is not None else expected["fail"])
    want_passed = set(case.ours_passed if case.ours_passed is not None else expected["pass"])
    assert (failed, passed) == (want_failed, want_passed), case.why
    if case.why:
        assert want_failed != set(expected["fail"])
    granted = {(rid(f.location.kind, f.location.namespace, f.location.name), _granted(f)) for f in effective}
    assert set(case.elsewhere) <= granted
    for f in effective:  # located at the binding's roleRef, in the binding's own file
        assert f.location.field == "roleRef" and f.location.line is not None
