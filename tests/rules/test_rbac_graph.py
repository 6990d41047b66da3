"""Who effectively gets what across the scanned set (``rbac.effective-permission``,
``rbac.subject-act-and-erase``) and the scan-wide mechanism they run on (core/scanwide.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dutyguard.core.evaluate import Evaluator
from dutyguard.core.model import Finding, Severity
from dutyguard.core.policy import Policy
from dutyguard.core.scanwide import collect, evaluate_wide, wide_types
from dutyguard.rules.rbac import graph
from dutyguard.rules.rbac.graph import RbacGraph
from tests.rules.test_rbac import REGISTRY, file_objects, objects, wide

CR_SECRETS = """apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: reader}
rules:
- {apiGroups: [""], resources: [secrets, nodes/proxy], verbs: [get, list]}
"""


def crb(
    role: str, subjects: str = "- {kind: ServiceAccount, name: app, namespace: shop}", name: str = "b"
) -> str:
    return (
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\n"
        f"metadata: {{name: {name}}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {role}}}\n"
        f"subjects:\n{subjects}\n"
    )


def rb(role_kind: str, role: str, namespace: str | None, name: str = "b") -> str:
    ns = f", namespace: {namespace}" if namespace else ""
    return (
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\n"
        f"metadata: {{name: {name}{ns}}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: {role_kind}, name: {role}}}\n"
        "subjects:\n- {kind: ServiceAccount, name: app}\n"
    )


def effective(
    fs: list[Finding], rule: str = "rbac.effective-permission"
) -> list[tuple[str | None, str | None, str]]:
    """(binding name, field, granted rule id) of each scan-wide finding."""
    out = []
    for f in fs:
        if f.rule_id == rule:
            granted = (
                f.message.split(" (rbac.")[-1].split(")")[0] if rule == "rbac.effective-permission" else ""
            )
            out.append((f.location.name, f.location.field, f"rbac.{granted}" if granted else ""))
    return sorted(out, key=str)


def test_clusterrolebinding_gives_the_roles_capabilities_cluster_wide() -> None:
    fs = wide([objects(CR_SECRETS, "role.yaml"), objects(crb("reader"), "binding.yaml")])
    assert effective(fs) == [("b", "roleRef", "rbac.node-proxy"), ("b", "roleRef", "rbac.secrets-read")]
    secrets = next(f for f in fs if "rbac.secrets-read" in f.message)
    assert secrets.severity is Severity.CRITICAL
    assert secrets.location.file == "binding.yaml" and secrets.location.line == 4
    assert (
        "ServiceAccount shop/app cluster-wide" in secrets.message
        and "ClusterRole reader rules[0]" in secrets.message
    )


def test_rolebinding_of_a_clusterrole_reaches_one_namespace_and_no_nodes() -> None:
    fs = wide([objects(CR_SECRETS + "---\n" + rb("ClusterRole", "reader", "shop"))])
    assert effective(fs) == [("b", "roleRef", "rbac.secrets-read")]
    assert fs[0].severity is Severity.MEDIUM and "ServiceAccount shop/app in namespace shop" in fs[0].message
    in_kube_system = wide([objects(CR_SECRETS + "---\n" + rb("ClusterRole", "reader", "kube-system"))])
    assert [f.severity for f in in_kube_system] == [Severity.CRITICAL]


@pytest.mark.parametrize(
    ("role_ns", "binding_ns", "resolved"),
    [("a", "a", True), ("a", "b", False), (None, "b", True), ("a", None, True)],
)
def test_a_rolebinding_resolves_the_role_of_its_namespace(
    role_ns: str | None, binding_ns: str | None, resolved: bool
) -> None:
    ns = f", namespace: {role_ns}" if role_ns else ""
    r = f"apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{name: pods{ns}}}\nrules:\n- {{apiGroups: [''], resources: [pods], verbs: [create]}}\n"
    fs = wide([objects(r), objects(rb("Role", "pods", binding_ns))])
    assert bool(effective(fs)) is resolved


def test_a_role_defined_in_the_bindings_own_file_wins_otherwise_every_definition_counts() -> None:
    exec_role = "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: x}\nrules:\n- {apiGroups: [''], resources: [pods/exec], verbs: [create]}\n"
    read_role = CR_SECRETS.replace("name: reader", "name: x")
    one = objects(exec_role + "---\n" + crb("x", name="in-file"), "overlay-a.yaml")
    two = objects(read_role, "overlay-b.yaml")
    three = objects(crb("x", name="elsewhere"), "base.yaml")
    fs = wide([one, two, three])
    assert effective(fs) == [
        ("elsewhere", "roleRef", "rbac.node-proxy"),
        ("elsewhere", "roleRef", "rbac.pod-exec"),
        ("elsewhere", "roleRef", "rbac.secrets-read"),
        ("in-file", "roleRef", "rbac.pod-exec"),
    ]


def test_unknown_roles_and_bindings_without_subjects_give_nothing() -> None:
    assert wide([objects(crb("not-scanned"))]) == []
    empty = crb("reader").split("subjects:")[0] + "subjects: []\n"
    assert wide([objects(CR_SECRETS), objects(empty)]) == []


AGG = """apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: agg}
aggregationRule:
  clusterRoleSelectors: %s
rules: []
"""
PART = """apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: part
  labels: {example.com/agg: "true"}
