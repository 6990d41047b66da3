"""The kubewarden AdmissionRequests over real HTTPS, and parity with the CI gate.

* Every e2e case of kubewarden's Pod Security policies (``EXPECTED_E2E.json``) goes to the webhook
  configured like that policy: the one rule that answers it, at its PSA level, denying at any
  severity. The verdict must be kubewarden's, except where our PSS table
  (``tests/rules/pss_peers_test.py``) records a deliberate difference, with its reason.
* Parity: every fixture object the webhook evaluates is also written as YAML and scanned by
  ``dutyguard scan``; the webhook must deny exactly what the gate blocks, for the same rules and
  the same fingerprints (so an exception approved for CI applies at the door too).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dutyguard.admission.decide import EVALUATED_KINDS, Decider, admitted_object, text_of
from dutyguard.admission.review import parse_review
from dutyguard.admission.state import StateView, builtin_state
from dutyguard.cli import main as cli_main
from dutyguard.core.model import Severity
from dutyguard.core.policy import Policy
from dutyguard.rules import default_registry
from tests.admission.support import KW, SwitchableProvider, Webhook, kubewarden_request, review
from tests.conftest import SHARED_DATA
from tests.rules.pss_peers_test import E2E, POLICY_RULE

REGISTRY = default_registry()


def _e2e_entries() -> dict[tuple[str, str], dict[str, Any]]:
    data = json.loads((SHARED_DATA / "kubewarden-policies" / "EXPECTED_E2E.json").read_text())
    return {(e["policy"], e["test"]): e for e in data if e["policy"] in POLICY_RULE}


@pytest.mark.parametrize("key", sorted(E2E), ids=[f"{p}:{t}" for p, t in sorted(E2E)])
def test_kubewarden_pss_case_over_https(
    shared_data: Path, webhook: Webhook, default_state: SwitchableProvider, key: tuple[str, str]
) -> None:
    entry = _e2e_entries()[key]
    expect = E2E[key]
    rule, level = POLICY_RULE[key[0]]
    rules = frozenset({rule, *expect.also})
    default_state.set_state(
        builtin_state(Policy(pss_level=level, enabled_rules=rules, fail_on=Severity.INFO))
    )
    req = kubewarden_request(shared_data / "kubewarden-policies" / entry["request"])

    resp = webhook.post(review(req))

    assert resp.status == 200
    out = resp.admission
    assert out["uid"] == req["uid"]
    denied = not out["allowed"]
    expected_hits = list(expect.hits) + [h for hs in expect.also.values() for h in hs]
    assert denied == bool(expected_hits)
    if denied:
        message = out["status"]["message"]
        assert out["status"]["code"] == 403
        assert out["status"]["reason"] == "Forbidden"
        assert f"[{rule}]" in message or expect.also
        for _container, field in expected_hits:
            assert field in message, (field, message)
        assert set(out["auditAnnotations"]["denied-rules"].split(",")) <= rules
    verdict = entry["expected_allowed"]
    if verdict is not None:  # settings-validation cases carry no verdict
        assert (denied == (verdict is False)) is expect.agrees, expect.why


def _fixture_files() -> list[Path]:
    out: list[Path] = []
    for path in sorted((SHARED_DATA / KW).glob("*/test_data/**/*.json")):
        try:
            data = json.loads(path.read_text())
        except ValueError:
            continue
        req = data.get("request", data) if isinstance(data, dict) else None
        if not isinstance(req, dict) or not isinstance(req.get("object"), dict) or "uid" not in req:
            continue
        kind = req.get("kind") or {}
        if (kind.get("group", ""), kind.get("kind")) in EVALUATED_KINDS and req.get(
            "operation", "CREATE"
        ) in (
            "CREATE",
            "UPDATE",
        ):
            out.append(path)
    return out


FIXTURES = _fixture_files()


def test_parity_covers_the_pod_fixtures() -> None:
    # Pods and every workload kind in the fixtures (Deployment, StatefulSet, DaemonSet, Job, CronJob, ...).
    kinds = {
        json.loads(p.read_text()).get("request", json.loads(p.read_text()))["kind"]["kind"] for p in FIXTURES
    }
    assert {"Pod", "Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "ReplicaSet"} <= kinds
    assert len(FIXTURES) > 150


def _as_created(path: Path) -> dict[str, Any]:
    # The gate knows no UPDATE: compare the object as if it were created (updates that leave the
    # pod template unchanged are not evaluated at all; see test_decide).
    req = kubewarden_request(path)
    req["operation"] = "CREATE"
    req.pop("oldObject", None)
    return req


@pytest.fixture(scope="module")
def gate_reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[int, list[dict[str, Any]]]]:
    """``dutyguard scan`` once over every fixture object, written as the manifest the webhook reads.

    The object is written as the JSON text the webhook's secret rules see (``text_of``);
    kind/apiVersion and the request's namespace are filled in where the fixture trimmed them.
    Returns, per fixture, the exit code the gate would give that file alone and its findings.
    """
    root = tmp_path_factory.mktemp("gate")
    names: dict[str, str] = {}
    for i, path in enumerate(FIXTURES):
        req = _as_created(path)
        obj = admitted_object(parse_review(review(req)), req["object"])
        name = f"obj{i:03d}.json"
        (root / name).write_bytes(text_of(obj.doc))
        names[name] = str(path)
    report_file = root.parent / f"{root.name}-report.json"
    cli_main(["scan", str(root), "--format", "json", "--output", str(report_file)])
    report = json.loads(report_file.read_text())
    out: dict[str, tuple[int, list[dict[str, Any]]]] = {}
    for name, fixture in names.items():
        findings = [f for f in report["findings"] if Path(f["location"]["file"]).name == name]
        errors = [e for e in report["errors"] if Path(e["source"]).name == name]
        rc = 2 if errors else (1 if any(f["blocking"] for f in findings) else 0)
        out[fixture] = (rc, findings)
    return out


@pytest.mark.parametrize("path", FIXTURES, ids=[str(p.relative_to(SHARED_DATA / KW)) for p in FIXTURES])
def test_webhook_denies_exactly_what_the_gate_blocks(
    webhook: Webhook,
    default_state: SwitchableProvider,
    gate_reports: dict[str, tuple[int, list[dict[str, Any]]]],
    path: Path,
) -> None:
    req = _as_created(path)
    rc, findings = gate_reports[str(path)]
    blocking = [f for f in findings if f["blocking"]]

    resp = webhook.post(review(req))
    out = resp.admission

    assert resp.status == 200
    assert out["uid"] == req["uid"]
    assert out["allowed"] is (rc == 0), (rc, out.get("status"))
    denied_rules = set(out["auditAnnotations"].get("denied-rules", "").split(",")) - {""}
    assert denied_rules == {f["rule_id"] for f in blocking}
    for f in blocking:
        if f["location"]["field"]:
            assert f["location"]["field"] in out["status"]["message"]
    # Same findings, and for the object's own rules the same fingerprints: an exception approved
    # for CI addresses the same problem at admission. (Text findings are fingerprinted by file.)
    decision = Decider(REGISTRY).decide(parse_review(review(req)), StateView(builtin_state()))

    def ours(fs: Any) -> set[tuple[str, str | None, str | None]]:
        return {(f.rule_id, f.location.field, f.fingerprint if f.location.kind else None) for f in fs}

    def gate(fs: Any) -> set[tuple[str, str | None, str | None]]:
        return {
            (f["rule_id"], f["location"]["field"], f["fingerprint"] if f["location"]["kind"] else None)
            for f in fs
        }

    assert ours(decision.denied) == gate(blocking)
    assert ours((*decision.warned, *decision.audited)) == gate(f for f in findings if not f["blocking"])
