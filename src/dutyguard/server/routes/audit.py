"""Reading the audit trail: entries (paginated), checkpoints, the public key, export, live verify.

There is no route that writes or deletes entries: the trail is appended to only as a side
effect of other requests. Export and verify must keep working on a tampered trail (that is when
they matter), so they do not go through the checkpointing append path that refuses to extend a
broken chain; their use is logged, and recorded in the trail when the trail accepts it.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse

from dutyguard.audit import log as audit_log
from dutyguard.audit.errors import AuditError
from dutyguard.audit.export import export
from dutyguard.audit.verify import verify_database
from dutyguard.governance.duties import Duty
from dutyguard.server import pagination
from dutyguard.server.auditing import record
from dutyguard.server.auth import Caller
from dutyguard.server.authz import requires
from dutyguard.server.routes._common import RuntimeDep
from dutyguard.server.runtime import Runtime
from dutyguard.server.schemas import AuditEntryOut, Page

logger = logging.getLogger("dutyguard.server.audit")

router = APIRouter(prefix="/audit", tags=["audit"])


def _best_effort_record(rt: Runtime, caller: Caller, action: str, details: dict[str, Any]) -> None:
    try:
        with rt.db.write() as conn:
            record(
                rt,
                conn,
                actor=caller.id,
                principal=caller.principal,
                action=action,
                obj="audit",
                details=details,
            )
    except AuditError as e:
        logger.error("%s by %s not recorded: the trail refuses writes (%s)", action, caller.id, e)


@router.get("/entries", dependencies=[Depends(requires(Duty.AUDIT_READ))])
def entries(
    rt: RuntimeDep,
    limit: pagination.LimitParam = 100,
    cursor: pagination.CursorParam = None,
    after_seq: Annotated[int | None, Query(ge=0, description="Start after this sequence number.")] = None,
) -> Page[AuditEntryOut]:
    key = pagination.decode(cursor, 1)
    after = int(key[0]) if key else (after_seq or 0)
    with rt.db.read() as conn:
        rows = audit_log.entries(conn, after=after, limit=limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    items = [
        AuditEntryOut(
            seq=e.seq,
            ts=e.ts,
            actor=e.event.actor,
            roles=list(e.event.roles),
            action=e.event.action,
            object=e.event.object,
            outcome=e.event.outcome.value,
            state_digest=e.event.state_digest,
            details=dict(e.event.details),
            prev_hash=e.prev_hash,
            entry_hash=e.entry_hash,
        )
        for e in rows
    ]
    return Page[AuditEntryOut](items=items, next_cursor=pagination.encode([rows[-1].seq]) if more else None)


@router.get("/checkpoints", dependencies=[Depends(requires(Duty.AUDIT_READ))])
def checkpoints(rt: RuntimeDep) -> list[dict[str, Any]]:
    """Every signed checkpoint (verify them with the public key you hold, not the one served)."""
    with rt.db.read() as conn:
        cps = audit_log.checkpoints(conn)
    return [json.loads(cp.to_line()) for cp in cps]


@router.get("/public-key", dependencies=[Depends(requires(Duty.AUDIT_READ))])
def public_key(rt: RuntimeDep) -> dict[str, str]:
    """The checkpoint key. Pin it out of band: a verifier must not trust a key served by the log it checks."""
    v = rt.signer.verifier
    return {"key_id": v.key_id, "public_key": v.public_text(), "pem": v.public_pem().decode("ascii")}


@router.get("/export", response_class=StreamingResponse)
def export_trail(
    caller: Annotated[Caller, Depends(requires(Duty.AUDIT_EXPORT))], rt: RuntimeDep
) -> StreamingResponse:
    """The whole trail as JSON Lines (header, checkpoints, entries) for offline verification."""
    spool = tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024)  # noqa: SIM115 (closed by the stream)
    with rt.db.read(snapshot=True) as conn:
        summary = export(conn, spool, rt.now())  # type: ignore[arg-type]
    spool.seek(0)
    _best_effort_record(
        rt, caller, "audit.export", {"entries": summary.entries, "last_seq": summary.last_seq}
    )

    def stream() -> Iterator[bytes]:
        try:
            while chunk := spool.read(64 * 1024):
                yield chunk
        finally:
            spool.close()

    return StreamingResponse(
        stream(),
        media_type="application/x-ndjson",
        headers={"Content-Disposition": 'attachment; filename="dutyguard-audit.jsonl"'},
    )


@router.get("/verify")
def verify(caller: Annotated[Caller, Depends(requires(Duty.AUDIT_VERIFY))], rt: RuntimeDep) -> dict[str, Any]:
    """Verify the live trail against the server's checkpoint key; pinpoints any tampering."""
    with rt.db.read(snapshot=True) as conn:
        report = verify_database(conn, [rt.signer.verifier], rt.now())
    if report.ok:
        _best_effort_record(rt, caller, "audit.verify", {"ok": True, "entries": report.entries})
    else:
        # Appending to a chain just found broken would only blur the evidence: alarm instead (AU-9).
        logger.error(
            "audit trail verification failed (asked by %s): %s", caller.id, report.problems[0].message
        )
        rt.notifier.send(
            {
                "event": "audit.tampering_detected",
                "requested_by": caller.id,
                "first_bad_seq": report.first_bad_seq,
                "problems": [p.message for p in report.problems[:20]],
            }
        )
    return report.to_json()
