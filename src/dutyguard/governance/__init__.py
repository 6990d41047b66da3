"""Governance core: who may do what, segregation of duties, maker-checker, RACI, break-glass.

Pure domain logic: no database, no HTTP, no clock (every function takes ``now``), no
environment. All values are frozen dataclasses; change them by calling the functions below,
which return new values. The only I/O is reading the three shipped data files
(``dutyguard/data/{roles,sod-rules,raci}.yaml``), strictly: an unknown key, an unknown duty or
role, a duplicate id or a broken cross-file invariant is a :class:`~dutyguard.errors.ConfigError`
naming the file, line and key. Errors are :class:`~dutyguard.errors.GovernanceError` subclasses
with a stable ``code`` (put it in problem+json and in the audit entry).

Identifiers (principals, teams, request/grant/mitigation ids) are lower-case ASCII
``[a-z0-9][a-z0-9._@+-]{0,63}``; app/namespace/cluster names are lower-case DNS-style up to 253
characters. Anything else is refused (``invalid_id``), so a capital letter or a homoglyph can
never make the maker look like a different approver. Times must be timezone-aware.

Final interface (what the server uses)
======================================

``duties``
    ``Role`` (security, devops, compliance, admin, ci, cluster), ``PrincipalKind`` (person, service),
    ``Duty`` (StrEnum; ``.description``, ``.read_only``), ``READ_ONLY_DUTIES``, ``MACHINE_DUTIES``,
    ``EMERGENCY_DUTIES`` (``enforcement.override``: held by no role, only via break-glass),
    ``RoleTable`` (``duties_of(role)``, ``kind_of(role)``, ``roles_with(duty)``, ``breakglass``,
    ``sensitive_duties``, ``is_sensitive(role)``, ``sensitive_roles``), ``SENSITIVE_FLOOR``,
    ``load_roles(path=None)``, ``shipped_roles()`` (cached), ``duties_of(role)``.
    There is no duty that writes or deletes audit entries.

``scope``
    ``ScopeKind`` (org, team, app, namespace, cluster), ``Scope(kind, id)`` with ``Scope.parse("team:x")``
    and ``str(scope)``; ``ORG`` (``org:*``); ``Ownership.build(teams, {Scope: team})`` with
    ``covers(binding_scope, target)``, ``owner_of(scope)``, ``assets_of(team)``. Org covers all; a team
    covers itself and what it owns; an asset binding covers that asset only; unknown assets are
    covered by org bindings only.

``authz``
    ``Binding(principal_id, role, scope)``, ``Principal(id, kind, teams, bindings)`` (refuses a machine
    role on a person and the reverse, duplicate bindings), ``authorize(principal, duty, target,
    ownership, active_breakglass=None, *, now=None, roles=None, raci=None) -> Decision(allowed, reason,
    duty, target, via, grant_id)``; ``Decision`` refuses ``bool()`` (read ``.allowed``). Default deny:
    unknown duty (a ``str`` is accepted and parsed), no bindings, scope not covered, a role the RACI
    matrix does not let exercise the duty. Emergency duties need ``now`` and the principal's own open
    grant. ``require(...)`` raises ``AuthorizationError("forbidden")``. ``effective_duties(principal,
    target, ownership)`` for approvals and whoami; ``held_duties(bindings)``.

``sod``
    ``ConflictRule(id, title, severity, rationale, refs, left, right, mitigable)`` with
    ``DutyList(match: any|all, duties)``; ``RuleSet(rules, source)`` with ``document()`` (canonical
    JSON) and ``digest``; ``load_rules(path=None)``, ``shipped_rules()``, ``parse_rules_text(text,
    source)``. ``Mitigation(id, rule_id, principal_id, owner, reason, expires_at, created_at,
    created_by, revoked_at=None, revoked_by=None)`` made by ``record_mitigation(...)`` (refuses
    ``self_mitigation``, ``owner_is_subject``, ``unknown_rule``, ``not_mitigable``,
    ``reason_required``, ``bad_expiry``; ``AuthorizationError`` without ``sod.mitigate``).
    ``find_conflicts(bindings_after_change, principal_id, rules, mitigations, now) -> list[Conflict]``
    (``Conflict.mitigated``, ``.describe()``); ``check_grant(actor, subject, binding, ownership, now,
    *, rules, mitigations)`` raises ``SoDViolation`` (``role_kind``, ``conflict`` with ``rule_ids``,
    ``self_grant``) or ``AuthorizationError`` (``forbidden``); returns the mitigated conflicts kept.
    ``sod_report(principals, rules, mitigations, now)``, ``role_conflicts(a, b)``,
    ``rules_change_severity(current, proposed)``, ``propose_rules_change(request_id, maker, current,
    proposed, now, ownership) -> ApprovalRequest`` (kind ``sod.rules.change``).

``approvals``
    ``ApprovalKind`` (policy.change, playbook.change, exception, sod.rules.change, role.binding),
    ``ApprovalPolicy(kind, maker_duty, approver_duty, quorum_by_severity, ttl, exclude_maker_team)``,
    ``default_policy(kind)``; ``ApprovalRequest`` (id, kind, subject, subject_digest, scope, maker,
    maker_teams, severity, created_at, expires_at, quorum, approver_duty, exclude_maker_team,
    approvals, rejection, state, closed_at, closed_reason, excluded) with ``to_json()`` /
    ``from_json()`` (strict; a stored document that breaks an invariant, e.g. the maker's own vote
    or an excluded person's, is refused); ``open_request(policy, *, request_id, maker, subject,
    subject_digest, severity, scope, now, ownership, excluded=frozenset())``; ``decide(request,
    actor_id, actor_duties, actor_teams, approve, now, reason="", *, seen_digest=None)`` raising
    ``ApprovalRefused`` codes ``closed``, ``expired``, ``self_approval`` (maker or excluded),
    ``duplicate_approval``, ``missing_duty``, ``same_team``, ``stale_subject``, ``reason_required``;
    ``withdraw(request, actor_id, now, reason)``; ``expire(request, now)``.

``grants``
    Sensitive role bindings (kind ``role.binding``): ``needs_approval(role)``,
    ``request_binding(request_id, maker, subject, binding, ownership, now, *, rules, mitigations)
    -> (ApprovalRequest, payload, mitigated conflicts)`` (runs ``check_grant`` first; the subject is
    excluded from deciding), ``binding_payload(binding)`` / ``parse_binding_payload(payload, id)``
    (canonical JSON, strict), ``payload_digest``, ``eligible_approvers(request, people, ownership)``,
    ``is_bootstrap_binding(binding, *, approver_exists, window_open)``, ``approver_duty()``.

``raci``
    ``Raci`` (``processes``, ``governing(duty)``, ``accountable_for(duty)``, ``permits(role, duty)``,
    ``matrix() -> tuple[MatrixRow]``), ``Process``, ``load_raci(path=None, roles=None)``,
    ``shipped_raci()``, ``accountable_for(duty)``, ``matrix()``.

``breakglass``
    ``Grant(id, opener, reason, scope, opened_at, expires_at, closed_at, closed_by, review)`` with
    ``is_active(now)``, ``state(now)``, ``review_due(now)``; ``Review(reviewer, outcome, notes, at)``;
    ``ReviewOutcome`` (justified, unjustified); ``open_grant(grant_id, opener, reason, scope, duration,
    now, ownership, *, open_grants=())`` (codes ``missing_duty``, ``reason_required``,
    ``bad_duration``, ``already_open``); ``close_grant(grant, actor_id, actor_duties, now)``;
    ``review_grant(grant, reviewer_id, reviewer_duties, outcome, notes, now)`` (codes ``self_review``,
    ``missing_duty``, ``already_reviewed``, ``still_open``, ``notes_required``). The server writes the
    audit entry and sends the alert when ``open_grant`` returns.
"""

