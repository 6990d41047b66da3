"""Request and response models of the policy, exception, signed-state, attestation and admission routes.

Same rules as :mod:`dutyguard.server.schemas`: requests are strict (unknown fields refused, no
coercion, bounded strings and lists), responses are separate models.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints

from dutyguard.server.schemas import IsoTime, NameStr, Out, Reason, Strict

RuleIdStr = Annotated[
    str,
    StringConstraints(pattern=r"^[a-z0-9]+(?:[.-][a-z0-9]+)*$", max_length=128),
    Field(examples=["pss.host-ports"]),
]
Fingerprint = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]
Namespace = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")]
ImageDigest = Annotated[str, StringConstraints(pattern=r"^sha256:[0-9a-f]{64}$")]
BundleDigest = Annotated[str, StringConstraints(pattern=r"^sha256:[0-9a-f]{64}$")]
LongText = Annotated[str, StringConstraints(min_length=1, max_length=4096)]
SeverityName = Literal["critical", "high", "medium", "low", "info"]
MAX_DB_INT = 2**31 - 1
"""Versions are INTEGER columns: anything larger is refused at the edge, not by the database."""
Version = Annotated[int, Field(ge=1, le=MAX_DB_INT)]
Text = Annotated[str, StringConstraints(max_length=1024)]

MAX_BUNDLE_TEXT = 1024 * 1024
MAX_SUBMITTED_FINDINGS = 20_000
MAX_BATCH_DECISIONS = 1000


# -- policies ------------------------------------------------------------------------------------------


class ProposalCreate(Strict):
    document: Annotated[str, StringConstraints(min_length=1, max_length=MAX_BUNDLE_TEXT)] = Field(
        description="The complete policy bundle, YAML or JSON (apiVersion dutyguard.dev/v1, kind PolicyBundle)."
    )
    message: Annotated[str, StringConstraints(min_length=1, max_length=2000)] = Field(
        description="Why the policy changes (shown to the approvers)."
    )


class ChangeOut(Out):
    effect: str
    what: str


class ProposalOut(Out):
    id: str
    name: str
    digest: str
    subject_digest: str
    message: str
    maker: str
    state: str
    severity: str
    quorum: int
    approvals: list[str]
    rejected_by: str | None
    created_at: datetime
    expires_at: datetime
    closed_at: datetime | None
    closed_reason: str
    base_version: int
    published_version: int | None
    changes: list[ChangeOut]
    diff: str | None = None
    source: str | None = None


class VersionOut(Out):
    version: int
    name: str
    digest: str
    previous_digest: str | None
    proposal_id: str
    published_at: datetime
    published_by: str
    issued_at: datetime
    expires_at: datetime
    key_id: str
    document: dict[str, Any] | None = None


class DiffOut(Out):
    old: int
    new: int
    diff: str
    changes: list[ChangeOut]


# -- exceptions ----------------------------------------------------------------------------------------


class ScopeIn(Strict):
    fingerprint: Fingerprint | None = None
    app: NameStr | None = None
    namespace: Namespace | None = None
    image_digest: ImageDigest | None = None
    cluster: NameStr | None = None


class ExceptionCreate(ScopeIn):
    rule_id: RuleIdStr
    justification: LongText
    compensating_control: LongText
    days: Annotated[int, Field(ge=1, le=365)]


class ScopeChange(ScopeIn):
    reason: Reason


class ExceptionOut(Out):
    id: str
    rule_id: str
    severity: str
    scope: dict[str, str]
    wide: bool
    status: str
    requester: str
    justification: str
    compensating_control: str
    days: int
    bundle_version: int
    quorum: int
    approvals: list[str]
    rejected_by: str | None
    subject_digest: str
    created_at: datetime
    request_expires_at: datetime
    approved_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None
    revoked_by: str | None
    revoke_reason: str | None
    closed_reason: str


class RevokeBody(Strict):
    reason: Reason


# -- keys ------------------------------------------------------------------------------------------------


class RotateBody(Strict):
    reason: Reason


# -- attestations ----------------------------------------------------------------------------------------


class WaiverIn(Strict):
    exception_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    expires: IsoTime


class FindingIn(Strict):
    rule_id: RuleIdStr
    severity: SeverityName
    fingerprint: Fingerprint
    namespace: Namespace | None = None
    blocking: bool = Field(description="What the runner decided; the server decides again from the bundle.")
    waiver: WaiverIn | None = None


class PolicyRef(Strict):
    version: Version
    digest: BundleDigest


MAX_CLAIMED_EXCEPTIONS = 1000
"""Distinct exceptions one gate result may claim (each is looked up and re-checked)."""


MAX_SUBMITTED_SUPPRESSIONS = 1000
"""Suppression requests one gate result may carry (the runner says how many it left out)."""
MAX_SUPPRESSION_TARGETS = 256
"""Findings one suppression request may point at (a file-wide ``ignore`` can target many)."""

PlainText = Annotated[str, StringConstraints(pattern=r"^[^\x00-\x1f\x7f]*$")]
"""No control characters: these strings are shown in audit listings and terminals."""


class SuppressionIn(Strict):
    """An inline suppression the scan found (``dutyguard.core.model.SuppressionRequest``), clipped.

    ``findings`` are indices into the submission's ``findings``: the ones it tries to silence
    (same file, a rule it names, or every rule). Whether an approved exception covers them is
    decided by the control plane from the waivers it reproduced, never taken from the runner.
    """

    file: Annotated[PlainText, StringConstraints(min_length=1, max_length=1024)]
    line: Annotated[int, Field(ge=0, le=MAX_DB_INT)]
    syntax: Annotated[PlainText, StringConstraints(min_length=1, max_length=64)]
    targets: Annotated[
        list[Annotated[PlainText, StringConstraints(min_length=1, max_length=128)]], Field(max_length=32)
    ]
    matched_rules: Annotated[list[RuleIdStr], Field(max_length=32)]
    text: Annotated[PlainText, StringConstraints(max_length=256)] = ""
    findings: Annotated[
        list[Annotated[int, Field(ge=0, lt=MAX_SUBMITTED_FINDINGS)]],
        Field(max_length=MAX_SUPPRESSION_TARGETS),
    ] = Field(default_factory=list)


class AttestationSubmit(Strict):
    subject: Annotated[str, StringConstraints(min_length=1, max_length=400)] = Field(
        description="oci://REGISTRY/IMAGE@sha256:<hex> or git:<commit>"
    )
    app: NameStr | None = None
    cluster: NameStr | None = None
    policy: PolicyRef
    snapshot_version: Version
    findings: Annotated[list[FindingIn], Field(max_length=MAX_SUBMITTED_FINDINGS)]
    errors: Annotated[int, Field(ge=0, le=1_000_000)]
    suppression_requests: (
        Annotated[list[SuppressionIn], Field(max_length=MAX_SUBMITTED_SUPPRESSIONS)] | None
    ) = Field(
        default=None,
        description="Inline suppressions the scan found (audited; a bypass attempt when no approved "
        "exception covers what they target). Optional: runners before this field keep working.",
    )
    suppression_requests_total: Annotated[int, Field(ge=0, le=2**31 - 1)] | None = Field(
        default=None, description="How many the scan found, when the runner sent only the first ones."
    )


class AttestationOut(Out):
    id: str
    subject: str
    decision: str
    app: str | None
    cluster: str | None
    submitter: str
    bundle_version: int
    bundle_digest: str
    snapshot_version: int
    breakglass_grant: str | None
    created_at: datetime
    envelope: dict[str, Any]


# -- the gate's refusals of served state -----------------------------------------------------------------

MAX_REFUSAL_REPORT_BYTES = 16 * 1024
"""A refusal report is a few hundred bytes; anything past this is not one."""
TrustCheck = Literal["missing", "malformed", "unsigned", "signature", "digest", "expired", "rollback"]
StateVersion = Annotated[int, Field(ge=1, le=2**53 - 1)]


class VerificationFailureReport(Strict):
    """What a runner says about a bundle or snapshot served to it that failed verification.

    Everything here is the runner's claim, read from bytes that did not verify: it is recorded
    (with the caller's identity) and used for nothing else.
    """

    document: Literal["bundle", "snapshot"]
    check: TrustCheck = Field(description="The trust error's stable code (docs: What the runner verifies).")
    reason: Annotated[str, StringConstraints(min_length=1, max_length=2000)]
    digest: BundleDigest = Field(description="SHA-256 of the bytes the runner was served.")
    size: Annotated[int, Field(ge=0, le=2**53 - 1)]
    key_ids: Annotated[
        list[Annotated[str, StringConstraints(pattern=r"^[\x21-\x7e]{1,128}$")]], Field(max_length=16)
    ] = Field(default_factory=list, description="Key ids the envelope's signatures claim (unverified).")
    claimed_issuer: Annotated[str, StringConstraints(pattern=r"^[\x21-\x7e]{1,253}$")] | None = None
    claimed_version: StateVersion | None = None
    last_seen_version: StateVersion | None = Field(
        default=None, description="The version of this document the runner last accepted from that issuer."
    )
    app: NameStr | None = None
    cluster: NameStr | None = None
    subject: Annotated[str, StringConstraints(min_length=1, max_length=400)] | None = None


class RefusalRecorded(Out):
    audit_seq: int


# -- admission decisions ---------------------------------------------------------------------------------


class AdmissionFinding(Strict):
    rule: RuleIdStr
    severity: SeverityName
    field: Text | None = None
    container: Text | None = None
    fingerprint: Fingerprint
    action: Literal["deny", "warn", "audit"]


class AdmissionException(Strict):
    id: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    rule: RuleIdStr
    fingerprint: Fingerprint
    field: Text | None = None
    expires: IsoTime


class AdmissionPolicy(Strict):
    label: Text
    signed: bool
    bundleVersion: int | None = None
    bundleDigest: BundleDigest | None = None
    snapshotVersion: int | None = None


class AdmissionDecision(Strict):
    uid: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    time: IsoTime
    operation: Literal["CREATE", "UPDATE", "DELETE", "CONNECT"]
    subResource: Text | None = None
    kind: Text
    group: Text
    namespace: Text
    name: Text
    user: Text
    groups: Annotated[list[Text], Field(max_length=256)]
    dryRun: bool
    outcome: Literal["allow", "deny", "skip"]
    allowed: bool
    reason: Text | None = None
    deniedRules: Annotated[list[RuleIdStr], Field(max_length=1000)]
    findings: Annotated[list[AdmissionFinding], Field(max_length=1000)]
    exceptions: Annotated[list[AdmissionException], Field(max_length=1000)]
    errors: Annotated[list[Text], Field(max_length=256)]
    images: Annotated[list[Text], Field(max_length=256)]
    policy: AdmissionPolicy | None
    stateProblem: Text | None = None
    sampled: bool


class AllowsCounted(Strict):
    count: Annotated[int, Field(ge=0, le=2**53 - 1)]
    since: IsoTime | None = None


class AdmissionBatch(Strict):
    apiVersion: Literal["dutyguard.dev/v1"]
    kind: Literal["AdmissionDecisionBatch"]
    batchId: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9-]{1,64}$")]
    cluster: NameStr
    webhook: Annotated[str, StringConstraints(min_length=1, max_length=253)]
    sentAt: IsoTime
    decisions: Annotated[list[AdmissionDecision], Field(max_length=MAX_BATCH_DECISIONS)]
    allowsCounted: AllowsCounted
    dropped: Annotated[dict[Annotated[str, StringConstraints(max_length=64)], int], Field(max_length=32)]


class BatchOut(Out):
    batch_id: str
    stored: int
    duplicate: bool
    first_seq: int | None
