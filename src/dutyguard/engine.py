"""A scan: discover inputs, let every source read them, evaluate, collect suppression requests.

This is the application layer; the decision itself is :class:`dutyguard.core.evaluate.Evaluator`.
Only the sources whose resources some enabled rule reads are run, so a secrets-only policy
never parses YAML. A big scan is shared out to forked workers (:mod:`dutyguard.parallel`), which
send back plain tuples (``marshal``: an order of magnitude cheaper than pickling 14,000 finding
objects); the report is identical whichever way it was computed.
"""

from __future__ import annotations

import contextlib
import marshal
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Protocol

from dutyguard import parallel
from dutyguard.core.evaluate import Evaluator
from dutyguard.core.model import (
    Finding,
    Location,
    ScanError,
    ScanReport,
    ScanStats,
    Severity,
    SuppressionRequest,
)
from dutyguard.core.policy import Policy
from dutyguard.core.resource import Resource
from dutyguard.core.rule import RuleRegistry
from dutyguard.core.scanwide import ScanWide, TaggedFact, collect, evaluate_wide, wide_types
from dutyguard.errors import DutyguardError, InputError
from dutyguard.limits import Limits
from dutyguard.sources.discover import Pending, Planned, Skipped, plan
from dutyguard.sources.interface import InputFile, Source
from dutyguard.suppressions import detect_suppressions

Progress = Callable[[str], None]

PARALLEL_MIN_FILES = 64
PARALLEL_MIN_BYTES = 512 * 1024
"""Below both, forking costs more than a second core saves (a few ms per worker)."""


@dataclass(slots=True)
class _Outcome:
    """What one input produced."""

    name: str
    findings: list[Finding] = field(default_factory=list)
    errors: list[ScanError] = field(default_factory=list)
    suppressions: list[SuppressionRequest] = field(default_factory=list)
    files: int = 0
    resources: int = 0
    skipped: int = 0
    facts: list[TaggedFact] = field(default_factory=list)
    """What scan-wide rules keep of this input (:mod:`dutyguard.core.scanwide`)."""


class ResourceScope(Protocol):
    """What a scan's policy governs (a signed bundle's scope), checked before anything is evaluated.

    Called wherever an input is read (maybe in a forked worker): it must be a pure function of
    its arguments."""

    @property
    def reads(self) -> type[Resource] | None:
        """A resource type to read even when no enabled rule reads it (the check needs it)."""
        ...

    def split(self, source: str, resources: list[Resource]) -> tuple[list[Resource], ScanError | None]:
        """The resources the policy governs, and an error naming the others (it fails the scan);
        those are never evaluated."""
        ...


