"""The one evaluation function: the rules of a policy applied to resources.

The CI gate, the admission webhook and (later) runtime all call :func:`evaluate`; it is
pure apart from reading its arguments, so concurrent calls are safe.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from dutyguard.core.model import Finding, ScanError, fingerprint
from dutyguard.core.policy import Policy, PSSLevel
from dutyguard.core.resource import Resource
from dutyguard.core.rule import AnyRule, RuleRegistry
from dutyguard.errors import RuleError


@dataclass(frozen=True, slots=True)
class Evaluation:
    findings: tuple[Finding, ...]
    errors: tuple[ScanError, ...]


def _rules_for(
    registry: RuleRegistry, policy: Policy, cache: dict[tuple[type, PSSLevel], tuple[AnyRule, ...]], t: type
) -> tuple[AnyRule, ...]:
    key = (t, policy.pss_level)
    rules = cache.get(key)
    if rules is None:
        rules = tuple(r for r in registry.for_target(t) if policy.applies(r.meta))
        cache[key] = rules
    return rules


def evaluate(registry: RuleRegistry, policy: Policy, resources: Iterable[Resource]) -> Evaluation:
    findings: list[Finding] = []
    errors: list[ScanError] = []
    cache: dict[tuple[type, PSSLevel], tuple[AnyRule, ...]] = {}
    # A policy bundle may give some namespaces another Pod Security level.
    by_namespace: dict[str | None, Policy] | None = {} if policy.namespace_pss_levels else None
    base = policy
    for res in resources:
        if by_namespace is not None:
            ns = res.namespace
            policy = by_namespace.get(ns) or by_namespace.setdefault(ns, base.for_namespace(ns))
        identity = res.identity()
        for rule in _rules_for(registry, policy, cache, type(res)):
            meta = rule.meta
            try:
                violations = list(rule.check(res, policy))
            except Exception as e:
                err = RuleError(meta.id, res.source, e)
                errors.append(ScanError(res.source, err.diagnostics()))
                continue
            severity = policy.severity_of(meta)
            for v in violations:
                fp = fingerprint(meta.id, (*identity, *res.fingerprint_parts(v)))
                findings.append(
                    Finding(
                        rule_id=meta.id,
                        title=meta.title,
                        severity=v.severity or severity,
                        message=v.message,
                        remediation=meta.remediation,
                        controls=meta.controls,
                        location=res.locate(v.path, v.container),
                        fingerprint=fp,
                        tags=meta.tags,
                    )
                )
    return Evaluation(tuple(findings), tuple(errors))
