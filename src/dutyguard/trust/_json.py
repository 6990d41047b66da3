"""The strict JSON reader for signed payloads.

Payloads are written as canonical JSON (RFC 8785), but a reader does not insist on that
spelling: the signature covers the exact bytes, so re-encoding a multi-megabyte snapshot to
compare would only cost time. What it refuses is what could make two readers see different
values: duplicate member names, numbers with a fraction or exponent, NaN and Infinity.
"""

from __future__ import annotations

import json


class StrictJSONError(ValueError):
    pass


def _pairs(pairs: list[tuple[str, object]]) -> dict[str, object]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for k, _ in pairs:
            if k in seen:
                raise StrictJSONError(f"duplicate member name {k!r}")
            seen.add(k)
    return out


def _no_float(text: str) -> object:
    raise StrictJSONError(f"number {text} is not an integer")


def _no_constant(text: str) -> object:
    raise StrictJSONError(f"{text} is not JSON")


def loads(data: bytes) -> object:
    try:
        return json.loads(data, object_pairs_hook=_pairs, parse_float=_no_float, parse_constant=_no_constant)
    except StrictJSONError:
        raise
    except RecursionError:
        raise StrictJSONError("nesting too deep") from None
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError, int() digit limit
        raise StrictJSONError(f"not JSON: {e}") from None
