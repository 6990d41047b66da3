"""Strict reading of the governance data files (roles, conflict rules, RACI).

These files decide who may do what, so a typo must never widen or silently narrow access:
every mapping declares its allowed keys, every list its element type, duplicates are refused,
and every error names the file, the line and the key path. YAML goes through the bounded
loader of the scanner (alias bombs, depth, duplicate mapping keys) and is never constructed
into Python objects beyond plain scalars.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from importlib import resources
from pathlib import Path
from typing import TypeVar

from dutyguard.core.model import JSONPath, render_path
from dutyguard.errors import ConfigError, InputError
from dutyguard.limits import Limits

MAX_DATA_FILE_BYTES = 1024 * 1024
"""The shipped files are a few kB; a megabyte leaves room for a large organisation's rules."""

_LIMITS = Limits(max_file_bytes=MAX_DATA_FILE_BYTES, max_documents=1, max_nodes=100_000, max_depth=20)

T = TypeVar("T")


class Doc:
    """One parsed data file: its value, and line numbers so errors can point at the key."""

    __slots__ = ("lines", "source", "value")

    def __init__(self, source: str, value: object, lines: Mapping[JSONPath, int]) -> None:
        self.source = source
        self.value = value
        self.lines = lines

    def error(self, path: JSONPath, message: str) -> ConfigError:
        line = None
        probe = path
        while probe and line is None:
            line = self.lines.get(probe)
            probe = probe[:-1]
        where = f"{self.source}:{line}" if line is not None else self.source
        key = render_path(path) or "(top level)"
        return ConfigError(f"{where}: {key}: {message}")

    def mapping(
        self,
        value: object,
        path: JSONPath,
        *,
        required: Collection[str],
        optional: Collection[str] = (),
    ) -> dict[str, object]:
        if not isinstance(value, dict):
            raise self.error(path, f"expected a mapping, got {_kind(value)}")
        allowed = set(required) | set(optional)
        for key in value:
            if key not in allowed:
                raise self.error((*path, key), f"unknown key {key!r} (allowed: {', '.join(sorted(allowed))})")
        for key in required:
            if key not in value:
                raise self.error(path, f"missing required key {key!r}")
        return value

    def string(self, value: object, path: JSONPath, *, max_len: int = 2000) -> str:
        if not isinstance(value, str):
            raise self.error(path, f"expected a string, got {_kind(value)}")
        text = value.strip()
        if not text:
            raise self.error(path, "must not be empty")
        if len(text) > max_len:
            raise self.error(path, f"longer than {max_len} characters")
        if any(ord(c) < 0x20 and c not in "\n\t" for c in text):
            raise self.error(path, "contains control characters")
        return text

    def integer(self, value: object, path: JSONPath, *, lo: int, hi: int) -> int:
        # bool is an int subclass: `yes` must not read as 1
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(path, f"expected an integer, got {_kind(value)}")
        if not lo <= value <= hi:
            raise self.error(path, f"must be between {lo} and {hi}, got {value}")
        return value

    def boolean(self, value: object, path: JSONPath) -> bool:
        if not isinstance(value, bool):
            raise self.error(path, f"expected true or false, got {_kind(value)}")
        return value

    def unique_list(
        self,
        value: object,
        path: JSONPath,
        item: Callable[[object, JSONPath], T],
        *,
        allow_empty: bool = False,
        max_items: int = 1000,
    ) -> tuple[T, ...]:
        if not isinstance(value, list):
            raise self.error(path, f"expected a list, got {_kind(value)}")
        if not value and not allow_empty:
            raise self.error(path, "must not be empty")
        if len(value) > max_items:
            raise self.error(path, f"more than {max_items} items")
        out: list[T] = []
        for i, raw in enumerate(value):
            parsed = item(raw, (*path, i))
            if parsed in out:
                raise self.error((*path, i), f"duplicate entry {raw!r}")
            out.append(parsed)
        return tuple(out)

    def choice(self, value: object, path: JSONPath, parse: Callable[[str], T], what: str) -> T:
        text = self.string(value, path, max_len=200)
        try:
            return parse(text)
        except ValueError:
            raise self.error(path, f"unknown {what} {text!r}") from None


def _kind(value: object) -> str:
    if value is None:
        return "nothing"
    return {
        dict: "a mapping",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "an integer",
        float: "a number",
    }.get(type(value), type(value).__name__)


def parse_text(text: str, source: str) -> Doc:
    """Parse one YAML (or JSON) document strictly; any problem is a :class:`ConfigError` naming ``source``."""
    from dutyguard.sources.yamldoc import load_documents

    if len(text.encode("utf-8", "surrogatepass")) > MAX_DATA_FILE_BYTES:
        raise ConfigError(f"{source}: larger than {MAX_DATA_FILE_BYTES} bytes")
    try:
        docs = load_documents(text, source, _LIMITS)
    except InputError as e:
        raise ConfigError(str(e)) from None
    if len(docs) != 1:
        raise ConfigError(f"{source}: expected exactly one YAML document, found {len(docs)}")
    return Doc(source, docs[0].value, docs[0].lines)


def read_file(path: Path | None, shipped_name: str) -> Doc:
    """Parse ``path``, or the file of that name shipped in ``dutyguard/data`` when ``path`` is None."""
    if path is None:
        ref = resources.files("dutyguard").joinpath("data", shipped_name)
        source = f"dutyguard/data/{shipped_name}"
        try:
            raw = ref.read_bytes()
        except OSError as e:
            raise ConfigError(f"{source}: cannot read the shipped file ({e.strerror or e})") from None
    else:
        source = str(path)
        try:
            with path.open("rb") as fh:
                raw = fh.read(MAX_DATA_FILE_BYTES + 1)
        except OSError as e:
            raise ConfigError(f"{source}: cannot read ({e.strerror or e})") from None
    if len(raw) > MAX_DATA_FILE_BYTES:
        raise ConfigError(f"{source}: larger than {MAX_DATA_FILE_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{source}: not UTF-8 (byte {e.start})") from None
    return parse_text(text, source)
