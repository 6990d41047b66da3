"""The decision core: registry discipline, fail-closed evaluation, thresholds."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest

from dutyguard.core.evaluate import Evaluator, evaluate
from dutyguard.core.model import Severity, fingerprint, render_path
from dutyguard.core.policy import Policy, PSSLevel
from dutyguard.core.rule import Rule, RuleMeta, RuleRegistry, Violation
from dutyguard.errors import RegistryError
from dutyguard.sources.kubernetes import K8sObject


def _meta(rule_id: str, pack: str = "k8s") -> RuleMeta:
    return RuleMeta(
        id=rule_id,
        title="t",
        severity=Severity.HIGH,
        description="d",
        remediation="r",
        controls=("nist-800-190:4.4",),
        pack=pack,
        equivalents={"checkov": ("CKV_K8S_99",)},
    )


class Boom(Rule[K8sObject]):
    meta = _meta("test.boom")
    target = K8sObject

    def check(self, resource: K8sObject, policy: Policy) -> Iterator[Violation]:
        raise KeyError("surprise")


class Always(Rule[K8sObject]):
    meta = _meta("test.always", pack="pss-restricted")
    target = K8sObject

    def check(self, resource: K8sObject, policy: Policy) -> Iterator[Violation]:
        yield Violation("always", path=("spec",))


POD = K8sObject(file="p.yaml", doc={"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {}})


def test_duplicate_rule_id_is_an_error() -> None:
    with pytest.raises(RegistryError, match=r"duplicate rule id 'test\.always'"):
        RuleRegistry([Always(), Always()])


def test_rule_ids_are_validated() -> None:
    with pytest.raises(RegistryError, match="not of the form"):
        _meta("Bad Id")


def test_rule_without_controls_is_refused() -> None:
    with pytest.raises(RegistryError, match="maps to no control"):
        RuleMeta(
            id="a.b", title="", severity=Severity.LOW, description="", remediation="", controls=(), pack="k8s"
        )


def test_crashing_rule_fails_the_input_not_silently() -> None:
    ev = evaluate(RuleRegistry([Boom(), Always()]), Policy(), [POD])
    assert [f.rule_id for f in ev.findings] == ["test.always"]
    (err,) = ev.errors
    assert err.source == "p.yaml"
    assert "test.boom" in err.message
    assert "KeyError" in err.message


def test_restricted_pack_is_off_at_baseline() -> None:
    reg = RuleRegistry([Always()])
    assert evaluate(reg, Policy(pss_level=PSSLevel.BASELINE), [POD]).findings == ()
    assert len(evaluate(reg, Policy(pss_level=PSSLevel.RESTRICTED), [POD]).findings) == 1


def test_severity_override_and_rule_selection() -> None:
    reg = RuleRegistry([Always()])
    (f,) = evaluate(reg, Policy(severity_overrides={"test.always": Severity.LOW}), [POD]).findings
    assert f.severity is Severity.LOW
    assert evaluate(reg, Policy(enabled_rules=frozenset()), [POD]).findings == ()


def test_evaluate_under_follows_the_given_level_with_one_evaluator() -> None:
    base = Policy(pss_level=PSSLevel.RESTRICTED, severity_overrides={"test.always": Severity.LOW})
    ev = Evaluator(RuleRegistry([Always()]), base)
    (f,) = ev.evaluate_under(base, [POD]).findings
    assert f.severity is Severity.LOW
    # The same evaluator, a namespace at baseline: the restricted-only rule is off there.
    assert ev.evaluate_under(replace(base, pss_level=PSSLevel.BASELINE), [POD]).findings == ()
    # Back at restricted the cached runs still apply.
    assert len(ev.evaluate_under(base, [POD]).findings) == 1


def test_evaluate_under_another_rule_selection_does_not_reuse_cached_runs() -> None:
    ev = Evaluator(RuleRegistry([Always()]), Policy())
    assert ev.evaluate_under(Policy(), [POD]).findings  # fills the cache
    assert ev.evaluate_under(Policy(enabled_rules=frozenset()), [POD]).findings == ()
    (f,) = ev.evaluate_under(Policy(severity_overrides={"test.always": Severity.LOW}), [POD]).findings
    assert f.severity is Severity.LOW


def test_translate_finds_rules_by_peer_id_case_insensitively() -> None:
    reg = RuleRegistry([Always()])
    assert reg.translate("ckv_k8s_99") == ("test.always",)
    assert reg.translate("TEST.ALWAYS") == ("test.always",)
    assert reg.translate("CKV_K8S_1") == ()


def test_fingerprint_depends_on_rule_and_identity_only() -> None:
    a = fingerprint("r", ("Pod", "ns", "p", "spec"))
    assert a == fingerprint("r", ("Pod", "ns", "p", "spec"))
    assert a != fingerprint("r2", ("Pod", "ns", "p", "spec"))
    # parts are separated: ("ab","c") and ("a","bc") must differ
    assert fingerprint("r", ("ab", "c")) != fingerprint("r", ("a", "bc"))


def test_severity_parsing_and_order() -> None:
    assert Severity.parse(" High ") is Severity.HIGH
    assert Severity.CRITICAL.at_least(Severity.HIGH)
    assert not Severity.MEDIUM.at_least(Severity.HIGH)
    with pytest.raises(ValueError, match="unknown severity"):
        Severity.parse("urgent")


def test_render_path() -> None:
    assert render_path(("spec", "containers", 0, "image")) == "spec.containers[0].image"


def test_sources_without_enabled_rules_are_not_run(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A secrets-only policy never parses YAML: a broken manifest is then not an error."""
    from dutyguard.core.policy import Policy
    from dutyguard.rules import default_registry
    from tests.conftest import make_scanner

    (tmp_path / "pod.yaml").write_text(
        "apiVersion: v1\nkind: Pod\nspec: [unclosed\npassword: hunter2hunter2X9\n"
    )
    full = make_scanner().scan([str(tmp_path)])
    assert any("invalid YAML" in e.message for e in full.errors)
    secrets_only = frozenset(r.meta.id for r in default_registry() if r.meta.pack == "secrets")
    report = make_scanner(Policy(enabled_rules=secrets_only)).scan([str(tmp_path)])
    assert report.errors == ()
    assert {f.rule_id.split(".")[0] for f in report.findings} <= {"secrets"}
