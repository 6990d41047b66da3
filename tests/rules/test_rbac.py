"""The rbac pack, rule by rule: RBAC's matching semantics, severities by reach, policy interplay,
peer-id translation, and hostile input (malformed rules, huge lists, non-string entries).

Helpers here (``objects``, ``findings``, ``wide``) are shared by the other test_rbac* modules.
"""

from __future__ import annotations

import json
import marshal
from collections.abc import Sequence
from pathlib import Path

import pytest

from dutyguard.core.evaluate import Evaluator
from dutyguard.core.model import Finding, Severity
from dutyguard.core.policy import Policy
from dutyguard.core.scanwide import collect, evaluate_wide, wide_types
from dutyguard.limits import DEFAULT_LIMITS
from dutyguard.rules import PACKS, default_registry
from dutyguard.rules.rbac.graph import RbacGraph
from dutyguard.sources.interface import InputFile
from dutyguard.sources.kubernetes import K8sObject, KubernetesSource
from dutyguard.suppressions import detect_suppressions

REGISTRY = default_registry(packs=["rbac"])
SOURCE = KubernetesSource()


def objects(text: str, name: str = "rbac.yaml") -> list[K8sObject]:
    return [
        o for o in SOURCE.load(InputFile(name, text.encode()), DEFAULT_LIMITS) if isinstance(o, K8sObject)
    ]


def file_objects(path: Path, display: str | None = None) -> list[K8sObject]:
    data = path.read_bytes()
    return [
        o
        for o in SOURCE.load(InputFile(display or str(path), data, len(data)), DEFAULT_LIMITS)
        if isinstance(o, K8sObject)
    ]


def findings(objs: Sequence[K8sObject], policy: Policy | None = None) -> list[Finding]:
    ev = Evaluator(REGISTRY, policy or Policy()).evaluate(objs)
    assert ev.errors == ()
    return list(ev.findings)


def wide(groups: Sequence[Sequence[K8sObject]], policy: Policy | None = None) -> list[Finding]:
    """What the scan-wide rules find, computed as a scan shared out to workers would: facts per
    input, through marshal, gathered in input order, built and evaluated once."""
    evaluator = Evaluator(REGISTRY, policy or Policy())
    types = wide_types(REGISTRY, evaluator)
    facts = []
    for group in groups:
        facts.extend(marshal.loads(marshal.dumps(collect(types, group))))
    ev = evaluate_wide(evaluator, types, facts)
    assert ev.errors == ()
    return list(ev.findings)


def hits(fs: Sequence[Finding], rule_id: str) -> list[tuple[str | None, str | None, str | None]]:
    """(kind, name, field) of each finding of ``rule_id``."""
    return sorted(
        ((f.location.kind, f.location.name, f.location.field) for f in fs if f.rule_id == rule_id),
        key=str,
    )


def ids(fs: Sequence[Finding]) -> set[str]:
    return {f.rule_id for f in fs}


def role(rules: str, kind: str = "ClusterRole", namespace: str | None = None, name: str = "r") -> str:
    ns = f"\n  namespace: {namespace}" if namespace else ""
    return f"apiVersion: rbac.authorization.k8s.io/v1\nkind: {kind}\nmetadata:\n  name: {name}{ns}\nrules:\n{rules}"


def one_rule(groups: str, resources: str, verbs: str, extra: str = "") -> str:
    return f"- apiGroups: {groups}\n  resources: {resources}\n  verbs: {verbs}\n{extra}"


# --- the pack is registered and complete ----------------------------------------------------------
def test_pack_is_registered_and_every_rule_is_documented_and_mapped() -> None:
    assert PACKS["rbac"] == "rbac"
    assert len(REGISTRY) == 35
    for rule in REGISTRY:
        m = rule.meta
        assert m.id.startswith("rbac.") and m.pack == "rbac"
        assert m.remediation and m.description
        assert any(c.startswith("nist-800-53:") for c in m.controls), m.id
        assert "nist-800-190:4.3.1" in m.controls, m.id


