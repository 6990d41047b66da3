"""The second pass: only when the fast pass found something, name every tampering and the
sequence numbers it touches. Every line is parsed; the evidence (recomputed hashes, recorded
hashes, links, sequence numbers, file order, checkpoint roots) is combined as documented in
``dutyguard.audit.verify``. Evidence an attacker controls only ever explains a failure.
"""

from __future__ import annotations

import hashlib
import json
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import BinaryIO, Final

from dutyguard.audit import merkle
from dutyguard.audit._reader import Trust, format_error, lines, truncation
from dutyguard.audit.entry import GENESIS, chain_prefix, parse_leaf
from dutyguard.audit.errors import AuditError
from dutyguard.audit.report import Problem, ProblemKind, VerifyReport, sort_problems

_SEARCH_WINDOW: Final = 256
"""How far from its place a renumbered entry is looked for (once per run of renumbered entries)."""
_SEARCH_BUDGET: Final = 200_000
"""Rehash attempts spent on that search in total, so a file of garbage cannot make it quadratic."""


@dataclass(slots=True)
class _Rec:
    pos: int
    line: int
    seq: int
    prev: str
    h: str
    stored: str
    leaf: bytes
    malformed: str | None
    orig: int = 0
    moved: bool = False
    edited: bool = False
    genuine: bool = True


def _parse_entry_line(lineno: int, line: bytes, source: str, pos: int) -> _Rec:
    if not line.startswith(b'{"hash":'):
        raise format_error(source, lineno, 'not an entry line (expected {"hash":…,"leaf":…})', line)
    try:
        text = line.decode("utf-8")
        stored, end = json.JSONDecoder().raw_decode(text, len('{"hash":'))
    except (UnicodeDecodeError, ValueError):
        raise format_error(source, lineno, "not an entry line (malformed hash)", line) from None
    if not isinstance(stored, str) or not text.startswith(',"leaf":', end) or not text.endswith("}"):
        raise format_error(source, lineno, 'not an entry line (expected {"hash":"…","leaf":{…}})', line)
    leaf = text[end + len(',"leaf":') : -1].encode("utf-8")
    malformed = None
    try:
        entry = parse_leaf(leaf)
        seq, prev = entry.seq, entry.prev_hash
    except AuditError as e:
        malformed = str(e)
        try:
            doc = json.loads(leaf)
            seq, prev = doc["chain"]["seq"], doc["chain"]["prev"]
        except (ValueError, KeyError, TypeError, RecursionError):
            raise format_error(source, lineno, f"entry is not readable ({e})", line) from None
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1 or not isinstance(prev, str):
            raise format_error(source, lineno, f"entry has no valid chain position ({e})", line) from None
    h = hashlib.sha256(b"\x00" + leaf).hexdigest()
    # The leaf is kept only where a renumbering search may need it: memory stays per-entry small.
    return _Rec(pos, lineno, seq, prev, h, stored, leaf if h != stored else b"", malformed)


def _lis(seqs: Sequence[int]) -> set[int]:
    """Indexes of one longest strictly increasing subsequence (patience sorting, O(n log n))."""
    tails: list[int] = []
    tail_idx: list[int] = []
    parent = [-1] * len(seqs)
    for i, s in enumerate(seqs):
        k = bisect_left(tails, s)
        if k == len(tails):
            tails.append(s)
            tail_idx.append(i)
        else:
            tails[k] = s
            tail_idx[k] = i
        parent[i] = tail_idx[k - 1] if k else -1
    out: set[int] = set()
    i = tail_idx[-1] if tail_idx else -1
    while i != -1:
        out.add(i)
        i = parent[i]
    return out


def _rehash(r: _Rec, seq: int) -> str | None:
    p = chain_prefix(r.prev.encode("ascii", "replace"), r.seq)
    if not r.leaf.startswith(p):
        return None
    return hashlib.sha256(
        b"\x00" + chain_prefix(r.prev.encode("ascii", "replace"), seq) + r.leaf[len(p) :]
    ).hexdigest()


