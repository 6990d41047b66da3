"""Every format against the same attacks, through the registered choice the CLI uses."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from dutyguard.core.model import ScanError
from dutyguard.formats.interface import OutputFormat
from tests.formats._reports import HOSTILE, ctx, hostile_manifest, privileged, scan, with_hostile_message

UNDECODABLE_POD = (
    b"apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n"
    b"  - {name: c, image: i, securityContext: {privileged: true}}\n"
)


@pytest.mark.parametrize("fmt", list(OutputFormat))
def test_undecodable_file_name_survives_every_format(tmp_path: Path, fmt: OutputFormat) -> None:
    # A file name that is not UTF-8 reaches formatters as a lone surrogate (os.walk's
    # surrogateescape); a UTF-8 writer would raise on it at the very end of a scan.
    with open(bytes(tmp_path) + b"/bad\xff.yaml", "wb") as fh:
        fh.write(UNDECODABLE_POD)
    report = scan([tmp_path])
    assert privileged(report)
    text = fmt.to_formatter().render(report, ctx())
    encoded = text.encode("utf-8")  # must not raise
    # Shown as the byte's escape (JSON escapes that backslash once more), or percent-encoded (SARIF URIs).
    assert any(form in encoded for form in (b"bad\\xff.yaml", b"bad\\\\xff.yaml", b"bad%FF.yaml"))


@pytest.mark.parametrize("fmt", list(OutputFormat))
def test_every_format_survives_hostile_input(tmp_path: Path, fmt: OutputFormat) -> None:
    report = with_hostile_message(scan([hostile_manifest(tmp_path)]), long_tail=200_000)
    report = dataclasses.replace(report, errors=(ScanError("evil\x1b[2J\n.yaml", HOSTILE),))
    text = fmt.to_formatter().render(report, ctx(color=True))
    text.encode("utf-8")
    for raw in ("\x00", "\x07", "\x9b", "\u202e"):
        assert raw not in text, f"{fmt.value}: {raw!r} printed raw"
    if fmt is not OutputFormat.TABLE:  # the table colours its own output; checked in test_table
        assert "\x1b" not in text
    assert len(text) < 2_000_000  # bounded by the input, not amplified
