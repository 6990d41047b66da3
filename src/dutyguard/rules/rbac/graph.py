"""Who effectively gets what: every binding of the scan resolved against every role of the scan.

A binding alone names a role; a role alone names no one. :class:`RbacGraph` is a scan-wide
resource (:mod:`dutyguard.core.scanwide`): each Role, ClusterRole, RoleBinding and
ClusterRoleBinding is reduced where it is read to a compact fact, and the graph is built once from
the facts of the whole scan, so forked workers each seeing part of the files change nothing.

Resolution, fail-closed:

- a RoleBinding's Role is the Role of that name in the binding's namespace; an unset namespace
  (applied with ``-n``) matches either way;
- a role defined in the binding's own file (one chart, one overlay, one ``deploy.yaml``) wins;
  otherwise every definition of that name in the scan counts (overlays for several environments
  are alternatives, and any of them may be the one applied);
- an aggregated ClusterRole holds the rules of every scanned ClusterRole its selectors match;
- a role the scan does not hold is not guessed at (built-in cluster-admin, admin and edit are
  reported by the binding rules themselves).

Findings are located at the binding (``roleRef`` or the subject), one per binding and capability.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, cast

from dutyguard.core.model import JSONPath, Location, Severity, render_path
from dutyguard.core.policy import Policy
from dutyguard.core.resource import Resource
from dutyguard.core.rule import Rule, RuleMeta, Violation
from dutyguard.core.scanwide import Fact, ScanWide
from dutyguard.errors import InputError
from dutyguard.rules.rbac import guardrails
from dutyguard.rules.rbac._capability import (
    BASE_CONTROLS,
    FULL_WILDCARD_RULE,
    PACK,
    CapabilityRule,
    Match,
    reported,
)
from dutyguard.rules.rbac._model import (
    BindingView,
    PolicyRule,
    Reach,
    RoleView,
    Selector,
    Subject,
    binding_view,
    clip,
    role_view,
)
from dutyguard.sources.kubernetes import K8sObject

MAX_AGGREGATION_CHECKS = 2_000_000
"""Selector tests when resolving aggregated ClusterRoles; past it the scan fails rather than hangs."""

BUILTIN_ACTORS = frozenset({"admin", "edit"})
"""Built-in ClusterRoles that can run code (R06, R07) but are not cluster-admin."""


@dataclass(frozen=True, slots=True)
class RoleRecord:
    view: RoleView
    file: str
    line: int | None


@dataclass(frozen=True, slots=True)
class BindingRecord:
    view: BindingView
    file: str
    line: int | None
    role_ref_line: int | None
    subject_lines: tuple[tuple[int, int | None], ...]


# --- facts (plain tuples: they cross process boundaries through marshal) -------------------------
Strs = tuple[str, ...]
RuleFact = tuple[int, Strs, Strs, Strs, Strs, Strs]
SelectorFact = tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str, Strs], ...]]
RoleFact = tuple[
    str, str, str | None, str, str, int | None, tuple[RuleFact, ...], tuple[tuple[str, str], ...],
    tuple[SelectorFact, ...] | None,
]  # fmt: skip
SubjectFact = tuple[int, str, str, str | None, int | None]
BindingFact = tuple[
    str, str, str | None, str, str, int | None, str | None, str | None, int | None, tuple[SubjectFact, ...]
]  # fmt: skip


def _rule_fact(r: PolicyRule) -> RuleFact:
    return (
        r.index,
        tuple(sorted(r.api_groups)),
        tuple(sorted(r.resources)),
        tuple(sorted(r.verbs)),
        tuple(sorted(r.resource_names)),
        tuple(sorted(r.non_resource_urls)),
    )


def _role_fact(v: RoleView, obj: K8sObject) -> RoleFact:
    aggregation = None if v.aggregation is None else tuple((s.labels, s.expressions) for s in v.aggregation)
    rules = tuple(_rule_fact(r) for r in v.rules)
    return ("role", v.kind, v.namespace, v.name, obj.file, obj.line, rules, v.labels, aggregation)


def _binding_fact(v: BindingView, obj: K8sObject) -> BindingFact:
    subjects = tuple(
        (s.index, s.kind, s.name, s.namespace, obj.locate(("subjects", s.index)).line) for s in v.subjects
    )
    ref_line = obj.locate(("roleRef",)).line
    return (
        "binding",
        v.kind,
        v.namespace,
        v.name,
        obj.file,
        obj.line,
        v.role_kind,
        v.role_name,
        ref_line,
        subjects,
    )


def _role_record(fact: Fact) -> RoleRecord:
    _, kind, ns, name, file, line, rules, labels, aggregation = cast(RoleFact, fact)
    origin = f"{kind} {name}"
    view = RoleView(
        kind=kind,
        name=name,
        namespace=ns,
        rules=tuple(
            PolicyRule(i, frozenset(g), frozenset(r), frozenset(v), frozenset(n), frozenset(u), origin)
            for i, g, r, v, n, u in rules
        ),
        labels=labels,
        aggregation=None if aggregation is None else tuple(Selector(lb, ex) for lb, ex in aggregation),
    )
    return RoleRecord(view, file, line)


def _binding_record(fact: Fact) -> BindingRecord:
    _, kind, ns, name, file, line, role_kind, role_name, ref_line, subjects = cast(BindingFact, fact)
    view = BindingView(
        kind=kind,
        name=name,
        namespace=ns,
        role_kind=role_kind,
        role_name=role_name,
        subjects=tuple(Subject(i, k, n, s_ns) for i, k, n, s_ns, _ in subjects),
    )
    return BindingRecord(view, file, line, ref_line, tuple((i, s_line) for i, _, _, _, s_line in subjects))


@dataclass(frozen=True, slots=True, eq=False)
class RbacGraph(ScanWide):
    roles: tuple[RoleRecord, ...]
    bindings: tuple[BindingRecord, ...]
    _by_name: dict[tuple[str, str], list[RoleRecord]] = field(init=False, repr=False)
    _rules_memo: dict[int, tuple[PolicyRule, ...]] = field(init=False, repr=False)

    tag: ClassVar[str] = "rbac"
    reads: ClassVar[type[Resource]] = K8sObject

    def __post_init__(self) -> None:
        by_name: dict[tuple[str, str], list[RoleRecord]] = {}
        for r in self.roles:
            by_name.setdefault((r.view.kind, r.view.name), []).append(r)
        object.__setattr__(self, "_by_name", by_name)
        object.__setattr__(self, "_rules_memo", {})

    # --- ScanWide --------------------------------------------------------------------------------
    @classmethod
    def fact(cls, resource: Resource) -> Fact | None:
        if not isinstance(resource, K8sObject):
            return None
        role = role_view(resource)
        if role is not None:
            return _role_fact(role, resource)
        binding = binding_view(resource)
        if binding is not None:
            return _binding_fact(binding, resource)
        return None

    @classmethod
    def build(cls, facts: Sequence[Fact]) -> RbacGraph | None:
        roles = tuple(_role_record(f) for f in facts if f and f[0] == "role")
        bindings = tuple(_binding_record(f) for f in facts if f and f[0] == "binding")
        return cls(roles, bindings) if bindings else None

    @classmethod
    def of(cls, objects: Sequence[Resource]) -> RbacGraph | None:
        """The graph of ``objects`` (as a one-process scan would build it)."""
        return cls.build([f for o in objects if (f := cls.fact(o)) is not None])

    # --- Resource --------------------------------------------------------------------------------
    @property
    def source(self) -> str:
        return "RBAC across the scanned files"

    def locate(self, path: JSONPath, container: str | None = None) -> Location:
        if len(path) >= 2 and path[0] == "bindings" and isinstance(path[1], int):
            b = self.bindings[path[1]]
            rest = path[2:]
            line = b.line
            if rest[:1] == ("roleRef",):
                line = b.role_ref_line or line
            elif len(rest) >= 2 and rest[0] == "subjects":
                line = dict(b.subject_lines).get(rest[1]) if isinstance(rest[1], int) else None
                line = line or b.line
            v = b.view
            return Location(b.file, line, v.kind, v.namespace, v.name, container, render_path(rest) or None)
        return Location(self.source, None, field=render_path(path) or None)

    def identity(self) -> tuple[str, ...]:
        return ("rbac-graph",)

    def fingerprint_parts(self, violation: Violation) -> tuple[str, ...]:
        # Indexes move when files are added to the scan; the key names the binding and what it grants.
        return (violation.key,)

    # --- resolution ------------------------------------------------------------------------------
    def roles_of(self, b: BindingRecord) -> list[RoleRecord]:
        v = b.view
        if v.role_kind is None or v.role_name is None:
            return []
        found = self._by_name.get((v.role_kind, v.role_name), [])
        if v.role_kind == "Role":
            found = [
                r for r in found if r.view.namespace == v.namespace or None in (r.view.namespace, v.namespace)
            ]
        same_file = [r for r in found if r.file == b.file]
        return same_file or found

    def grant_key(self, b: BindingRecord) -> tuple[tuple[int, ...], Reach]:
        """Equal for bindings that grant the same roles with the same reach: what they give is
        worked out once (bindings of one role are common)."""
        return tuple(id(r) for r in self.roles_of(b)), b.view.reach

    def rules_of(self, b: BindingRecord) -> tuple[PolicyRule, ...] | None:
        """Every rule the binding's role holds (``None``: the role is not in the scan)."""
        roles = self.roles_of(b)
        if not roles:
            return None
        budget = [MAX_AGGREGATION_CHECKS]
        out: list[PolicyRule] = []
        for r in roles:
            out.extend(self._rules(r, budget, frozenset()))
        return tuple(out)

    def _rules(self, r: RoleRecord, budget: list[int], seen: frozenset[int]) -> tuple[PolicyRule, ...]:
        memo = self._rules_memo.get(id(r))
        if memo is not None:
            return memo
        rules = list(r.view.rules)
        if r.view.aggregation is not None and id(r) not in seen:
            seen = seen | {id(r)}
            for other in self.roles:
                if other is r or other.view.kind != "ClusterRole":
                    continue
                budget[0] -= len(r.view.aggregation)
                if budget[0] < 0:
                    raise InputError(self.source, "too many aggregated ClusterRoles to resolve")
                labels = dict(other.view.labels)
                if any(s.matches(labels) for s in r.view.aggregation):
                    rules.extend(self._rules(other, budget, seen))
        out = tuple(rules)
        self._rules_memo[id(r)] = out
        return out


