"""Capabilities: what a role lets its holders do (one DOMAIN §4 row each), and the rule reporting one.

A :class:`Capability` is data: the accesses (verbs on resources) that give it, its severity for a
role confined to one ordinary namespace and for one whose reach includes a privileged namespace
(a ClusterRole may be bound cluster-wide, so it is read at its widest). The same capabilities are
asked of a single role (:class:`CapabilityRule`, per object) and of what a binding effectively
grants across the scanned set (``rbac.effective-permission``, in :mod:`.graph`).

A rule entry that is ``*``/``*``/``*`` is everything: it is reported once, by
``rbac.cluster-admin-equivalent``, and the narrower rules leave it out while the policy applies
that rule (when Security turns it off, they report the entry themselves again).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace

from dutyguard.core.model import Severity
from dutyguard.core.policy import Policy
from dutyguard.core.rule import Rule, RuleMeta, Violation
from dutyguard.rules.rbac._model import ANY_NAME, Name, PolicyRule, Reach, clip, request_name, role_view
from dutyguard.sources.kubernetes import K8sObject

PACK = "rbac"
FULL_WILDCARD_RULE = "rbac.cluster-admin-equivalent"

BASE_CONTROLS = ("nist-800-190:4.3.1", "nsa:authorization", "nist-800-53:AC-6")
"""Every RBAC rule serves least privilege: SP 800-190 4.3.1 (unbounded administrative access),
the NSA/CISA guide's authentication and authorization section, and 800-53 AC-6."""


@dataclass(frozen=True, slots=True)
class Target:
    """A resource (``pods``, ``pods/exec``) of an API group; ``cluster``: cluster-scoped, so a Role
    or a RoleBinding can never grant it. ``every_resource``: any resource of the group counts."""

    group: str
    resource: str
    cluster: bool = False
    every_resource: bool = False

    @property
    def label(self) -> str:
        if self.group == "*" and self.resource == "*":
            return "every resource of every API group"
        res = "any resource" if self.every_resource else self.resource
        return f"{res} ({self.group})" if self.group else res


def targets(group: str, *resources: str, cluster: bool = False) -> tuple[Target, ...]:
    return tuple(Target(group, r, cluster) for r in resources)


@dataclass(frozen=True, slots=True)
class Access:
    """Any of ``verbs`` on any of ``targets``, on the object ``name`` (see :data:`Name`)."""

    verbs: tuple[str, ...]
    targets: tuple[Target, ...]
    name: Name = ANY_NAME

    def grants(self, rule: PolicyRule, reach: Reach) -> tuple[list[str], list[Target]] | None:
        verbs = [v for v in self.verbs if rule.allows_verb(v)]
        if not verbs:
            return None
        got_verbs: dict[str, None] = {}
        got_targets: list[Target] = []
        for t in self.targets:
            if t.cluster and not reach.cluster_scoped:
                continue
            if t.every_resource:
                if not rule.allows_any_resource_of(t.group):
                    continue
            elif not (rule.allows_group(t.group) and rule.allows_resource(t.resource)):
                continue
            ok = [v for v in verbs if rule.allows_name(request_name(v, t.resource, self.name))]
            if ok:
                got_targets.append(t)
                got_verbs.update(dict.fromkeys(ok))
        return (list(got_verbs), got_targets) if got_targets else None


@dataclass(frozen=True, slots=True)
class Match:
    rule: PolicyRule
    verbs: tuple[str, ...]
    targets: tuple[Target, ...]
    support: tuple[Match, ...] = ()
    """Other entries the capability needs as well (a combination such as taint + evict)."""

    def text(self) -> str:
        names = f" (only {clip(self.rule.resource_names)})" if self.rule.resource_names else ""
        out = f"{self.rule.label} grants {clip(self.verbs, 8)} on {clip([t.label for t in self.targets], 6)}{names}"
        for s in self.support:
            out += f", with {s.text()}"
        return out


