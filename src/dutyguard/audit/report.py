"""What a verification found: the report types shared by the verifier and its diagnosis."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field

from dutyguard.audit.checkpoint import Checkpoint


class ProblemKind(enum.StrEnum):
    EDITED = "edited"
    DELETED = "deleted"
    INSERTED = "inserted"
    REORDERED = "reordered"
    TRUNCATED = "truncated"
    REWRITTEN = "rewritten"
    BAD_CHECKPOINT = "bad_checkpoint"


@dataclass(frozen=True, slots=True)
class Problem:
    """One finding. ``seq``..``last_seq`` are the sequence numbers it concerns (``None`` when it
    concerns no entry); ``line`` is the first export line involved (``None`` for a database)."""

    kind: ProblemKind
    seq: int | None
    last_seq: int | None
    detail: str
    line: int | None = None
    written_as: int | None = None
    """For renumbered entries: the sequence number the entry was written with."""

    @property
    def message(self) -> str:
        if self.seq is None:
            where = "log"
        elif self.last_seq is None or self.last_seq == self.seq:
            where = f"entry {self.seq}"
        else:
            where = f"entries {self.seq}..{self.last_seq}"
        if self.line is None:
            at = ""
        elif self.kind is ProblemKind.DELETED:
            at = f" (before line {self.line})"
        else:
            at = f" (line {self.line})"
        return f"{where}{at}: {self.kind.value}: {self.detail}"

    def to_json(self) -> dict[str, object]:
        return {
            "kind": self.kind.value,
            "seq": self.seq,
            "last_seq": self.last_seq if self.last_seq is not None else self.seq,
            "line": self.line,
            "written_as": self.written_as,
            "detail": self.detail,
            "message": self.message,
        }


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """The verdict. ``ok`` only when nothing at all was found; fail closed otherwise."""

    source: str
    entries: int
    last_seq: int
    head: str | None
    root: str | None
    checkpoints: int
    checkpoints_verified: int
    signed_size: int
    """Entries covered by the largest trusted checkpoint that matched (0: none)."""
    latest_signed: Checkpoint | None
    problems: tuple[Problem, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def unsigned_entries(self) -> int:
        """Entries after the latest matching trusted checkpoint: only the chain protects them."""
        return max(0, self.entries - self.signed_size)

    @property
    def first_bad_seq(self) -> int | None:
        seqs = [p.seq for p in self.problems if p.seq is not None]
        return min(seqs) if seqs else None

    def tampered(self) -> list[tuple[ProblemKind, int, int]]:
        """``(kind, first seq, last seq)`` for every problem that concerns entries."""
        return [(p.kind, p.seq, p.last_seq or p.seq) for p in self.problems if p.seq is not None]

    def to_json(self) -> dict[str, object]:
        return {
            "source": self.source,
            "ok": self.ok,
            "entries": self.entries,
            "last_seq": self.last_seq,
            "head": self.head,
            "root": self.root,
            "checkpoints": self.checkpoints,
            "checkpoints_verified": self.checkpoints_verified,
            "signed_size": self.signed_size,
            "unsigned_entries": self.unsigned_entries,
            "latest_signed_checkpoint": None if self.latest_signed is None else self.latest_signed.payload(),
            "first_bad_seq": self.first_bad_seq,
            "problems": [p.to_json() for p in self.problems],
        }


def sort_problems(problems: Iterable[Problem]) -> list[Problem]:
    """By first sequence number (problems about no entry last), then kind."""
    order = list(ProblemKind)
    return sorted(problems, key=lambda p: (p.seq is None, p.seq or 0, order.index(p.kind), p.line or 0))
