"""Strict parsing of policy bundles (YAML from Security's repository, or JSON from a signed payload).

Every problem is reported with its field path and line: unknown keys, wrong types, unknown
rule ids, packs and tags (checked against the rule registry of this dutyguard), actions that
weaken as severity rises, quorums that fall as severity rises, and limits on sizes. The shape
is also published as a JSON Schema (``dutyguard/data/policy-bundle.schema.json``); the tests
keep the two in agreement. This module does not use the schema at run time: the gate parses
signed bundles on every scan and must stay fast and dependency-light.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

from dutyguard.core.model import JSONPath, Severity
from dutyguard.core.policy import PSSLevel
from dutyguard.core.rule import RuleRegistry
from dutyguard.errors import ConfigError, InputError
from dutyguard.limits import Limits
from dutyguard.policy._strict import Problem, Reader, suggest
from dutyguard.policy.errors import PolicyBundleError
from dutyguard.policy.model import (
    API_VERSION,
    DEFAULT_ACTIONS,
    DEFAULT_EXCEPTION_POLICY,
    KIND,
    SEVERITIES_ASCENDING,
    BundleScope,
    ExceptionPolicy,
    LabelRequirement,
    NamespaceSelector,
    PodSecurity,
    PodSecurityEntry,
    PolicyBundle,
    RuleSelector,
    Stage,
    StageActions,
)

MAX_BUNDLE_BYTES = 1024 * 1024
"""A bundle is a page or two of YAML; a megabyte is generous and keeps the signed state small."""
MAX_ITEMS = 1000
"""Items in any one list or mapping of the bundle (rules, namespaces, teams...)."""
MAX_QUORUM = 10
"""Same bound as the governance core's maker-checker."""
MAX_EXCEPTION_DAYS = 365

# Identifiers, as the governance core spells them (lower case only, so look-alikes cannot pass).
_NAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
_IDENT = re.compile(r"[a-z0-9][a-z0-9._@+-]{0,63}")
_DNS = re.compile(r"(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*")
_NAMESPACE = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
_LABEL_KEY = re.compile(
    r"([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?"
)
_LABEL_VALUE = re.compile(r"([A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?)?")
_SEVERITIES = tuple(s.value for s in Severity)
_LEVELS = tuple(lv.value for lv in PSSLevel)
_SELECTOR_OPS = ("In", "NotIn", "Exists", "DoesNotExist")

SPEC_FIELDS = ("rules", "severity", "actions", "scope", "allowedRegistries", "podSecurity", "exceptions")


BUNDLE_LIMITS = Limits(max_documents=2, max_nodes=100_000, max_depth=32)  # 2: say "exactly one" below
"""A bundle is one small document: far tighter node and depth bounds than a manifest stream, so an
alias bomb is refused in milliseconds, well before the time budget."""


def load_bundle(path: str | Path, registry: RuleRegistry, limits: Limits = BUNDLE_LIMITS) -> PolicyBundle:
    """Read and parse a bundle file (YAML or JSON), bounded in size, depth and nodes."""
    p = Path(path)
    try:
        with p.open("rb") as f:
            data = f.read(MAX_BUNDLE_BYTES + 1)
    except OSError as e:
        raise InputError(str(path), f"cannot read ({e.strerror or e})") from None
    if len(data) > MAX_BUNDLE_BYTES:
        raise InputError(str(path), f"larger than {MAX_BUNDLE_BYTES} bytes, the limit for a policy bundle")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(str(path), f"not valid UTF-8 (byte {e.start})") from None
    return parse_bundle_text(text, str(path), registry, limits)


def parse_bundle_text(
    text: str, source: str, registry: RuleRegistry, limits: Limits = BUNDLE_LIMITS
) -> PolicyBundle:
    from dutyguard.sources.yamldoc import load_documents

    if len(text.encode("utf-8", "surrogatepass")) > MAX_BUNDLE_BYTES:
        raise InputError(source, f"larger than {MAX_BUNDLE_BYTES} bytes, the limit for a policy bundle")
    docs = load_documents(text, source, limits)
    if len(docs) != 1:
        raise InputError(source, f"a policy bundle is exactly one YAML document, found {len(docs)}")
    doc = docs[0]
    return parse_bundle(doc.value, source, registry, lines=doc.lines, line=doc.line)


