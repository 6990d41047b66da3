"""SARIF 2.1.0: valid against the official schema, and shaped the way GitHub code scanning reads it."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from urllib.parse import unquote

import jsonschema
import pytest

from dutyguard.core.model import ScanError, ScanReport, Severity
from dutyguard.core.policy import Policy
from dutyguard.formats import sarif as sarif_mod
from dutyguard.formats.sarif import FINGERPRINT_KEY, SarifFormatter
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

OFFICIAL_SCHEMA = "grype/grype/presenter/sarif/testdata/sarif-schema-2.1.0.json"
GITHUB_BANDS = {
    "critical": (9.0, 10.0),
    "high": (7.0, 8.9),
    "medium": (4.0, 6.9),
    "low": (0.1, 3.9),
}


@pytest.fixture(scope="module")
def validator(shared_data: Path) -> jsonschema.Draft4Validator:
    schema = json.loads((shared_data / OFFICIAL_SCHEMA).read_text(encoding="utf-8"))
    return jsonschema.Draft4Validator(schema, format_checker=jsonschema.FormatChecker())


def render(report: ScanReport, root: Path) -> dict:
    return json.loads(SarifFormatter(root=str(root)).render(report, ctx()))


def run_of(doc: dict) -> dict:
    (run,) = doc["runs"]
    return run


def test_real_scan_validates_against_the_official_schema(
    shared_data: Path, validator, tmp_path: Path
) -> None:
    fixtures = shared_data / CHECKOV_PRIVILEGED
    report = scan([fixtures, tmp_path / "missing.yaml"])
    report = with_suppression(report, str(fixtures / "privilegedPod-FAILED.yaml"))
    doc = render(report, shared_data)
    validator.validate(doc)
    assert doc["version"] == "2.1.0"
    run = run_of(doc)
    assert len(run["results"]) == len(report.findings)
    uris = {
        r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
        for r in run["results"]
        if r["ruleId"] == "pss.privileged"
    }
    assert uris == {
        f"{CHECKOV_PRIVILEGED}/privilegedDaemonSet-FAILED.yaml",
        f"{CHECKOV_PRIVILEGED}/privilegedPod-FAILED.yaml",
    }


def test_one_result_per_finding_pointing_at_its_rule(shared_data: Path) -> None:
    report = scan([shared_data / CHECKOV_PRIVILEGED])
    run = run_of(render(report, shared_data))
    rules = run["tool"]["driver"]["rules"]
    assert len({r["id"] for r in rules}) == len(rules)
    for finding, result in zip(report.findings, run["results"], strict=True):
        assert result["ruleId"] == finding.rule_id
        assert rules[result["ruleIndex"]]["id"] == finding.rule_id
        assert result["partialFingerprints"] == {FINGERPRINT_KEY: finding.fingerprint}
        assert result["message"]["text"] == finding.message
        region = result["locations"][0]["physicalLocation"].get("region")
        if finding.location.line is None:
            assert region is None
        else:
            assert region == {"startLine": finding.location.line}


def test_driver_and_rule_metadata_github_reads(tmp_path: Path) -> None:
    run = run_of(render(scan([write_privileged(tmp_path)]), tmp_path))
    driver = run["tool"]["driver"]
    assert driver["name"] == "dutyguard"
    assert driver["version"]
    assert driver["informationUri"].startswith("https://")
    (rule,) = [r for r in driver["rules"] if r["id"] == "pss.privileged"]
    assert rule["shortDescription"]["text"] == "Privileged container"
    assert rule["fullDescription"]["text"]
    assert "securityContext.privileged" in rule["help"]["text"]
    assert "**Remediation:**" in rule["help"]["markdown"]
    assert rule["defaultConfiguration"]["level"] == "error"
    props = rule["properties"]
    low, high = GITHUB_BANDS["critical"]
    assert low <= float(props["security-severity"]) <= high
    assert isinstance(props["security-severity"], str)
    assert props["tags"][0] == "security"
    assert "pss:privileged" in props["tags"]
    assert len(props["tags"]) <= 10  # GitHub keeps 10 and rejects more than 20
    assert "CKV_K8S_16" in props["equivalents"]["checkov"]


@pytest.mark.parametrize("severity", [Severity.CRITICAL, Severity.HIGH, Severity.MEDIUM, Severity.LOW])
def test_security_severity_falls_in_githubs_band(tmp_path: Path, severity: Severity) -> None:
    # A policy override changes the severity; the rule descriptor must follow the policy.
    policy = Policy(
        enabled_rules=frozenset({"pss.privileged"}), severity_overrides={"pss.privileged": severity}
    )
    run = run_of(render(scan([write_privileged(tmp_path)], policy), tmp_path))
    (rule,) = run["tool"]["driver"]["rules"]
    low, high = GITHUB_BANDS[severity.value]
    assert low <= float(rule["properties"]["security-severity"]) <= high


def test_level_is_error_exactly_for_blocking_findings(tmp_path: Path) -> None:
    base = scan([write_privileged(tmp_path)], Policy(enabled_rules=frozenset({"pss.privileged"})))
    (f,) = privileged(base)
    medium = dataclasses.replace(f, severity=Severity.MEDIUM, fingerprint="0" * 32)
    report = dataclasses.replace(base, findings=(f, medium))
    results = run_of(render(report, tmp_path))["results"]
    assert [r["level"] for r in results] == ["error", "warning"]
    assert [r["properties"]["blocking"] for r in results] == [True, False]


def test_uri_is_relative_to_srcroot_and_percent_encoded(tmp_path: Path, validator) -> None:
    sub = tmp_path / "my dir#1" / "ünï%code"
    sub.mkdir(parents=True)
    path = write_privileged(sub, "pod?.yaml")
    run = run_of(render(scan([path]), tmp_path))
    validator.validate({"version": "2.1.0", "runs": [run]})
    loc = run["results"][0]["locations"][0]["physicalLocation"]
    artifact = loc["artifactLocation"]
    assert artifact["uriBaseId"] == "%SRCROOT%"
    assert artifact["uri"] == "my%20dir%231/%C3%BCn%C3%AF%25code/pod%3F.yaml"
    assert unquote(artifact["uri"]) == "my dir#1/ünï%code/pod?.yaml"
    assert loc["region"]["startLine"] == PRIVILEGED_LINE


def test_path_outside_the_root_is_an_absolute_file_uri(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    path = write_privileged(tmp_path)
    run = run_of(render(scan([path]), root))
    artifact = run["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]
    assert artifact == {"uri": path.as_uri()}


def test_region_is_omitted_when_the_line_is_unknown(tmp_path: Path, validator) -> None:
    report = scan([write_privileged(tmp_path)])
    (f,) = privileged(report)
    no_line = dataclasses.replace(f, location=dataclasses.replace(f.location, line=None))
    doc = render(dataclasses.replace(report, findings=(no_line,)), tmp_path)
    validator.validate(doc)
    physical = run_of(doc)["results"][0]["locations"][0]["physicalLocation"]
    assert "region" not in physical
    assert physical["artifactLocation"]["uri"] == "pod.yaml"


def test_stdin_and_kustomize_inputs_have_honest_locations(tmp_path: Path, validator) -> None:
    report = scan([write_privileged(tmp_path)])
    (f,) = privileged(report)
    stdin = dataclasses.replace(f, location=dataclasses.replace(f.location, file="-"))
    rendered = dataclasses.replace(
        f, location=dataclasses.replace(f.location, file="overlays/prod (kustomize)")
    )
    doc = render(dataclasses.replace(report, findings=(stdin, rendered)), tmp_path)
    validator.validate(doc)
    first, second = (r["locations"][0]["physicalLocation"] for r in run_of(doc)["results"])
    assert first["artifactLocation"]["uri"] == "stdin"
    assert first["region"]["startLine"] == PRIVILEGED_LINE
    # Lines of kubectl kustomize output are not lines of any file in the repository.
    assert second["artifactLocation"]["uri"] == "overlays/prod/"
    assert "region" not in second


def test_suppression_request_never_hides_a_result(tmp_path: Path, validator) -> None:
    path = write_privileged(tmp_path)
    report = with_suppression(scan([path]), str(path))
    doc = render(report, tmp_path)
    validator.validate(doc)
    run = run_of(doc)
    # No result carries a SARIF suppression: viewers and GitHub tooling would hide or dismiss it.
    assert all("suppressions" not in r for r in run["results"])
    (result,) = [r for r in run["results"] if r["ruleId"] == "pss.privileged"]
    assert result["level"] == "error"
    assert result["properties"]["suppressionRequests"] == [
        {"line": 3, "syntax": "checkov:skip", "honoured": False}
    ]
    (note,) = run["invocations"][0]["toolConfigurationNotifications"]
    assert note["level"] == "warning"
    assert note["descriptor"]["id"] == "dutyguard.suppression-request"
    assert note["associatedRule"]["id"] == "pss.privileged"
    assert note["locations"][0]["physicalLocation"]["region"] == {"startLine": 3}
    assert "not honoured" in note["message"]["text"]


def test_unreadable_input_fails_the_execution(tmp_path: Path, validator) -> None:
    report = scan([write_privileged(tmp_path), tmp_path / "missing.yaml"])
    doc = render(report, tmp_path)
    validator.validate(doc)
    (invocation,) = run_of(doc)["invocations"]
    assert invocation["executionSuccessful"] is False
    assert invocation["exitCode"] == 2
    (note,) = invocation["toolExecutionNotifications"]
    assert note["level"] == "error"
    assert "missing.yaml" in note["message"]["text"]
    assert note["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "missing.yaml"


def test_clean_run_is_successful(tmp_path: Path, validator) -> None:
    report = dataclasses.replace(scan([write_privileged(tmp_path)]), findings=(), errors=())
    doc = render(report, tmp_path)
    validator.validate(doc)
    run = run_of(doc)
    assert run["results"] == []
    assert run["invocations"][0]["executionSuccessful"] is True
    assert run["invocations"][0]["toolExecutionNotifications"] == []


def test_results_beyond_githubs_limit_are_dropped_least_severe_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, validator
) -> None:
    monkeypatch.setattr(sarif_mod, "MAX_RESULTS", 2)
    report = scan([write_privileged(tmp_path)])
    (f,) = privileged(report)
    low = dataclasses.replace(f, severity=Severity.LOW, fingerprint="1" * 32)
    report = dataclasses.replace(report, findings=(f, f, low))
    doc = render(report, tmp_path)
    validator.validate(doc)
    run = run_of(doc)
    assert [r["properties"]["severity"] for r in run["results"]] == ["critical", "critical"]
    (note,) = run["invocations"][0]["toolExecutionNotifications"]
    assert note["descriptor"]["id"] == "dutyguard.results-truncated"
    assert note["message"]["text"].startswith("1 of 3 findings")
    assert run["invocations"][0]["executionSuccessful"] is True


def test_hostile_strings_stay_data(tmp_path: Path, validator) -> None:
    report = with_hostile_message(scan([hostile_manifest(tmp_path)]))
    report = dataclasses.replace(report, errors=(ScanError("evil\x1b[2J.yaml", HOSTILE),))
    text = SarifFormatter(root=str(tmp_path)).render(report, ctx())
    for raw in ("\x1b", "\x9b", "\u202e", "\x00"):
        assert raw not in text
    doc = json.loads(text)
    validator.validate(doc)
    (hostile,) = [
        r["message"]["text"] for r in run_of(doc)["results"] if r["message"]["text"].startswith("evil")
    ]
    # JSON escaping keeps the value intact...
    assert "\x1b" in hostile
    assert "<script>alert(1)</script>&amp;" in hostile
    # ...but a message cannot turn into a link in the alert: brackets are escaped (SARIF §3.11.6).
    assert "[click](https://evil.example)" not in hostile
    assert "\\[click\\](https://evil.example)" in hostile
    (note,) = run_of(doc)["invocations"][0]["toolExecutionNotifications"]
    assert note["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "evil%1B%5B2J.yaml"