from __future__ import annotations

from dutyguard.errors import (
    ApprovalRefused,
    AuthorizationError,
    BreakglassRefused,
    GovernanceError,
    SoDViolation,
)
from dutyguard.governance.approvals import (
    ApprovalKind,
    ApprovalPolicy,
    ApprovalRequest,
    RequestState,
    Vote,
    decide,
    default_policy,
    expire,
    open_request,
    withdraw,
)
from dutyguard.governance.authz import (
    Binding,
    Decision,
    Principal,
    authorize,
    effective_duties,
    held_duties,
    require,
)
from dutyguard.governance.breakglass import (
    Grant,
    GrantState,
    Review,
    ReviewOutcome,
    close_grant,
    open_grant,
    review_grant,
)
from dutyguard.governance.duties import (
    EMERGENCY_DUTIES,
    MACHINE_DUTIES,
    READ_ONLY_DUTIES,
    SENSITIVE_FLOOR,
    Duty,
    PrincipalKind,
    Role,
    RoleTable,
    duties_of,
    load_roles,
    shipped_roles,
)
from dutyguard.governance.raci import Raci, accountable_for, load_raci, matrix, shipped_raci
from dutyguard.governance.scope import ORG, Ownership, Scope, ScopeKind
from dutyguard.governance.sod import (
    Conflict,
    ConflictRule,
    Mitigation,
    RuleSet,
    check_grant,
    find_conflicts,
    load_rules,
    parse_rules_text,
    propose_rules_change,
    record_mitigation,
    role_conflicts,
    rules_change_severity,
    shipped_rules,
    sod_report,
)

__all__ = [
    "EMERGENCY_DUTIES",
    "MACHINE_DUTIES",
    "ORG",
    "READ_ONLY_DUTIES",
    "SENSITIVE_FLOOR",
    "ApprovalKind",
    "ApprovalPolicy",
    "ApprovalRefused",
    "ApprovalRequest",
    "AuthorizationError",
    "Binding",
    "BreakglassRefused",
    "Conflict",
    "ConflictRule",
    "Decision",
    "Duty",
    "GovernanceError",
    "Grant",
    "GrantState",
    "Mitigation",
    "Ownership",
    "Principal",
    "PrincipalKind",
    "Raci",
    "RequestState",
    "Review",
    "ReviewOutcome",
    "Role",
    "RoleTable",
    "RuleSet",
    "Scope",
    "ScopeKind",
    "SoDViolation",
    "Vote",
    "accountable_for",
    "authorize",
    "check_grant",
    "close_grant",
    "decide",
    "default_policy",
    "duties_of",
    "effective_duties",
    "expire",
    "find_conflicts",
    "held_duties",
    "load_raci",
    "load_roles",
    "load_rules",
    "matrix",
    "open_grant",
    "open_request",
    "parse_rules_text",
    "propose_rules_change",
    "record_mitigation",
    "require",
    "review_grant",
    "role_conflicts",
    "rules_change_severity",
    "shipped_raci",
    "shipped_roles",
    "shipped_rules",
    "sod_report",
    "withdraw",
]