def _find_seq(r: _Rec, candidates: Iterable[int]) -> int | None:
    """The sequence number under which ``r``'s content hashes to its recorded hash, if any."""
    for c in candidates:
        if c >= 1 and c != r.seq and _rehash(r, c) == r.stored:
            return c
    return None


def diagnose_file(
    f: BinaryIO, source: str, trust: Trust, announced_last: int, positions: bool, last_cp_line: int
) -> VerifyReport:
    recs: list[_Rec] = []
    for lineno, line in lines(f, source):
        if lineno <= last_cp_line:
            continue
        recs.append(_parse_entry_line(lineno, line, source, len(recs)))
    problems = list(trust.problems)
    problems.extend(_diagnose(recs, trust, positions))
    present = max((r.orig for r in recs if r.genuine), default=0)
    problems.extend(truncation(trust, present, announced_last))
    leaves = [bytes.fromhex(r.h) for r in sorted(recs, key=lambda r: (r.seq, r.pos))]
    roots = _roots_at(leaves, trust.trusted)
    matched = 0
    for size in sorted(trust.trusted):
        if size in roots and all(
            cp.root == roots[size] and cp.head == leaves[size - 1].hex() for cp in trust.trusted[size]
        ):
            matched = size
        else:
            break
    problems = _merge(sort_problems(problems))
    return VerifyReport(
        source=source,
        entries=len(recs),
        last_seq=max((r.seq for r in recs), default=0),
        head=leaves[-1].hex() if leaves else None,
        root=merkle.root(leaves).hex() if leaves else None,
        checkpoints=trust.total,
        checkpoints_verified=sum(len(v) for v in trust.trusted.values()),
        signed_size=matched,
        latest_signed=max(trust.trusted[matched], key=lambda c: c.ts) if matched else None,
        problems=tuple(problems),
    )


