"""What a proposed policy bundle changes against the published one, for its reviewers.

Two views: a line diff of the canonical documents (what exactly changes), and an assessment of
what the change *means* for enforcement: which rules stop applying, which actions or
severities are lowered, which namespaces get a weaker Pod Security level, which registries
become allowed, how the exception limits move. The assessment sets the proposal's severity,
and with it the approval quorum (``policy.change``: two approvers for critical):

- ``critical``: the exception policy is loosened (longer waivers, fewer approvers, other
  approvers): whoever controls it controls every future waiver;
- ``high``: any other weakening (a rule dropped, an action or severity lowered, a weaker Pod
  Security level, a registry allowed);
- ``medium``: tightening or neutral changes, and the first publication.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from dutyguard.core.model import Severity
from dutyguard.core.policy import PSSLevel
from dutyguard.core.rule import RuleRegistry
from dutyguard.policy.model import PolicyBundle, Stage

MAX_LISTED = 20
"""Names listed per change line (the rest is counted), so a large bundle gives a readable summary."""

_PSS_RANK = {PSSLevel.BASELINE: 0, PSSLevel.RESTRICTED: 1}


@dataclass(frozen=True, slots=True)
class Change:
    effect: str
    """``weakens``, ``strengthens`` or ``changes``."""
    what: str
    loosens_exceptions: bool = False

    def to_json(self) -> dict[str, object]:
        return {"effect": self.effect, "what": self.what}


def document_lines(document: Mapping[str, object] | None) -> list[str]:
    if document is None:
        return []
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False).splitlines()


def text_diff(
    old: Mapping[str, object] | None, new: Mapping[str, object], old_label: str, new_label: str
) -> str:
    """A unified diff of the two documents, pretty-printed with sorted keys (layout-independent)."""
    lines = difflib.unified_diff(
        document_lines(old), document_lines(new), old_label, new_label, n=3, lineterm=""
    )
    return "\n".join(lines)


def _names(items: Iterable[str]) -> str:
    ordered = sorted(items)
    shown = ", ".join(ordered[:MAX_LISTED])
    return shown + (f" (+{len(ordered) - MAX_LISTED} more)" if len(ordered) > MAX_LISTED else "")


def _severity(bundle: PolicyBundle, registry: RuleRegistry, rule_id: str) -> Severity:
    override = bundle.severity_overrides.get(rule_id)
    return override if override is not None else registry.get(rule_id).meta.severity


def assess(old: PolicyBundle | None, new: PolicyBundle, registry: RuleRegistry) -> list[Change]:
    """What changes for enforcement, weakening first; empty when nothing that matters changed."""
    if old is None:
        return [Change("changes", f"first publication: {len(new.enabled_rules)} rules")]
    out: list[Change] = []
    dropped = old.enabled_rules - new.enabled_rules
    added = new.enabled_rules - old.enabled_rules
    if dropped:
        out.append(Change("weakens", f"rules no longer applied: {_names(dropped)}"))
    if added:
        out.append(Change("strengthens", f"rules newly applied: {_names(added)}"))
    common = old.enabled_rules & new.enabled_rules
    lowered: list[str] = []
    raised: list[str] = []
    for rid in common:
        a, b = _severity(old, registry, rid), _severity(new, registry, rid)
        if b.rank < a.rank:
            lowered.append(f"{rid} {a.value}→{b.value}")
        elif b.rank > a.rank:
            raised.append(f"{rid} {a.value}→{b.value}")
    if lowered:
        out.append(Change("weakens", f"severity lowered: {_names(lowered)}"))
    if raised:
        out.append(Change("strengthens", f"severity raised: {_names(raised)}"))
    for stage in Stage:
        weaker: list[str] = []
        stronger: list[str] = []
        for rid in common:
            act_a = old.actions[stage].action_for(rid, _severity(old, registry, rid))
            act_b = new.actions[stage].action_for(rid, _severity(new, registry, rid))
            if stage.strength(act_b) < stage.strength(act_a):
                weaker.append(f"{rid} {act_a}→{act_b}")
            elif stage.strength(act_b) > stage.strength(act_a):
                stronger.append(f"{rid} {act_a}→{act_b}")
        if weaker:
            out.append(Change("weakens", f"{stage.value} actions lowered: {_names(weaker)}"))
        if stronger:
            out.append(Change("strengthens", f"{stage.value} actions raised: {_names(stronger)}"))
    out.extend(_pod_security(old, new))
    out.extend(_registries(old, new))
    out.extend(_exceptions(old, new))
    if old.scope != new.scope:
        out.append(
            Change("changes", "scope (teams, apps, namespaces, clusters, registries governed) changed")
        )
    out.sort(key=lambda c: (c.effect != "weakens", c.effect != "strengthens"))
    return out


def _pod_security(old: PolicyBundle, new: PolicyBundle) -> list[Change]:
    names: set[str] = set()
    for bundle in (old, new):
        for entry in bundle.pod_security.entries:
            names.update(entry.selector.names)
    weaker: list[str] = []
    stronger: list[str] = []
    # "" stands for namespaces no entry names (the default, or label-selected ones in CI).
    for ns in sorted(names | {""}):
        a, b = old.pod_security.level_for(ns), new.pod_security.level_for(ns)
        label = ns or "(other namespaces)"
        if _PSS_RANK[b] < _PSS_RANK[a]:
            weaker.append(f"{label} {a.value}→{b.value}")
        elif _PSS_RANK[b] > _PSS_RANK[a]:
            stronger.append(f"{label} {a.value}→{b.value}")
    out: list[Change] = []
    if weaker:
        out.append(Change("weakens", f"Pod Security level lowered: {_names(weaker)}"))
    if stronger:
        out.append(Change("strengthens", f"Pod Security level raised: {_names(stronger)}"))
    if old.pod_security != new.pod_security and not weaker and not stronger:
        out.append(Change("changes", "Pod Security selectors changed"))
    return out


def _registries(old: PolicyBundle, new: PolicyBundle) -> list[Change]:
    a, b = set(old.allowed_registries), set(new.allowed_registries)
    if a == b:
        return []
    if not b:
        return [Change("weakens", "allowed registries: any registry is allowed now")]
    if not a:
        return [Change("strengthens", f"allowed registries restricted to {_names(b)}")]
    out: list[Change] = []
    if b - a:
        out.append(Change("weakens", f"registries newly allowed: {_names(b - a)}"))
    if a - b:
        out.append(Change("strengthens", f"registries no longer allowed: {_names(a - b)}"))
    return out


def _exceptions(old: PolicyBundle, new: PolicyBundle) -> list[Change]:
    a, b = old.exceptions, new.exceptions
    looser: list[str] = []
    tighter: list[str] = []
    for sev in Severity:
        if b.max_days[sev] > a.max_days[sev]:
            looser.append(f"{sev.value} max {a.max_days[sev]}→{b.max_days[sev]} days")
        elif b.max_days[sev] < a.max_days[sev]:
            tighter.append(f"{sev.value} max {a.max_days[sev]}→{b.max_days[sev]} days")
        if b.quorum[sev] < a.quorum[sev]:
            looser.append(f"{sev.value} quorum {a.quorum[sev]}→{b.quorum[sev]}")
        elif b.quorum[sev] > a.quorum[sev]:
            tighter.append(f"{sev.value} quorum {a.quorum[sev]}→{b.quorum[sev]}")
    if b.wide_scope_quorum < a.wide_scope_quorum:
        looser.append(f"wide-scope quorum {a.wide_scope_quorum}→{b.wide_scope_quorum}")
    elif b.wide_scope_quorum > a.wide_scope_quorum:
        tighter.append(f"wide-scope quorum {a.wide_scope_quorum}→{b.wide_scope_quorum}")
    if set(b.approver_roles) - set(a.approver_roles):
        looser.append(f"approver roles added: {_names(set(b.approver_roles) - set(a.approver_roles))}")
    ta, tb = set(a.approver_teams), set(b.approver_teams)
    if ta and (not tb or tb - ta):
        # No team list, or a new team in it, lets someone approve who could not before.
        looser.append(f"approver teams {_names(ta)} → {_names(tb) or 'any team'}")
    elif tb and (not ta or ta - tb):
        tighter.append(f"approver teams {_names(ta) or 'any team'} → {_names(tb)}")
    out: list[Change] = []
    if looser:
        out.append(
            Change("weakens", f"exception policy loosened: {'; '.join(looser)}", loosens_exceptions=True)
        )
    if tighter:
        out.append(Change("strengthens", f"exception policy tightened: {'; '.join(tighter)}"))
    return out


def severity_of(changes: Iterable[Change]) -> Severity:
    listed = list(changes)
    if any(c.loosens_exceptions for c in listed):
        return Severity.CRITICAL
    if any(c.effect == "weakens" for c in listed):
        return Severity.HIGH
    return Severity.MEDIUM
