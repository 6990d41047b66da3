"""Policy bundles through the control plane: propose, review, approve (which publishes), history.

The lifecycle (every step an audit entry, every refusal too):

1. ``POST /policies/proposals`` (``policy.propose``): the bundle is parsed and linted exactly as
   ``dutyguard policy lint`` does; a draft records its digest, the published version it is
   compared with, a line diff and what the change means for enforcement
   (:mod:`dutyguard.server.bundle_diff`), which sets its severity and so its quorum.
2. ``POST /policies/proposals/{id}/approve|reject`` (``policy.approve``): maker-checker from
   :mod:`dutyguard.governance.approvals` — never the maker, each approver once, one rejection
   ends it. The vote that reaches the quorum publishes, in the same transaction: the approver
   must also hold ``policy.publish``, the proposal must still be based on the version in force
   (otherwise the diff the approvers read is not the change), and the stored bundle must still
   hash to the approved digest. Published: canonical JSON, version N+1, the digest of version N,
   an expiry, signed by the control plane (DSSE, Ed25519).
3. A rollback is a new proposal with the old content; an old version is never published again.
"""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query

from dutyguard.errors import ApprovalRefused, GovernanceError, InputError
from dutyguard.governance.approvals import (
    ApprovalKind,
    RequestState,
    decide,
    default_policy,
    expire,
    open_request,
    withdraw,
)
from dutyguard.governance.authz import effective_duties
from dutyguard.governance.duties import Duty
from dutyguard.governance.scope import ORG
from dutyguard.policy.errors import PolicyBundleError
from dutyguard.server import bundle_diff, pagination, policy_store, published, store
from dutyguard.server.auditing import record
from dutyguard.server.auth import Caller
from dutyguard.server.authz import requires
from dutyguard.server.problems import Problem, bad_request, not_found
from dutyguard.server.routes._common import RuntimeDep, refusals
from dutyguard.server.routes._review import filtered_page, loaded, record_vote, start_after
from dutyguard.server.routes._state_common import anywhere, principal_now, tampered
from dutyguard.server.runtime import Runtime
from dutyguard.server.schemas import Page, VoteBody, WithdrawBody
from dutyguard.server.state_schemas import (
    MAX_DB_INT,
    ChangeOut,
    DiffOut,
    ProposalCreate,
    ProposalOut,
    VersionOut,
)

router = APIRouter(tags=["policies"])
_READ = anywhere(Duty.POLICY_READ, "one bundle governs the whole organisation")

_KIND = ApprovalKind.POLICY_CHANGE


def _changes(changes: list[bundle_diff.Change]) -> list[ChangeOut]:
    return [ChangeOut(effect=c.effect, what=c.what) for c in changes]


def proposal_out(
    rt: Runtime, p: policy_store.Proposal, base: policy_store.Version | None, *, detail: bool = False
) -> ProposalOut:
    r = expire(p.approval, rt.now())
    old_bundle = base.bundle() if base else None
    new_bundle = p.bundle()
    changes = bundle_diff.assess(old_bundle, new_bundle, policy_store.registry())
    diff = None
    if detail:
        diff = bundle_diff.text_diff(
            json.loads(base.document) if base else None,
            json.loads(p.document),
            f"published v{base.version}" if base else "(nothing published)",
            f"proposal {p.id}",
        )
    return ProposalOut(
        id=p.id,
        name=p.name,
        digest=p.digest,
        subject_digest=r.subject_digest,
        message=p.message,
        maker=p.maker,
        state=r.state.value,
        severity=r.severity.value,
        quorum=r.quorum,
        approvals=list(r.approvers),
        rejected_by=r.rejection.actor if r.rejection else None,
        created_at=r.created_at,
        expires_at=r.expires_at,
        closed_at=r.closed_at,
        closed_reason=r.closed_reason,
        base_version=p.base_version,
        published_version=p.published_version,
        changes=_changes(changes),
        diff=diff,
        source=p.source if detail else None,
    )