def _binding_key(b: BindingView) -> str:
    return f"{b.kind}/{b.namespace or ''}/{b.name}"


def _subjects(b: BindingView) -> str:
    return clip([s.describe() for s in b.subjects], 4)


class EffectivePermission(Rule[RbacGraph]):
    meta = RuleMeta(
        id="rbac.effective-permission",
        title="Binding gives its subjects a dangerous permission of a scanned role",
        severity=Severity.HIGH,
        description=(
            "Resolves each binding against the roles of the whole scan (aggregation included) and "
            "reports, per binding, each capability another rbac rule reports on the role, with who gets "
            "it and where. Its severity is that rule's for the binding's reach: a ClusterRoleBinding or a "
            "binding in kube-system reaches kube-system, a RoleBinding one namespace and no "
            "cluster-scoped resources. A policy override of that rule's severity applies here too."
        ),
        remediation=(
            "Bind a role holding only what the subjects need, per namespace, or remove the permission "
            "from the role (see the rule named in the message)."
        ),
        controls=("cis-k8s:5.1.1", *BASE_CONTROLS),
        pack=PACK,
        tags=("rbac",),
        equivalents={"checkov": ("CKV2_K8S_1", "CKV2_K8S_2", "CKV2_K8S_3", "CKV2_K8S_4", "CKV2_K8S_5")},
    )
    target = RbacGraph

    def __init__(self, capabilities: Sequence[CapabilityRule]) -> None:
        self.capabilities = tuple(capabilities)

    def check(self, resource: RbacGraph, policy: Policy) -> Iterator[Violation]:
        own_override = self.meta.id in policy.severity_overrides
        full_reported = reported(policy, FULL_WILDCARD_RULE)
        # Many bindings name the same role with the same reach: match each (role, reach) once.
        found: dict[tuple[tuple[int, ...], Reach], list[tuple[CapabilityRule, list[Match]]]] = {}
        for i, b in enumerate(resource.bindings):
            v = b.view
            if not v.subjects:
                continue
            reach = v.reach
            key = resource.grant_key(b)
            hits = found.get(key)
            if hits is None:
                rules = resource.rules_of(b)
                hits = found[key] = self._matches(rules, reach, policy, full_reported) if rules else []
            for cap_rule, matches in hits:
                rid = cap_rule.meta.id
                cap = cap_rule.capability
                m = matches[0]
                severity = policy.severity_overrides.get(rid) or cap.severity_for(reach, m)
                yield Violation(
                    f"{v.title} gives {_subjects(v)} {v.scope()}: {m.text()} ({rid}): {cap.what}",
                    path=("bindings", i, "roleRef"),
                    key=f"{_binding_key(v)}|{rid}",
                    severity=None if own_override else severity,
                )

    def _matches(
        self, rules: Sequence[PolicyRule], reach: Reach, policy: Policy, full_reported: bool
    ) -> list[tuple[CapabilityRule, list[Match]]]:
        out: list[tuple[CapabilityRule, list[Match]]] = []
        for cap_rule in self.capabilities:
            rid = cap_rule.meta.id
            if not reported(policy, rid):
                continue
            matches = cap_rule.capability.find(
                rules, reach, skip_full=full_reported and rid != FULL_WILDCARD_RULE
            )
            if matches:
                out.append((cap_rule, matches))
        return out


