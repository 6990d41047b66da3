"""The hand-made column layout of the findings table: widths in terminal cells, nothing lost."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from dutyguard.formats._columns import Column, layout, width_of, wrap

_WORDS = st.text(
    st.sampled_from([*list("abcdefghij.:/-_'\""), "漢", "字", "é", "🙂"]), min_size=0, max_size=30
)


@given(st.lists(_WORDS, max_size=20).map(" ".join), st.integers(1, 40))
@settings(max_examples=300, deadline=None)
def test_wrap_fits_the_width_and_keeps_every_character(text: str, width: int) -> None:
    lines = wrap(text, width)
    assert lines
    # A CJK character is two cells: a one-cell column cannot hold it, and gets it alone.
    assert all(width_of(line) <= max(width, 2) for line in lines)
    assert "".join(lines).replace(" ", "") == text.replace(" ", "")


def test_wrap_breaks_at_spaces_and_folds_long_words() -> None:
    assert wrap("container 'api' keeps NET_RAW", 12) == ["container", "'api' keeps", "NET_RAW"]
    assert wrap("registry.example.com/shop/api", 10) == ["registry.e", "xample.com", "/shop/api"]
    assert wrap("漢字漢字", 4) == ["漢字", "漢字"]  # two cells each


def test_layout_aligns_columns_and_keeps_rows_within_the_width() -> None:
    columns = (
        Column("SEVERITY"),
        Column("LINE", right=True),
        Column("RULE"),
        Column("RESOURCE", wraps=True, share=0.35),
        Column("MESSAGE", wraps=True),
    )
    rows = [
        ("CRITICAL *", "38", "pss.privileged", "Deployment shop/shop-api [log-agent]", "x " * 80),
        ("LOW", "1234", "k8s.no-memory-limit", "Pod 漢字/名前", "short"),
    ]
    lines = layout(columns, rows, 80, [("\x1b[31m", "\x1b[0m"), ("", "")])
    assert lines[0].startswith("SEVERITY    LINE  RULE")
    assert set(lines[1]) == {"─"}
    plain = [line.replace("\x1b[31m", "").replace("\x1b[0m", "") for line in lines]
    assert all(width_of(line) <= 80 for line in plain)
    assert plain[2].startswith("CRITICAL *    38  pss.privileged")
    assert lines[2].startswith("\x1b[31mCRITICAL *\x1b[0m")  # colour wraps the label, not the padding
    low = next(i for i, line in enumerate(plain) if line.startswith("LOW"))
    assert plain[low].startswith("LOW         1234  k8s.no-memory-limit")
    # Continuation lines leave the fixed columns blank.
    assert plain[3].startswith(" " * len("CRITICAL *    38  pss.privileged"))
    assert "".join(plain).count("x") == 80
