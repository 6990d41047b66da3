"""`dutyguard policy lint FILE`: offline, exit 0 or 2, every problem on its own line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dutyguard.cli import main
from tests.policy.test_parse import FULL


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_valid_bundle(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bundle.yaml"
    path.write_text(FULL)
    code, out, err = run(capsys, "policy", "lint", str(path))
    assert code == 0
    assert err == ""
    assert "valid policy bundle 'acme-prod'" in out
    assert "CI blocks at medium and above (2 per-rule actions)" in out
    code, out, _ = run(capsys, "policy", "lint", "--json", str(path))
    doc = json.loads(out)
    assert doc["valid"] is True
    assert doc["digest"].startswith("sha256:")
    assert "k8s.image-pull-policy-not-always" not in doc["rules"]


def test_invalid_bundle_lists_every_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bundle.yaml"
    path.write_text(
        FULL.replace("name: acme-prod", "name: ACME").replace("default: restricted", "default: strict")
    )
    code, out, err = run(capsys, "policy", "lint", str(path))
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert lines == [
        f"dutyguard: error: {path}: line 4: metadata.name: 'ACME' is not a lower-case DNS label",
        f"dutyguard: error: {path}: line 33: spec.podSecurity.default: 'strict' is not one of baseline, "
        "restricted (did you mean 'restricted'?)",
    ]
    code, out, _ = run(capsys, "policy", "lint", "--json", str(path))
    assert code == 2
    assert [p["line"] for p in json.loads(out)["problems"]] == [4, 33]


def test_devops_as_approver_fails_lint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bundle.yaml"
    path.write_text(FULL.replace("roles: [security]", "roles: [devops]"))
    code, _, err = run(capsys, "policy", "lint", str(path))
    assert code == 2
    assert "role 'devops' does not hold the duty exception.approve" in err


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "policy", "lint", str(tmp_path / "nope.yaml"))
    assert code == 2
    assert "nope.yaml: cannot read" in err


def test_binary_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bundle.yaml"
    path.write_bytes(b"\xff\xfe\x00bundle")
    code, _, err = run(capsys, "policy", "lint", str(path))
    assert code == 2
    assert "not valid UTF-8" in err


def test_schema_is_printed_as_shipped(capsys: pytest.CaptureFixture[str]) -> None:
    from dutyguard.policy import parse

    code, out, err = run(capsys, "policy", "schema")
    assert (code, err) == (0, "")
    shipped = Path(parse.__file__).resolve().parents[1] / "data" / "policy-bundle.schema.json"
    assert out == shipped.read_text(encoding="utf-8")
    doc = json.loads(out)
    assert doc["$id"] == "https://dutyguard.dev/schema/policy-bundle/v1"
    assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
