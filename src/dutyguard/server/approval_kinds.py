"""The controlled changes the server can apply once maker-checker approves them.

Each kind names its approval policy (``governance.approvals``), the duty needed to read its
requests, and how to apply the approved payload inside the transaction of the deciding vote. A
kind is registered explicitly; a duplicate id is an error. Features (policy bundles, exceptions)
register their own kinds with the registry they are given by the app factory.

Applying re-checks that the stored payload still hashes to the digest the checkers approved, so
a payload edited in the database after approval is refused rather than applied. A kind may also
*describe* a request: what a checker should see before voting (shown by ``GET /approvals/{id}``).

Kinds registered here: ``sod.rules.change`` (the conflict rules) and ``role.binding`` (a
sensitive role, created only on approval, after the whole grant check runs again).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy.engine import Connection

from dutyguard.audit.canonical import JSONValue
from dutyguard.errors import AuthorizationError, GovernanceError, RegistryError
from dutyguard.governance import grants
from dutyguard.governance.approvals import ApprovalKind, ApprovalPolicy, default_policy
from dutyguard.governance.duties import Duty
from dutyguard.governance.sod import check_grant, parse_rules_text
from dutyguard.server import store

if TYPE_CHECKING:
    from dutyguard.server.runtime import Runtime

Apply = Callable[["Runtime", Connection, store.StoredRequest, datetime], dict[str, JSONValue]]
Describe = Callable[["Runtime", Connection, store.StoredRequest], dict[str, JSONValue]]


@dataclass(frozen=True, slots=True)
class KindHandler:
    kind: str
    policy: ApprovalPolicy
    read_duty: Duty
    apply: Apply
    describe: Describe | None = None


class ApprovalKinds:
    def __init__(self) -> None:
        self._kinds: dict[str, KindHandler] = {}

    def register(self, handler: KindHandler) -> None:
        if handler.kind in self._kinds:
            raise RegistryError(f"approval kind {handler.kind!r} is already registered")
        if handler.policy.kind != handler.kind:
            raise RegistryError(f"approval kind {handler.kind!r} has a policy for {handler.policy.kind!r}")
        self._kinds[handler.kind] = handler

    def get(self, kind: str) -> KindHandler | None:
        return self._kinds.get(kind)

    def __iter__(self) -> Iterator[KindHandler]:
        return iter(self._kinds.values())


# -- sod.rules.change ---------------------------------------------------------------------------


def rules_payload(document: str, base_version: int) -> str:
    return json.dumps({"base_version": base_version, "document": document}, sort_keys=True)


def apply_rules_change(
    rt: Runtime, conn: Connection, stored: store.StoredRequest, now: datetime
) -> dict[str, JSONValue]:
    try:
        payload = json.loads(stored.payload)
        document = payload["document"]
        base_version = payload["base_version"]
    except (ValueError, KeyError, TypeError):
        raise GovernanceError(
            "invalid_request", f"request {stored.request.id}: stored payload is unreadable"
        ) from None
    if not isinstance(document, str) or not isinstance(base_version, int):
        raise GovernanceError("invalid_request", f"request {stored.request.id}: stored payload is unreadable")
    rules = parse_rules_text(document, f"approval {stored.request.id}", rt.roles)
    if rules.digest != stored.request.subject_digest:
        raise GovernanceError(
            "stale_subject", f"request {stored.request.id}: the stored rules are not the ones approved"
        )
    current = store.current_rules(conn, rt.shipped_rules, rt.roles)
    if current.version != base_version:
        # Applying would silently undo the change approved in between.
        raise GovernanceError(
            "stale_base",
            f"request {stored.request.id} was proposed against rules v{base_version}; v{current.version} is in force now",
        )
    store.insert_rules(conn, current.version + 1, rules, stored.request.id, now)
    return {"rules_version": current.version + 1, "rules_digest": rules.digest}


# -- role.binding ------------------------------------------------------------------------------------


def apply_role_binding(
    rt: Runtime, conn: Connection, stored: store.StoredRequest, now: datetime
) -> dict[str, JSONValue]:
    """Create the approved binding, after checking everything again as of now.

    Between the request and the vote the person may have been disabled or bound a conflicting
    role, the maker may have lost ``role.assign``, the rules may have changed: each refuses the
    vote (nothing is bound, the request stays pending until it is rejected or expires)."""
    request = stored.request
    if grants.payload_digest(stored.payload) != request.subject_digest:
        raise GovernanceError(
            "stale_subject", f"request {request.id}: the stored binding is not the one approved"
        )
    binding = grants.parse_binding_payload(stored.payload, request.id)
    if binding.scope != request.scope:
        raise GovernanceError(
            "invalid_request", f"request {request.id}: binding scope differs from the request's"
        )
    identity = store.get_identity(conn, binding.principal_id)
    if identity is None or identity.disabled_at is not None:
        raise GovernanceError("subject_gone", f"{binding.principal_id} no longer exists or is disabled")
    maker_identity = store.get_identity(conn, request.maker)
    if maker_identity is None or maker_identity.disabled_at is not None:
        raise GovernanceError("maker_gone", f"{request.maker}, who asked for it, is disabled")
    subject = store.load_principal(conn, identity)
    maker = store.load_principal(conn, maker_identity)
    ownership = store.ownership_for(conn, [maker, subject], [binding.scope])
    rules = store.current_rules(conn, rt.shipped_rules, rt.roles)
    try:
        mitigated = check_grant(
            maker,
            subject,
            binding,
            ownership,
            now,
            rules=rules.rules,
            mitigations=store.mitigations(conn, binding.principal_id),
            roles=rt.roles,
            raci=rt.raci,
        )
    except AuthorizationError as e:
        # the approver is not the one lacking a duty: say whose authority lapsed
        raise GovernanceError(
            "maker_lost_duty", f"{request.maker} may no longer make it: {e.message}"
        ) from None
    sb = store.insert_binding(conn, binding, request.maker, now)
    return {
        "binding_id": sb.id,
        "binding": str(binding),
        "identity": binding.principal_id,
        "rules_version": rules.version,
        "mitigated_conflicts": [c.rule.id for c in mitigated],
    }


def _enrollment(conn: Connection, identity_id: str, now: datetime) -> tuple[list[JSONValue], list[JSONValue]]:
    """The identity's enrollment tokens (unused / redeemed, when and from where / revoked /
    expired) and its usable api tokens: a binding approved today acts through these."""
    records = store.list_tokens(conn, identity_id, None, 200)
    addresses: dict[str, str] | None = None
    enrollment: list[JSONValue] = []
    for r in records:
        if r.purpose != "enrollment":
            continue
        entry: dict[str, JSONValue] = {
            "token_id": r.id,
            "issued_by": r.created_by,
            "issued_at": r.created_at.isoformat(),
            "expires_at": r.expires_at.isoformat(),
        }
        if r.revoked_at is not None and r.revoked_by == identity_id:
            # Revoked "by the person": the exchange does that (the trail has the address). The
            # person could also have revoked it from a token they already had; showing that as
            # redeemed errs towards caution, and redeemed_from then stays null.
            if addresses is None:
                addresses = store.enrollment_exchanges(conn, identity_id)
            entry["state"] = "redeemed"
            entry["redeemed_at"] = r.revoked_at.isoformat()
            entry["redeemed_from"] = addresses.get(r.id)
        elif r.revoked_at is not None:
            entry["state"] = "revoked"
            entry["revoked_by"] = r.revoked_by
        else:
            entry["state"] = "expired" if now >= r.expires_at else "unused"
        enrollment.append(entry)
    usable: list[JSONValue] = [
        {
            "token_id": r.id,
            "created_by": r.created_by,
            "created_at": r.created_at.isoformat(),
            "expires_at": r.expires_at.isoformat(),
        }
        for r in records
        if r.purpose == "api" and r.state(now) == "active"
    ]
    return enrollment, usable


def describe_role_binding(rt: Runtime, conn: Connection, stored: store.StoredRequest) -> dict[str, JSONValue]:
    """The binding, the person (who created them, their roles and teams) and how they can
    authenticate: whether their enrollment token was redeemed, when and from which address."""
    binding = grants.parse_binding_payload(stored.payload, stored.request.id)
    out: dict[str, JSONValue] = {
        "binding": {"identity": binding.principal_id, "role": binding.role.value, "scope": str(binding.scope)}
    }
    identity = store.get_identity(conn, binding.principal_id)
    if identity is None:
        out["subject"] = None
        return out
    principal = store.load_principal(conn, identity)
    out["subject"] = {
        "id": identity.id,
        "display_name": identity.display_name,
        "email": identity.email,
        "created_by": identity.created_by,
        "created_at": identity.created_at.isoformat(),
        "disabled": identity.disabled_at is not None,
        "teams": sorted(principal.teams),
        "bindings": sorted(str(b) for b in principal.bindings),
    }
    enrollment, usable = _enrollment(conn, identity.id, rt.now())
    out["enrollment_tokens"] = enrollment
    out["active_api_tokens"] = usable
    return out


def default_kinds() -> ApprovalKinds:
    kinds = ApprovalKinds()
    kinds.register(
        KindHandler(
            kind=ApprovalKind.SOD_RULES_CHANGE.value,
            policy=default_policy(ApprovalKind.SOD_RULES_CHANGE),
            read_duty=Duty.SOD_READ,
            apply=apply_rules_change,
        )
    )
    kinds.register(
        KindHandler(
            kind=ApprovalKind.ROLE_BINDING.value,
            policy=default_policy(ApprovalKind.ROLE_BINDING),
            read_duty=Duty.ROLE_READ,
            apply=apply_role_binding,
            describe=describe_role_binding,
        )
    )
    return kinds


def digest_of(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
