"""The README's usage block must not promise flags the CLI does not have (and vice versa for scan)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dutyguard.cli import main

README = Path(__file__).resolve().parents[2] / "README.md"


def _usage_block() -> str:
    text = README.read_text(encoding="utf-8")
    return text[text.index("<!-- usage:start -->") : text.index("<!-- usage:end -->")]


def test_readme_scan_flags_exist_in_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scan", "--help"]) == 0
    help_text = capsys.readouterr().out
    documented = set(re.findall(r"--[a-z][a-z-]+", _usage_block()))
    assert documented, "the README usage block lists no flags"
    missing = sorted(f for f in documented if f not in help_text)
    assert missing == [], f"README documents flags that `dutyguard scan --help` lacks: {missing}"


def test_policy_flags_of_scan_are_documented(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scan", "--help"]) == 0
    help_text = capsys.readouterr().out
    block = _usage_block()
    for flag in ("--pss-level", "--format", "--output", "--fail-on", "--only", "--state", "--trust"):
        assert flag in help_text
        assert flag in block, f"{flag} is missing from the README usage block"
