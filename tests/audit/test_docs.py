"""docs/audit.md says the export can be verified without dutyguard: run the script it gives."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from dutyguard.audit.signing import Signer, write_public_key
from tests.audit._support import entry_index, export_bytes, fill, join, split

DOC = Path(__file__).resolve().parents[2] / "docs" / "audit.md"


@pytest.fixture
def script(tmp_path: Path) -> Path:
    text = DOC.read_text(encoding="utf-8")
    block = text.split("<!-- independent-verifier:start -->", 1)[1].split(
        "<!-- independent-verifier:end -->", 1
    )[0]
    code = block.split("```python", 1)[1].rsplit("```", 1)[0]
    path = tmp_path / "verify_by_hand.py"
    path.write_text(code, encoding="utf-8")
    return path


def run(script: Path, export: bytes, pub: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    f = tmp_path / "audit.jsonl"
    f.write_bytes(export)
    return subprocess.run(
        [sys.executable, str(script), str(f), str(pub)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_documented_independent_verifier_agrees(
    engine: Engine, signer: Signer, script: Path, tmp_path: Path
) -> None:
    fill(engine, signer, 40, every=8)
    pub = tmp_path / "audit.pub"
    write_public_key(signer.verifier, pub)
    data = export_bytes(engine)
    ok = run(script, data, pub, tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == "OK: 40 entries, 5 checkpoints verified"

    lines = split(data)
    i = entry_index(lines, 17)
    lines[i] = lines[i].replace(b'"outcome":"success"', b'"outcome":"refused"')
    bad = run(script, join(lines), pub, tmp_path)
    assert bad.returncode != 0
    assert "entry 18: chain broken" in bad.stderr

    cut = run(script, join(split(data)[: entry_index(split(data), 30)]), pub, tmp_path)
    assert "truncated: a checkpoint covers 32 entries" in cut.stderr