@pytest.mark.parametrize(
    ("peer", "ours"),
    [
        ("CKV_K8S_49", {"rbac.cluster-admin-equivalent", "rbac.wildcard"}),
        ("CKV_K8S_155", {"rbac.webhook-config-write"}),
        ("CKV_K8S_156", {"rbac.csr-approve"}),
        ("CKV_K8S_157", {"rbac.bind"}),
        ("CKV_K8S_158", {"rbac.escalate"}),
        ("CKV_K8S_42", {"rbac.binding-default-service-account"}),
        ("CKV2_K8S_5", {"rbac.effective-permission"}),
        ("KSV044", {"rbac.cluster-admin-equivalent"}),
        ("KSV041", {"rbac.secrets-read"}),
        ("KSV113", {"rbac.secrets-read"}),
        ("KSV114", {"rbac.webhook-config-write"}),
        ("KSV047", {"rbac.node-proxy"}),
        ("KSV111", {"rbac.binding-cluster-admin", "rbac.binding-admin-edit"}),
        ("KSV-0123", {"rbac.binding-system-masters"}),
        ("KSV122", {"rbac.binding-anonymous"}),
    ],
)
def test_peer_ids_translate_to_our_rules(peer: str, ours: set[str]) -> None:
    assert set(REGISTRY.translate(peer)) == ours


def test_checkov_skip_on_a_role_is_a_request_not_a_pass() -> None:
    text = "# checkov:skip=CKV_K8S_158: we need it\n" + role(
        one_rule('["rbac.authorization.k8s.io"]', "[roles]", "[escalate]")
    )
    f = InputFile("role.yaml", text.encode())
    [req] = detect_suppressions(f, REGISTRY)
    assert req.matched_rules == ("rbac.escalate",)
    assert "rbac.escalate" in ids(findings(objects(text)))


# --- RBAC matching semantics ----------------------------------------------------------------------
def test_star_slash_subresource_matches_that_subresource_of_any_resource() -> None:
    text = role(
        one_rule('["certificates.k8s.io"]', '["*/approval"]', "[update]")
        + one_rule('["certificates.k8s.io"]', "[signers]", "[approve]")
    )
    assert hits(findings(objects(text)), "rbac.csr-approve") == [("ClusterRole", "r", "rules[0]")]


def test_csr_approval_without_approve_on_signers_is_not_reported() -> None:
    """Since Kubernetes 1.18 approving also needs 'approve' on the signer."""
    text = role(one_rule('["certificates.k8s.io"]', '["certificatesigningrequests/approval"]', "[update]"))
    assert "rbac.csr-approve" not in ids(findings(objects(text)))


def test_api_group_must_match() -> None:
    """secrets of a made-up group are not the core group's Secrets."""
    text = role(one_rule('["example.com"]', "[secrets]", "[get, list]"))
    assert "rbac.secrets-read" not in ids(findings(objects(text)))
    text = role(one_rule('["*"]', "[secrets]", "[list]"))
    assert hits(findings(objects(text)), "rbac.secrets-read") == [("ClusterRole", "r", "rules[0]")]


def test_resource_names_limit_reads_but_not_updates() -> None:
    named_read = role(one_rule('[""]', "[secrets]", "[get]", '  resourceNames: ["app-tls"]\n'))
    assert "rbac.secrets-read" not in ids(findings(objects(named_read)))
    named_update = role(one_rule('["apps"]', "[deployments]", "[patch]", '  resourceNames: ["web"]\n'))
    assert hits(findings(objects(named_update)), "rbac.workload-write") == [("ClusterRole", "r", "rules[0]")]


def test_create_with_resource_names_never_matches_a_create() -> None:
    """A create has no name yet: a name-restricted rule cannot allow it."""
    text = role(one_rule('[""]', "[pods]", "[create]", '  resourceNames: ["x"]\n'))
    assert "rbac.workload-write" not in ids(findings(objects(text)))


