"""Typed, total accessors for untrusted JSON-like data.

Manifests arrive as plain dicts/lists from YAML or an AdmissionReview. These helpers never
raise on a wrong type: they return ``None`` (or empty), and rules decide what a wrong type
means (for security fields: a violation, since only the safe values are allowed).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

from dutyguard.core.model import JSONPath

JSONMap = Mapping[str, object]
_MISSING = object()


def as_map(value: object) -> JSONMap | None:
    # Exact-type check first: parsed documents are plain dicts, and the ABC check is slow on
    # the hot path (every rule reads dozens of fields per object).
    if type(value) is dict:
        return value
    return value if isinstance(value, Mapping) else None


def as_list(value: object) -> Sequence[object] | None:
    if type(value) is list:
        return value
    return value if isinstance(value, list | tuple) else None


def as_str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def get(doc: object, path: JSONPath) -> object:
    """The value at ``path`` or ``None`` when any step is missing or of the wrong type."""
    cur = doc
    for part in path:
        if isinstance(part, int):
            seq = as_list(cur)
            if seq is None or not -len(seq) <= part < len(seq):
                return None
            cur = seq[part]
        else:
            m = as_map(cur)
            if m is None:
                return None
            cur = m.get(part)
    return cur


def has(doc: object, path: JSONPath) -> bool:
    """True when the key at ``path`` is present (even if its value is null)."""
    if not path:
        return True
    parent = get(doc, path[:-1])
    last = path[-1]
    if isinstance(last, int):
        seq = as_list(parent)
        return seq is not None and -len(seq) <= last < len(seq)
    m = as_map(parent)
    return m is not None and last in m


def items(doc: object, path: JSONPath) -> Iterator[tuple[int, object]]:
    """Index and value of each element of the list at ``path`` (nothing when absent)."""
    seq = as_list(get(doc, path))
    if seq is not None:
        yield from enumerate(seq)