def parse_bundle(
    value: object,
    source: str,
    registry: RuleRegistry,
    *,
    lines: Mapping[JSONPath, int] | None = None,
    line: int | None = None,
) -> PolicyBundle:
    """A bundle from a parsed document; :class:`PolicyBundleError` lists every problem."""
    parser = _Parser(registry, Reader(lines, line))
    bundle = parser.bundle(value)
    if parser.r.problems or bundle is None:
        raise PolicyBundleError(source, parser.r.problems, parser.r.dropped)
    return bundle


def lint_bundle(bundle: PolicyBundle, source: str) -> None:
    """Checks beyond the document's own consistency, against the shipped governance data.

    Run by ``policy lint`` and by the server when a bundle is proposed (not by the gate, which
    does not use them): exception approvers must hold a role that has the duty to approve
    exceptions, so a bundle cannot let DevOps approve its own waivers.
    """
    from dutyguard.governance.duties import Duty, Role, shipped_roles

    table = shipped_roles()
    may_approve = {r.value for r in table.roles_with(Duty.EXCEPTION_APPROVE)}
    problems: list[Problem] = []
    path: JSONPath = ("spec", "exceptions", "approvers", "roles")
    for i, role in enumerate(bundle.exceptions.approver_roles):
        if role not in {r.value for r in Role}:
            problems.append(
                Problem((*path, i), None, f"unknown role {role!r}{suggest(role, [r.value for r in Role])}")
            )
        elif role not in may_approve:
            problems.append(
                Problem(
                    (*path, i),
                    None,
                    f"role {role!r} does not hold the duty exception.approve "
                    f"(roles that do: {', '.join(sorted(may_approve)) or 'none'})",
                )
            )
    if problems:
        raise PolicyBundleError(source, problems)