def version_out(v: policy_store.Version, *, detail: bool = False) -> VersionOut:
    return VersionOut(
        version=v.version,
        name=v.name,
        digest=v.digest,
        previous_digest=v.previous_digest,
        proposal_id=v.proposal_id,
        published_at=v.published_at,
        published_by=v.published_by,
        issued_at=v.issued_at,
        expires_at=v.expires_at,
        key_id=v.key_id,
        document=json.loads(v.document) if detail else None,
    )


def _invalid_bundle(problems: list[dict[str, object]], summary: str) -> Problem:
    return Problem(
        422,
        "validation",
        "Invalid policy bundle",
        f"the proposed bundle is not valid: {summary}",
        errors=problems,
    )


@router.post("/policies/proposals", status_code=201)
def propose(
    body: ProposalCreate,
    caller: Annotated[Caller, Depends(requires(Duty.POLICY_PROPOSE))],
    rt: RuntimeDep,
) -> ProposalOut:
    """Propose a complete bundle; it is published once other security members approve it."""
    from dutyguard.policy.parse import lint_bundle, parse_bundle_text

    registry = policy_store.registry()
    try:
        bundle = parse_bundle_text(body.document, "body.document", registry)
        lint_bundle(bundle, "body.document")
    except PolicyBundleError as e:
        errors: list[dict[str, object]] = [
            {
                "field": "body.document",
                "path": ".".join(str(x) for x in p.path),
                "line": p.line,
                "message": p.message,
            }
            for p in e.problems
        ]
        raise _invalid_bundle(errors, f"{len(e.problems)} problem(s)") from None
    except InputError as e:
        raise _invalid_bundle([{"field": "body.document", "message": e.reason}], e.reason) from None
    now = rt.now()
    proposal_id = store.new_id("pol")
    obj = f"policy-proposal:{proposal_id}"
    with refusals(rt, caller, "policy.propose", obj), rt.db.write() as conn:
        latest = policy_store.latest_version(conn)
        try:
            base = latest.bundle() if latest else None
        except GovernanceError as e:
            raise tampered(e) from None
        if latest is not None and latest.digest == bundle.digest:
            raise Problem(
                409,
                "conflict",
                "Nothing to change",
                f"the proposed bundle is identical to the published v{latest.version} ({latest.digest})",
                extra={"code": "unchanged"},
            )
        changes = bundle_diff.assess(base, bundle, registry)
        severity = bundle_diff.severity_of(changes)
        maker = principal_now(conn, caller)
        request = open_request(
            default_policy(_KIND),
            request_id=proposal_id,
            maker=maker,
            subject=f"policy bundle {bundle.name} (next version after v{latest.version if latest else 0})",
            subject_digest=bundle.digest.removeprefix("sha256:"),
            severity=severity,
            scope=ORG,
            now=now,
            ownership=store.ownership_for(conn, [maker], [ORG]),
            roles=rt.roles,
            raci=rt.raci,
        )
        proposal = policy_store.Proposal(
            id=proposal_id,
            maker=caller.id,
            created_at=now,
            base_version=latest.version if latest else 0,
            name=bundle.name,
            digest=bundle.digest,
            message=body.message,
            document=policy_store.canonical_document(bundle),
            source=body.document,
            approval=request,
            published_version=None,
        )
        policy_store.insert_proposal(conn, proposal)
        record(
            rt,
            conn,
            actor=caller.id,
            principal=caller.principal,
            action="policy.propose",
            obj=obj,
            details={
                "name": bundle.name,
                "digest": bundle.digest,
                "base_version": proposal.base_version,
                "severity": severity.value,
                "quorum": request.quorum,
                "message": body.message[:500],
                "weakens": [c.what[:300] for c in changes if c.effect == "weakens"][:10],
            },
        )
    return proposal_out(rt, proposal, latest, detail=True)


