"""Inline suppressions reach the audit trail with the gate's attestation, on SQLite and PostgreSQL.

``dutyguard scan --server URL --attest`` runs through the CLI against the real control plane
(uvicorn on loopback). The submission lists the suppression requests the scan found with the
findings each targets; the control plane records one ``gate.suppression_requests`` entry per
accepted submission, each request flagged ``bypass_attempt`` unless every finding it targets is
waived by an exception the control plane reproduced itself. Nothing a runner says about
coverage is believed, the suppressions decide nothing, and the signed predicate is unchanged.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from tests.server.conftest import Org
from tests.server.gate_runner import Runner, control_plane, proxy_to
from tests.server.signed_helpers import FP, ok, publish, request_exception, served

SUPPRESSED = "checkov/tests/kubernetes/checks/example_Suppressed/suppress-checks-PASSED.yaml"
SECRET_SKIPPED = "checkov/tests/kubernetes/checks/example_Secrets/pod-secretVolume-PASSED.yaml"
IMAGE = "oci://registry.example.com/shop/api@sha256:" + "5e" * 32
PREDICATE_FIELDS = {
    "decision",
    "policy",
    "exceptions",
    "blockingFindings",
    "waivedFindings",
    "errors",
    "submitter",
    "time",
    "breakglass",
    "scanner",
}

BASELINE_AND_SECRETS = """\
apiVersion: dutyguard.dev/v1
kind: PolicyBundle
metadata:
  name: acme-secrets
spec:
  rules:
    include: [{pack: pss-baseline}, {pack: secrets}]