class _Parser:
    def __init__(self, registry: RuleRegistry, reader: Reader) -> None:
        self.registry = registry
        self.r = reader
        self.rule_ids = frozenset(rule.meta.id for rule in registry)
        self.packs = frozenset(rule.meta.pack for rule in registry)
        self.tags = frozenset(t for rule in registry for t in rule.meta.tags)
        # False once spec.rules has a problem: "not selected" errors would then be noise.
        self.selection_ok = True

    # --- document -------------------------------------------------------------------------------
    def bundle(self, value: object) -> PolicyBundle | None:
        r = self.r
        top = r.mapping(value, (), required=("apiVersion", "kind", "metadata", "spec"))
        if top is None:
            return None
        if "apiVersion" in top and top["apiVersion"] != API_VERSION:
            r.error(("apiVersion",), f"{top['apiVersion']!r} is not supported (expected {API_VERSION!r})")
        if "kind" in top and top["kind"] != KIND:
            r.error(("kind",), f"{top['kind']!r} is not {KIND!r}")
        name, description = self.metadata(top.get("metadata"))
        spec = r.mapping(top.get("spec", {}), ("spec",), optional=SPEC_FIELDS) or {}

        include, exclude, enabled = self.rules(spec.get("rules"))
        severity = self.severity(spec.get("severity"), enabled)
        actions = self.actions(spec.get("actions"), enabled)
        scope = self.scope(spec.get("scope"))
        registries = self.registries(spec.get("allowedRegistries", []), ("spec", "allowedRegistries"))
        pod_security = self.pod_security(spec.get("podSecurity"))
        exceptions = self.exceptions(spec.get("exceptions"))
        if r.problems or name is None:
            return None
        assert isinstance(value, dict)
        return PolicyBundle(
            name=name,
            description=description,
            document=value,
            enabled_rules=enabled,
            include=include,
            exclude=exclude,
            severity_overrides=severity,
            actions=MappingProxyType(actions),
            scope=scope,
            allowed_registries=registries,
            pod_security=pod_security,
            exceptions=exceptions,
        )

    def metadata(self, value: object) -> tuple[str | None, str]:
        path: JSONPath = ("metadata",)
        md = self.r.mapping(value, path, required=("name",), optional=("description",))
        if md is None:
            return None, ""
        name = None
        if "name" in md:
            name = self.r.string(
                md["name"], (*path, "name"), pattern=_NAME, what="a lower-case DNS label", max_len=63
            )
        description = ""
        if "description" in md:
            description = self.r.string(md["description"], (*path, "description"), max_len=4096) or ""
        return name, description

    # --- rules ----------------------------------------------------------------------------------
    def rules(
        self, value: object
    ) -> tuple[tuple[RuleSelector, ...] | None, tuple[RuleSelector, ...], frozenset[str]]:
        path: JSONPath = ("spec", "rules")
        if value is None:
            return None, (), self.rule_ids
        m = self.r.mapping(value, path, optional=("include", "exclude"))
        if m is None:
            return None, (), self.rule_ids
        before = len(self.r.problems)
        include = self.selectors(m["include"], (*path, "include")) if "include" in m else None
        exclude = self.selectors(m.get("exclude", []), (*path, "exclude"))
        self.selection_ok = len(self.r.problems) == before
        enabled = set(self.rule_ids) if include is None else set().union(*(self.select(s) for s in include))
        for s in exclude:
            enabled -= self.select(s)
        if not enabled and not self.r.problems:
            self.r.error(path, "selects no rule: a policy that checks nothing is refused")
        return include, exclude, frozenset(enabled)

    def selectors(self, value: object, path: JSONPath) -> tuple[RuleSelector, ...]:
        items = self.r.sequence(value, path, max_items=MAX_ITEMS, min_items=1 if path[-1] == "include" else 0)
        out: list[RuleSelector] = []
        for i, item in enumerate(items or ()):
            p = (*path, i)
            m = self.r.mapping(item, p, optional=("id", "pack", "tag"))
            if m is None:
                continue
            if len(m) != 1:
                self.r.error(p, "give exactly one of id, pack, tag")
                continue
            ((by, raw),) = m.items()
            known = {"id": self.rule_ids, "pack": self.packs, "tag": self.tags}[by]
            v = self.r.string(raw, (*p, by), max_len=128)
            if v is None:
                continue
            if v not in known:
                hint = " (see `dutyguard rules list`)" if by == "id" else ""
                self.r.error((*p, by), f"unknown rule {by} {v!r}{suggest(v, known) or hint}")
                continue
            out.append(RuleSelector(by, v))
        return tuple(out)

    def select(self, s: RuleSelector) -> set[str]:
        if s.by == "id":
            return {s.value}
        if s.by == "pack":
            return {rule.meta.id for rule in self.registry if rule.meta.pack == s.value}
        return {rule.meta.id for rule in self.registry if s.value in rule.meta.tags}

    def rule_id(self, key: str, path: JSONPath, enabled: frozenset[str]) -> bool:
        if key not in self.rule_ids:
            self.r.error(
                path,
                f"unknown rule id {key!r}{suggest(key, self.rule_ids) or ' (see `dutyguard rules list`)'}",
            )
            return False
        if key not in enabled:
            if not self.selection_ok:
                return False
            self.r.error(
                path, f"rule {key!r} is not selected by spec.rules, so this setting would never apply"
            )
            return False
        return True

    def severity(self, value: object, enabled: frozenset[str]) -> Mapping[str, Severity]:
        path: JSONPath = ("spec", "severity")
        if value is None:
            return MappingProxyType({})
        m = self.r.mapping(value, path, open_keys=True)
        out: dict[str, Severity] = {}
        if m is None:
            return MappingProxyType(out)
        if len(m) > MAX_ITEMS:
            self.r.error(path, f"more than {MAX_ITEMS} entries")
            return MappingProxyType(out)
        for key, raw in m.items():
            p = (*path, key)
            if self.rule_id(key, p, enabled):
                sev = self.r.choice(raw, p, _SEVERITIES)
                if sev is not None:
                    out[key] = Severity(sev)
        return MappingProxyType(out)

    # --- actions --------------------------------------------------------------------------------
    def actions(self, value: object, enabled: frozenset[str]) -> dict[Stage, StageActions]:
        path: JSONPath = ("spec", "actions")
        stages = {s.value: s for s in Stage}
        m = {} if value is None else self.r.mapping(value, path, optional=tuple(stages)) or {}
        out: dict[Stage, StageActions] = {}
        for name, stage in stages.items():
            if name in m:
                out[stage] = self.stage_actions(stage, m[name], (*path, name), enabled)
            else:
                out[stage] = StageActions(stage, MappingProxyType(dict(DEFAULT_ACTIONS[stage])))
        return out

    def stage_actions(
        self, stage: Stage, value: object, path: JSONPath, enabled: frozenset[str]
    ) -> StageActions:
        r = self.r
        m = r.mapping(value, path, optional=("bySeverity", "rules")) or {}
        by_sev = dict(DEFAULT_ACTIONS[stage])
        if "bySeverity" in m:
            p = (*path, "bySeverity")
            sev_map = r.mapping(m["bySeverity"], p, required=_SEVERITIES)
            if sev_map is not None:
                for sev_name, raw in sev_map.items():
                    act = r.choice(raw, (*p, sev_name), stage.actions)
                    if act is not None:
                        by_sev[Severity(sev_name)] = act
                self.monotonic_actions(stage, by_sev, p)
        rules: dict[str, str] = {}
        if "rules" in m:
            p = (*path, "rules")
            rm = r.mapping(m["rules"], p, open_keys=True) or {}
            if len(rm) > MAX_ITEMS:
                r.error(p, f"more than {MAX_ITEMS} entries")
                rm = {}
            for rid, raw in rm.items():
                if self.rule_id(rid, (*p, rid), enabled):
                    act = r.choice(raw, (*p, rid), stage.actions)
                    if act is not None:
                        rules[rid] = act
        if stage is Stage.CI and by_sev[Severity.CRITICAL] != stage.blocking_action:
            r.error(
                (*path, "bySeverity", "critical"),
                "a CI gate must block critical findings (soften single rules under `rules:` instead)",
            )
        return StageActions(stage, MappingProxyType(by_sev), MappingProxyType(rules))

    def monotonic_actions(self, stage: Stage, by_sev: Mapping[Severity, str], path: JSONPath) -> None:
        for lower, higher in itertools.pairwise(SEVERITIES_ASCENDING):
            if stage.strength(by_sev[higher]) < stage.strength(by_sev[lower]):
                self.r.error(
                    (*path, higher.value),
                    f"{by_sev[higher]!r} for {higher.value} is weaker than {by_sev[lower]!r} for {lower.value}: "
                    "actions may not weaken as severity rises",
                )

    # --- scope and registries -------------------------------------------------------------------
    def scope(self, value: object) -> BundleScope:
        path: JSONPath = ("spec", "scope")
        if value is None:
            return BundleScope()
        m = self.r.mapping(value, path, optional=("teams", "apps", "namespaces", "clusters", "registries"))
        if m is None:
            return BundleScope()

        def names(key: str, pattern: re.Pattern[str], what: str) -> tuple[str, ...]:
            if key not in m:
                return ()
            return (
                self.r.unique_strings(m[key], (*path, key), pattern=pattern, what=what, max_items=MAX_ITEMS)
                or ()
            )

        return BundleScope(
            teams=names("teams", _IDENT, "a team id (lower case)"),
            apps=names("apps", _DNS, "an app name (lower-case DNS name)"),
            namespaces=names("namespaces", _NAMESPACE, "a namespace name"),
            clusters=names("clusters", _DNS, "a cluster name (lower-case DNS name)"),
            registries=self.registries(m.get("registries", []), (*path, "registries")),
        )

    def registries(self, value: object, path: JSONPath) -> tuple[str, ...]:
        from dutyguard.rules.workload.imageref import parse_registry_pattern

        items = self.r.sequence(value, path, max_items=MAX_ITEMS)
        out: list[str] = []
        for i, item in enumerate(items or ()):
            s = self.r.string(item, (*path, i), max_len=255)
            if s is None:
                continue
            try:
                parse_registry_pattern(s)
            except ConfigError as e:
                self.r.error((*path, i), str(e))
                continue
            if s in out:
                self.r.error((*path, i), f"{s!r} is listed twice")
                continue
            out.append(s)
        return tuple(out)

    # --- pod security ---------------------------------------------------------------------------
    def pod_security(self, value: object) -> PodSecurity:
        path: JSONPath = ("spec", "podSecurity")
        if value is None:
            return PodSecurity()
        m = self.r.mapping(value, path, optional=("default", "namespaces"))
        if m is None:
            return PodSecurity()
        default = PSSLevel.RESTRICTED
        if "default" in m:
            lv = self.r.choice(m["default"], (*path, "default"), _LEVELS)
            default = PSSLevel(lv) if lv else default
        entries: list[PodSecurityEntry] = []
        p = (*path, "namespaces")
        seen_names: set[str] = set()
        for i, item in enumerate(self.r.sequence(m.get("namespaces", []), p, max_items=MAX_ITEMS) or ()):
            ip = (*p, i)
            e = self.r.mapping(item, ip, required=("level",), optional=("names", "selector"))
            if e is None:
                continue
            lv = self.r.choice(e["level"], (*ip, "level"), _LEVELS) if "level" in e else None
            if ("names" in e) == ("selector" in e):
                self.r.error(ip, "give exactly one of names, selector")
                continue
            if "names" in e:
                ns = self.r.unique_strings(
                    e["names"],
                    (*ip, "names"),
                    pattern=_NAMESPACE,
                    what="a namespace name",
                    max_items=MAX_ITEMS,
                )
                if ns is None:
                    continue
                if not ns:
                    self.r.error((*ip, "names"), "needs at least one namespace")
                    continue
                for j, n in enumerate(ns):
                    if n in seen_names:
                        # The first entry would always win: a second one is dead and misleading.
                        self.r.error(
                            (*ip, "names", j), f"namespace {n!r} is already named by an earlier entry"
                        )
                    seen_names.add(n)
                selector = NamespaceSelector(names=frozenset(ns))
            else:
                sel = self.label_selector(e["selector"], (*ip, "selector"))
                if sel is None:
                    continue
                selector = sel
            if lv is not None:
                entries.append(PodSecurityEntry(selector, PSSLevel(lv)))
        return PodSecurity(default, tuple(entries))

    def label_selector(self, value: object, path: JSONPath) -> NamespaceSelector | None:
        r = self.r
        m = r.mapping(value, path, optional=("matchLabels", "matchExpressions"))
        if m is None:
            return None
        if not m:
            # An empty selector matches every namespace in Kubernetes: say so with `default`.
            r.error(path, "an empty selector matches every namespace; set podSecurity.default instead")
            return None
        labels: dict[str, str] = {}
        if "matchLabels" in m:
            p = (*path, "matchLabels")
            for k, v in (r.mapping(m["matchLabels"], p, open_keys=True) or {}).items():
                key = r.string(k, (*p, k), pattern=_LABEL_KEY, what="a label key", max_len=317)
                val = r.string(
                    v, (*p, k), pattern=_LABEL_VALUE, what="a label value", max_len=63, allow_empty=True
                )
                if key is not None and val is not None:
                    labels[key] = val
        exprs: list[LabelRequirement] = []
        if "matchExpressions" in m:
            p = (*path, "matchExpressions")
            for i, item in enumerate(r.sequence(m["matchExpressions"], p, max_items=MAX_ITEMS) or ()):
                ip = (*p, i)
                e = r.mapping(item, ip, required=("key", "operator"), optional=("values",))
                if e is None or "key" not in e or "operator" not in e:
                    continue
                key = r.string(e["key"], (*ip, "key"), pattern=_LABEL_KEY, what="a label key", max_len=317)
                op = r.choice(e["operator"], (*ip, "operator"), _SELECTOR_OPS)
                values: tuple[str, ...] = ()
                if "values" in e:
                    values = (
                        r.unique_strings(
                            e["values"],
                            (*ip, "values"),
                            pattern=_LABEL_VALUE,
                            what="a label value",
                            max_items=MAX_ITEMS,
                        )
                        or ()
                    )
                if op in ("In", "NotIn") and not values:
                    r.error(ip, f"operator {op} needs a non-empty values list")
                    continue
                if op in ("Exists", "DoesNotExist") and "values" in e:
                    r.error((*ip, "values"), f"operator {op} takes no values")
                    continue
                if key is not None and op is not None:
                    exprs.append(LabelRequirement(key, op, values))
        return NamespaceSelector(match_labels=MappingProxyType(labels), expressions=tuple(exprs))

    # --- exceptions -----------------------------------------------------------------------------
    def exceptions(self, value: object) -> ExceptionPolicy:
        path: JSONPath = ("spec", "exceptions")
        d = DEFAULT_EXCEPTION_POLICY
        if value is None:
            return d
        r = self.r
        m = r.mapping(value, path, optional=("maxDays", "quorum", "wideScopeQuorum", "approvers"))
        if m is None:
            return d
        max_days = dict(d.max_days)
        if "maxDays" in m:
            max_days = self.per_severity(m["maxDays"], (*path, "maxDays"), 1, MAX_EXCEPTION_DAYS, d.max_days)
            for lower, higher in itertools.pairwise(SEVERITIES_ASCENDING):
                if max_days[higher] > max_days[lower]:
                    r.error(
                        (*path, "maxDays", higher.value),
                        f"{higher.value} exceptions may not last longer than {lower.value} ones",
                    )
        quorum = dict(d.quorum)
        if "quorum" in m:
            quorum = self.per_severity(m["quorum"], (*path, "quorum"), 1, MAX_QUORUM, d.quorum)
            for lower, higher in itertools.pairwise(SEVERITIES_ASCENDING):
                if quorum[higher] < quorum[lower]:
                    r.error(
                        (*path, "quorum", higher.value),
                        f"{higher.value} needs fewer approvals than {lower.value}",
                    )
        wide = d.wide_scope_quorum
        if "wideScopeQuorum" in m:
            wide = r.integer(m["wideScopeQuorum"], (*path, "wideScopeQuorum"), lo=1, hi=MAX_QUORUM) or wide
        roles, teams = d.approver_roles, d.approver_teams
        if "approvers" in m:
            p = (*path, "approvers")
            a = r.mapping(m["approvers"], p, required=("roles",), optional=("teams",)) or {}
            if "roles" in a:
                got = r.unique_strings(
                    a["roles"], (*p, "roles"), pattern=_IDENT, what="a role name", max_items=16
                )
                if got is not None and not got:
                    r.error((*p, "roles"), "needs at least one role: nobody could approve an exception")
                roles = got or roles
            if "teams" in a:
                teams = (
                    r.unique_strings(
                        a["teams"], (*p, "teams"), pattern=_IDENT, what="a team id", max_items=MAX_ITEMS
                    )
                    or ()
                )
        return ExceptionPolicy(
            max_days=MappingProxyType(max_days),
            quorum=MappingProxyType(quorum),
            wide_scope_quorum=wide,
            approver_roles=roles,
            approver_teams=teams,
        )

    def per_severity(
        self, value: object, path: JSONPath, lo: int, hi: int, fallback: Mapping[Severity, int]
    ) -> dict[Severity, int]:
        out = dict(fallback)
        m = self.r.mapping(value, path, required=_SEVERITIES)
        for sev_name, raw in (m or {}).items():
            n = self.r.integer(raw, (*path, sev_name), lo=lo, hi=hi)
            if n is not None:
                out[Severity(sev_name)] = n
        return out