@dataclass(frozen=True, slots=True)
class Scanner:
    registry: RuleRegistry
    sources: tuple[Source, ...]
    policy: Policy
    limits: Limits
    scope: ResourceScope | None = None

    def scan(
        self,
        paths: Sequence[str],
        stdin: BinaryIO | None = None,
        progress: Progress | None = None,
        jobs: int = 1,
    ) -> ScanReport:
        """``jobs`` > 1 lets a large scan use that many processes (see :mod:`dutyguard.parallel`)."""
        evaluator = Evaluator(self.registry, self.policy)
        wide = wide_types(self.registry, evaluator)
        wide_reads = {w.reads for w in wide}
        if self.scope is not None and self.scope.reads is not None:
            wide_reads.add(self.scope.reads)
        sources = tuple(
            s
            for s in self.sources
            if s.produces is None or evaluator.reads(s.produces) or s.produces in wide_reads
        )
        items = list(plan(paths, self.limits, stdin))
        sizes = [_size(i) for i in items]
        workers = min(jobs, len(items))
        if workers > 1 and (len(items) >= PARALLEL_MIN_FILES or sum(sizes) >= PARALLEL_MIN_BYTES):
            outcomes = self._forked(items, sizes, workers, evaluator, sources, wide, progress)
        else:
            outcomes = [self._one(i, evaluator, sources, wide, progress) for i in items]
        return self._report(outcomes, evaluator, wide)

    def _forked(
        self,
        items: list[Planned],
        sizes: list[int],
        workers: int,
        evaluator: Evaluator,
        sources: tuple[Source, ...],
        wide: tuple[type[ScanWide], ...],
        progress: Progress | None,
    ) -> list[_Outcome]:
        shares = parallel.share_out(sizes, workers)
        if not parallel.can_fork():
            return [self._one(i, evaluator, sources, wide, progress) for i in items]

        # With a progress display, workers count the inputs they finish in shared memory and
        # this process reports them as they go (not all at once when a worker is done).
        tally = parallel.Tally(len(shares)) if progress is not None else None
        shown = [0] * len(shares)

        def catch_up() -> None:
            assert tally is not None
            assert progress is not None
            for k in range(1, len(shares)):
                done = min(tally.get(k), len(shares[k]))  # read once: the worker keeps counting
                for j in range(shown[k], done):
                    progress(_name(items[shares[k][j]]))
                shown[k] = max(shown[k], done)

        def run(share: list[int], report: Progress | None, slot: int = 0) -> list[_Outcome]:
            out = []
            for i in share:
                out.append(self._one(items[i], evaluator, sources, wide, report))
                if tally is not None:
                    if slot:
                        tally.add(slot)
                    else:
                        catch_up()
            return out

        mine, theirs = parallel.fork_map(
            shares,
            lambda slot, share: _encode(run(share, None, slot)),
            lambda share: run(share, progress),
            catch_up if tally is not None else None,
        )
        if tally is not None:
            catch_up()
        outcomes: list[_Outcome | None] = [None] * len(items)
        for i, o in zip(shares[0], mine, strict=True):
            outcomes[i] = o
        for share, payload in zip(shares[1:], theirs, strict=True):
            got: list[_Outcome] | None = None
            if payload is not None:
                with contextlib.suppress(ValueError, EOFError, TypeError):
                    got = _decode(payload, None if tally is not None else progress)
            if got is None or len(got) != len(share):
                # A worker that died (or whose result does not read back) is redone here:
                # slower, never an input dropped.
                got = run(share, None if tally is not None else progress)
            for i, o in zip(share, got, strict=True):
                outcomes[i] = o
        return [o for o in outcomes if o is not None]

    def _one(
        self,
        item: Planned,
        evaluator: Evaluator,
        sources: tuple[Source, ...],
        wide: tuple[type[ScanWide], ...],
        progress: Progress | None,
    ) -> _Outcome:
        if isinstance(item, Pending):
            item = item.read(self.limits)
        if isinstance(item, Skipped):
            return _Outcome(item.name, skipped=1)
        if isinstance(item, InputError):
            return _Outcome(item.source, errors=[ScanError(item.source, item.diagnostics())])
        if progress is not None:
            progress(item.name)
        out = _Outcome(item.name, files=1)
        resources, out.errors = self.read(item, sources)
        out.resources = len(resources)
        if self.scope is not None:
            resources, refused = self.scope.split(item.name, resources)
            if refused is not None:
                out.errors.append(refused)
        out.facts = collect(wide, resources)
        ev = evaluator.evaluate(resources)
        out.findings = list(ev.findings)
        out.errors.extend(ev.errors)
        if not item.is_binary:
            out.suppressions = detect_suppressions(item, self.registry)
        return out

    def _report(
        self, outcomes: list[_Outcome], evaluator: Evaluator, wide: tuple[type[ScanWide], ...]
    ) -> ScanReport:
        findings = [f for o in outcomes for f in o.findings]
        errors = [e for o in outcomes for e in o.errors]
        if wide:  # after every input, in input order: the same whichever worker read what
            ev = evaluate_wide(evaluator, wide, (f for o in outcomes for f in o.facts))
            findings.extend(ev.findings)
            errors.extend(ev.errors)
        findings.sort(key=lambda f: (-f.severity.rank, f.location.file, f.location.line or 0, f.rule_id))
        return ScanReport(
            findings=tuple(findings),
            suppression_requests=tuple(s for o in outcomes for s in o.suppressions),
            errors=tuple(errors),
            stats=ScanStats(
                files=sum(o.files for o in outcomes),
                resources=sum(o.resources for o in outcomes),
                skipped=sum(o.skipped for o in outcomes),
            ),
            fail_on=self.policy.fail_on,
            pss_level=self.policy.pss_level.value,
            policy_source=self.policy.source,
            block_overrides=self.policy.block_overrides,
        )

    def read(
        self, f: InputFile, sources: tuple[Source, ...] | None = None
    ) -> tuple[list[Resource], list[ScanError]]:
        resources: list[Resource] = []
        errors: list[ScanError] = []
        for source in self.sources if sources is None else sources:
            if not source.wants(f):
                continue
            try:
                resources.extend(source.load(f, self.limits))
            except DutyguardError as e:
                errors.append(ScanError(f.name, e.diagnostics()))
        return resources, errors


def _name(item: Planned) -> str:
    return item.source if isinstance(item, InputError) else item.name


def _size(item: Planned) -> int:
    if isinstance(item, Pending):
        return item.size
    if isinstance(item, InputFile):
        return len(item.data)
    return 0


# The wire form between a worker and this process: tuples of str/int/None only.
_SEVERITY = {s.value: s for s in Severity}


def _encode(outcomes: list[_Outcome]) -> bytes:
    rows: list[Any] = []
    for o in outcomes:
        rows.append(
            (
                o.name,
                [
                    (
                        f.rule_id,
                        f.title,
                        f.severity.value,
                        f.message,
                        f.remediation,
                        f.controls,
                        tuple(_location(f.location)),
                        f.fingerprint,
                        f.tags,
                    )
                    for f in o.findings
                ],
                [(e.source, e.message) for e in o.errors],
                [
                    (s.file, s.line, s.syntax, s.targets, s.matched_rules, s.reason, s.text)
                    for s in o.suppressions
                ],
                o.files,
                o.resources,
                o.skipped,
                o.facts,
            )
        )
    return marshal.dumps(rows)


def _location(loc: Location) -> tuple[Any, ...]:
    return (loc.file, loc.line, loc.kind, loc.namespace, loc.name, loc.container, loc.field)


def _decode(payload: bytes, progress: Progress | None) -> list[_Outcome]:
    out: list[_Outcome] = []
    # Written by our own forked child into a memory file only it and we hold: not input data.
    rows = marshal.loads(payload)  # noqa: S302
    for name, findings, errors, suppressions, files, resources, skipped, facts in rows:
        if progress is not None and files:
            progress(name)
        out.append(
            _Outcome(
                name,
                [
                    Finding(rid, title, _SEVERITY[sev], msg, fix, controls, Location(*loc), fp, tags)
                    for rid, title, sev, msg, fix, controls, loc, fp, tags in findings
                ],
                [ScanError(*e) for e in errors],
                [SuppressionRequest(*s) for s in suppressions],
                files,
                resources,
                skipped,
                facts,
            )
        )
    return out
