"""Sensitive role bindings: a second person approves before the role exists.

An administrator (``role.assign``) creates identities, binds roles and issues enrollment tokens.
For most roles that is the whole job. For a *sensitive* role it would be an escalation path: an
administrator could create a person, bind them ``security`` and redeem their one-time enrollment
token themselves (admin -> security). A role is sensitive when it holds a duty listed under
``sensitive_bindings`` in ``roles.yaml`` (approving anything, publishing the signed state and
rotating its keys, incident response); which roles that makes is derived from the role table,
never listed by name.

Binding a sensitive role is therefore a controlled change, approval kind ``role.binding``:

1. :func:`request_binding` runs the whole :func:`~dutyguard.governance.sod.check_grant` first
   (kind of identity, ``role.assign`` over the scope, conflicts, self-grant, duplicates), so a
   binding that could never be made is refused at once rather than parked;
2. it opens a request over the binding's scope, bound to the sha256 of the exact binding
   (:func:`binding_payload`), with the person being bound *excluded* from deciding it;
3. the binding is created only when someone other than the maker and the subject, holding
   ``role.approve`` over the binding's scope, approves; until then the role does not exist, so
   nothing (an enrollment token included) can exercise it. Rejection and expiry create nothing.

Bootstrap: the first holder of ``role.approve`` cannot be approved by anyone. While nobody holds
it, and only once per installation (the server keeps the claim), an organisation-wide binding of
a role that holds it takes effect at once: :func:`is_bootstrap_binding`. After that the rule
applies to everyone, and removing every approver does not reopen the window.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from datetime import datetime

from dutyguard.core.model import Severity
from dutyguard.errors import GovernanceError
from dutyguard.governance.approvals import ApprovalKind, ApprovalRequest, default_policy, open_request
from dutyguard.governance.authz import Binding, Principal, effective_duties
from dutyguard.governance.duties import Duty, Role, RoleTable, shipped_roles
from dutyguard.governance.raci import Raci
from dutyguard.governance.scope import Ownership, Scope, ScopeKind
from dutyguard.governance.sod import Conflict, ConflictRule, Mitigation, RuleSet, check_grant

KIND = ApprovalKind.ROLE_BINDING
_PAYLOAD_KEYS = frozenset({"identity", "role", "scope"})


def approver_duty() -> Duty:
    """The duty a checker of a sensitive binding needs (``role.approve``)."""
    return default_policy(KIND).approver_duty


def needs_approval(role: Role, roles: RoleTable | None = None) -> bool:
    """Is binding ``role`` a controlled change? (It holds a sensitive duty.)"""
    return (roles if roles is not None else shipped_roles()).is_sensitive(role)


def binding_payload(binding: Binding) -> str:
    """The exact binding an approval is about, as canonical JSON (its sha256 is the subject digest)."""
    return json.dumps(
        {"identity": binding.principal_id, "role": binding.role.value, "scope": str(binding.scope)},
        sort_keys=True,
        separators=(",", ":"),
    )


def payload_digest(payload: str) -> str:
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def parse_binding_payload(payload: str, request_id: str) -> Binding:
    """Strictly read back a stored payload; anything but the canonical form is refused."""

    def bad(why: str) -> GovernanceError:
        return GovernanceError("invalid_request", f"request {request_id}: stored binding {why}")

    try:
        data = json.loads(payload)
    except ValueError:
        raise bad("is not JSON") from None
    if not isinstance(data, dict) or set(data) != _PAYLOAD_KEYS:
        raise bad("must have exactly identity, role and scope")
    if not all(isinstance(data[k], str) for k in _PAYLOAD_KEYS):
        raise bad("fields must be strings")
    try:
        binding = Binding(data["identity"], Role(data["role"]), Scope.parse(data["scope"]))
    except ValueError:
        raise bad(f"names unknown role {data['role']!r}") from None
    if binding_payload(binding) != payload:
        # a re-encoded payload would still parse, but it is not the text whose digest was approved
        raise bad("is not in canonical form")
    return binding


def request_binding(
    request_id: str,
    maker: Principal,
    subject: Principal,
    binding: Binding,
    ownership: Ownership,
    now: datetime,
    *,
    rules: RuleSet | Iterable[ConflictRule] | None = None,
    mitigations: Iterable[Mitigation] = (),
    roles: RoleTable | None = None,
    raci: Raci | None = None,
) -> tuple[ApprovalRequest, str, tuple[Conflict, ...]]:
    """Open the ``role.binding`` request for a sensitive ``binding``.

    Returns the request, its payload (store it with the request) and the mitigated conflicts the
    binding would leave. Raises what :func:`check_grant` raises, and ``GovernanceError``
    ``not_sensitive`` for a role that binds without approval (the caller binds it directly).
    """
    if not needs_approval(binding.role, roles):
        raise GovernanceError("not_sensitive", f"binding {binding.role} needs no approval")
    mitigated = check_grant(
        maker, subject, binding, ownership, now, rules=rules, mitigations=mitigations, roles=roles, raci=raci
    )
    payload = binding_payload(binding)
    request = open_request(
        default_policy(KIND),
        request_id=request_id,
        maker=maker,
        subject=f"bind {binding.role}@{binding.scope} to {binding.principal_id}",
        subject_digest=payload_digest(payload),
        severity=Severity.CRITICAL if binding.scope.kind is ScopeKind.ORG else Severity.HIGH,
        scope=binding.scope,
        now=now,
        ownership=ownership,
        roles=roles,
        raci=raci,
        excluded=frozenset({subject.id}),
    )
    return request, payload, mitigated


def eligible_approvers(
    request: ApprovalRequest,
    people: Iterable[Principal],
    ownership: Ownership,
    *,
    roles: RoleTable | None = None,
    raci: Raci | None = None,
) -> tuple[str, ...]:
    """Who could decide ``request`` now: holds its approver duty over its scope, and is neither
    the maker nor excluded. An empty answer means the request could never be approved."""
    out = []
    for p in people:
        if p.id == request.maker or p.id in request.excluded:
            continue
        if request.approver_duty in effective_duties(p, request.scope, ownership, roles=roles, raci=raci):
            out.append(p.id)
    return tuple(sorted(out))


def is_bootstrap_binding(
    binding: Binding,
    *,
    approver_exists: bool,
    window_open: bool,
    roles: RoleTable | None = None,
) -> bool:
    """May ``binding`` take effect without approval because nobody could approve it yet?

    Only while the installation's one-time window is open, nobody at all holds the approver duty
    (in any scope: ``approver_exists``), and the binding is organisation-wide of a role that
    holds that duty: the first Security member of a new installation. A team-scoped one would
    leave no approver for the organisation, so it waits for approval like any other.
    """
    table = roles if roles is not None else shipped_roles()
    return (
        window_open
        and not approver_exists
        and binding.scope.kind is ScopeKind.ORG
        and approver_duty() in table.duties_of(binding.role)
    )