def test_a_role_cannot_grant_cluster_scoped_resources() -> None:
    rules = one_rule('[""]', '["nodes/proxy", "persistentvolumes"]', "[get, create]")
    assert {"rbac.node-proxy", "rbac.persistentvolume-create"} <= ids(findings(objects(role(rules))))
    in_role = findings(objects(role(rules, kind="Role", namespace="apps")))
    assert not {"rbac.node-proxy", "rbac.persistentvolume-create"} & ids(in_role)


def test_node_proxy_get_is_not_read_only() -> None:
    fs = findings(objects(role(one_rule('[""]', '["nodes/proxy"]', "[get]"))))
    assert hits(fs, "rbac.node-proxy") == [("ClusterRole", "r", "rules[0]")]


def test_exec_over_websocket_get_counts() -> None:
    fs = findings(objects(role(one_rule('[""]', '["pods/exec"]', "[get]"), kind="Role", namespace="a")))
    assert hits(fs, "rbac.pod-exec") == [("Role", "r", "rules[0]")]


def test_bind_on_bindings_means_nothing_bind_on_roles_does() -> None:
    on_bindings = role(one_rule('["rbac.authorization.k8s.io"]', "[rolebindings]", "[bind]"))
    assert "rbac.bind" not in ids(findings(objects(on_bindings)))
    on_roles = role(
        one_rule('["rbac.authorization.k8s.io"]', "[clusterroles]", "[bind]", "  resourceNames: [admin]\n")
    )
    [f] = [f for f in findings(objects(on_roles)) if f.rule_id == "rbac.bind"]
    assert "only admin" in f.message


@pytest.mark.parametrize(
    ("kind", "namespace", "expected"),
    [
        ("Role", "shop", Severity.HIGH),
        ("Role", "kube-system", Severity.CRITICAL),
        ("ClusterRole", None, Severity.CRITICAL),
    ],
)
def test_workload_write_is_critical_where_kube_system_is_within_reach(
    kind: str, namespace: str | None, expected: Severity
) -> None:
    fs = findings(objects(role(one_rule('[""]', "[pods]", "[create]"), kind=kind, namespace=namespace)))
    [f] = [f for f in fs if f.rule_id == "rbac.workload-write"]
    assert f.severity is expected


@pytest.mark.parametrize(
    ("kind", "namespace", "expected"),
    [
        ("Role", "shop", Severity.MEDIUM),
        ("Role", "kube-system", Severity.CRITICAL),
        ("ClusterRole", None, Severity.CRITICAL),
    ],
)
def test_secrets_read_severity_follows_reach(kind: str, namespace: str | None, expected: Severity) -> None:
    fs = findings(objects(role(one_rule('[""]', "[secrets]", "[list]"), kind=kind, namespace=namespace)))
    assert [f.severity for f in fs if f.rule_id == "rbac.secrets-read"] == [expected]


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        ("", Severity.CRITICAL),
        ("  resourceNames: [aws-auth]\n", Severity.CRITICAL),
        ("  resourceNames: [my-lock]\n", Severity.MEDIUM),
    ],
)
def test_configmap_write_is_critical_only_when_it_can_reach_kube_system_config(
    names: str, expected: Severity
) -> None:
    fs = findings(objects(role(one_rule('[""]', "[configmaps]", "[update]", names))))
    assert [f.severity for f in fs if f.rule_id == "rbac.configmap-write"] == [expected]


def test_token_minting_by_secret_creation_counts_only_where_kube_system_is_within_reach() -> None:
    create_secrets = one_rule('[""]', "[secrets]", "[create]")
    assert "rbac.token-create" not in ids(
        findings(objects(role(create_secrets, kind="Role", namespace="shop")))
    )
    [f] = [
        f
        for f in findings(objects(role(create_secrets, kind="Role", namespace="kube-system")))
        if f.rule_id == "rbac.token-create"
    ]
    assert f.severity is Severity.CRITICAL
    token = one_rule('[""]', '["serviceaccounts/token"]', "[create]")
    [f] = [
        f
        for f in findings(objects(role(token, kind="Role", namespace="shop")))
        if f.rule_id == "rbac.token-create"
    ]
    assert f.severity is Severity.HIGH


