"""Canonical JSON (RFC 8785, JCS) for the subset the audit trail uses, and its strict reader.

The subset: objects with string keys, arrays, strings, integers in the interoperable range
(|n| <= 2**53 - 1, where every JSON implementation agrees on the value), ``true``, ``false``,
``null``. Floats are refused rather than canonicalised: JCS would need the ECMAScript
number-to-string algorithm, and a hashed audit record has no use for a value whose text two
libraries may print differently.

What JCS fixes, and this module implements:

- object members sorted by the UTF-16 code units of their names (not by code point: "😀"
  (D83D DE00) sorts before "\\uFB33");
- no insignificant whitespace; UTF-8 output; strings escaped exactly as ECMAScript's
  ``JSON.stringify`` does (``\\b \\t \\n \\f \\r \\" \\\\`` short forms, other control characters as
  lowercase ``\\u00xx``, everything else literal);
- lone surrogates are not valid Unicode and are refused.

``loads_strict`` is the reader for bytes that claim to be canonical: it refuses duplicate
member names, floats, ``NaN``/``Infinity``, excessive nesting, and any input that is not
byte-for-byte its own canonical form (so one value has exactly one accepted spelling).
"""

from __future__ import annotations

import json
import json.encoder
import re
from collections.abc import Callable, Mapping, Sequence

from dutyguard.audit.errors import CanonicalizationError

MAX_SAFE_INTEGER = 2**53 - 1
"""Largest integer every JSON implementation reads back exactly (IEEE 754 double)."""

MAX_DEPTH = 32
"""Nesting bound for audit documents; real details are two or three levels deep."""

JSONValue = None | bool | int | str | Sequence["JSONValue"] | Mapping[str, "JSONValue"]

# C implementation of JSON string quoting without ASCII escaping: the same escapes as JCS.
_quote: Callable[[str], str] = json.encoder.encode_basestring


def canonical_str(text: str) -> bytes:
    """One JSON string in canonical form (quoted, escaped, UTF-8)."""
    try:
        return _quote(text).encode("utf-8")
    except UnicodeEncodeError as e:
        raise CanonicalizationError(f"string contains a lone surrogate at index {e.start}") from None


def _utf16_key(item: tuple[str, object]) -> bytes:
    return item[0].encode("utf-16-be", "surrogatepass")


def _encode(value: object, out: list[bytes], depth: int) -> None:
    if depth > MAX_DEPTH:
        raise CanonicalizationError(f"nesting deeper than {MAX_DEPTH}")
    if value is None:
        out.append(b"null")
    elif value is True:
        out.append(b"true")
    elif value is False:
        out.append(b"false")
    elif isinstance(value, str):
        out.append(canonical_str(value))
    elif isinstance(value, int):
        if not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            raise CanonicalizationError(f"integer {value} is outside the interoperable range ±(2**53-1)")
        out.append(str(int(value)).encode("ascii"))
    elif isinstance(value, float):
        raise CanonicalizationError(f"floating-point value {value!r} refused: use an integer or a string")
    elif isinstance(value, Mapping):
        items = list(value.items())
        for k, _ in items:
            if not isinstance(k, str):
                raise CanonicalizationError(f"object key {k!r} is not a string")
        items.sort(key=_utf16_key)
        out.append(b"{")
        for i, (k, v) in enumerate(items):
            if i:
                out.append(b",")
            out.append(canonical_str(k))
            out.append(b":")
            _encode(v, out, depth + 1)
        out.append(b"}")
    elif isinstance(value, list | tuple):
        out.append(b"[")
        for i, v in enumerate(value):
            if i:
                out.append(b",")
            _encode(v, out, depth + 1)
        out.append(b"]")
    else:
        raise CanonicalizationError(f"type {type(value).__name__} has no JSON form")


def _canonical_slow(value: object) -> bytes:
    out: list[bytes] = []
    _encode(value, out, 0)
    return b"".join(out)


# The C encoder with JCS's separators. Its key order (code points) is JCS's (UTF-16 code units)
# whenever no character lies outside the BMP; its output is trusted only when that holds, when no
# integer could be out of range, and when nesting cannot exceed MAX_DEPTH — otherwise the exact
# encoder above decides (and says precisely what is wrong).
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True, allow_nan=False).encode
_NON_BMP_LEADS = (b"\xf0", b"\xf1", b"\xf2", b"\xf3", b"\xf4")  # first bytes of 4-byte UTF-8
_DIGITS_AS_ZERO = bytes.maketrans(b"0123456789", b"0" * 10)
_BIG_NUMBER = re.compile(rb"(?:^|[:,\[])-?\d{16,}(?=[,}\]]|$)")  # a number token of 16+ digits


def _simple(data: bytes) -> bool:
    """True when the C encoder's output is certainly JCS's: nesting within bounds (fewer brackets
    than MAX_DEPTH), no character outside the BMP, no integer that could be out of range. Cheap
    byte scans first; the regex only runs when 16 digits in a row appear somewhere."""
    if data.count(b"[") + data.count(b"{") > MAX_DEPTH:
        return False
    if not data.isascii() and any(lead in data for lead in _NON_BMP_LEADS):
        return False
    return not (b"0" * 16 in data.translate(_DIGITS_AS_ZERO) and _BIG_NUMBER.search(data))


class _Float(Exception):
    pass


def _float_seen(text: str) -> object:
    raise _Float


def canonical_json(value: object) -> bytes:
    """``value`` as RFC 8785 canonical JSON bytes; :class:`CanonicalizationError` if impossible."""
    try:
        out = _dumps(value).encode("utf-8")
        # Reading the output back catches what the C encoder converts silently: floats, non-string
        # keys ("1" for 1), tuples (written as lists). Anything unusual takes the exact path.
        if _simple(out) and json.loads(out, parse_float=_float_seen) == value:
            return out
    except (TypeError, ValueError, RecursionError, UnicodeEncodeError, _Float):
        pass
    return _canonical_slow(value)


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for k, _ in pairs:
            if k in seen:
                raise CanonicalizationError(f"duplicate member name {k!r}")
            seen.add(k)
    return result


def _refuse_float(text: str) -> object:
    raise CanonicalizationError(f"number {text} is not an integer")


def _refuse_constant(text: str) -> object:
    raise CanonicalizationError(f"{text} is not JSON")


def loads_strict(data: bytes) -> object:
    """Parse bytes that must be canonical JSON; anything else raises :class:`CanonicalizationError`.

    Refuses invalid UTF-8, duplicate names, floats, NaN/Infinity, nesting past ``MAX_DEPTH``
    and non-canonical spelling (whitespace, key order, escapes, ``1.0``...).
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CanonicalizationError(f"not UTF-8 at byte {e.start}") from None
    try:
        value = json.loads(text, parse_float=_refuse_float, parse_constant=_refuse_constant)
        # Duplicate names, whitespace, order and escapes all change the re-encoded bytes.
        if _simple(data) and _dumps(value).encode("utf-8") == data:
            return value
        value = json.loads(
            text,
            object_pairs_hook=_no_duplicates,
            parse_float=_refuse_float,
            parse_constant=_refuse_constant,
        )
    except CanonicalizationError:
        raise
    except RecursionError:
        raise CanonicalizationError("nesting too deep") from None
    except UnicodeEncodeError:
        value = json.loads(text)  # parsed once already: only the re-encoding failed
    except ValueError as e:  # JSONDecodeError, and int() past sys.get_int_max_str_digits
        raise CanonicalizationError(f"not JSON: {e}") from None
    if _canonical_slow(value) != data:
        raise CanonicalizationError("not in canonical form (RFC 8785)")
    return value