class SubjectActAndErase(Rule[RbacGraph]):
    meta = RuleMeta(
        id="rbac.subject-act-and-erase",
        title="One subject can both act (R01–R08) and change audit or detection configuration",
        severity=Severity.CRITICAL,
        description=(
            "Across the scanned bindings, the same user, group or service account holds through one "
            "binding a way to run code, escalate or administer RBAC (built-in admin and edit included) "
            "and through another the right to rewrite log shipping or audit sinks: it can act and erase "
            "the trace. (One role holding both is rbac.act-and-erase.)"
        ),
        remediation="Give audit and detection configuration to a Security-only identity that holds nothing else.",
        controls=("nist-800-53:AC-5", "nist-800-53:AU-9(4)", *BASE_CONTROLS),
        pack=PACK,
        tags=("rbac", "r22"),
    )
    target = RbacGraph

    def check(self, resource: RbacGraph, policy: Policy) -> Iterator[Violation]:
        acts: dict[tuple[str, str, str], list[tuple[int, str]]] = {}
        erases: list[tuple[int, Subject, str]] = []
        seen: dict[tuple[tuple[int, ...], Reach], tuple[str | None, str | None]] = {}
        for i, b in enumerate(resource.bindings):
            v = b.view
            if not v.subjects:
                continue
            key = resource.grant_key(b)
            rules = resource.rules_of(b) if key not in seen else None
            act: str | None = None
            erase: str | None = None
            if key in seen:
                act, erase = seen[key]
            elif rules:
                found = [(c, m) for c, m in guardrails.act_matches(rules, v.reach) if c.ref != "R01"]
                if found:
                    act = f"{found[0][1].text()} ({found[0][0].ref})"
                audit = guardrails.AUDIT.find(rules, v.reach)
                if audit:
                    erase = audit[0].text()
                seen[key] = (act, erase)
            elif v.role_kind == "ClusterRole" and v.role_name in BUILTIN_ACTORS:
                act = f"built-in ClusterRole {v.role_name} (R06, R07)"
            for s in v.subjects:
                if act is not None:
                    acts.setdefault(s.key, []).append((i, act))
                if erase is not None:
                    erases.append((i, s, erase))
        for i, s, erase in erases:
            other = [(j, how) for j, how in acts.get(s.key, ()) if j != i]
            if not other:
                continue  # nothing, or only through the same binding (rbac.act-and-erase reports the role)
            j, how = other[0]
            v, w = resource.bindings[i].view, resource.bindings[j].view
            yield Violation(
                f"{s.describe()} can change audit and detection configuration through {v.title} ({erase}) "
                f"and act through {w.title} ({how})",
                path=("bindings", i, "subjects", s.index),
                key=f"{'/'.join(s.key)}|{_binding_key(v)}",
            )
