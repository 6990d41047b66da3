"""docs/governance.md shows Security and auditors exactly what the shipped data says."""

from __future__ import annotations

import pytest

from tests.governance.doc_tables import BLOCKS, DOC, block_re


@pytest.mark.parametrize("name", sorted(BLOCKS))
def test_generated_block_matches_shipped_data(name: str) -> None:
    m = block_re(name).search(DOC.read_text())
    assert m is not None, f"docs/governance.md lacks the {name} block"
    assert m.group(2) == BLOCKS[name]() + "\n", (
        f"{name} is stale: run .venv/bin/python -m tests.governance.doc_tables"
    )
