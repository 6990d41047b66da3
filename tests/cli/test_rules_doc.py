"""docs/rules.md is the catalogue the CLI prints: it must not drift from the rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from dutyguard.cli import main
from dutyguard.rules import PACKS, default_registry

DOC = Path(__file__).resolve().parents[2] / "docs" / "rules.md"


def test_rules_doc_is_current(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules", "list", "--format", "markdown"]) == 0
    printed = capsys.readouterr().out
    assert printed == DOC.read_text(encoding="utf-8"), (
        "docs/rules.md is stale: run `.venv/bin/dutyguard rules list --format markdown > docs/rules.md`"
    )


def test_every_rule_is_in_the_doc_with_its_controls() -> None:

    text = DOC.read_text(encoding="utf-8")
    for rule in default_registry():
        row = next(line for line in text.splitlines() if line.startswith(f"| `{rule.meta.id}` |"))
        assert rule.meta.controls[0] in row


def test_only_selects_packs_and_refuses_unknown_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - {name: a, image: x, securityContext: {privileged: true}}\n"
    (tmp_path / "pod.yaml").write_text(pod)
    assert main(["scan", "--only", "dockerfile", "-f", "json", str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out)["findings"] == []
    assert main(["scan", "--only", "pss-baseline", "-f", "json", str(tmp_path)]) == 1
    rules = {f["rule_id"] for f in json.loads(capsys.readouterr().out)["findings"]}
    assert rules == {"pss.privileged"}
    assert main(["scan", "--only", "nope", str(tmp_path)]) == 2
    assert "unknown pack 'nope'" in capsys.readouterr().err


def test_pack_table_names_every_pack_of_the_registry() -> None:
    full = default_registry()
    assert {r.meta.pack for r in full} == set(PACKS)
    for pack in PACKS:
        only = default_registry(packs=[pack])
        assert {r.meta.id for r in only if r.meta.pack == pack} == {
            r.meta.id for r in full if r.meta.pack == pack
        }
        assert len(only) < len(full)  # the other modules were not built


def test_only_secrets_neither_imports_nor_runs_the_yaml_and_dockerfile_parsers(tmp_path: Path) -> None:
    """A secrets-only scan (the common pre-commit hook) starts without the manifest machinery."""
    import subprocess
    import sys

    (tmp_path / "pod.yaml").write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\npassword: hunter2\n")
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / "cfg.ini").write_text("aws_access_key_id = AKIAIOSFODNN7EXAMPL3\n")
    code = (
        "import sys\n"
        "from dutyguard.cli import main\n"
        f"rc = main(['scan', '--only', 'secrets', '-f', 'json', '-o', {str(tmp_path / 'r.json')!r}, {str(tmp_path)!r}])\n"
        "loaded = [m for m in ('yaml', 'dutyguard.sources.kubernetes', 'dutyguard.sources.dockerfile') if m in sys.modules]\n"
        "print(rc, loaded)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "1 []"
    import json

    report = json.loads((tmp_path / "r.json").read_text())
    # The manifest is still read as text: its password is found, its Pod is not evaluated.
    assert {f["rule_id"] for f in report["findings"]} == {
        "secrets.aws-access-key-id",
        "secrets.generic-password",
    }
