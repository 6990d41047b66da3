"""What a bundle means at each stage, and the same rules on real manifests (checkov, kubesec data)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from dutyguard.core.model import Severity
from dutyguard.core.policy import Policy, PSSLevel
from dutyguard.core.rule import RuleRegistry
from dutyguard.policy.model import LabelRequirement, NamespaceSelector, PodSecurity, PodSecurityEntry, Stage
from dutyguard.policy.parse import parse_bundle_text
from tests.conftest import make_scanner

NODE_EXPORTER = (
    "checkov/tests/kubernetes/checks/example_HostPort/DS-node-exporter-FAILED.yaml"  # namespace monitoring
)
SOCK_SHOP = "kubesec/test/asset/sockshop/carts-dep.yaml"  # namespace sock-shop

HEAD = "apiVersion: dutyguard.dev/v1\nkind: PolicyBundle\nmetadata: {name: t}\n"


def bundle(spec: str, registry: RuleRegistry):  # type: ignore[no-untyped-def]
    return parse_bundle_text(
        HEAD + "spec:\n" + textwrap.indent(textwrap.dedent(spec), "  "), "b.yaml", registry
    )


def test_ci_policy_threshold_and_rule_actions(registry: RuleRegistry) -> None:
    b = bundle(
        """\
        actions:
          ci:
            bySeverity: {critical: block, high: block, medium: block, low: warn, info: warn}
            rules: {pss.host-ports: warn, k8s.image-tag-latest: block}
        """,
        registry,
    )
    p = b.to_policy(Stage.CI, "signed")
    assert p.fail_on is Severity.MEDIUM
    assert dict(p.block_overrides) == {"pss.host-ports": False, "k8s.image-tag-latest": True}
    assert p.source == "signed"


def test_stage_without_blocking_severity_blocks_nothing_but_named_rules(registry: RuleRegistry) -> None:
    b = bundle(
        """\
        actions:
          runtime:
            rules: {pss.privileged: contain}
        """,
        registry,
    )
    p = b.to_policy(Stage.RUNTIME, "signed")
    assert p.block_overrides["pss.privileged"] is True
    assert p.block_overrides["pss.host-ports"] is False
    assert set(p.block_overrides) == set(b.enabled_rules)


def test_pod_security_first_match_wins_and_labels() -> None:
    ps = PodSecurity(
        default=PSSLevel.RESTRICTED,
        entries=(
            PodSecurityEntry(NamespaceSelector(names=frozenset({"kube-system"})), PSSLevel.BASELINE),
            PodSecurityEntry(
                NamespaceSelector(
                    match_labels={"legacy": "true"},
                    expressions=(LabelRequirement("tier", "NotIn", ("web",)),),
                ),
                PSSLevel.BASELINE,
            ),
        ),
    )
    assert ps.level_for("kube-system", {}) is PSSLevel.BASELINE
    assert ps.level_for("shop", {"legacy": "true"}) is PSSLevel.BASELINE
    assert ps.level_for("shop", {"legacy": "true", "tier": "web"}) is PSSLevel.RESTRICTED
    assert ps.level_for("shop", {"legacy": "false"}) is PSSLevel.RESTRICTED
    assert ps.level_for("shop", {}) is PSSLevel.RESTRICTED


@pytest.mark.parametrize(
    ("op", "values", "labels", "expected"),
    [
        ("In", ("a", "b"), {"k": "a"}, True),
        ("In", ("a",), {}, False),
        ("NotIn", ("a",), {}, True),
        ("NotIn", ("a",), {"k": "a"}, False),
        ("Exists", (), {"k": ""}, True),
        ("Exists", (), {}, False),
        ("DoesNotExist", (), {}, True),
        ("DoesNotExist", (), {"k": "x"}, False),
    ],
)
def test_label_operators_follow_kubernetes(
    op: str, values: tuple[str, ...], labels: dict[str, str], expected: bool
) -> None:
    assert LabelRequirement("k", op, values).matches(labels) is expected


def test_ci_without_labels_takes_the_strictest_possible_level() -> None:
    # CI sees manifests, not namespace labels: a label selector that might match counts.
    relaxed_default = PodSecurity(
        default=PSSLevel.BASELINE,
        entries=(PodSecurityEntry(NamespaceSelector(match_labels={"pci": "true"}), PSSLevel.RESTRICTED),),
    )
    fallback, named = relaxed_default.for_ci()
    assert fallback is PSSLevel.RESTRICTED
    assert named == {}
    by_name_first = PodSecurity(
        default=PSSLevel.RESTRICTED,
        entries=(
            PodSecurityEntry(NamespaceSelector(names=frozenset({"monitoring"})), PSSLevel.BASELINE),
            PodSecurityEntry(NamespaceSelector(match_labels={"pci": "true"}), PSSLevel.RESTRICTED),
        ),
    )
    assert by_name_first.for_ci() == (PSSLevel.RESTRICTED, {"monitoring": PSSLevel.BASELINE})
    label_first = PodSecurity(
        default=PSSLevel.BASELINE,
        entries=(
            PodSecurityEntry(NamespaceSelector(match_labels={"pci": "true"}), PSSLevel.RESTRICTED),
            PodSecurityEntry(NamespaceSelector(names=frozenset({"monitoring"})), PSSLevel.BASELINE),
        ),
    )
    # monitoring might carry pci=true, and then the earlier entry would win
    assert label_first.for_ci() == (PSSLevel.RESTRICTED, {"monitoring": PSSLevel.RESTRICTED})


def fingerprints(policy: Policy, path: Path) -> set[tuple[str, int | None]]:
    return {(f.rule_id, f.location.line) for f in make_scanner(policy).scan([str(path)]).findings}


def test_namespace_level_on_real_manifests(registry: RuleRegistry, shared_data: Path) -> None:
    # monitoring is baseline, everything else restricted: node-exporter (in monitoring) gets
    # exactly what a baseline scan gives; the sock-shop Deployment exactly what restricted gives.
    b = bundle(
        """\
        podSecurity:
          default: restricted
          namespaces:
            - names: [monitoring]
              level: baseline
        """,
        registry,
    )
    policy = b.to_policy(Stage.CI, "signed")
    node = shared_data / NODE_EXPORTER
    shop = shared_data / SOCK_SHOP
    assert fingerprints(policy, node) == fingerprints(Policy(pss_level=PSSLevel.BASELINE), node)
    assert fingerprints(policy, shop) == fingerprints(Policy(pss_level=PSSLevel.RESTRICTED), shop)
    got = fingerprints(policy, node)
    assert ("pss.host-path-volumes", 63) in got  # the baseline check, not the restricted override
    assert not any(rule == "pss.seccomp-profile-restricted" for rule, _ in got)
    assert ("pss.seccomp-profile-restricted", 33) in fingerprints(policy, shop)


def test_severity_override_and_per_rule_action_on_real_manifest(
    registry: RuleRegistry, shared_data: Path
) -> None:
    b = bundle(
        """\
        rules:
          include: [{pack: pss-baseline}, {pack: pss-restricted}]
        severity: {pss.host-ports: critical}
        actions:
          ci:
            rules: {pss.host-namespaces: warn}
        """,
        registry,
    )
    report = make_scanner(b.to_policy(Stage.CI, "signed")).scan([str(shared_data / NODE_EXPORTER)])
    assert {f.rule_id for f in report.findings} <= {
        r.meta.id for r in registry if r.meta.pack.startswith("pss-")
    }
    (ports,) = [f for f in report.findings if f.rule_id == "pss.host-ports"]
    assert ports.severity is Severity.CRITICAL
    assert report.is_blocking(ports)
    host_ns = [f for f in report.findings if f.rule_id == "pss.host-namespaces"]
    assert [f.location.line for f in host_ns] == [53, 54]
    assert all(f.severity is Severity.HIGH and not report.is_blocking(f) for f in host_ns)
    assert {f.rule_id for f in report.blocking} == {"pss.host-ports", "pss.restricted-volumes"}
