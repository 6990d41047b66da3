"""Segregation of duties: the report (conflicts, mitigations, RACI), the rules, mitigations,
and proposals to change the rules (a controlled change: maker-checker, ``sod.rules.change``)."""

from __future__ import annotations

from datetime import UTC
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response

from dutyguard.audit.canonical import JSONValue
from dutyguard.errors import ConfigError, GovernanceError
from dutyguard.governance.duties import MACHINE_ROLES, Duty, Role
from dutyguard.governance.scope import ORG
from dutyguard.governance.sod import (
    Conflict,
    Mitigation,
    parse_rules_text,
    propose_rules_change,
    record_mitigation,
    role_conflicts,
    sod_report,
)
from dutyguard.server import store
from dutyguard.server.approval_kinds import rules_payload
from dutyguard.server.auditing import record
from dutyguard.server.auth import Caller
from dutyguard.server.authz import requires
from dutyguard.server.problems import Problem, not_found
from dutyguard.server.routes._common import RuntimeDep, refusals
from dutyguard.server.routes.approvals import approval_out
from dutyguard.server.runtime import Runtime
from dutyguard.server.schemas import ApprovalOut, MitigationCreate, MitigationOut, RulesProposal

router = APIRouter(prefix="/sod", tags=["segregation of duties"])


def mitigation_out(m: Mitigation, rt: Runtime) -> MitigationOut:
    return MitigationOut(
        id=m.id,
        rule_id=m.rule_id,
        principal=m.principal_id,
        owner=m.owner,
        reason=m.reason,
        expires_at=m.expires_at,
        created_at=m.created_at,
        created_by=m.created_by,
        revoked_at=m.revoked_at,
        active=m.is_active(rt.now()),
    )


def _conflict_json(c: Conflict) -> dict[str, JSONValue]:
    return {
        "principal": c.principal_id,
        "rule": c.rule.id,
        "title": c.rule.title,
        "severity": c.rule.severity.value,
        "left": sorted(c.left),
        "right": sorted(c.right),
        "bindings": [str(b) for b in c.bindings],
        "mitigated": c.mitigated,
        "mitigation": c.mitigation.id if c.mitigation else None,
    }


@router.get("/report", dependencies=[Depends(requires(Duty.SOD_READ))])
def report(rt: RuntimeDep) -> dict[str, Any]:
    """Every conflict in the organisation (mitigated or not), the mitigations, the RACI matrix,
    and which role pairs the rules in force forbid."""
    now = rt.now()
    with rt.db.read() as conn:
        rules = store.current_rules(conn, rt.shipped_rules, rt.roles)
        principals = store.all_principals(conn)
        mitigations = store.mitigations(conn)
    rep = sod_report(principals, rules.rules, mitigations, now, roles=rt.roles)
    people = [r for r in Role if r not in MACHINE_ROLES]
    pairs: list[JSONValue] = []
    for i, a in enumerate(people):
        for b in people[i + 1 :]:
            hit = role_conflicts(a, b, rules.rules, rt.roles)
            if hit:
                pairs.append({"roles": [a.value, b.value], "rules": list(hit)})
    return {
        "generated_at": now.astimezone(UTC).isoformat(),
        "rules_version": rules.version,
        "rules_digest": rules.rules.digest,
        "conflicts": [_conflict_json(c) for c in rep.conflicts],
        "unmitigated": len(rep.unmitigated),
        "mitigations": {
            "active": [mitigation_out(m, rt).model_dump(mode="json") for m in rep.active_mitigations],
            "lapsed": [mitigation_out(m, rt).model_dump(mode="json") for m in rep.lapsed_mitigations],
        },
        "raci": [
            {
                "process": row.process,
                "title": row.title,
                "accountable": row.accountable.value,
                "cells": {r.value: v for r, v in row.cells.items()},
            }
            for row in rt.raci.matrix()
        ],
        "forbidden_role_pairs": pairs,
    }


@router.get("/rules", dependencies=[Depends(requires(Duty.SOD_READ))])
def rules(rt: RuntimeDep) -> dict[str, Any]:
    """The conflict rules in force (version 0 is the file shipped with dutyguard)."""
    with rt.db.read() as conn:
        active = store.current_rules(conn, rt.shipped_rules, rt.roles)
    return {
        "version": active.version,
        "digest": active.rules.digest,
        "rules": [r.to_json() for r in active.rules.rules],
    }