@dataclass(frozen=True, slots=True)
class Capability:
    ref: str
    """The DOMAIN §4 row (``R06``), or the peer check for what DOMAIN does not list."""
    what: str
    """What holding it means, completing "… lets its holders <what>"."""
    accesses: tuple[Access, ...]
    severity: Severity
    wide_severity: Severity | None = None
    """The severity when the reach includes a privileged namespace (``None``: the same)."""
    wide_accesses: tuple[Access, ...] = ()
    """Accesses that give the capability only where a privileged namespace is within reach."""
    requires: tuple[tuple[Access, ...], ...] = ()
    """For combinations: one access of each group must also be granted (by any entry)."""
    wide_names: frozenset[str] | None = None
    """When set, the wide severity needs an entry that is unrestricted or names one of these (a
    ClusterRole limited to its own leader-election ConfigMap does not reach aws-auth)."""

    def severity_for(self, reach: Reach, match: Match | None = None) -> Severity:
        if not reach.wide or self.wide_severity is None:
            return self.severity
        names = match.rule.resource_names if match is not None else frozenset()
        if self.wide_names is not None and names and not names & self.wide_names:
            return self.severity
        return self.wide_severity

    def find(self, rules: Iterable[PolicyRule], reach: Reach, skip_full: bool = False) -> list[Match]:
        pool = [r for r in rules if not (skip_full and r.full_wildcard)]
        accesses = self.accesses + self.wide_accesses if reach.wide else self.accesses
        found = [m for r in pool if (m := _match(r, accesses, reach)) is not None]
        if not found or not self.requires:
            return found
        support: list[Match] = []
        for group in self.requires:
            hit = next((m for r in pool if (m := _match(r, group, reach)) is not None), None)
            if hit is None:
                return []
            support.append(hit)
        return [replace(m, support=tuple(support)) for m in found]


def _match(rule: PolicyRule, accesses: Sequence[Access], reach: Reach) -> Match | None:
    verbs: dict[str, None] = {}
    tgts: dict[Target, None] = {}
    for a in accesses:
        got = a.grants(rule, reach)
        if got is not None:
            verbs.update(dict.fromkeys(got[0]))
            tgts.update(dict.fromkeys(got[1]))
    return Match(rule, tuple(verbs), tuple(tgts)) if tgts else None


def reported(policy: Policy, rule_id: str) -> bool:
    """Whether the policy applies ``rule_id`` (rbac rules have no Pod Security level)."""
    return policy.enabled_rules is None or rule_id in policy.enabled_rules


def situational(policy: Policy, meta: RuleMeta, severity: Severity) -> Severity | None:
    """A violation's own severity: ``None`` (the rule's, or Security's override for it) unless the
    situation calls for another and Security has not set one for the rule."""
    if meta.id in policy.severity_overrides or severity is meta.severity:
        return None
    return severity


def scope_note(reach: Reach) -> str:
    """Why a violation is more severe than its rule: a privileged namespace is within reach."""
    if reach is Reach.CLUSTER:
        return " (a ClusterRole reaches kube-system once bound cluster-wide)"
    if reach is Reach.PRIVILEGED:
        return " (in a privileged namespace)"
    return ""


class CapabilityRule(Rule[K8sObject]):
    """Reports each entry of a Role or ClusterRole that gives ``capability``."""

    target = K8sObject

    def __init__(self, meta: RuleMeta, capability: Capability) -> None:
        self.meta = meta
        self.capability = capability

    def check(self, resource: K8sObject, policy: Policy) -> Iterator[Violation]:
        role = role_view(resource)
        if role is None:
            return
        reach = role.reach
        skip_full = self.meta.id != FULL_WILDCARD_RULE and reported(policy, FULL_WILDCARD_RULE)
        cap = self.capability
        for m in cap.find(role.rules, reach, skip_full):
            severity = cap.severity_for(reach, m)
            note = scope_note(reach) if severity is not cap.severity else ""
            yield Violation(
                f"{role.title}: {m.text()}: lets its holders {cap.what}{note}",
                path=("rules", m.rule.index),
                severity=situational(policy, self.meta, severity),
            )


def capability_rule(
    *,
    id: str,
    title: str,
    capability: Capability,
    description: str,
    remediation: str,
    controls: tuple[str, ...] = (),
    equivalents: dict[str, tuple[str, ...]] | None = None,
) -> CapabilityRule:
    """A :class:`CapabilityRule` with its metadata (``controls`` come after the shared ones)."""
    meta = RuleMeta(
        id=id,
        title=title,
        severity=capability.severity,
        description=description,
        remediation=remediation,
        controls=(*controls, *BASE_CONTROLS),
        pack=PACK,
        tags=("rbac", capability.ref.lower()) if capability.ref.startswith("R") else ("rbac",),
        equivalents=equivalents or {},
    )
    return CapabilityRule(meta, capability)