def _diagnose(recs: list[_Rec], trust: Trust, positions: bool) -> list[Problem]:
    out: list[Problem] = []

    def at(r: _Rec) -> int | None:
        return r.line if positions else None

    # 1. Lines out of order in the file (a database export is in primary-key order by construction).
    counts = Counter(r.seq for r in recs)
    in_order = _lis([r.seq for r in recs])
    for i, r in enumerate(recs):
        if i not in in_order and counts[r.seq] == 1:
            out.append(
                Problem(ProblemKind.REORDERED, r.seq, r.seq, "out of sequence order in the file", at(r))
            )

    # 2. Content: intact, renumbered (hashes to its recorded hash under another seq), or edited.
    by_recorded: dict[str, _Rec] = {}
    for r in recs:
        by_recorded.setdefault(r.stored, r)
    budget = _SEARCH_BUDGET
    offset = 0  # the shift of the last renumbered entry: runs are usually shifted alike
    for r in sorted(recs, key=lambda r: (r.seq, r.pos)):
        r.orig = r.seq
        if r.malformed is not None:
            r.edited = True
            continue
        if r.h == r.stored:
            continue
        candidates: list[int] = []
        if r.prev == GENESIS:
            candidates.append(1)
        p = by_recorded.get(r.prev)
        if p is not None and p is not r:
            candidates.append((p.orig or p.seq) + 1)
        if offset:
            candidates.append(r.seq + offset)
        found = _find_seq(r, candidates)
        if found is None:
            window = min(_SEARCH_WINDOW, budget // 2)
            budget -= 2 * window
            found = _find_seq(r, (r.seq + d * sign for d in range(1, window + 1) for sign in (1, -1)))
        if found is None:
            r.edited = True
        else:
            r.orig, r.moved, offset = found, True, found - r.seq

    # 3. Two entries for one position: the one a later entry links to is genuine.
    refs = {r.prev for r in recs}
    groups: dict[int, list[_Rec]] = {}
    for r in recs:
        groups.setdefault(r.orig, []).append(r)
    for group in groups.values():
        if len(group) < 2:
            continue
        ranked = sorted(group, key=lambda r: (r.stored not in refs, r.edited, r.pos))
        for r in ranked[1:]:
            r.genuine = False
            out.append(
                Problem(
                    ProblemKind.INSERTED,
                    r.seq,
                    r.seq,
                    f"a second entry for position {r.orig} that no later entry links to",
                    at(r),
                )
            )

    # 4. Walk the genuine chain in written order.
    chain = sorted((r for r in recs if r.genuine), key=lambda r: r.orig)
    expected = 1
    before: _Rec | None = None
    for r in chain:
        if r.orig > expected:
            out.append(
                Problem(
                    ProblemKind.DELETED,
                    expected,
                    r.orig - 1,
                    "missing: no entry has these sequence numbers",
                    at(r),
                )
            )
        if r.malformed is not None:
            out.append(
                Problem(
                    ProblemKind.EDITED, r.seq, r.seq, f"altered into an invalid entry ({r.malformed})", at(r)
                )
            )
        elif r.edited:
            out.append(
                Problem(
                    ProblemKind.EDITED,
                    r.seq,
                    r.seq,
                    "content no longer matches the hash recorded for it",
                    at(r),
                )
            )
        elif r.moved:
            out.append(
                Problem(
                    ProblemKind.REORDERED,
                    r.seq,
                    r.seq,
                    f"renumbered: written as entry {r.orig}",
                    at(r),
                    written_as=r.orig,
                )
            )
        if r.orig == 1:
            if r.prev != GENESIS and not r.edited:
                out.append(
                    Problem(
                        ProblemKind.EDITED,
                        r.seq,
                        r.seq,
                        "the first entry does not start from the genesis hash",
                        at(r),
                    )
                )
        elif (
            before is not None
            and before.orig == r.orig - 1
            and not r.edited
            and not before.edited
            and r.prev != before.stored
        ):
            out.append(
                Problem(
                    ProblemKind.EDITED,
                    before.seq,
                    before.seq,
                    f"does not match the hash entry {r.orig} recorded for it (its own hash was recomputed)",
                    at(before),
                )
            )
        expected = r.orig + 1
        before = r

    # 5. A chain consistent in itself but not with a signature: all hashes were recomputed.
    if not any(p.seq is not None for p in out):
        leaves = [bytes.fromhex(r.h) for r in chain]
        roots = _roots_at(leaves, trust.trusted)
        good = 0
        for size in sorted(trust.trusted):
            if size > len(leaves):
                break
            if all(cp.root == roots[size] for cp in trust.trusted[size]):
                good = size
                continue
            out.append(
                Problem(
                    ProblemKind.REWRITTEN,
                    good + 1,
                    size,
                    f"the chain holds together but differs from the checkpoint signed at size {size}"
                    + (f" (the one at size {good} still matches)" if good else ""),
                    at(chain[good]) if good < len(chain) else None,
                )
            )
            break
    return out


def _merge(problems: list[Problem]) -> list[Problem]:
    """Collapse runs (consecutive seqs, same kind and detail) into one range problem."""
    out: list[Problem] = []
    for p in problems:
        last = out[-1] if out else None
        if (
            last is not None
            and p.seq is not None
            and last.seq is not None
            and p.kind == last.kind
            and p.kind in (ProblemKind.EDITED, ProblemKind.REORDERED, ProblemKind.INSERTED)
            and p.seq == (last.last_seq or last.seq) + 1
            and _shape(p) == _shape(last)
        ):
            if p.written_as is not None and last.written_as is not None:
                detail = f"renumbered: written as entries {last.written_as}..{p.written_as}"
            else:
                detail = last.detail
            out[-1] = replace(last, last_seq=p.seq, detail=detail)
            continue
        out.append(p)
    return out


def _shape(p: Problem) -> str:
    if p.written_as is not None and p.seq is not None:
        return f"moved{p.written_as - p.seq}"
    return p.detail


def _roots_at(leaves: Sequence[bytes], sizes: Iterable[int]) -> dict[int, str]:
    """Merkle roots of the first ``size`` leaves for every wanted size, in one pass."""
    wanted = sorted(s for s in set(sizes) if 0 < s <= len(leaves))
    out: dict[int, str] = {}
    f = merkle.Frontier()
    i = 0
    for size in wanted:
        while f.size < size:
            f.append(leaves[i])
            i += 1
        out[size] = f.root().hex()
    return out
