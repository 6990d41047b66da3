"""The one evaluation function: the rules of a policy applied to resources.

The CI gate, the admission webhook and (later) runtime all call :func:`evaluate`; it is
pure apart from reading its arguments, so concurrent calls are safe.
"""

from __future__ import annotations

from collections.abc import Container, Iterable
from dataclasses import dataclass

from dutyguard.core.model import Finding, ScanError, Severity, fingerprint
from dutyguard.core.policy import Policy, PSSLevel
from dutyguard.core.resource import Resource
from dutyguard.core.rule import AnyRule, RuleRegistry, Screen
from dutyguard.errors import RuleError

_Group = tuple[Screen | None, tuple[tuple[AnyRule, Severity], ...]]
"""A run of consecutive rules (registry order) that share a screen."""


@dataclass(frozen=True, slots=True)
class Evaluation:
    findings: tuple[Finding, ...]
    errors: tuple[ScanError, ...]


class Evaluator:
    """The rules of one policy, resolved once per (resource type, Pod Security level), applied to
    any number of resources.

    Immutable after construction apart from caches filled idempotently, so one instance may be
    shared by concurrent requests (the admission webhook keeps one per verified policy).
    """

    def __init__(self, registry: RuleRegistry, policy: Policy) -> None:
        self.registry = registry
        self.policy = policy
        self._rules: dict[tuple[type, PSSLevel], tuple[_Group, ...]] = {}
        # A policy bundle may give some namespaces another Pod Security level.
        self._by_namespace: dict[str | None, Policy] | None = {} if policy.namespace_pss_levels else None

    def _policy_for(self, namespace: str | None) -> Policy:
        if self._by_namespace is None:
            return self.policy
        p = self._by_namespace.get(namespace)
        if p is None:
            p = self._by_namespace.setdefault(namespace, self.policy.for_namespace(namespace))
        return p

    def reads(self, t: type) -> bool:
        """Whether any enabled rule looks at resources of type ``t`` (at any Pod Security level)."""
        enabled = self.policy.enabled_rules
        return any(enabled is None or r.meta.id in enabled for r in self.registry.for_target(t))

    def _rules_for(self, t: type, policy: Policy) -> tuple[_Group, ...]:
        """The applicable rules for ``t`` in registry order, in runs that share a screen: a
        screen that rules a resource out skips its whole run in one step."""
        key = (t, policy.pss_level)
        groups = self._rules.get(key)
        if groups is None:
            runs: list[tuple[Screen | None, list[tuple[AnyRule, Severity]]]] = []
            for r in self.registry.for_target(t):
                if not policy.applies(r.meta):
                    continue
                if runs and runs[-1][0] == r.screen:
                    runs[-1][1].append((r, policy.severity_of(r.meta)))
                else:
                    runs.append((r.screen, [(r, policy.severity_of(r.meta))]))
            groups = tuple((screen, tuple(members)) for screen, members in runs)
            self._rules[key] = groups
        return groups

    def evaluate(self, resources: Iterable[Resource]) -> Evaluation:
        return self._run(resources, None)

    def evaluate_under(self, policy: Policy, resources: Iterable[Resource]) -> Evaluation:
        """Evaluate every resource under ``policy``: this evaluator's policy with another Pod
        Security level (what :meth:`Policy.for_namespace` makes). The admission webhook decides
        the namespace's level itself and keeps one evaluator per verified state, so the rule
        runs are resolved once per state, not once per request."""
        base = self.policy
        if (
            policy.enabled_rules is not base.enabled_rules
            or policy.severity_overrides is not base.severity_overrides
        ):
            # Another rule selection: the cached runs would be wrong for it.
            return Evaluator(self.registry, policy)._run(resources, policy)
        return self._run(resources, policy)

    def _run(self, resources: Iterable[Resource], fixed: Policy | None) -> Evaluation:
        findings: list[Finding] = []
        errors: list[ScanError] = []
        for res in resources:
            policy = fixed if fixed is not None else self._policy_for(res.namespace)
            identity = res.identity()
            for screen, members in self._rules_for(type(res), policy):
                may_find: Container[AnyRule] | None = None
                if screen is not None:
                    may_find = screen(res)
                    if not may_find:
                        continue  # nothing in this run can find anything here
                for rule, severity in members:
                    if may_find is not None and rule not in may_find:
                        continue
                    meta = rule.meta
                    try:
                        violations = list(rule.check(res, policy))
                    except Exception as e:  # a crashing rule must fail the input, not the whole scan
                        err = RuleError(meta.id, res.source, e)
                        errors.append(ScanError(res.source, err.diagnostics()))
                        continue
                    for v in violations:
                        findings.append(
                            Finding(
                                rule_id=meta.id,
                                title=meta.title,
                                severity=v.severity or severity,
                                message=v.message,
                                remediation=meta.remediation,
                                controls=meta.controls,
                                location=res.locate(v.path, v.container),
                                fingerprint=fingerprint(meta.id, (*identity, *res.fingerprint_parts(v))),
                                tags=meta.tags,
                            )
                        )
        return Evaluation(tuple(findings), tuple(errors))


def evaluate(registry: RuleRegistry, policy: Policy, resources: Iterable[Resource]) -> Evaluation:
    """One-shot evaluation; keep an :class:`Evaluator` to evaluate many batches under one policy."""
    return Evaluator(registry, policy).evaluate(resources)
