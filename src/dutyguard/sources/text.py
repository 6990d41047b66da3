"""Any file as text, for the secret rules.

Every input is offered to this source (secrets hide in any file), with these deliberate rules:

- binary files (a NUL byte in the first 8 KiB) are not searched. They still become a
  :class:`TextFile` with no content so that rules that look only at the *name* (a ``.p12``
  key store committed to the tree) can fire;
- a text file larger than ``limits.max_secret_scan_bytes`` is an error naming the file: it is
  never half-searched silently;
- invalid UTF-8 is decoded with replacement characters, so one bad byte does not hide the
  rest of the file (and does not crash the scan);
- rendered kustomize output is not searched: its member files are, under their own names and
  lines, and searching the rendering as well would report every secret twice.

Offsets are byte offsets into the UTF-8 text, like Go's regexp (which gitleaks rules are
written for); lines are counted only when a rule reports something.
"""

from __future__ import annotations

import os
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from dutyguard.core.model import JSONPath, Location
from dutyguard.core.resource import Resource
from dutyguard.limits import Limits
from dutyguard.sources.interface import InputFile, Source

if TYPE_CHECKING:
    from dutyguard.core.rule import Violation

T = TypeVar("T")

_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True, slots=True, eq=False)
class TextFile(Resource):
    """One file's text. ``data`` is valid UTF-8; violations carry a byte offset as their path."""

    file: str
    data: bytes = field(repr=False)
    """Never in a repr: it may hold secrets, and reprs end up in logs and tracebacks."""
    binary: bool = False
    """The file is binary: only its name is known (``data`` is empty)."""
    replaced: bool = False
    """Invalid UTF-8 was replaced by U+FFFD before scanning."""
    _memo: dict[object, object] = field(default_factory=dict, init=False, repr=False, compare=False)
    """Values derived from ``data`` (lower-cased text, line starts, per-rule matches).

    A pure cache: every entry is a function of the immutable content, so two threads racing
    to fill it compute the same value.
    """

    # --- Resource -----------------------------------------------------------------------------
    @property
    def source(self) -> str:
        return self.file

    def locate(self, path: JSONPath, container: str | None = None) -> Location:
        if path and isinstance(path[0], int):
            return Location(file=self.file, line=self.line_of(path[0]))
        return Location(file=self.file)

    def identity(self) -> tuple[str, ...]:
        return (self.file,)

    def fingerprint_parts(self, violation: Violation) -> tuple[str, ...]:
        # The secret's digest, not its offset: moving a secret keeps its fingerprint.
        return (violation.key,)

    # --- text ---------------------------------------------------------------------------------
    def memo(self, key: object, compute: Callable[[], T]) -> T:
        """``compute()`` once per key for this file (see ``_memo``)."""
        try:
            return self._memo[key]  # type: ignore[return-value]
        except KeyError:
            value = compute()
            self._memo[key] = value
            return value

    @property
    def path(self) -> str:
        """The file name with ``/`` separators, as path patterns expect."""
        return self.file.replace(os.sep, "/") if os.sep != "/" else self.file

    @property
    def lower(self) -> bytes:
        """ASCII-lower-cased content, for keyword prefiltering."""
        return self.memo("lower", self.data.lower)

    def _line_starts(self) -> list[int]:
        def compute() -> list[int]:
            starts = [0]
            find = self.data.find
            i = find(b"\n")
            while i >= 0:
                starts.append(i + 1)
                i = find(b"\n", i + 1)
            return starts

        return self.memo("line-starts", compute)

    def line_of(self, offset: int) -> int:
        """1-based line holding byte ``offset``."""
        return bisect_right(self._line_starts(), offset)

    def line_span(self, start: int, end: int) -> tuple[int, int]:
        """Byte span of the lines holding ``[start, end)``, without the final newline."""
        starts = self._line_starts()
        last = bisect_right(starts, max(end - 1, start))
        line_end = starts[last] - 1 if last < len(starts) else len(self.data)
        return starts[bisect_right(starts, start) - 1], line_end


class TextSource(Source):
    name = "text"
    reads_streams = True
    produces = TextFile

    def accepts(self, filename: str) -> bool:
        return True

    def wants(self, f: InputFile) -> bool:
        return f.origin != "kustomize"

    def _load(self, f: InputFile, limits: Limits) -> Sequence[Resource]:
        if f.is_binary:
            return [TextFile(file=f.name, data=b"", binary=True)]
        f.check_size(limits.max_secret_scan_bytes, "secret scanning")
        data = f.data[3:] if f.data.startswith(_BOM) else f.data
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            return [TextFile(file=f.name, data=data.decode("utf-8", "replace").encode(), replaced=True)]
        return [TextFile(file=f.name, data=data)]