def test_taint_and_evict_needs_both() -> None:
    taint = one_rule('[""]', "[nodes]", "[patch]")
    evict = one_rule('[""]', '["pods/eviction"]', "[create]")
    assert "rbac.node-taint-evict" not in ids(findings(objects(role(taint))))
    [f] = [f for f in findings(objects(role(taint + evict))) if f.rule_id == "rbac.node-taint-evict"]
    assert f.location.field == "rules[0]" and "rules[1] grants create on pods/eviction" in f.message


def test_gatekeeper_constraints_of_any_kind_are_policy() -> None:
    text = role(one_rule('["constraints.gatekeeper.sh"]', "[k8srequiredlabels]", "[delete]"))
    assert hits(findings(objects(text)), "rbac.admission-policy-write") == [("ClusterRole", "r", "rules[0]")]
    # A '*' group with a core resource name is not a constraint.
    text = role(one_rule('["*"]', "[pods]", "[update]"))
    assert "rbac.admission-policy-write" not in ids(findings(objects(text)))


def test_policy_exception_write() -> None:
    text = role(one_rule('["kyverno.io"]', "[policyexceptions]", "[create]"), kind="Role", namespace="dev")
    assert hits(findings(objects(text)), "rbac.policy-exception-write") == [("Role", "r", "rules[0]")]


def test_act_and_erase_in_one_role() -> None:
    text = role(
        one_rule('["logging.banzaicloud.io"]', "[clusteroutputs]", "[update]")
        + one_rule('[""]', '["pods/exec"]', "[create]")
    )
    [f] = [f for f in findings(objects(text)) if f.rule_id == "rbac.act-and-erase"]
    assert f.location.field == "rules[0]" and "R07" in f.message and f.severity is Severity.CRITICAL
    log_only = role(one_rule('["logging.banzaicloud.io"]', "[clusteroutputs]", "[update]"))
    assert "rbac.act-and-erase" not in ids(findings(objects(log_only)))


# --- policy interplay -------------------------------------------------------------------------------
FULL = role(one_rule('["*"]', '["*"]', '["*"]'))


def test_full_wildcard_is_reported_once_while_its_rule_applies() -> None:
    fs = findings(objects(FULL))
    assert ids(fs) == {"rbac.cluster-admin-equivalent"}
    assert fs[0].severity is Severity.CRITICAL


def test_full_wildcard_is_reported_by_every_rule_when_security_turns_r01_off() -> None:
    enabled = frozenset(r.meta.id for r in REGISTRY if r.meta.id != "rbac.cluster-admin-equivalent")
    fs = findings(objects(FULL), Policy(enabled_rules=enabled))
    assert {"rbac.secrets-read", "rbac.escalate", "rbac.bind", "rbac.impersonate", "rbac.wildcard"} <= ids(fs)


def test_security_severity_override_wins_over_the_reach() -> None:
    text = role(one_rule('[""]', "[secrets]", "[list]"))
    policy = Policy(severity_overrides={"rbac.secrets-read": Severity.LOW})
    assert [f.severity for f in findings(objects(text), policy) if f.rule_id == "rbac.secrets-read"] == [
        Severity.LOW
    ]


# --- aggregation --------------------------------------------------------------------------------------
AGGREGATED = """apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: agg}
aggregationRule:
  clusterRoleSelectors:
  %s
rules: []
"""


def test_aggregated_clusterrole_is_a_finding() -> None:
    [f] = findings(objects(AGGREGATED % "- matchLabels: {example.com/aggregate-to-agg: 'true'}"))
    assert f.rule_id == "rbac.aggregated-clusterrole" and f.severity is Severity.MEDIUM
    assert "example.com/aggregate-to-agg=true" in f.message