"""


@pytest.fixture
def runner(
    org: Org, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Runner:
    publish(org, BASELINE_AND_SECRETS)
    return Runner(org, tmp_path, monkeypatch, capsys)


def _attest(runner: Runner, url: str, path: str, out: Path) -> tuple[int, dict[str, Any], str]:
    code, stdout, err = runner.scan(
        url, "--subject", IMAGE, "--attest", "--attest-output", str(out), "-f", "json", path
    )
    assert code in (0, 1), err
    return code, json.loads(stdout), err


def _entry(org: Org, att_id: str) -> dict[str, Any]:
    (entry,) = org.audit(action="gate.suppression_requests", object=f"attestation:{att_id}")
    assert entry["actor"] == "ci-shop"
    return entry


def _attestation_id(org: Org) -> str:
    return str(org.audit(actor="ci-shop", action="gate.attest", outcome="success")[-1]["object"]).split(
        ":", 1
    )[1]


def _predicate(out: Path) -> dict[str, Any]:
    statement = json.loads(base64.b64decode(json.loads(out.read_text())["payload"]))
    predicate: dict[str, Any] = statement["predicate"]
    return predicate


def test_inline_suppression_is_audited_as_bypass_attempt_on_attest(
    org: Org, runner: Runner, shared_data: Path, tmp_path: Path
) -> None:
    path = str(shared_data / SUPPRESSED)
    out = tmp_path / "att.json"
    with control_plane(org) as url:
        _, report, _ = _attest(runner, url, path, out)
    requests = report["suppression_requests"]
    assert len(requests) == 12  # checkov's fixture: checkov.io, bridgecrew.io and cortex skips
    d = _entry(org, _attestation_id(org))["details"]
    assert (d["subject"], d["app"]) == (IMAGE, "shop-api")
    # no exception exists: every one is a bypass attempt, the ones naming no rule we run too
    assert (d["total"], d["submitted"], d["bypass_attempts"], d["listed"]) == (12, 12, 12, 12)
    assert d["bypass_attempt"] is True
    listed = {(r["line"], r["syntax"]): r for r in d["requests"]}
    assert {line for line, _ in listed} == {r["line"] for r in requests}
    host_ns = listed[(143, "checkov.io/skip")]  # CKV_K8S_1 -> pss.host-namespaces
    assert host_ns["rules"] == ["pss.host-namespaces"]
    # every host-namespaces finding of the file is one it could silence
    assert host_ns["findings"] == sum(f["rule_id"] == "pss.host-namespaces" for f in report["findings"]) == 5
    assert (host_ns["covered_by"], host_ns["bypass_attempt"]) == ([], True)
    assert host_ns["file"].endswith("example_Suppressed/suppress-checks-PASSED.yaml")
    # CKV_K8S_11 is k8s.no-cpu-limit, which this bundle does not apply: it targets no finding,
    # and no approved exception matches it either
    cpu = listed[(12, "checkov.io/skip")]
    assert (cpu["rules"], cpu["findings"], cpu["bypass_attempt"]) == (["k8s.no-cpu-limit"], 0, True)
    # the suppressions changed no finding, and the signed predicate keeps its fields
    assert all(f["waiver"] is None for f in report["findings"])
    assert set(_predicate(out)) == PREDICATE_FIELDS


def test_suppression_covered_by_exception_is_not_a_bypass_attempt(
    org: Org, runner: Runner, shared_data: Path, tmp_path: Path
) -> None:
    # checkov's own fixture: `checkov:skip=CKV_SECRET_6` on the line holding a password
    path = str(shared_data / SECRET_SKIPPED)
    with control_plane(org) as url:
        _, report, _ = _attest(runner, url, path, tmp_path / "a.json")
        (secret,) = [f for f in report["findings"] if f["rule_id"] == "secrets.generic-password"]
        (req,) = report["suppression_requests"]
        assert (req["line"], secret["location"]["line"]) == (10, 10)
        before = _entry(org, _attestation_id(org))["details"]
        assert (before["bypass_attempts"], before["requests"][0]["bypass_attempt"]) == (1, True)

        # DevOps asks, Security approves: an exception for exactly that finding
        e = ok(
            request_exception(
                org, rule_id="secrets.generic-password", fingerprint=secret["fingerprint"], days=5
            )
        )
        ok(org.post("sam", f"/exceptions/{e['id']}/approve"))
        _, report, _ = _attest(runner, url, path, tmp_path / "b.json")
    (waived,) = [f for f in report["findings"] if f["rule_id"] == "secrets.generic-password"]
    assert waived["waiver"]["exception_id"] == e["id"]
    after = _entry(org, _attestation_id(org))["details"]
    assert (after["bypass_attempts"], after["bypass_attempt"]) == (0, False)
    (item,) = after["requests"]
    assert (item["line"], item["syntax"], item["findings"]) == (10, "checkov:skip", 1)
    assert (item["covered_by"], item["bypass_attempt"]) == ([e["id"]], False)
    assert item["rules"] == ["secrets.generic-password", "secrets.generic-secret", "secrets.dotenv-secret"]


def test_runner_resubmits_without_suppressions_to_an_older_control_plane(
    org: Org, runner: Runner, shared_data: Path, tmp_path: Path
) -> None:
    """A control plane from before the field refuses it as unknown (422, extra_forbidden): the
    runner warns that the suppressions were not audited and still gets its attestation."""
    older = {
        "type": "urn:dutyguard:problem:validation",
        "title": "Invalid request",
        "status": 422,
        "errors": [
            {
                "field": "body.suppression_requests",
                "message": "Extra inputs are not permitted",
                "code": "extra_forbidden",
            },
            {
                "field": "body.suppression_requests_total",
                "message": "Extra inputs are not permitted",
                "code": "extra_forbidden",
            },
        ],
    }
    with control_plane(org) as upstream, proxy_to(upstream) as proxy:
        proxy.once["/api/v1/attestations"] = [(422, json.dumps(older).encode())]
        code, _, err = runner.scan(
            proxy.url, "--subject", IMAGE, "--attest", "--attest-output", str(tmp_path / "a.json"),
            str(shared_data / SUPPRESSED),
        )  # fmt: skip
        posted = [json.loads(body) for path, body in proxy.posted if path == "/api/v1/attestations"]
    assert code == 1, err
    assert (
        "does not take suppression requests (an older version): 12 inline suppression(s) were not audited"
        in err
    )
    assert "gate attestation att-" in err
    assert [("suppression_requests" in b, "suppression_requests_total" in b) for b in posted] == [
        (True, True),
        (False, False),
    ]
    assert org.audit(action="gate.attest", outcome="success")
    assert org.audit(action="gate.suppression_requests") == []


def test_other_validation_errors_are_not_retried(
    org: Org, runner: Runner, shared_data: Path, tmp_path: Path
) -> None:
    refused = {
        "title": "Invalid request",
        "status": 422,
        "errors": [{"field": "body.findings", "message": "x"}],
    }
    with control_plane(org) as upstream, proxy_to(upstream) as proxy:
        proxy.once["/api/v1/attestations"] = [(422, json.dumps(refused).encode())]
        code, _, err = runner.scan(
            proxy.url, "--subject", IMAGE, "--attest", "--attest-output", str(tmp_path / "a.json"),
            str(shared_data / SUPPRESSED),
        )  # fmt: skip
        attempts = [path for path, _ in proxy.posted if path == "/api/v1/attestations"]
    assert (code, attempts) == (2, ["/api/v1/attestations"])
    assert "body.findings" in err and "older version" not in err


# --- the API, as a runner could call it --------------------------------------------------------------
def _state(org: Org) -> tuple[dict[str, Any], int]:
    current = ok(org.get("carol", "/policies/current"))
    _, snapshot = served(org)
    return current, json.loads(base64.b64decode(json.loads(snapshot)["payload"]))["version"]


def _finding(rule: str, fp: str, waiver: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "rule_id": rule,
        "severity": "high",
        "fingerprint": fp,
        "namespace": None,
        "blocking": True,
        "waiver": waiver,
    }


def _suppression(line: int, rules: list[str], findings: list[int]) -> dict[str, Any]:
    return {
        "file": "deploy/app.yaml",
        "line": line,
        "syntax": "dutyguard:ignore",
        "targets": rules,
        "matched_rules": rules,
        "text": "dutyguard:ignore=" + ",".join(rules),
        "findings": findings,
    }


def _submit(org: Org, findings: list[dict[str, Any]], **over: Any) -> Any:
    current, snapshot = _state(org)
    body = {
        "subject": IMAGE,
        "app": "shop-api",
        "policy": {"version": current["version"], "digest": current["digest"]},
        "snapshot_version": snapshot,
        "findings": findings,
        "errors": 0,
        **over,
    }
    return org.post("ci-shop", "/attestations", body)


def test_runner_claims_about_coverage_are_not_believed(org: Org) -> None:
    publish(org)
    e = ok(request_exception(org))  # pss.host-ports, fingerprint FP, app shop-api
    granted = ok(org.post("sam", f"/exceptions/{e['id']}/approve"))
    claim = {"exception_id": e["id"], "expires": granted["expires_at"]}
    findings = [
        _finding("pss.host-ports", FP, claim),  # waived, reproduced by the control plane
        _finding("pss.privileged", "cd" * 16),  # not waived
    ]
    requests = [
        _suppression(3, ["pss.host-ports"], [0]),  # covered
        _suppression(4, ["pss.privileged"], [0]),  # points at a waived finding of another rule
        _suppression(5, ["pss.privileged"], [1]),  # its finding is not waived
        _suppression(6, ["pss.privileged"], []),  # targets nothing found
        _suppression(7, [], [0, 1]),  # "everything": one of them is not waived
    ]
    out = ok(_submit(org, findings, suppression_requests=requests, suppression_requests_total=9), 201)
    d = _entry(org, out["id"])["details"]
    flags = {r["line"]: (r["bypass_attempt"], r["covered_by"]) for r in d["requests"]}
    assert flags == {
        3: (False, [e["id"]]),
        4: (True, []),
        5: (True, []),
        6: (True, []),
        7: (True, []),
    }
    assert (d["total"], d["submitted"], d["bypass_attempts"]) == (9, 5, 4)
    # bypass attempts are listed first
    assert [r["bypass_attempt"] for r in d["requests"]] == [True] * 4 + [False]
    assert set(json.loads(base64.b64decode(out["envelope"]["payload"]))["predicate"]) == PREDICATE_FIELDS


def test_submission_without_suppressions_is_accepted_and_adds_no_entry(org: Org) -> None:
    publish(org)
    out = ok(_submit(org, []), 201)  # an older runner: no suppression fields at all
    assert org.audit(action="gate.suppression_requests") == []
    assert org.audit(action="gate.attest", object=f"attestation:{out['id']}")


def test_hostile_suppression_lists_are_refused(org: Org) -> None:
    publish(org)
    ok_one = _suppression(1, ["pss.privileged"], [])
    cases: list[tuple[str, dict[str, Any]]] = [
        ("suppression_requests.0.findings", {"suppression_requests": [_suppression(1, [], [5])]}),
        ("suppression_requests", {"suppression_requests": [ok_one] * 1001}),
        ("suppression_requests.0.file", {"suppression_requests": [{**ok_one, "file": "a\nb"}]}),
        ("suppression_requests.0.file", {"suppression_requests": [{**ok_one, "file": "x" * 1025}]}),
        ("suppression_requests.0.findings", {"suppression_requests": [{**ok_one, "findings": [0] * 257}]}),
        ("suppression_requests.0.honoured", {"suppression_requests": [{**ok_one, "honoured": True}]}),
        (
            "suppression_requests_total",
            {"suppression_requests": [ok_one, ok_one], "suppression_requests_total": 1},
        ),
    ]
    for field, over in cases:
        r = _submit(org, [], **over)
        assert r.status_code == 422, (field, r.status_code)
        assert any(e["field"].startswith(f"body.{field}") for e in r.json()["errors"]), (field, r.json())
    assert org.audit(action="gate.attest", outcome="success") == []


def test_listing_is_bounded_but_counts_are_not(org: Org) -> None:
    publish(org)
    requests = [
        {**_suppression(i, ["pss.privileged"], []), "file": f"{i:04d}/" + "d" * 1000} for i in range(1000)
    ]
    out = ok(_submit(org, [], suppression_requests=requests), 201)
    d = _entry(org, out["id"])["details"]
    assert (d["total"], d["submitted"], d["bypass_attempts"]) == (1000, 1000, 1000)
    assert 0 < d["listed"] == len(d["requests"]) < 1000
    assert all(len(r["file"]) <= 256 and r["file"].startswith("…") for r in d["requests"])
