"""Making attacker-controlled strings safe for each output medium.

Everything a formatter prints may come from a scanned file: resource names, container
names, file names, even rule messages (which quote values). Each medium has its own hazard:

- a terminal executes escape sequences (a manifest must not repaint the screen, hide a
  line, or set the window title) and bidi controls reorder what the reader sees;
- XML 1.0 cannot carry most control characters at all, not even as character references;
- every UTF-8 writer fails on lone surrogates, which Python uses for file names that are
  not valid UTF-8 (``os.walk`` decodes them with ``surrogateescape``).

The escapes produced here are visible text (``\\x1b``, ``\\u202e``), so a reader sees that
something odd was there instead of having it silently dropped.
"""

from __future__ import annotations

import re

_ANSI = re.compile(
    r"""
      \x1b\[[0-?]*[ -/]*[@-~]?             # CSI ... final byte
    | \x1b\][^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?   # OSC ... BEL or ST (window title, hyperlinks)
    | \x1b[PX^_][^\x1b\x9c]*(?:\x1b\\|\x9c)?        # DCS / SOS / PM / APC strings
    | \x1b[ -/]*[0-~]?                     # other escapes (charset selection, ESC c reset ...)
    | \x9b[0-?]*[ -/]*[@-~]?               # 8-bit CSI
    | [\x90\x98\x9d\x9e\x9f][^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?  # 8-bit DCS/SOS/OSC/PM/APC
    """,
    re.VERBOSE,
)

_BIDI = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
"""Direction overrides and isolates ("Trojan Source"): they reorder the characters around them."""

_TERMINAL_UNSAFE = re.compile(f"[\x00-\x1f\x7f-\x9f\u2028\u2029{_BIDI}\ud800-\udfff]")
_XML_UNSAFE = re.compile(f"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f{_BIDI}\ud800-\udfff\ufffe\uffff]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_JSON_UNSAFE = re.compile(f"[\x7f-\x9f\u2028\u2029{_BIDI}]")

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape_char(ch: str) -> str:
    """A visible, ASCII stand-in for one unsafe character.

    A surrogate from ``surrogateescape`` stands for one undecodable byte and is shown as that
    byte (``\\xff``), as Python's ``backslashreplace`` would.
    """
    if ch in _NAMED:
        return _NAMED[ch]
    code = ord(ch)
    if 0xDC80 <= code <= 0xDCFF:
        return f"\\x{code - 0xDC00:02x}"
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}"


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, saying how much was cut."""
    if limit <= 0 or len(text) <= limit:
        return text
    note = f"… (+{len(text) - limit} chars)"
    keep = max(limit - len(note), 1)
    return text[:keep] + note


def terminal(text: str, limit: int = 0) -> str:
    """Safe to print on a terminal, on one line: escape sequences removed, every other control
    (newlines included, so a value cannot forge a line of the report) made visible."""
    return clip(_TERMINAL_UNSAFE.sub(lambda m: escape_char(m.group()), strip_ansi(text)), limit)


def xml_text(text: str) -> str:
    """Only characters XML 1.0 allows, no escape sequences, bidi controls shown (CI pages display
    this text to reviewers). Markup escaping is the writer's job."""
    return _XML_UNSAFE.sub(lambda m: escape_char(m.group()), strip_ansi(text))


def unicode_safe(text: str) -> str:
    """Encodable as UTF-8: lone surrogates become visible escapes, nothing else changes."""
    return _SURROGATE.sub(lambda m: escape_char(m.group()), text)


def harden_json(dumped: str) -> str:
    """Post-process ``json.dumps(..., ensure_ascii=False)`` output.

    ``json.dumps`` escapes C0 controls but leaves DEL, the C1 range (``\\x9b`` is an 8-bit
    CSI), line/paragraph separators and bidi controls raw, and emits lone surrogates that no
    UTF-8 writer accepts. Outside strings JSON text is pure ASCII, so every such character is
    inside a string and escaping it there keeps the parsed value identical. Surrogates are
    replaced by their visible escape (a strict parser would reject an unpaired ``\\udcxx``).
    """
    if dumped.isascii() and "\x7f" not in dumped:
        return dumped  # nothing to escape: skip two regex passes over a multi-megabyte report
    try:
        dumped.encode("utf-8")  # C speed; fails exactly when there is a lone surrogate
    except UnicodeEncodeError:
        dumped = _SURROGATE.sub(lambda m: escape_char(m.group()).replace("\\", "\\\\"), dumped)
    return _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", dumped)


def plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"
