"""Strict parsing of policy bundles: every problem named by field path and line."""

from __future__ import annotations

import hashlib
import textwrap

import pytest

from dutyguard.audit.canonical import canonical_json
from dutyguard.core.model import Severity
from dutyguard.core.rule import RuleRegistry
from dutyguard.errors import InputError, LimitExceeded
from dutyguard.policy.errors import PolicyBundleError
from dutyguard.policy.model import Stage
from dutyguard.policy.parse import MAX_BUNDLE_BYTES, lint_bundle, parse_bundle, parse_bundle_text

FULL = """\
apiVersion: dutyguard.dev/v1
kind: PolicyBundle
metadata:
  name: acme-prod
  description: Production clusters
spec:
  rules:
    include:
      - pack: pss-baseline
      - pack: pss-restricted
      - pack: k8s
      - tag: secrets
    exclude:
      - id: k8s.image-pull-policy-not-always
  severity:
    k8s.image-tag-latest: high
  actions:
    ci:
      bySeverity: {critical: block, high: block, medium: block, low: warn, info: warn}
      rules:
        k8s.no-cpu-limit: warn
        k8s.default-namespace: block
    admission:
      bySeverity: {critical: deny, high: deny, medium: warn, low: audit, info: audit}
    runtime:
      bySeverity: {critical: contain, high: alert, medium: alert, low: alert, info: alert}
  scope:
    teams: [payments, search]
    clusters: [prod-eu, prod-us]
    registries: [registry.example.com]
  allowedRegistries: [registry.example.com, "*.mirror.example.com"]
  podSecurity:
    default: restricted
    namespaces:
      - names: [kube-system, monitoring]
        level: baseline
      - selector:
          matchLabels: {dutyguard.dev/legacy: "true"}
          matchExpressions:
            - {key: tier, operator: In, values: [batch]}
        level: baseline
  exceptions:
    maxDays: {critical: 3, high: 14, medium: 60, low: 90, info: 90}
    quorum: {critical: 3, high: 2, medium: 1, low: 1, info: 1}
    wideScopeQuorum: 3
    approvers:
      roles: [security]
      teams: [appsec]
"""


def parse(text: str, registry: RuleRegistry):  # type: ignore[no-untyped-def]
    return parse_bundle_text(textwrap.dedent(text), "bundle.yaml", registry)


def problems(text: str, registry: RuleRegistry) -> list[str]:
    with pytest.raises(PolicyBundleError) as e:
        parse(text, registry)
    return [p.render() for p in e.value.problems]


def test_full_bundle(registry: RuleRegistry) -> None:
    b = parse(FULL, registry)
    assert b.name == "acme-prod"
    ids = {r.meta.id for r in registry}
    expected = {
        r.meta.id
        for r in registry
        if r.meta.pack in ("pss-baseline", "pss-restricted", "k8s") or "secrets" in r.meta.tags
    } - {"k8s.image-pull-policy-not-always"}
    assert b.enabled_rules == expected
    assert "k8s.image-pull-policy-not-always" in ids
    assert b.severity_overrides == {"k8s.image-tag-latest": Severity.HIGH}
    ci = b.actions[Stage.CI]
    assert ci.action_for("k8s.no-cpu-limit", Severity.CRITICAL) == "warn"
    assert ci.action_for("pss.privileged", Severity.MEDIUM) == "block"
    assert b.actions[Stage.RUNTIME].blocks("pss.privileged", Severity.CRITICAL)
    assert b.exceptions.required_approvals(Severity.HIGH, wide=False) == 2
    assert b.exceptions.required_approvals(Severity.LOW, wide=True) == 3
    assert b.exceptions.approver_teams == ("appsec",)
    assert b.scope.uncovered(cluster="dev") == ["cluster 'dev' is not among prod-eu, prod-us"]
    assert b.scope.uncovered(team="payments", cluster="prod-eu") == []


def test_defaults(registry: RuleRegistry) -> None:
    b = parse("apiVersion: dutyguard.dev/v1\nkind: PolicyBundle\nmetadata: {name: x}\nspec: {}\n", registry)
    assert b.enabled_rules == {r.meta.id for r in registry}
    p = b.to_policy(Stage.CI, "src")
    assert p.fail_on is Severity.HIGH  # as the built-in default
    assert not b.actions[Stage.RUNTIME].blocks("pss.privileged", Severity.CRITICAL)  # containment is opt-in
    assert b.exceptions.required_approvals(Severity.CRITICAL, wide=False) == 2


def test_unknown_key_names_path_and_line(registry: RuleRegistry) -> None:
    text = FULL.replace("  scope:\n", "  scope:\n    tenants: [a]\n")
    assert problems(text, registry) == [
        "line 28: spec.scope.tenants: unknown field; allowed here: teams, apps, namespaces, clusters, registries"
    ]


def test_misspelt_key_gets_a_suggestion(registry: RuleRegistry) -> None:
    text = FULL.replace("allowedRegistries:", "allowedRegistry:")
    (msg,) = problems(text, registry)
    assert msg.startswith(
        "line 31: spec.allowedRegistry: unknown field (did you mean 'allowedRegistries'?); allowed here: rules,"
    )


