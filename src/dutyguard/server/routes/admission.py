"""Admission decisions from a cluster's webhook, into the audit trail.

``POST /admission/decisions`` (``event.submit`` over the batch's cluster: a ``cluster`` identity
bound to that cluster) takes the webhook's batches (docs/admission.md): at most
:data:`~dutyguard.server.state_schemas.MAX_BATCH_DECISIONS` decisions, parsed strictly. Each
decision becomes one audit entry (``admission.deny`` recorded as refused, ``admission.allow`` /
``admission.skip`` as success, exceptions used and the state the webhook enforced in its
details), plus one ``admission.batch`` entry with the allows it only counted and what it had to
drop; all in one transaction, answered 201 once stored. A batch id already stored is
acknowledged (200) without writing anything again: the webhook retries a batch under the same id
when an answer is lost, so this is what keeps a decision from being recorded twice. The id is
claimed first in the transaction, so two copies racing (a retry overtaking its first attempt)
end in one 201 and one 200, never in a second set of entries.
"""

from __future__ import annotations

from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Request, Response

from dutyguard.audit.canonical import JSONValue, canonical_json
from dutyguard.audit.entry import Outcome
from dutyguard.governance.duties import Duty
from dutyguard.governance.scope import Scope, ScopeKind
from dutyguard.server import tables as t
from dutyguard.server.auditing import record
from dutyguard.server.auth import Caller
from dutyguard.server.authz import enforce, requires
from dutyguard.server.routes._common import RuntimeDep
from dutyguard.server.runtime import Runtime
from dutyguard.server.state_schemas import AdmissionBatch, AdmissionDecision, BatchOut

router = APIRouter(prefix="/admission", tags=["admission"])

MAX_DETAILS = 15 * 1024
"""Below the audit trail's 16 KiB per entry: a decision with hundreds of findings is trimmed, with counts."""
_LISTS = ("findings", "exceptions", "errors", "images", "groups", "deniedRules")


def _details(d: AdmissionDecision, batch: AdmissionBatch) -> dict[str, JSONValue]:
    out: dict[str, JSONValue] = {
        "batch": batch.batchId,
        "cluster": batch.cluster,
        "webhook": batch.webhook,
        **d.model_dump(mode="json", exclude={"outcome"}),
    }
    if len(canonical_json(out)) <= MAX_DETAILS:
        return out
    # Keep the decision; shorten the lists (longest first) and say how long they were.
    for key in sorted(_LISTS, key=lambda k: -len(getattr(d, k))):
        items = out.get(key)
        if isinstance(items, list) and len(items) > 5:
            out[f"{key}Total"] = len(items)
            out[key] = items[:5]
            if len(canonical_json(out)) <= MAX_DETAILS:
                return out
    for key in ("reason", "stateProblem", "user"):
        value = out.get(key)
        if isinstance(value, str):
            out[key] = value[:256]
    return out


@router.post("/decisions", status_code=201)
def decisions(
    body: AdmissionBatch,
    request: Request,
    response: Response,
    caller: Annotated[
        Caller,
        Depends(requires(Duty.EVENT_SUBMIT, any_scope=True, note="`cluster:<cluster>` of the batch")),
    ],
    rt: RuntimeDep,
) -> BatchOut:
    """Append a webhook's batch of decisions to the audit trail (one entry per decision)."""
    enforce(rt, request, caller, Duty.EVENT_SUBMIT, Scope(ScopeKind.CLUSTER, body.cluster))
    try:
        out = _store(rt, caller, body)
    except sa.exc.IntegrityError:
        # Another copy of this batch (a retry overtaking its first attempt) claimed the id while
        # this one waited for it: that copy stored the decisions, this one wrote nothing.
        with rt.db.read() as conn:
            if not _stored(conn, body.batchId):
                raise
        out = None
    if out is not None:
        return out
    response.status_code = 200
    return BatchOut(batch_id=body.batchId, stored=0, duplicate=True, first_seq=None)


def _stored(conn: sa.Connection, batch_id: str) -> bool:
    q = sa.select(t.admission_batches.c.batch_id).where(t.admission_batches.c.batch_id == batch_id)
    return conn.execute(q).first() is not None


def _store(rt: Runtime, caller: Caller, body: AdmissionBatch) -> BatchOut | None:
    """Store the batch in one transaction; ``None`` when its id was already stored."""
    now = rt.now()
    with rt.db.write() as conn:
        if _stored(conn, body.batchId):
            return None
        # The id is claimed before anything else is written, so a concurrent copy of the batch
        # waits on it and then fails on the primary key without having written an entry.
        conn.execute(
            t.admission_batches.insert().values(
                batch_id=body.batchId,
                cluster=body.cluster,
                submitter=caller.id,
                decisions=len(body.decisions),
                received_at=now,
            )
        )
        first: int | None = None
        for d in body.decisions:
            seq = record(
                rt,
                conn,
                actor=caller.id,
                principal=caller.principal,
                action=f"admission.{d.outcome}",
                obj=f"{d.kind}/{d.namespace or '-'}/{d.name or '-'}"[:512],
                outcome=Outcome.REFUSED if d.outcome == "deny" else Outcome.SUCCESS,
                details=_details(d, body),
            )
            first = seq if first is None else first
        record(
            rt,
            conn,
            actor=caller.id,
            principal=caller.principal,
            action="admission.batch",
            obj=f"cluster:{body.cluster}",
            details={
                "batch": body.batchId,
                "webhook": body.webhook,
                "sent_at": body.sentAt.isoformat(),
                "decisions": len(body.decisions),
                "denied": sum(1 for d in body.decisions if d.outcome == "deny"),
                "exception_uses": sum(1 for d in body.decisions if d.exceptions),
                "allows_counted": body.allowsCounted.count,
                "allows_since": body.allowsCounted.since.isoformat() if body.allowsCounted.since else None,
                "dropped": dict(body.dropped),
            },
        )
    return BatchOut(batch_id=body.batchId, stored=len(body.decisions), duplicate=False, first_seq=first)