@router.post("/rules/proposals", status_code=201)
def propose_rules(
    body: RulesProposal, caller: Annotated[Caller, Depends(requires(Duty.SOD_RULES_PROPOSE))], rt: RuntimeDep
) -> ApprovalOut:
    """Propose a complete new rule set; it applies only after another security approver agrees."""
    now = rt.now()
    try:
        proposed = parse_rules_text(body.document, "body.document", rt.roles)
    except (ConfigError, GovernanceError) as e:
        message = e.diagnostics()
        raise Problem(
            422,
            "validation",
            "Invalid request",
            f"the proposed rules are not valid: {message}",
            errors=[{"field": "body.document", "message": message}],
        ) from None
    request_id = store.new_id("apr")
    with refusals(rt, caller, "sod.rules.propose", f"approval:{request_id}"), rt.db.write() as conn:
        current = store.current_rules(conn, rt.shipped_rules, rt.roles)
        ownership = store.ownership_for(conn, [caller.principal], [ORG])
        request = propose_rules_change(
            request_id,
            caller.principal,
            current.rules,
            proposed,
            now,
            ownership,
            roles=rt.roles,
            raci=rt.raci,
        )
        store.insert_request(conn, request, rules_payload(proposed.document(), current.version))
        record(
            rt,
            conn,
            actor=caller.id,
            principal=caller.principal,
            action="approval.open",
            obj=f"approval:{request_id}",
            details={
                "kind": request.kind,
                "subject_digest": request.subject_digest,
                "severity": request.severity.value,
                "base_version": current.version,
                "quorum": request.quorum,
            },
        )
        stored = store.get_request(conn, request_id)
    assert stored is not None
    return approval_out(stored, rt)


@router.get("/mitigations", dependencies=[Depends(requires(Duty.SOD_READ))])
def list_mitigations(rt: RuntimeDep) -> list[MitigationOut]:
    with rt.db.read() as conn:
        rows = store.mitigations(conn)
    return [mitigation_out(m, rt) for m in rows]


@router.post("/mitigations", status_code=201)
def add_mitigation(
    body: MitigationCreate, caller: Annotated[Caller, Depends(requires(Duty.SOD_MITIGATE))], rt: RuntimeDep
) -> MitigationOut:
    """Record a mitigating control (owner, reason, expiry) so a conflicting binding may be granted."""
    now = rt.now()
    mitigation_id = store.new_id("mit")
    obj = f"mitigation:{body.rule_id}/{body.principal}"
    with refusals(rt, caller, "sod.mitigate", obj), rt.db.write() as conn:
        for who in (body.principal, body.owner):
            if store.get_identity(conn, who) is None:
                raise not_found(f"identity {who!r}")
        rules = store.current_rules(conn, rt.shipped_rules, rt.roles)
        ownership = store.ownership_for(conn, [caller.principal], [ORG])
        m = record_mitigation(
            mitigation_id,
            caller.principal,
            body.rule_id,
            body.principal,
            body.owner,
            body.reason,
            body.expires_at.astimezone(UTC),
            now,
            ownership,
            rules=rules.rules,
            roles=rt.roles,
            raci=rt.raci,
        )
        store.insert_mitigation(conn, m)
        record(
            rt,
            conn,
            actor=caller.id,
            principal=caller.principal,
            action="sod.mitigate",
            obj=obj,
            details={"mitigation_id": m.id, "owner": m.owner, "expires_at": m.expires_at.isoformat()},
        )
    return mitigation_out(m, rt)


@router.delete("/mitigations/{mitigation_id}", status_code=204)
def revoke_mitigation(
    mitigation_id: str, caller: Annotated[Caller, Depends(requires(Duty.SOD_MITIGATE))], rt: RuntimeDep
) -> Response:
    """Revoke a mitigation; the conflict it covered shows as unmitigated in the report at once."""
    obj = f"mitigation:{mitigation_id}"
    with refusals(rt, caller, "sod.mitigation.revoke", obj), rt.db.write() as conn:
        m = store.get_mitigation(conn, mitigation_id)
        if m is None or m.revoked_at is not None:
            raise not_found(f"active mitigation {mitigation_id!r}")
        store.revoke_mitigation(conn, mitigation_id, caller.id, rt.now())
        record(
            rt,
            conn,
            actor=caller.id,
            principal=caller.principal,
            action="sod.mitigation.revoke",
            obj=obj,
            details={"rule": m.rule_id, "principal": m.principal_id},
        )
    return Response(status_code=204)