def test_wrong_types(registry: RuleRegistry) -> None:
    text = FULL.replace("wideScopeQuorum: 3", "wideScopeQuorum: 'three'").replace(
        "teams: [payments, search]", "teams: payments"
    )
    assert problems(text, registry) == [
        "line 28: spec.scope.teams: expected a list, got a string",
        "line 45: spec.exceptions.wideScopeQuorum: expected an integer, got a string",
    ]


def test_yaml_booleans_are_not_integers(registry: RuleRegistry) -> None:
    text = FULL.replace("wideScopeQuorum: 3", "wideScopeQuorum: yes")
    assert problems(text, registry) == [
        "line 45: spec.exceptions.wideScopeQuorum: expected an integer, got a boolean"
    ]


def test_unknown_rule_pack_and_tag(registry: RuleRegistry) -> None:
    text = (
        FULL.replace("- pack: pss-restricted\n", "- pack: pss-restrict\n")
        .replace("- tag: secrets", "- tag: secret")
        .replace("k8s.image-tag-latest: high", "k8s.image-latest-tag: high")
    )
    got = problems(text, registry)
    assert (
        "line 10: spec.rules.include[1].pack: unknown rule pack 'pss-restrict' (did you mean 'pss-restricted'?)"
        in got
    )
    assert "line 12: spec.rules.include[3].tag: unknown rule tag 'secret' (did you mean 'secrets'?)" in got
    assert (
        "line 16: spec.severity.k8s.image-latest-tag: unknown rule id 'k8s.image-latest-tag' "
        "(did you mean 'k8s.image-tag-latest'?)" in got
    )


def test_setting_for_a_rule_the_bundle_does_not_select(registry: RuleRegistry) -> None:
    text = FULL.replace("k8s.image-tag-latest: high", "k8s.image-pull-policy-not-always: high")
    assert problems(text, registry) == [
        "line 16: spec.severity.k8s.image-pull-policy-not-always: rule 'k8s.image-pull-policy-not-always' is not "
        "selected by spec.rules, so this setting would never apply"
    ]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "{critical: block, high: block, medium: block, low: warn, info: warn}",
            "{critical: block, high: warn, medium: block, low: warn, info: warn}",
            "spec.actions.ci.bySeverity.high: 'warn' for high is weaker than 'block' for medium",
        ),
        (
            "{critical: block, high: block, medium: block, low: warn, info: warn}",
            "{critical: warn, high: warn, medium: warn, low: warn, info: warn}",
            "spec.actions.ci.bySeverity.critical: a CI gate must block critical findings",
        ),
        (
            "{critical: deny, high: deny, medium: warn, low: audit, info: audit}",
            "{critical: deny, high: deny, medium: audit, low: warn, info: audit}",
            "spec.actions.admission.bySeverity.medium: 'audit' for medium is weaker than 'warn' for low",
        ),
        (
            "{critical: block, high: block, medium: block, low: warn, info: warn}",
            "{critical: deny, high: block, medium: block, low: warn, info: warn}",
            "spec.actions.ci.bySeverity.critical: 'deny' is not one of block, warn",
        ),
        (
            "quorum: {critical: 3, high: 2, medium: 1, low: 1, info: 1}",
            "quorum: {critical: 1, high: 2, medium: 1, low: 1, info: 1}",
            "spec.exceptions.quorum.critical: critical needs fewer approvals than high",
        ),
        (
            "quorum: {critical: 3, high: 2, medium: 1, low: 1, info: 1}",
            "quorum: {critical: 11, high: 2, medium: 1, low: 1, info: 1}",
            "spec.exceptions.quorum.critical: 11 is outside 1..10",
        ),
        (
            "maxDays: {critical: 3, high: 14, medium: 60, low: 90, info: 90}",
            "maxDays: {critical: 30, high: 14, medium: 60, low: 90, info: 90}",
            "spec.exceptions.maxDays.critical: critical exceptions may not last longer than high ones",
        ),
        (
            "maxDays: {critical: 3, high: 14, medium: 60, low: 90, info: 90}",
            "maxDays: {critical: 3, high: 14}",
            "spec.exceptions.maxDays: missing required field 'medium'",
        ),
        ("roles: [security]", "roles: []", "spec.exceptions.approvers.roles: needs at least one role"),
        (
            "allowedRegistries: [registry.example.com,",
            "allowedRegistries: [https://registry.example.com,",
            "spec.allowedRegistries[0]: allowed registry 'https://registry.example.com': write the registry host without a scheme",
        ),
        (
            "names: [kube-system, monitoring]",
            "names: [kube-system, Monitoring]",
            "spec.podSecurity.namespaces[0].names[1]",
        ),
        (
            "            - {key: tier, operator: In, values: [batch]}",
            "            - {key: tier, operator: In}",
            "spec.podSecurity.namespaces[1].selector.matchExpressions[0]: operator In needs a non-empty values list",
        ),
        (
            "level: baseline\n      - selector",
            "level: privileged\n      - selector",
            "'privileged' is not one of baseline, restricted",
        ),
        ("name: acme-prod", "name: Acme Prod", "metadata.name: 'Acme Prod' is not a lower-case DNS label"),
        (
            "apiVersion: dutyguard.dev/v1",
            "apiVersion: dutyguard.dev/v2",
            "apiVersion: 'dutyguard.dev/v2' is not supported",
        ),
    ],
)
def test_semantic_problems(registry: RuleRegistry, old: str, new: str, expected: str) -> None:
    assert old in FULL
    got = problems(FULL.replace(old, new), registry)
    assert any(expected in p for p in got), got