@pytest.mark.parametrize(
    "selector",
    [
        "- {}",
        "- matchLabels: {kubernetes.io/bootstrapping: rbac-defaults}",
        "- matchExpressions: [{key: a, operator: Sideways}]",
    ],
)
def test_aggregation_that_can_select_cluster_admin_is_critical(selector: str) -> None:
    fs = findings(objects(AGGREGATED % selector))
    assert [f.severity for f in fs if f.rule_id == "rbac.aggregated-clusterrole"] == [Severity.CRITICAL]


def test_aggregating_secrets_into_view_gives_them_to_every_viewer() -> None:
    text = """apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: crd-viewer
  labels: {rbac.authorization.k8s.io/aggregate-to-view: "true"}
rules:
- {apiGroups: [example.com], resources: [widgets], verbs: [get, list]}
- {apiGroups: [""], resources: [secrets], verbs: [list]}
"""
    [f] = [f for f in findings(objects(text)) if f.rule_id == "rbac.aggregate-to-builtin"]
    assert "into view" in f.message and "rbac.secrets-read" in f.message
    harmless = text.replace('- {apiGroups: [""], resources: [secrets], verbs: [list]}\n', "")
    assert "rbac.aggregate-to-builtin" not in ids(findings(objects(harmless)))


# --- bindings --------------------------------------------------------------------------------------------
def binding(
    role_ref: str, subjects: str, kind: str = "ClusterRoleBinding", namespace: str | None = None
) -> str:
    ns = f"\n  namespace: {namespace}" if namespace else ""
    return (
        f"apiVersion: rbac.authorization.k8s.io/v1\nkind: {kind}\nmetadata:\n  name: b{ns}\n"
        f"roleRef: {{apiGroup: rbac.authorization.k8s.io, {role_ref}}}\nsubjects:\n{subjects}"
    )


SA = "- {kind: ServiceAccount, name: app, namespace: shop}\n"


@pytest.mark.parametrize(
    ("kind", "namespace", "role_name", "rule_id", "severity"),
    [
        ("ClusterRoleBinding", None, "cluster-admin", "rbac.binding-cluster-admin", Severity.CRITICAL),
        ("RoleBinding", "shop", "cluster-admin", "rbac.binding-cluster-admin", Severity.CRITICAL),
        ("RoleBinding", "shop", "edit", "rbac.binding-admin-edit", Severity.HIGH),
        ("RoleBinding", "kube-system", "admin", "rbac.binding-admin-edit", Severity.CRITICAL),
        ("ClusterRoleBinding", None, "edit", "rbac.binding-admin-edit", Severity.CRITICAL),
    ],
)
def test_bindings_of_builtin_powerful_roles(
    kind: str, namespace: str | None, role_name: str, rule_id: str, severity: Severity
) -> None:
    fs = findings(objects(binding(f"kind: ClusterRole, name: {role_name}", SA, kind, namespace)))
    [f] = [f for f in fs if f.rule_id == rule_id]
    assert (
        f.severity is severity
        and f.location.field == "roleRef.name"
        and "ServiceAccount shop/app" in f.message
    )


def test_a_view_binding_is_not_reported() -> None:
    assert findings(objects(binding("kind: ClusterRole, name: view", SA))) == []


@pytest.mark.parametrize(
    ("subject", "rule_id"),
    [
        (
            "- {kind: Group, name: 'system:unauthenticated', apiGroup: rbac.authorization.k8s.io}\n",
            "rbac.binding-anonymous",
        ),
        ("- {kind: User, name: 'system:anonymous'}\n", "rbac.binding-anonymous"),
        ("- {kind: Group, name: 'system:masters'}\n", "rbac.binding-system-masters"),
        ("- {kind: Group, name: 'system:authenticated'}\n", "rbac.binding-all-authenticated"),
        ("- {kind: Group, name: 'system:serviceaccounts'}\n", "rbac.binding-all-authenticated"),
        (
            "- {kind: ServiceAccount, name: default, namespace: shop}\n",
            "rbac.binding-default-service-account",
        ),
    ],
)
def test_subjects_that_are_everyone_or_anyone(subject: str, rule_id: str) -> None:
    fs = findings(objects(binding("kind: ClusterRole, name: some-role", SA + subject)))
    assert hits(fs, rule_id) == [("ClusterRoleBinding", "b", "subjects[1].name")]