@router.get("/policies/proposals", dependencies=[Depends(_READ)])
def list_proposals(
    rt: RuntimeDep,
    state: Annotated[RequestState | None, Query()] = None,
    limit: pagination.LimitParam = 50,
    cursor: pagination.CursorParam = None,
) -> Page[ProposalOut]:
    after = start_after(cursor)
    with rt.db.read() as conn:
        bases: dict[int, policy_store.Version | None] = {}

        def out(p: policy_store.Proposal) -> ProposalOut:
            if p.base_version not in bases:
                bases[p.base_version] = policy_store.get_version(conn, p.base_version)
            return proposal_out(rt, p, bases[p.base_version])

        # Expiry is computed, not stored: filter on the computed state until the page is full.
        try:
            items, next_cursor = filtered_page(
                after,
                limit,
                lambda after: policy_store.list_proposals(conn, after, limit, None),
                lambda p: p.id,
                out,
                lambda item: state is None or item.state == state.value,
            )
        except GovernanceError as e:
            raise tampered(e) from None
    return Page[ProposalOut](items=items, next_cursor=next_cursor)


@router.get("/policies/proposals/{proposal_id}", dependencies=[Depends(_READ)])
def show_proposal(proposal_id: str, rt: RuntimeDep) -> ProposalOut:
    """A proposal with its YAML, its line diff against the version it was based on, and what it changes."""
    with rt.db.read() as conn:
        try:
            p = policy_store.get_proposal(conn, proposal_id)
            if p is None:
                raise not_found(f"policy proposal {proposal_id!r}")
            base = policy_store.get_version(conn, p.base_version)
            return proposal_out(rt, p, base, detail=True)
        except GovernanceError as e:
            raise tampered(e) from None


def _vote(rt: Runtime, caller: Caller, proposal_id: str, body: VoteBody, approve: bool) -> ProposalOut:
    verb = "approve" if approve else "reject"
    obj = f"policy-proposal:{proposal_id}"
    now = rt.now()
    version: policy_store.Version | None = None
    with refusals(rt, caller, f"policy.{verb}", obj), rt.db.write() as conn:
        p = loaded(
            lambda: policy_store.get_proposal(conn, proposal_id, for_update=True),
            f"policy proposal {proposal_id!r}",
        )
        actor = principal_now(conn, caller)
        duties = effective_duties(
            actor, ORG, store.ownership_for(conn, [actor], [ORG]), roles=rt.roles, raci=rt.raci
        )
        decided = decide(
            p.approval,
            caller.id,
            duties,
            actor.teams,
            approve,
            now,
            body.reason,
            seen_digest=body.seen_digest,
        )
        if decided.state is RequestState.APPROVED:
            if Duty.POLICY_PUBLISH not in duties:
                raise ApprovalRefused(
                    "missing_duty", f"{caller.id} may approve but not publish ({Duty.POLICY_PUBLISH})"
                )
            latest = policy_store.latest_version(conn)
            in_force = latest.version if latest else 0
            if in_force != p.base_version:
                raise GovernanceError(
                    "stale_base",
                    f"proposal {p.id} was reviewed against v{p.base_version}, but v{in_force} is published now: "
                    "withdraw it and propose again",
                )
            try:
                bundle = p.bundle()  # still the approved bytes
            except GovernanceError as e:
                raise tampered(e) from None
            version = published.publish(rt, conn, bundle, p.id, caller.id, now)
        policy_store.update_proposal(conn, decided, version.version if version else None)
        record_vote(rt, conn, caller, f"policy.{verb}", obj, decided, approve, {"digest": p.digest})
        if version is not None:
            record(
                rt,
                conn,
                actor=caller.id,
                principal=caller.principal,
                action="policy.publish",
                obj=f"policy:v{version.version}",
                details={
                    "version": version.version,
                    "name": version.name,
                    "digest": version.digest,
                    "previous_digest": version.previous_digest,
                    "proposal": p.id,
                    "maker": p.maker,
                    "approvers": list(decided.approvers),
                    "expires": version.expires_at.isoformat(),
                    "key_id": version.key_id,
                },
            )
        after = policy_store.get_proposal(conn, proposal_id)
        base = policy_store.get_version(conn, p.base_version)
    if version is not None:
        rt.notifier.send(
            {
                "event": "policy.published",
                "version": version.version,
                "name": version.name,
                "digest": version.digest,
                "proposal": proposal_id,
                "maker": p.maker,
                "approvers": list(decided.approvers),
            }
        )
    assert after is not None
    return proposal_out(rt, after, base)


