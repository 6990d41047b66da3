"""Signed state for enforcement points, and the public keys that verify it.

- ``GET /state/bundle`` and ``GET /state/exceptions``: the DSSE envelopes a runner or webhook
  verifies (``dutyguard state pull`` saves them as ``bundle.dsse.json`` / ``exceptions.dsse.json``;
  the admission webhook's ``HttpFetch`` reads these two paths). One signed state serves the whole
  organisation, so any scope holding ``state.read`` may fetch it.
- ``GET /state/attestations``: the latest gate attestation per subject, for admission's
  "image must have a passing gate attestation" rule (each entry is an envelope signed by the
  control plane, verified on its own; the list itself is only an index).
- ``POST /state/verification-failures``: a runner says it refused a bundle or snapshot served to
  it (tampered, replayed, expired, another key …): an audit entry ``gate.state_refused`` with the
  caller's identity, and an alarm. The report is a claim about bytes that did not verify and is
  used for nothing else; a body that is not a strict, bounded report is refused (422) and that
  refusal is audited too.
- ``GET /keys``: the public keyring (every state key with its validity window) to pin;
  ``POST /keys/rotate``: retire the current key and start a new one (security, audited, alarmed).

Stored state that no longer matches what was approved is never signed: the snapshot route then
answers 503 ``state-integrity`` (audited and alarmed), and enforcement points fail closed or keep
their last verified state until it expires.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Request, Response
from pydantic import ValidationError

from dutyguard.audit.entry import Outcome
from dutyguard.governance.duties import Duty
from dutyguard.governance.scope import ORG, Scope, ScopeKind
from dutyguard.server import pagination, published, state_keys
from dutyguard.server import tables as t
from dutyguard.server.auditing import SYSTEM, record, record_refusal
from dutyguard.server.auth import Caller
from dutyguard.server.authz import enforce, public, requires
from dutyguard.server.gate_audit import refusal_details
from dutyguard.server.problems import Problem, not_found
from dutyguard.server.routes._common import RuntimeDep, refusals
from dutyguard.server.routes._state_common import anywhere
from dutyguard.server.runtime import Runtime
from dutyguard.server.schemas import Page
from dutyguard.server.state_schemas import (
    MAX_REFUSAL_REPORT_BYTES,
    AttestationOut,
    RefusalRecorded,
    RotateBody,
    VerificationFailureReport,
)
from dutyguard.trust.attest import Subject
from dutyguard.trust.keys import Keyring

router = APIRouter(tags=["signed state"])

_STATE_READ = anywhere(Duty.STATE_READ, "one signed state serves the whole organisation")
_NO_STORE = {"Cache-Control": "no-store"}


def _envelope(data: bytes) -> Response:
    return Response(content=data, media_type="application/json", headers=_NO_STORE)


@router.get("/state/bundle", dependencies=[Depends(_STATE_READ)])
def state_bundle(rt: RuntimeDep) -> Response:
    """The published policy bundle, signed (DSSE); re-signed with the same version before it expires."""
    data = published.bundle_envelope(rt)
    if data is None:
        raise not_found("a published policy bundle (Security proposes one with `dutyguard policy propose`)")
    return _envelope(data)


@router.get("/state/exceptions", dependencies=[Depends(_STATE_READ)])
def state_exceptions(rt: RuntimeDep) -> Response:
    """Every active exception, signed (DSSE); a new version after every change and expiry."""
    try:
        data = published.snapshot_envelope(rt)
    except published.StateIntegrityError as e:
        _integrity_alarm(rt, e.message)
        raise Problem(
            503,
            "state-integrity",
            "Signed state withheld",
            f"the control plane refuses to sign exceptions that no longer match what was approved: {e.message}",
        ) from None
    return _envelope(data)


def _integrity_alarm(rt: Runtime, reason: str) -> None:
    with rt.db.write() as conn:
        seq = record(
            rt,
            conn,
            actor=SYSTEM,
            principal=None,
            roles=("system",),
            action="state.snapshot.sign",
            obj="exceptions",
            outcome=Outcome.FAILED,
            details={"reason": reason[:1000]},
        )
    rt.notifier.send({"event": "state.integrity", "reason": reason, "audit_seq": seq})


async def _raw_body(request: Request) -> bytes:
    # Read here, validated in the handler: a report that does not validate is audited, which
    # FastAPI's own body validation (before any handler runs) would not allow.
    return await request.body()


_REFUSED_STATE = "gate.state_refused"


def _report(rt: Runtime, caller: Caller, raw: bytes) -> VerificationFailureReport:
    """The strict report, or an audited 422 naming each bad field (never echoing the input)."""
    errors: list[dict[str, object]]
    if len(raw) > MAX_REFUSAL_REPORT_BYTES:
        errors = [
            {"field": "body", "message": f"larger than {MAX_REFUSAL_REPORT_BYTES} bytes", "code": "too_long"}
        ]
    else:
        try:
            report = VerificationFailureReport.model_validate_json(raw)
        except ValidationError as e:
            errors = [
                {
                    "field": ".".join(["body", *(str(p) for p in err["loc"])]),
                    "message": err["msg"][:200],
                    "code": err["type"],
                }
                for err in e.errors(include_url=False, include_input=False)[:20]
            ]
        else:
            try:
                if report.subject is not None:
                    Subject.parse(report.subject)
            except ValueError as e:
                errors = [{"field": "body.subject", "message": str(e)[:200], "code": "value_error"}]
            else:
                return report
    record_refusal(
        rt,
        actor=caller.id,
        principal=caller.principal,
        action=_REFUSED_STATE,
        obj="state",
        details={
            "code": "validation",
            "bytes": len(raw),
            "errors": [{"field": str(x["field"]), "code": str(x["code"])} for x in errors[:20]],
        },
    )
    fields = ", ".join(str(x["field"]) for x in errors[:5])
    raise Problem(
        422, "validation", "Invalid request", f"{len(errors)} invalid field(s): {fields}", errors=errors
    )


@router.post(
    "/state/verification-failures",
    status_code=202,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": VerificationFailureReport.model_json_schema()}},
        }
    },
)
def verification_failure(
    request: Request,
    caller: Annotated[
        Caller,
        Depends(
            requires(Duty.SCAN_SUBMIT, any_scope=True, note="`app:<app>` reported (the organisation if none)")
        ),
    ],
    raw: Annotated[bytes, Depends(_raw_body)],
    rt: RuntimeDep,
) -> RefusalRecorded:
    """A runner refused signed state served to it: audited (``gate.state_refused``) and alarmed."""
    report = _report(rt, caller, raw)
    enforce(rt, request, caller, Duty.SCAN_SUBMIT, Scope(ScopeKind.APP, report.app) if report.app else ORG)
    details = refusal_details(report)
    with rt.db.write() as conn:
        seq = record(
            rt,
            conn,
            actor=caller.id,
            principal=caller.principal,
            action=_REFUSED_STATE,
            obj=f"state:{report.document}",
            outcome=Outcome.FAILED,
            details=details,
        )
    rt.notifier.send(
        {
            "event": _REFUSED_STATE,
            "document": report.document,
            "check": report.check,
            "app": report.app,
            "reported_by": caller.id,
            "audit_seq": seq,
        }
    )
    return RefusalRecorded(audit_seq=seq)


def attestation_out(m: Any) -> AttestationOut:
    return AttestationOut(
        id=m["id"],
        subject=m["subject"],
        decision=m["decision"],
        app=m["app"],
        cluster=m["cluster"],
        submitter=m["submitter"],
        bundle_version=m["bundle_version"],
        bundle_digest=m["bundle_digest"],
        snapshot_version=m["snapshot_version"],
        breakglass_grant=m["breakglass_grant"],
        created_at=m["created_at"],
        envelope=json.loads(m["envelope"]),
    )


@router.get("/state/attestations", dependencies=[Depends(_STATE_READ)])
def state_attestations(
    rt: RuntimeDep, limit: pagination.LimitParam = 100, cursor: pagination.CursorParam = None
) -> Page[AttestationOut]:
    """The latest attestation of each subject (by subject), each a DSSE envelope to verify."""
    key = pagination.decode(cursor, 1)
    after = str(key[0]) if key else None
    a = t.attestations
    latest = sa.select(a.c.subject, sa.func.max(a.c.created_at).label("at")).group_by(a.c.subject)
    if after is not None:
        latest = latest.where(a.c.subject > after)
    latest_q = latest.order_by(a.c.subject).limit(limit + 1).subquery()
    q = (
        sa.select(a)
        .join(latest_q, sa.and_(a.c.subject == latest_q.c.subject, a.c.created_at == latest_q.c.at))
        .order_by(a.c.subject, a.c.id.desc())
    )
    with rt.db.read() as conn:
        rows = [r._mapping for r in conn.execute(q)]
    items: list[AttestationOut] = []
    seen: set[str] = set()
    for m in rows:
        if m["subject"] not in seen:  # two in the same instant: one per subject
            seen.add(m["subject"])
            items.append(attestation_out(m))
    more = len(items) > limit
    items = items[:limit]
    return Page[AttestationOut](
        items=items, next_cursor=pagination.encode([items[-1].subject]) if more else None
    )


def _keyring_json(rt: Runtime) -> dict[str, Any]:
    with rt.db.read() as conn:
        keys = state_keys.all_keys(conn)
    if not keys:  # the first key is created on first use
        now = rt.now()
        with rt.db.write() as conn:
            state_keys.lock(conn)
            state_keys.current_signer(rt, conn, now)
            state_keys.issuer(conn, now)
            keys = state_keys.all_keys(conn)
    return Keyring(k.trusted() for k in keys).to_json()


@router.get("/keys", dependencies=[Depends(public())])
def keys(rt: RuntimeDep) -> dict[str, Any]:
    """The public keyring that verifies published state and attestations (pin it out of band).

    Fetching it over the network is only as trustworthy as the channel: compare the key id with
    the one ``dutyguard keys export`` printed on the control plane's host.
    """
    return _keyring_json(rt)


@router.post("/keys/rotate")
def rotate(
    body: RotateBody,
    caller: Annotated[Caller, Depends(requires(Duty.POLICY_PUBLISH))],
    rt: RuntimeDep,
) -> dict[str, Any]:
    """Retire the current state key and start a new one; runners must pin the new keyring."""
    now = rt.now()
    with refusals(rt, caller, "state.key.rotate", "state-keys"), rt.db.write() as conn:
        state_keys.lock(conn)
        try:
            retired, new = state_keys.rotate(rt, conn, caller.id, now)
        except state_keys.StateKeyError as e:
            raise Problem(409, "conflict", "Key not rotated", str(e)) from None
        seq = record(
            rt,
            conn,
            actor=caller.id,
            principal=caller.principal,
            action="state.key.rotate",
            obj=f"state-key:{new.key_id}",
            details={"retired": retired.key_id, "new": new.key_id, "reason": body.reason[:500]},
        )
    rt.notifier.send(
        {
            "event": "state.key.rotated",
            "retired": retired.key_id,
            "new": new.key_id,
            "by": caller.id,
            "audit_seq": seq,
        }
    )
    return _keyring_json(rt)
