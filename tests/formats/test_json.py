"""JSON report: real scans validate against the JSON Schema we ship, and hostile strings round-trip."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from pathlib import Path

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dutyguard.core.model import Finding, Location, ScanReport, Severity, Waiver
from dutyguard.core.policy import Policy
from dutyguard.formats._text import harden_json
from dutyguard.formats.json import SCHEMA, JsonFormatter, _FindingEncoder, finding_to_dict, load_schema
from tests.formats._reports import (
    CHECKOV_PRIVILEGED,
    HOSTILE,
    PRIVILEGED_LINE,
    ctx,
    hostile_manifest,
    privileged,
    scan,
    with_hostile_message,
    with_suppression,
    write_privileged,
)


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = load_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


def render(report: ScanReport) -> dict[str, object]:
    doc: dict[str, object] = json.loads(JsonFormatter().render(report, ctx()))
    return doc


def test_schema_is_package_data_and_names_the_report_version() -> None:
    schema = load_schema()
    assert schema["$id"] == SCHEMA
    assert schema["properties"]["schema"]["const"] == SCHEMA


def test_real_scan_of_checkov_fixtures_validates(shared_data: Path, validator, tmp_path: Path) -> None:
    report = scan([shared_data / CHECKOV_PRIVILEGED, tmp_path / "missing.yaml"])
    report = with_suppression(report, str(shared_data / CHECKOV_PRIVILEGED / "privilegedPod-FAILED.yaml"))
    doc = render(report)
    validator.validate(doc)
    # The error is there (fail closed) and the privileged DaemonSet and Pod are among the findings.
    assert doc["summary"]["decision"] == "error"
    assert [e["source"] for e in doc["errors"]] == [str(tmp_path / "missing.yaml")]
    failed = {
        (Path(f["location"]["file"]).name, f["location"]["kind"], f["location"]["container"])
        for f in doc["findings"]
        if f["rule_id"] == "pss.privileged"
    }
    assert failed == {
        ("privilegedDaemonSet-FAILED.yaml", "DaemonSet", "busybox"),
        ("privilegedPod-FAILED.yaml", "Pod", "busybox"),
    }
    assert doc["suppression_requests"][0]["honoured"] is False


def test_privileged_finding_fields(tmp_path: Path, validator) -> None:
    path = write_privileged(tmp_path)
    doc = render(scan([path]))
    validator.validate(doc)
    (f,) = [f for f in doc["findings"] if f["rule_id"] == "pss.privileged"]
    assert f["severity"] == "critical"
    assert f["blocking"] is True
    assert "pss:privileged" in f["controls"]
    assert f["location"] == {
        "file": str(path),
        "line": PRIVILEGED_LINE,
        "kind": "Pod",
        "namespace": "prod",
        "name": "web",
        "container": "app",
        "field": "spec.containers[0].securityContext.privileged",
    }
    assert len(f["fingerprint"]) == 32


def test_summary_agrees_with_the_lists(shared_data: Path) -> None:
    report = scan([shared_data / CHECKOV_PRIVILEGED])
    doc = render(report)
    summary = doc["summary"]
    assert summary["findings"] == len(doc["findings"])
    assert sum(summary["by_severity"].values()) == len(doc["findings"])
    assert summary["blocking"] == sum(1 for f in doc["findings"] if f["blocking"])
    assert summary["errors"] == len(doc["errors"]) == 0
    assert summary["exit_code"] == report.exit_code
    assert summary["files"] == 3


@pytest.mark.parametrize(
    ("fail_on", "decision", "blocking"),
    [(Severity.HIGH, "pass", 0), (Severity.MEDIUM, "fail", 1), (Severity.INFO, "fail", 1)],
)
def test_decision_follows_the_threshold(
    tmp_path: Path, fail_on: Severity, decision: str, blocking: int, validator
) -> None:
    # Only pss.privileged, lowered to medium by the policy: the threshold alone decides.
    policy = Policy(
        fail_on=fail_on,
        enabled_rules=frozenset({"pss.privileged"}),
        severity_overrides={"pss.privileged": Severity.MEDIUM},
    )
    doc = render(scan([write_privileged(tmp_path)], policy))
    validator.validate(doc)
    assert doc["summary"]["decision"] == decision
    assert doc["summary"]["blocking"] == blocking
    assert doc["findings"][0]["blocking"] is bool(blocking)
    assert doc["policy"]["fail_on"] == fail_on.value


def test_passing_report_validates(tmp_path: Path, validator) -> None:
    clean = tmp_path / "cm.yaml"
    clean.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  namespace: n\ndata:\n  a: b\n")
    report = scan([clean])
    doc = render(dataclasses.replace(report, findings=()))
    validator.validate(doc)
    assert doc["summary"]["decision"] == "pass"


def test_schema_rejects_a_report_that_breaks_the_contract(tmp_path: Path, validator) -> None:
    doc = render(scan([write_privileged(tmp_path)]))
    broken = json.loads(json.dumps(doc))
    del broken["findings"][0]["location"]["line"]
    with pytest.raises(jsonschema.ValidationError):
        validator.validate(broken)
    extra = json.loads(json.dumps(doc))
    extra["findings"][0]["undocumented"] = 1
    with pytest.raises(jsonschema.ValidationError):
        validator.validate(extra)
    lying = json.loads(json.dumps(doc))
    lying["summary"]["decision"] = "pass"  # exit code 1 and a blocking finding: not a pass
    with pytest.raises(jsonschema.ValidationError):
        validator.validate(lying)


def test_hostile_strings_round_trip_and_cannot_reach_a_terminal(tmp_path: Path, validator) -> None:
    report = with_hostile_message(scan([hostile_manifest(tmp_path)]))
    text = JsonFormatter().render(report, ctx())
    text.encode("utf-8")  # must not raise
    for raw in ("\x1b", "\x9b", "\u202e", "\x00", "\x07"):
        assert raw not in text, f"{raw!r} printed raw"
    doc = json.loads(text)
    validator.validate(doc)
    # JSON is data: the values come back exactly as scanned.
    assert any(f["message"].startswith(HOSTILE) for f in doc["findings"])
    names = {f["location"]["name"] for f in doc["findings"] if f["rule_id"] == "pss.privileged"}
    assert any(n and n.startswith("evil\x1b[2J") for n in names)


def test_undecodable_file_name_does_not_break_utf8_output(tmp_path: Path, validator) -> None:
    # os.walk hands back bytes that are not UTF-8 as lone surrogates; printing them raw would crash.
    raw = bytes(tmp_path) + b"/bad\xff.yaml"
    with open(raw, "wb") as fh:
        fh.write(
            b"apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n"
            b"  - {name: c, image: i, securityContext: {privileged: true}}\n"
        )
    report = scan([tmp_path])
    assert privileged(report), "the file was scanned"
    text = JsonFormatter().render(report, ctx())
    doc = json.loads(text.encode("utf-8").decode("utf-8"))
    validator.validate(doc)
    assert any(f["location"]["file"].endswith("bad\\xff.yaml") for f in doc["findings"])


_TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=40)


@given(
    rule_id=_TEXT,
    title=_TEXT,
    message=_TEXT,
    remediation=_TEXT,
    controls=st.tuples(_TEXT, _TEXT),
    tags=st.lists(_TEXT, max_size=3).map(tuple),
    file=_TEXT,
    line=st.none() | st.integers(0, 10**9),
    optional=st.lists(st.none() | _TEXT, min_size=5, max_size=5),
    severity=st.sampled_from(list(Severity)),
    blocking=st.booleans(),
    waived=st.booleans(),
)
@settings(max_examples=300, deadline=None)
def test_row_encoder_equals_json_dumps_of_the_dict(  # type: ignore[no-untyped-def]
    rule_id, title, message, remediation, controls, tags, file, line, optional, severity, blocking, waived
) -> None:
    """The per-rule cached encoder must produce exactly what json.dumps would (surrogates,
    controls, quotes, bidi included: hardening runs on the whole text afterwards)."""
    kind, namespace, name, container, field = optional
    waiver = Waiver("EXC-1", datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)) if waived else None
    f = Finding(
        rule_id, title, severity, message, remediation, controls,
        Location(file, line, kind, namespace, name, container, field), "f" * 32, tags, waiver,
    )  # fmt: skip
    report = ScanReport(findings=(f,), block_overrides={rule_id: blocking})
    expected = harden_json(json.dumps(finding_to_dict(f, report), ensure_ascii=False))
    encoder = _FindingEncoder()
    assert encoder.encode(f, report.is_blocking(f)) == expected
    assert encoder.encode(f, report.is_blocking(f)) == expected  # second time from the per-rule cache