@router.post("/policies/proposals/{proposal_id}/approve")
def approve(
    proposal_id: str,
    body: VoteBody,
    caller: Annotated[Caller, Depends(requires(Duty.POLICY_APPROVE))],
    rt: RuntimeDep,
) -> ProposalOut:
    """Approve someone else's proposal; the vote that reaches the quorum publishes it."""
    return _vote(rt, caller, proposal_id, body, True)


@router.post("/policies/proposals/{proposal_id}/reject")
def reject(
    proposal_id: str,
    body: VoteBody,
    caller: Annotated[Caller, Depends(requires(Duty.POLICY_APPROVE))],
    rt: RuntimeDep,
) -> ProposalOut:
    """Reject someone else's proposal (a reason is required); one rejection ends it."""
    return _vote(rt, caller, proposal_id, body, False)


@router.post("/policies/proposals/{proposal_id}/withdraw")
def withdraw_proposal(
    proposal_id: str,
    body: WithdrawBody,
    caller: Annotated[Caller, Depends(requires(Duty.POLICY_PROPOSE))],
    rt: RuntimeDep,
) -> ProposalOut:
    """The maker takes back a pending proposal."""
    obj = f"policy-proposal:{proposal_id}"
    with refusals(rt, caller, "policy.withdraw", obj), rt.db.write() as conn:
        p = loaded(
            lambda: policy_store.get_proposal(conn, proposal_id, for_update=True),
            f"policy proposal {proposal_id!r}",
        )
        done = withdraw(p.approval, caller.id, rt.now(), body.reason)
        policy_store.update_proposal(conn, done)
        record(rt, conn, actor=caller.id, principal=caller.principal, action="policy.withdraw", obj=obj)
        after = policy_store.get_proposal(conn, proposal_id)
        base = policy_store.get_version(conn, p.base_version)
    assert after is not None
    return proposal_out(rt, after, base)


@router.get("/policies", dependencies=[Depends(_READ)])
def history(
    rt: RuntimeDep, limit: pagination.LimitParam = 50, cursor: pagination.CursorParam = None
) -> Page[VersionOut]:
    """Published versions, newest first."""
    key = pagination.decode(cursor, 1)
    before = key[0] if key else None
    if before is not None and (not isinstance(before, int) or not 0 < before <= MAX_DB_INT):
        raise bad_request("cursor is not one this server issued", field="query.cursor")
    with rt.db.read() as conn:
        rows = policy_store.list_versions(conn, before, limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    return Page[VersionOut](
        items=[version_out(v) for v in rows],
        next_cursor=pagination.encode([rows[-1].version]) if more else None,
    )


@router.get("/policies/current", dependencies=[Depends(_READ)])
def current(rt: RuntimeDep) -> VersionOut:
    """The bundle in force, with its document."""
    with rt.db.read() as conn:
        v = policy_store.latest_version(conn)
    if v is None:
        raise not_found("a published policy bundle")
    return version_out(v, detail=True)


@router.get("/policies/diff", dependencies=[Depends(_READ)])
def diff(
    rt: RuntimeDep,
    old: Annotated[int, Query(ge=1, le=MAX_DB_INT)],
    new: Annotated[int, Query(ge=1, le=MAX_DB_INT)],
) -> DiffOut:
    """What changed between two published versions (line diff and meaning for enforcement)."""
    with rt.db.read() as conn:
        a = policy_store.get_version(conn, old)
        b = policy_store.get_version(conn, new)
    if a is None or b is None:
        raise not_found(f"policy v{old if a is None else new}")
    try:
        changes = bundle_diff.assess(a.bundle(), b.bundle(), policy_store.registry())
    except GovernanceError as e:
        raise tampered(e) from None
    text = bundle_diff.text_diff(json.loads(a.document), json.loads(b.document), f"v{old}", f"v{new}")
    return DiffOut(old=old, new=new, diff=text, changes=_changes(changes))


@router.get("/policies/{version}", dependencies=[Depends(_READ)])
def show_version(version: Annotated[int, Path(ge=1, le=MAX_DB_INT)], rt: RuntimeDep) -> VersionOut:
    with rt.db.read() as conn:
        v = policy_store.get_version(conn, version)
    if v is None:
        raise not_found(f"policy v{version}")
    return version_out(v, detail=True)