def test_all_problems_are_reported_at_once(registry: RuleRegistry) -> None:
    text = (
        FULL.replace("name: acme-prod", "name: ACME")
        .replace("- pack: k8s\n", "- pack: nope\n")
        .replace("default: restricted", "default: strict")
        .replace("wideScopeQuorum: 3", "wideScopeQuorum: 0")
    )
    got = problems(text, registry)
    assert len(got) == 4
    assert [p.split(":")[0] for p in got] == ["line 4", "line 11", "line 33", "line 45"]


def test_a_bundle_that_checks_nothing_is_refused(registry: RuleRegistry) -> None:
    text = """\
    apiVersion: dutyguard.dev/v1
    kind: PolicyBundle
    metadata: {name: empty}
    spec:
      rules:
        include: [{pack: pss-baseline}]
        exclude: [{pack: pss-baseline}]
    """
    assert problems(text, registry) == [
        "line 5: spec.rules: selects no rule: a policy that checks nothing is refused"
    ]


def test_pod_security_name_listed_twice(registry: RuleRegistry) -> None:
    text = FULL.replace(
        "      - selector:\n", "      - names: [monitoring]\n        level: restricted\n      - selector:\n"
    )
    assert problems(text, registry) == [
        "line 37: spec.podSecurity.namespaces[1].names[0]: namespace 'monitoring' is already named by an earlier entry"
    ]


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("a: 1\n---\nb: 2\n", "exactly one YAML document"),
        ("a: [1, 2\n", "invalid YAML"),
        ("a: 1\na: 2\n", "duplicate key"),
    ],
)
def test_bad_yaml(registry: RuleRegistry, text: str, why: str) -> None:
    with pytest.raises(InputError, match=why):
        parse_bundle_text(text, "bundle.yaml", registry)


def test_alias_bomb_is_refused(registry: RuleRegistry) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join(['*a' + str(i - 1)] * 10)}]" for i in range(1, 9)]
    with pytest.raises(LimitExceeded, match="alias bomb"):
        parse_bundle_text("\n".join(lines) + "\n", "bundle.yaml", registry)


def test_oversized_bundle_is_refused(registry: RuleRegistry) -> None:
    with pytest.raises(InputError, match="larger than"):
        parse_bundle_text("#" * (MAX_BUNDLE_BYTES + 1), "bundle.yaml", registry)


def test_json_document_is_parsed_the_same(registry: RuleRegistry) -> None:
    import json

    import yaml

    value = yaml.safe_load(FULL)
    a = parse(FULL, registry)
    b = parse_bundle(json.loads(json.dumps(value)), "payload", registry)
    assert a.digest == b.digest
    assert a.enabled_rules == b.enabled_rules


def test_digest_is_sha256_of_canonical_json(registry: RuleRegistry) -> None:
    import yaml

    b = parse(FULL, registry)
    assert b.digest == "sha256:" + hashlib.sha256(canonical_json(yaml.safe_load(FULL))).hexdigest()


def test_digest_ignores_layout_but_not_content(registry: RuleRegistry) -> None:
    reflowed = (
        FULL.replace("teams: [payments, search]", "teams:\n      - payments\n      - search").replace(
            "  name: acme-prod\n  description: Production clusters\n",
            "  description: Production clusters\n  name: acme-prod\n",
        )
        + "# a comment changes nothing\n"
    )
    assert parse(reflowed, registry).digest == parse(FULL, registry).digest
    assert parse(FULL.replace("prod-us", "prod-ap"), registry).digest != parse(FULL, registry).digest


def test_lint_refuses_approver_roles_without_the_duty(registry: RuleRegistry) -> None:
    b = parse(FULL.replace("roles: [security]", "roles: [security, devops]"), registry)
    with pytest.raises(PolicyBundleError) as e:
        lint_bundle(b, "bundle.yaml")
    (p,) = e.value.problems
    assert p.render().startswith(
        "spec.exceptions.approvers.roles[1]: role 'devops' does not hold the duty exception.approve"
    )


def test_lint_refuses_unknown_roles(registry: RuleRegistry) -> None:
    b = parse(FULL.replace("roles: [security]", "roles: [securty]"), registry)
    with pytest.raises(PolicyBundleError) as e:
        lint_bundle(b, "bundle.yaml")
    assert e.value.diagnostics() == (
        "bundle.yaml: spec.exceptions.approvers.roles[0]: unknown role 'securty' (did you mean 'security'?)"
    )
