"""docs/rules.md is the catalogue the CLI prints: it must not drift from the rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from dutyguard.cli import main

DOC = Path(__file__).resolve().parents[2] / "docs" / "rules.md"


def test_rules_doc_is_current(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules", "list", "--format", "markdown"]) == 0
    printed = capsys.readouterr().out
    assert printed == DOC.read_text(encoding="utf-8"), (
        "docs/rules.md is stale: run `.venv/bin/dutyguard rules list --format markdown > docs/rules.md`"
    )


def test_every_rule_is_in_the_doc_with_its_controls() -> None:
    from dutyguard.rules import default_registry

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
