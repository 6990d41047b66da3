"""Gate attestations: a CI runner submits its decision; the control plane checks it and signs it.

``POST /attestations`` (``scan.submit`` over the app gated, the organisation if none): the runner
says which bundle and snapshot it verified and what it found. The control plane refuses
(409, audited) a result made under anything but the bundle in force (``stale_bundle``), a
snapshot it did not issue or that expired (``stale_snapshot``), a rule the bundle does not apply,
an app or cluster the bundle does not govern, and any waiver it cannot reproduce itself with the
exception matcher from the exceptions active *now* (``waiver_mismatch``: a runner cannot invent
a waiver, nor use a revoked or expired one). It then decides again which findings block, from
the bundle's CI actions, and signs an in-toto Statement (predicate
``https://dutyguard.dev/attestation/gate/v1``) with the state key, recording the submitting
identity. A runner never holds a key, so it cannot forge a pass.

Break-glass: when the gate is blocked (by findings, not by unreadable inputs) and an open grant
lets its opener override enforcement on the app, the decision is ``breakglass``: attested as
such, an audit entry and an alarm.

Inline suppressions the gate found (optional ``suppression_requests``, absent from older runners)
are audited with the accepted submission as one ``gate.suppression_requests`` entry, each flagged
a bypass attempt unless the waivers reproduced here cover what it targets
(:mod:`dutyguard.server.gate_audit`). They decide nothing and stay out of the signed predicate,
whose fields are fixed by its type.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy.engine import Connection

from dutyguard.core.model import Finding, Location, ScanError, ScanReport, Severity, Waiver
from dutyguard.errors import GovernanceError
from dutyguard.exceptions.matcher import ExceptionMatcher, MatchContext
from dutyguard.governance.authz import authorize
from dutyguard.governance.duties import Duty
from dutyguard.governance.scope import ORG, Scope, ScopeKind
from dutyguard.policy.model import PolicyBundle, Stage
from dutyguard.server import exception_store, pagination, policy_store, published, state_keys, store
from dutyguard.server import tables as t
from dutyguard.server.auditing import record
from dutyguard.server.auth import Caller
from dutyguard.server.authz import enforce, requires
from dutyguard.server.gate_audit import suppression_details
from dutyguard.server.problems import Problem, bad_request, not_found
from dutyguard.server.routes._common import RuntimeDep, refusals
from dutyguard.server.routes._state_common import anywhere, tampered
from dutyguard.server.routes.state import attestation_out
from dutyguard.server.runtime import Runtime
from dutyguard.server.schemas import Page
from dutyguard.server.state_schemas import (
    MAX_CLAIMED_EXCEPTIONS,
    AttestationOut,
    AttestationSubmit,
    FindingIn,
)
from dutyguard.trust.attest import GateAttestation, Subject, predicate_from_report, sign_attestation

router = APIRouter(prefix="/attestations", tags=["attestations"])

MAX_REPORTED_ERRORS = 1000
"""Unreadable inputs carried into the decision (the count is what matters: any error fails)."""


def _subject(text: str) -> Subject:
    try:
        return Subject.parse(text)
    except ValueError as e:
        raise Problem(
            422,
            "validation",
            "Invalid request",
            str(e),
            errors=[{"field": "body.subject", "message": str(e)}],
        ) from None


def _check_suppression_targets(body: AttestationSubmit) -> None:
    """Each suppression request points at findings of this submission (by index)."""
    for i, s in enumerate(body.suppression_requests or ()):
        for j in s.findings:
            if j >= len(body.findings):
                message = f"finding {j} does not exist (the submission has {len(body.findings)})"
                raise Problem(
                    422,
                    "validation",
                    "Invalid request",
                    message,
                    errors=[{"field": f"body.suppression_requests.{i}.findings", "message": message}],
                )
    total = body.suppression_requests_total
    if total is not None and total < len(body.suppression_requests or ()):
        message = "fewer than the suppression requests submitted"
        raise Problem(
            422,
            "validation",
            "Invalid request",
            message,
            errors=[{"field": "body.suppression_requests_total", "message": message}],
        )


def _findings(
    bundle: PolicyBundle, submitted: list[FindingIn], waivers: dict[int, Waiver]
) -> tuple[Finding, ...]:
    out = []
    for i, f in enumerate(submitted):
        if f.rule_id not in bundle.enabled_rules:
            raise GovernanceError(
                "unknown_rule", f"findings[{i}]: rule {f.rule_id!r} is not applied by the bundle in force"
            )
        out.append(
            Finding(
                rule_id=f.rule_id,
                title=f.rule_id,
                severity=Severity(f.severity),
                message="",
                remediation="",
                controls=(),
                location=Location(file="submitted", namespace=f.namespace),
                fingerprint=f.fingerprint,
                waiver=waivers.get(i),
            )
        )
    return tuple(out)


def _check_waivers(
    conn: Connection,
    bundle: PolicyBundle,
    body: AttestationSubmit,
    context: MatchContext,
    now: datetime,
) -> dict[int, Waiver]:
    """The waivers claimed, each reproduced by the matcher from exceptions active now."""
    claimed = {i: f.waiver for i, f in enumerate(body.findings) if f.waiver is not None}
    if not claimed:
        return {}
    if len({w.exception_id for w in claimed.values()}) > MAX_CLAIMED_EXCEPTIONS:
        raise GovernanceError(
            "waiver_mismatch", f"more than {MAX_CLAIMED_EXCEPTIONS} distinct exceptions claimed by one gate"
        )
    grants = []
    for exception_id in sorted({w.exception_id for w in claimed.values()}):
        try:
            rec = exception_store.get(conn, exception_id)
        except GovernanceError as e:
            raise tampered(e) from None
        status = rec.status(now) if rec else "unknown"
        if rec is None or status != "active":
            raise GovernanceError(
                "waiver_mismatch", f"exception {exception_id} is {status}: it waives nothing now"
            )
        grants.append(rec.grant())
    matcher = ExceptionMatcher(grants, bundle.exceptions, context, now)
    probe = ScanReport(findings=_findings(bundle, body.findings, {}))
    applied = matcher.apply(probe).findings
    out: dict[int, Waiver] = {}
    for i, waiver in claimed.items():
        got = applied[i].waiver
        if got is None or got.exception_id != waiver.exception_id:
            raise GovernanceError(
                "waiver_mismatch",
                f"findings[{i}] ({body.findings[i].rule_id}): exception {waiver.exception_id} does not waive it "
                "here (scope, rule, expiry or the bundle's quorum and duration for its severity)",
            )
        out[i] = got
    return out


def _breakglass(rt: Runtime, conn: Connection, app: str | None, now: datetime) -> str | None:
    """An open grant whose opener may override enforcement on the app, if any."""
    if app is None:
        return None
    target = Scope(ScopeKind.APP, app)
    g = t.breakglass_grants
    ids = conn.execute(
        sa.select(g.c.id).where(g.c.closed_at.is_(None), g.c.expires_at > now).order_by(g.c.opened_at)
    ).scalars()
    for grant_id in ids:
        grant = store.get_grant(conn, grant_id)
        identity = store.get_identity(conn, grant.opener) if grant else None
        if grant is None or identity is None or identity.disabled_at is not None:
            continue
        opener = store.load_principal(conn, identity)
        ownership = store.ownership_for(conn, [opener], [target, grant.scope])
        decision = authorize(
            opener,
            Duty.ENFORCEMENT_OVERRIDE,
            target,
            ownership,
            [grant],
            now=now,
            roles=rt.roles,
            raci=rt.raci,
        )
        if decision.allowed:
            return grant.id
    return None


@router.post("", status_code=201)
def submit(
    body: AttestationSubmit,
    request: Request,
    caller: Annotated[
        Caller,
        Depends(
            requires(
                Duty.SCAN_SUBMIT, any_scope=True, note="`app:<app>` submitted (the organisation if none)"
            )
        ),
    ],
    rt: RuntimeDep,
) -> AttestationOut:
    """Submit a gate result; the control plane checks it against the state in force and signs it."""
    subject = _subject(body.subject)
    _check_suppression_targets(body)
    enforce(rt, request, caller, Duty.SCAN_SUBMIT, Scope(ScopeKind.APP, body.app) if body.app else ORG)
    received = rt.now()  # orders attestations; the signed time is whole seconds
    now = received.replace(microsecond=0)
    attestation_id = store.new_id("att")
    obj = f"attestation:{attestation_id}"
    grant_id: str | None = None
    with refusals(rt, caller, "gate.attest", obj, {"subject": subject.render()}), rt.db.write() as conn:
        latest = policy_store.latest_version(conn)
        if latest is None:
            raise GovernanceError(
                "no_policy", "no policy bundle is published: there is nothing to attest against"
            )
        if (body.policy.version, body.policy.digest) != (latest.version, latest.digest):
            raise GovernanceError(
                "stale_bundle",
                f"the gate ran under policy v{body.policy.version} ({body.policy.digest}), but v{latest.version} "
                f"({latest.digest}) is in force: pull the signed state again and re-run the gate",
            )
        try:
            bundle = latest.bundle()
        except GovernanceError as e:
            raise tampered(e) from None
        # Scope (BundleScope decides): the app's owning team from the ownership registry (an
        # unowned app is not governed by a bundle limited to teams), the subject's registry, and
        # the namespaces of the submitted findings (a runner refuses such objects; this one did not).
        from dutyguard.trust.gate import subject_image

        scope = bundle.scope
        owner = store.get_asset(conn, Scope(ScopeKind.APP, body.app)) if scope.teams and body.app else None
        image = subject_image(subject)
        uncovered = scope.uncovered(
            team=owner.team_id if owner is not None else None,
            app=body.app,
            cluster=body.cluster,
            images=(image,) if image else (),
            required=("team",),
        )
        if scope.teams and body.app and owner is None:
            uncovered.insert(0, f"app {body.app!r} has no owning team in the ownership registry")
        namespaces = dict.fromkeys(f.namespace for f in body.findings if f.namespace)
        uncovered += [f"a finding's {why}" for ns in namespaces for why in scope.uncovered(namespace=ns)][:10]
        if uncovered:
            raise GovernanceError(
                "out_of_scope", f"the bundle in force does not govern this gate: {'; '.join(uncovered)}"
            )
        snapshot = published.get_snapshot(conn, body.snapshot_version)
        if snapshot is None or now >= snapshot.expires_at:
            raise GovernanceError(
                "stale_snapshot",
                f"exception snapshot v{body.snapshot_version} is {'expired' if snapshot else 'not one this control plane issued'}",
            )
        digests = (
            frozenset({f"sha256:{subject.digest['sha256']}"}) if "sha256" in subject.digest else frozenset()
        )
        context = MatchContext(app=body.app, cluster=body.cluster, image_digests=digests)
        waivers = _check_waivers(conn, bundle, body, context, now)
        policy = bundle.to_policy(Stage.CI, f"policy v{latest.version}")
        report = ScanReport(
            findings=_findings(bundle, body.findings, waivers),
            errors=tuple(
                ScanError("submitted", "an input could not be read")
                for _ in range(min(body.errors, MAX_REPORTED_ERRORS))
            ),
            fail_on=policy.fail_on,
            block_overrides=policy.block_overrides,
        )
        if report.blocking and not report.errors:
            grant_id = _breakglass(rt, conn, body.app, rt.now())  # not rounded: grants open mid-second
        issuer = state_keys.issuer(conn, now)
        predicate = predicate_from_report(
            report,
            policy_name=bundle.name,
            policy_issuer=issuer,
            policy_version=latest.version,
            policy_digest=latest.digest,
            snapshot_version=body.snapshot_version,
            submitter=caller.id,
            time=now,
            breakglass_grant=grant_id,
        )
        state_keys.lock(conn)
        signer, key = state_keys.current_signer(rt, conn, now)
        envelope = sign_attestation(signer, GateAttestation((subject,), predicate)).dumps().decode("ascii")
        row = {
            "id": attestation_id,
            "subject": subject.render(),
            "decision": predicate.decision,
            "app": body.app,
            "cluster": body.cluster,
            "submitter": caller.id,
            "bundle_version": latest.version,
            "bundle_digest": latest.digest,
            "snapshot_version": body.snapshot_version,
            "breakglass_grant": grant_id,
            "created_at": received,
            "key_id": key.key_id,
            "envelope": envelope,
        }
        conn.execute(t.attestations.insert().values(**row))
        seq = record(
            rt,
            conn,
            actor=caller.id,
            principal=caller.principal,
            action="gate.attest",
            obj=obj,
            details={
                "subject": subject.render(),
                "decision": predicate.decision,
                "app": body.app,
                "bundle_version": latest.version,
                "snapshot_version": body.snapshot_version,
                "blocking": len(predicate.blocking),
                "waived": sorted({w.exception_id or "" for w in predicate.waived})[:50],
                "errors": predicate.errors,
                "breakglass": grant_id,
            },
        )
        if body.suppression_requests:
            record(
                rt,
                conn,
                actor=caller.id,
                principal=caller.principal,
                action="gate.suppression_requests",
                obj=obj,
                details=suppression_details(
                    body.suppression_requests,
                    body.suppression_requests_total,
                    body.findings,
                    waivers,
                    {"subject": subject.render(), "app": body.app, "decision": predicate.decision},
                ),
            )
    if grant_id is not None:
        rt.notifier.send(
            {
                "event": "gate.breakglass",
                "grant": grant_id,
                "subject": subject.render(),
                "app": body.app,
                "submitter": caller.id,
                "blocking": [f"{f.rule_id}:{f.fingerprint}" for f in predicate.blocking][:50],
                "audit_seq": seq,
            }
        )
    return attestation_out(row)


_READ = anywhere(Duty.FINDING_READ, "attestations are evidence about findings")


@router.get("", dependencies=[Depends(_READ)])
def list_attestations(
    rt: RuntimeDep,
    subject: Annotated[str | None, Query(max_length=400)] = None,
    limit: pagination.LimitParam = 50,
    cursor: pagination.CursorParam = None,
) -> Page[AttestationOut]:
    """Attestations, newest first; ``?subject=oci://…@sha256:…`` or ``git:…`` for one artefact."""
    key = pagination.decode(cursor, 2)
    a = t.attestations
    q = sa.select(a).order_by(a.c.created_at.desc(), a.c.id.desc()).limit(limit + 1)
    if subject is not None:
        q = q.where(a.c.subject == _subject(subject).render())
    if key is not None:
        at, last = key
        if not isinstance(at, str) or not isinstance(last, str):
            raise bad_request("cursor is not one this server issued", field="query.cursor")
        try:
            when = datetime.fromisoformat(at)
        except ValueError:
            raise bad_request("cursor is not one this server issued", field="query.cursor") from None
        if when.tzinfo is None:
            raise bad_request("cursor is not one this server issued", field="query.cursor")
        q = q.where(sa.or_(a.c.created_at < when, sa.and_(a.c.created_at == when, a.c.id < last)))
    with rt.db.read() as conn:
        rows = [r._mapping for r in conn.execute(q)]
    more = len(rows) > limit
    rows = rows[:limit]
    items = [attestation_out(m) for m in rows]
    next_cursor = pagination.encode([rows[-1]["created_at"].isoformat(), rows[-1]["id"]]) if more else None
    return Page[AttestationOut](items=items, next_cursor=next_cursor)


@router.get("/{attestation_id}", dependencies=[Depends(_READ)])
def show_attestation(attestation_id: str, rt: RuntimeDep) -> AttestationOut:
    with rt.db.read() as conn:
        row = conn.execute(sa.select(t.attestations).where(t.attestations.c.id == attestation_id)).first()
    if row is None:
        raise not_found(f"attestation {attestation_id!r}")
    return attestation_out(row._mapping)
