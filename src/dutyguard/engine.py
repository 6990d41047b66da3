"""A scan: discover inputs, let every source read them, evaluate, collect suppression requests.

This is the application layer; the decision itself is :class:`dutyguard.core.evaluate.Evaluator`.
Only the sources whose resources some enabled rule reads are run, so a secrets-only policy
never parses YAML. (Forking workers per core was measured slower on the 1,000-file corpora:
pickling 14k findings back costs more than the second core saves; see docs/benchmarks.md.)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import BinaryIO

from dutyguard.core.evaluate import Evaluator
from dutyguard.core.model import Finding, ScanError, ScanReport, ScanStats, SuppressionRequest
from dutyguard.core.policy import Policy
from dutyguard.core.resource import Resource
from dutyguard.core.rule import RuleRegistry
from dutyguard.errors import DutyguardError, InputError
from dutyguard.limits import Limits
from dutyguard.sources.discover import Skipped, discover
from dutyguard.sources.interface import InputFile, Source
from dutyguard.suppressions import detect_suppressions

Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class Scanner:
    registry: RuleRegistry
    sources: tuple[Source, ...]
    policy: Policy
    limits: Limits

    def scan(
        self, paths: Sequence[str], stdin: BinaryIO | None = None, progress: Progress | None = None
    ) -> ScanReport:
        findings: list[Finding] = []
        errors: list[ScanError] = []
        suppressions: list[SuppressionRequest] = []
        files = resources_n = skipped = 0
        evaluator = Evaluator(self.registry, self.policy)
        sources = tuple(s for s in self.sources if s.produces is None or evaluator.reads(s.produces))
        for item in discover(paths, self.limits, stdin):
            if isinstance(item, Skipped):
                skipped += 1
                continue
            if isinstance(item, InputError):
                errors.append(ScanError(item.source, item.diagnostics()))
                continue
            files += 1
            if progress is not None:
                progress(item.name)
            resources, errs = self.read(item, sources)
            errors.extend(errs)
            resources_n += len(resources)
            ev = evaluator.evaluate(resources)
            findings.extend(ev.findings)
            errors.extend(ev.errors)
            if not item.is_binary:
                suppressions.extend(detect_suppressions(item, self.registry))
        findings.sort(key=lambda f: (-f.severity.rank, f.location.file, f.location.line or 0, f.rule_id))
        return ScanReport(
            findings=tuple(findings),
            suppression_requests=tuple(suppressions),
            errors=tuple(errors),
            stats=ScanStats(files=files, resources=resources_n, skipped=skipped),
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