rules:
- {apiGroups: [""], resources: [secrets], verbs: [watch]}
"""


def test_an_aggregated_clusterrole_holds_what_its_selectors_match_in_the_scan() -> None:
    fs = wide(
        [objects(AGG % "[{matchLabels: {example.com/agg: 'true'}}]"), objects(PART), objects(crb("agg"))]
    )
    assert effective(fs) == [("b", "roleRef", "rbac.secrets-read")]
    assert "ClusterRole part rules[0] grants watch on secrets" in fs[0].message
    other = wide(
        [objects(AGG % "[{matchLabels: {example.com/agg: 'no'}}]"), objects(PART), objects(crb("agg"))]
    )
    assert other == []


def test_an_unreadable_selector_selects_everything() -> None:
    fs = wide([objects(AGG % "[7]"), objects(PART), objects(crb("agg"))])
    assert effective(fs) == [("b", "roleRef", "rbac.secrets-read")]


def test_aggregation_cycles_terminate() -> None:
    a = AGG.replace("name: agg}", "name: a, labels: {x: 'a'}}") % "[{matchLabels: {x: b}}]"
    b = AGG.replace("name: agg}", "name: b, labels: {x: 'b'}}") % "[{matchLabels: {x: a}}]"
    assert wide([objects(a), objects(b), objects(PART), objects(crb("a"))]) == []


def test_aggregation_bomb_fails_the_scan_instead_of_hanging(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(graph, "MAX_AGGREGATION_CHECKS", 10)
    parts = [objects(PART.replace("name: part", f"name: part{i}")) for i in range(20)]
    evaluator = Evaluator(REGISTRY, Policy())
    types = wide_types(REGISTRY, evaluator)
    facts = [f for g in [objects(AGG % "[{}]"), *parts, objects(crb("agg"))] for f in collect(types, g)]
    ev = evaluate_wide(evaluator, types, facts)
    assert [f for f in ev.findings if f.rule_id == "rbac.effective-permission"] == []
    assert any("too many aggregated ClusterRoles" in e.message for e in ev.errors)


def test_a_broken_build_is_an_error_of_the_scan(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(cls: type, facts: object) -> None:
        raise ValueError("bad fact")

    monkeypatch.setattr(RbacGraph, "build", classmethod(boom))
    evaluator = Evaluator(REGISTRY, Policy())
    types = wide_types(REGISTRY, evaluator)
    ev = evaluate_wide(evaluator, types, collect(types, objects(CR_SECRETS + "---\n" + crb("reader"))))
    assert [e.source for e in ev.errors] == ["<rbac>"] and "bad fact" in ev.errors[0].message


FULL = "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: god}\nrules:\n- {apiGroups: ['*'], resources: ['*'], verbs: ['*']}\n"


def test_a_bound_full_wildcard_is_one_finding() -> None:
    fs = wide([objects(FULL), objects(crb("god"))])
    assert effective(fs) == [("b", "roleRef", "rbac.cluster-admin-equivalent")]


def test_policy_decides_which_capabilities_and_which_severity() -> None:
    both = [objects(CR_SECRETS), objects(crb("reader"))]
    only_secrets = Policy(enabled_rules=frozenset({"rbac.secrets-read", "rbac.effective-permission"}))
    assert effective(wide(both, only_secrets)) == [("b", "roleRef", "rbac.secrets-read")]
    lowered = Policy(severity_overrides={"rbac.secrets-read": Severity.LOW})
    assert {f.severity for f in wide(both, lowered) if "secrets-read" in f.message} == {Severity.LOW}
    own = Policy(
        severity_overrides={"rbac.effective-permission": Severity.INFO, "rbac.secrets-read": Severity.LOW}
    )
    assert {f.severity for f in wide(both, own)} == {Severity.INFO}


def test_split_across_workers_the_findings_are_the_same(shared_data: Path) -> None:
    """A scan shared out by file: each worker's facts, marshalled, give the same report."""
    base = shared_data / "rbac-real-world" / "kube-prometheus" / "manifests"
    per_file = [file_objects(p, p.name) for p in sorted(base.glob("*.yaml"))]
    one = wide([[o for g in per_file for o in g]])
    split = wide(per_file)
    assert [(f.fingerprint, f.message, f.location) for f in split] == [
        (f.fingerprint, f.message, f.location) for f in one
    ]
    assert effective(one)  # the comparison is about something


def test_fingerprints_survive_new_files_in_the_scan() -> None:
    before = wide([objects(CR_SECRETS), objects(crb("reader"))])
    after = wide([objects(crb("other", name="zzz"), "a.yaml"), objects(CR_SECRETS), objects(crb("reader"))])
    assert {f.fingerprint for f in before} <= {f.fingerprint for f in after}


LOGGING = """apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: log-shipping}
rules:
- {apiGroups: [logging.banzaicloud.io], resources: [clusteroutputs, clusterflows], verbs: [update, delete]}
"""


def test_one_subject_that_can_act_and_erase_through_two_bindings() -> None:
    dev = "- {kind: User, name: dave}"
    fs = wide(
        [
            objects(LOGGING),
            objects(crb("log-shipping", dev, name="logs")),
            objects(
                rb("ClusterRole", "edit", "shop", name="dev").replace(
                    "{kind: ServiceAccount, name: app}", "{kind: User, name: dave}"
                )
            ),
        ]
    )
    [f] = [f for f in fs if f.rule_id == "rbac.subject-act-and-erase"]
    assert f.location.name == "logs" and f.location.field == "subjects[0]"
    assert "User dave" in f.message and "RoleBinding dev" in f.message and f.severity is Severity.CRITICAL


def test_act_and_erase_through_one_binding_is_the_roles_finding_not_the_subjects() -> None:
    both = LOGGING + "- {apiGroups: [''], resources: [pods], verbs: [create]}\n"
    fs = wide([objects(both), objects(crb("log-shipping"))])
    assert [f for f in fs if f.rule_id == "rbac.subject-act-and-erase"] == []
