"""Resources built from a whole scan, for rules that must see several objects at once.

The evaluator applies rules to one resource at a time, and a scan may be shared out to forked
workers by file, so no rule ever sees two inputs together. Some questions need the whole scanned
set (which binding grants which role to whom). Such a rule reads a :class:`ScanWide` resource,
built in two steps:

1. wherever an input is read (maybe in a worker), each of its resources of type ``reads`` is
   reduced by :meth:`ScanWide.fact` to a compact *fact*: nested tuples of str, int, bool and
   ``None`` only, so it crosses a process boundary through ``marshal`` like the findings do;
2. after every input, the facts of the whole scan (in input order) are given to
   :meth:`ScanWide.build` in one place, and the resource it returns is evaluated like any other.

``build`` is a pure function of the facts in input order, so the report is the same however the
inputs were shared out. The evaluator's contract is unchanged: one resource at a time.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, ClassVar

from dutyguard.core.model import Finding, ScanError
from dutyguard.core.resource import Resource

if TYPE_CHECKING:
    from dutyguard.core.evaluate import Evaluation, Evaluator
    from dutyguard.core.rule import RuleRegistry

Fact = tuple[object, ...]
"""Plain data only (tuples of str, int, bool, None and nested tuples): it must survive ``marshal``."""

TaggedFact = tuple[str, Fact]
"""A fact with the ``tag`` of the scan-wide type it belongs to (what a worker sends back)."""


class ScanWide(Resource):
    """A resource made from facts of many inputs. Subclasses set ``tag`` and ``reads``."""

    __slots__ = ()

    tag: ClassVar[str]
    """Names this type's facts on the wire (unique among scan-wide types)."""
    reads: ClassVar[type[Resource]]
    """The resource type whose facts it gathers: a scan must read that type's sources even when
    no enabled rule reads the type itself."""

    @classmethod
    @abstractmethod
    def fact(cls, resource: Resource) -> Fact | None:
        """What this type keeps of one resource of type ``reads`` (``None``: nothing)."""

    @classmethod
    @abstractmethod
    def build(cls, facts: Sequence[Fact]) -> ScanWide | None:
        """The resource for the whole scan (``None`` when the facts hold nothing to evaluate)."""


def wide_types(registry: RuleRegistry, evaluator: Evaluator) -> tuple[type[ScanWide], ...]:
    """The scan-wide types some enabled rule reads, in registry order."""
    out: dict[type[ScanWide], None] = {}
    for rule in registry:
        t = rule.target
        if isinstance(t, type) and issubclass(t, ScanWide) and evaluator.reads(t):
            out[t] = None
    return tuple(out)


def collect(types: Sequence[type[ScanWide]], resources: Iterable[Resource]) -> list[TaggedFact]:
    """The facts ``types`` keep of one input's resources (run where the input was read)."""
    out: list[TaggedFact] = []
    if not types:
        return out
    for res in resources:
        for t in types:
            if isinstance(res, t.reads):
                fact = t.fact(res)
                if fact is not None:
                    out.append((t.tag, fact))
    return out


def evaluate_wide(
    evaluator: Evaluator, types: Sequence[type[ScanWide]], facts: Iterable[TaggedFact]
) -> Evaluation:
    """Build each scan-wide resource from the facts of every input (in input order) and evaluate it.

    A type whose ``build`` fails is an error of the scan, never a silent pass."""
    from dutyguard.core.evaluate import Evaluation

    by_tag: dict[str, list[Fact]] = {t.tag: [] for t in types}
    for tag, fact in facts:
        bucket = by_tag.get(tag)
        if bucket is not None:
            bucket.append(fact)
    findings: list[Finding] = []
    errors: list[ScanError] = []
    for t in types:
        try:
            resource = t.build(by_tag[t.tag])
        except Exception as e:  # a broken build must fail the scan loudly, not drop the rules
            errors.append(
                ScanError(f"<{t.tag}>", f"could not build the scan-wide view ({type(e).__name__}: {e})")
            )
            continue
        if resource is not None:
            ev = evaluator.evaluate([resource])
            findings.extend(ev.findings)
            errors.extend(ev.errors)
    return Evaluation(tuple(findings), tuple(errors))
