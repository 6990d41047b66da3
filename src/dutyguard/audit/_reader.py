"""Reading an export (bounded lines, errors that name ``file:line``) and the trust state built
from its checkpoints; shared by the fast pass (``verify``) and the diagnosis (``_diagnose``)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import BinaryIO, Final

from dutyguard.audit.checkpoint import Checkpoint, SignedCheckpoint
from dutyguard.audit.entry import MAX_LEAF_BYTES
from dutyguard.audit.errors import ExportFormatError
from dutyguard.audit.report import Problem, ProblemKind
from dutyguard.audit.signing import Verifier
from dutyguard.errors import LimitExceeded

MAX_LINE: Final = MAX_LEAF_BYTES + 256
CHUNK: Final = 1 << 20
EXPORT_FORMAT: Final = "dutyguard.audit.export/v1"


def lines(f: BinaryIO, source: str, first_lineno: int = 0) -> Iterator[tuple[int, bytes]]:
    lineno, rest = first_lineno, b""
    while True:
        chunk = f.read(CHUNK)
        if not chunk:
            break
        parts = (rest + chunk if rest else chunk).split(b"\n")
        rest = parts.pop()
        if len(rest) > MAX_LINE:
            raise LimitExceeded(f"{source}:{lineno + len(parts) + 1}", f"line longer than {MAX_LINE} bytes")
        for p in parts:
            lineno += 1
            if len(p) > MAX_LINE:
                raise LimitExceeded(f"{source}:{lineno}", f"line longer than {MAX_LINE} bytes")
            yield lineno, p
    if rest:
        yield lineno + 1, rest


def format_error(source: str, lineno: int, reason: str, line: bytes) -> ExportFormatError:
    if line.endswith(b"\r"):
        reason += " (the line ends with CR: was the file converted to CRLF line endings?)"
    return ExportFormatError(f"{source}:{lineno}", reason)


@dataclass(slots=True)
class Trust:
    keys: Mapping[str, Verifier]
    trusted: dict[int, list[Checkpoint]]
    problems: list[Problem]
    total: int = 0


def add_checkpoint(trust: Trust, sc: SignedCheckpoint, where: str, line: int | None) -> None:
    trust.total += 1
    reason = sc.verify(trust.keys)
    cp = sc.checkpoint
    if reason is not None:
        trust.problems.append(
            Problem(ProblemKind.BAD_CHECKPOINT, None, None, f"{where} at size {cp.size}: {reason}", line)
        )
        return
    same = trust.trusted.setdefault(cp.size, [])
    if cp in same:
        return
    for other in same:
        if (other.head, other.root) != (cp.head, cp.root):
            trust.problems.append(
                Problem(
                    ProblemKind.REWRITTEN,
                    None,
                    None,
                    f"two validly signed checkpoints at size {cp.size} disagree (signed {other.ts} and {cp.ts}): "
                    "the signer was made to sign two different histories",
                    line,
                )
            )
    same.append(cp)


def truncation(trust: Trust, last: int, announced_last: int) -> list[Problem]:
    out = []
    beyond = [cp for size, cps in trust.trusted.items() if size > last for cp in cps]
    if beyond:
        cp = max(beyond, key=lambda c: c.size)
        out.append(
            Problem(
                ProblemKind.TRUNCATED,
                last + 1,
                cp.size,
                f"the log ends at entry {last} but a checkpoint signed {cp.ts} covers {cp.size} entries",
            )
        )
    elif announced_last > last:
        out.append(
            Problem(
                ProblemKind.TRUNCATED,
                last + 1,
                announced_last,
                f"the export ends at entry {last} but its header announces {announced_last}: the file was cut short",
            )
        )
    return out
