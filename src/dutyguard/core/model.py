"""Value types shared by every stage (CI gate, admission, runtime).

All are immutable; change them with ``dataclasses.replace``.
"""

from __future__ import annotations

import enum
import functools
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

_ORDER = ("info", "low", "medium", "high", "critical")


class Severity(enum.Enum):
    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"
    INFO = "info"

    rank: int
    """Higher is worse; used for thresholds and sorting. A plain attribute: it is read for every
    finding several times (sorting, thresholds, summaries)."""

    def __init__(self, value: str) -> None:
        self.rank = _ORDER.index(value)

    def at_least(self, other: Severity) -> bool:
        return self.rank >= other.rank

    @classmethod
    def parse(cls, text: str) -> Severity:
        try:
            return cls(text.strip().lower())
        except ValueError:
            allowed = ", ".join(s.value for s in cls)
            raise ValueError(f"unknown severity {text!r} (expected one of {allowed})") from None


JSONPath = tuple[str | int, ...]
"""A path into a document: mapping keys and sequence indexes."""


@functools.lru_cache(maxsize=8192)
def render_path(path: JSONPath) -> str:
    """``('spec', 'containers', 0, 'image')`` -> ``spec.containers[0].image``."""
    out: list[str] = []
    for part in path:
        if isinstance(part, int):
            out.append(f"[{part}]")
        elif out:
            out.append(f".{part}")
        else:
            out.append(part)
    return "".join(out)


@dataclass(frozen=True, slots=True)
class Location:
    """Where a finding is. ``file`` is the input's display name ("-" for stdin)."""

    file: str
    line: int | None = None
    kind: str | None = None
    namespace: str | None = None
    name: str | None = None
    container: str | None = None
    field: str | None = None
    """The offending field, rendered as a path (``spec.containers[0].securityContext.privileged``)."""


@dataclass(frozen=True, slots=True)
class Waiver:
    """An approved exception applied to a finding (``dutyguard.exceptions``).

    Only the gate sets it, from a verified, signed exception snapshot: a waived finding is still
    reported, but no longer blocks.
    """

    exception_id: str
    expires: datetime
    """When the exception stops applying (timezone-aware, UTC)."""


@dataclass(frozen=True, slots=True)
class Finding:
    rule_id: str
    title: str
    severity: Severity
    message: str
    remediation: str
    controls: tuple[str, ...]
    location: Location
    fingerprint: str
    tags: tuple[str, ...] = ()
    waiver: Waiver | None = None


@dataclass(frozen=True, slots=True)
class SuppressionRequest:
    """A developer's inline suppression. Never honoured; reported so Security can decide."""

    file: str
    line: int
    syntax: str
    """Which tool's syntax was used (``dutyguard:ignore``, ``checkov:skip``, ``.trivyignore`` ...)."""
    targets: tuple[str, ...]
    """Rule ids the suppression names (ours or a peer's); empty means "everything"."""
    matched_rules: tuple[str, ...] = ()
    """dutyguard rule ids the targets translate to (through each rule's ``equivalents``)."""
    reason: str = ""
    text: str = ""


@dataclass(frozen=True, slots=True)
class ScanError:
    """An input that could not be read or evaluated. Any error fails the run with exit 2."""

    source: str
    message: str


@dataclass(frozen=True, slots=True)
class ScanStats:
    files: int = 0
    resources: int = 0
    skipped: int = 0
    """Files deliberately not read (binaries, .git, links leaving the tree)."""


@dataclass(frozen=True, slots=True)
class ScanReport:
    findings: tuple[Finding, ...]
    suppression_requests: tuple[SuppressionRequest, ...] = ()
    errors: tuple[ScanError, ...] = ()
    stats: ScanStats = field(default_factory=ScanStats)
    fail_on: Severity = Severity.HIGH
    pss_level: str = "restricted"
    policy_source: str = "built-in default policy (unsigned)"
    block_overrides: Mapping[str, bool] = field(default_factory=dict)
    """Per-rule actions of the policy (rule id -> blocks or not), winning over ``fail_on``."""

    def would_block(self, f: Finding) -> bool:
        """Whether the policy's action for this finding is to block, waiver or not."""
        forced = self.block_overrides.get(f.rule_id)
        return forced if forced is not None else f.severity.at_least(self.fail_on)

    def is_blocking(self, f: Finding) -> bool:
        """Whether this finding fails the gate: the policy blocks it and no exception waives it."""
        return f.waiver is None and self.would_block(f)

    @property
    def blocking(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if self.is_blocking(f))

    @property
    def waived(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.waiver is not None)

    @property
    def exit_code(self) -> int:
        """0 pass, 1 the gate fails, 2 some input could not be read (fail closed)."""
        if self.errors:
            return 2
        return 1 if any(map(self.is_blocking, self.findings)) else 0

    def counts(self) -> dict[str, int]:
        out = {s.value: 0 for s in Severity}
        for f in self.findings:
            out[f.severity.value] += 1
        return out


def fingerprint(rule_id: str, identity: Sequence[str]) -> str:
    """Stable id of "this problem in this thing": no line numbers, so moving code keeps it."""
    # Same bytes as hashing rule_id, then NUL + part for each part: one update is cheaper.
    data = "\x00".join((rule_id, *identity)).encode("utf-8", "surrogatepass")
    return hashlib.sha256(data).hexdigest()[:32]