# --- hostile input ----------------------------------------------------------------------------------
def malformed(fs: Sequence[Finding]) -> list[tuple[str | None, str]]:
    return sorted((f.location.field, f.message) for f in fs if f.rule_id == "rbac.malformed")


def test_rules_not_a_list_is_malformed_and_named() -> None:
    fs = findings(objects(role("  verbs: ['*']\n")))
    [(field, message)] = malformed(fs)
    assert field == "rules" and "ClusterRole r: rules is a mapping, expected a list" in message
    assert fs[0].location.line == 5  # the line of `rules:`


def test_rule_entry_that_is_not_a_mapping_is_malformed() -> None:
    fs = findings(objects(role("- '*'\n" + one_rule('[""]', "[secrets]", "[list]"))))
    assert malformed(fs) == [("rules[0]", "ClusterRole r: rules[0] is a string, expected a mapping")]
    assert hits(fs, "rbac.secrets-read") == [("ClusterRole", "r", "rules[1]")]


def test_non_string_verbs_are_malformed_and_the_strings_still_count() -> None:
    fs = findings(objects(role(one_rule('[""]', "[secrets]", "[7, null, {a: b}, list]"))))
    assert [m[0] for m in malformed(fs)] == ["rules[0].verbs[0]", "rules[0].verbs[1]", "rules[0].verbs[2]"]
    assert hits(fs, "rbac.secrets-read") == [("ClusterRole", "r", "rules[0]")]


def test_a_scalar_where_a_list_belongs_is_malformed_and_read_as_meant() -> None:
    """``verbs: "*"`` is refused by the API server; read as ['*'] so a typo never hides the grant."""
    fs = findings(objects(role(one_rule('[""]', "secrets", '"*"'))))
    assert {m[0] for m in malformed(fs)} == {"rules[0].resources", "rules[0].verbs"}
    assert hits(fs, "rbac.secrets-read") == [("ClusterRole", "r", "rules[0]")]


def test_unknown_field_in_a_rule_is_malformed() -> None:
    """``Verbs`` is not ``verbs``: the API server drops or refuses it; we say so."""
    fs = findings(objects(role("- apiGroups: ['']\n  resources: [secrets]\n  Verbs: [list]\n")))
    messages = [m for _, m in malformed(fs)]
    assert any("unknown field(s) Verbs" in m for m in messages)
    assert any("rules[0] has no verbs" in m for m in messages)


def test_huge_verb_list_with_a_wildcard_at_the_end_is_found() -> None:
    verbs = [f"v{i}" for i in range(50_000)] + ['"*"']
    text = role(one_rule('[""]', "[secrets]", "[" + ", ".join(verbs) + "]"))
    fs = findings(objects(text))
    assert hits(fs, "rbac.secrets-read") == [("ClusterRole", "r", "rules[0]")]
    [w] = [f for f in fs if f.rule_id == "rbac.wildcard"]
    assert len(w.message) < 300


def test_a_hundred_thousand_bad_entries_are_six_problems() -> None:
    text = role(one_rule('[""]', "[secrets]", "[" + ", ".join(["1"] * 100_000) + ", get]"))
    fs = findings(objects(text))
    problems = malformed(fs)
    assert len(problems) == 6
    assert any("99995 more entries are not strings" in m for _, m in problems)
    assert hits(fs, "rbac.secrets-read") == [("ClusterRole", "r", "rules[0]")]


def test_long_resource_names_are_clipped_in_messages() -> None:
    names = ", ".join(f"name-{'x' * 500}-{i}" for i in range(1000))
    text = role(
        one_rule('["rbac.authorization.k8s.io"]', "[clusterroles]", "[bind]", f"  resourceNames: [{names}]\n")
    )
    [f] = [f for f in findings(objects(text)) if f.rule_id == "rbac.bind"]
    assert len(f.message) < 1000 and "(+995)" in f.message


def test_binding_without_role_ref_or_with_bad_subjects_is_malformed() -> None:
    text = (
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: b}\n"
        "subjects:\n- {kind: group, name: 'system:unauthenticated'}\n- {kind: ServiceAccount, name: x}\n- 42\n"
    )
    fs = findings(objects(text))
    assert [m[0] for m in malformed(fs)] == [
        "roleRef",
        "subjects[0].kind",
        "subjects[1].namespace",
        "subjects[2]",
    ]
    # The lower-case kind never matches a request, but the name is still judged: fail closed.
    assert hits(fs, "rbac.binding-anonymous") == [("ClusterRoleBinding", "b", "subjects[0].name")]


def test_clusterrolebinding_to_a_role_is_malformed() -> None:
    fs = findings(objects(binding("kind: Role, name: r", SA)))
    assert malformed(fs) == [
        ("roleRef.kind", "ClusterRoleBinding b: roleRef.kind 'Role' is not one of ClusterRole")
    ]


def test_role_of_another_api_group_is_not_rbac() -> None:
    text = "apiVersion: iam.cnrm.cloud.google.com/v1beta1\nkind: Role\nmetadata: {name: x}\nrules: 7\n"
    assert findings(objects(text)) == []


def test_the_real_world_manifests_are_not_malformed(shared_data: Path) -> None:
    """No false alarms from the strict reader on well-formed RBAC from three projects."""
    base = shared_data / "rbac-real-world"
    for path in sorted(base.rglob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        assert malformed(findings(file_objects(path))) == [], path


# --- the scan-wide view ---------------------------------------------------------------------------
def test_scan_wide_rules_read_a_graph_built_from_every_input() -> None:
    evaluator = Evaluator(REGISTRY, Policy())
    assert wide_types(REGISTRY, evaluator) == (RbacGraph,)
    assert RbacGraph.reads is K8sObject
    without = Evaluator(REGISTRY, Policy(enabled_rules=frozenset({"rbac.secrets-read"})))
    assert wide_types(REGISTRY, without) == ()


# --- Trivy's RBAC checks ------------------------------------------------------------------------------
TRIVY_RBAC = {
    "KSV-0041": "rbac.secrets-read",
    "KSV-0043": "rbac.impersonate",
    "KSV-0044": "rbac.cluster-admin-equivalent",
    "KSV-0045": "rbac.wildcard",
    "KSV-0046": "rbac.wildcard",
    "KSV-0047": "rbac.node-proxy",
    "KSV-0048": "rbac.workload-write",
    "KSV-0049": "rbac.configmap-write",
    "KSV-0050": "rbac.rbac-write",
    "KSV-0051": "rbac.bind",
    "KSV-0052": "rbac.bind",
    "KSV-0053": "rbac.pod-exec",
    "KSV-0054": "rbac.pod-exec",
    "KSV-0055": "rbac.rbac-write",
    "KSV-0056": "rbac.network-write",
    "KSV-0111": "rbac.binding-cluster-admin",
    "KSV-0112": "rbac.wildcard",
    "KSV-0113": "rbac.secrets-read",
    "KSV-0114": "rbac.webhook-config-write",
    "KSV-0115": "rbac.configmap-write",
    "KSV-01011": "rbac.binding-all-authenticated",
    "KSV-0122": "rbac.binding-anonymous",
    "KSV-0123": "rbac.binding-system-masters",
}
"""Every Trivy KSV check about Role/ClusterRole/binding objects, and the rule that carries its id.
Left out: KSV-0042 'delete pod logs' (pods/log has no delete: the API cannot remove logs)."""


def test_every_trivy_rbac_check_translates_to_our_rule(shared_data: Path) -> None:
    index = {c["id"]: c for c in json.loads((shared_data / "trivy-checks" / "CHECK_INDEX.json").read_text())}
    for check_id, ours in TRIVY_RBAC.items():
        check = index[check_id]
        peer_ids = [check["id"], *check["aliases"]]
        found = {r for p in peer_ids for r in REGISTRY.translate(p)}
        assert ours in found, (check_id, check["title"], found)
