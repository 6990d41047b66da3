"""Request and response models of the API.

Requests are strict: unknown fields are refused (``extra="forbid"``), types are not coerced
(``"3"`` is not an integer, ``1`` is not a string), strings are bounded, identifiers follow the
governance id rules. A refusal is a 422 problem naming each field (``body.ttl_seconds``).
Responses are separate models so a stored field never leaks by accident (token hashes are not in
any response model).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
)

from dutyguard.errors import GovernanceError
from dutyguard.governance.duties import Role
from dutyguard.governance.scope import Scope

IdStr = Annotated[
    str,
    StringConstraints(pattern=r"^[a-z0-9][a-z0-9._@+-]{0,63}$"),
    Field(description="Lower-case ASCII letters, digits and ._@+-, at most 64.", examples=["alice"]),
]
NameStr = Annotated[
    str,
    StringConstraints(pattern=r"^[a-z0-9]([a-z0-9._-]{0,251}[a-z0-9])?$"),
    Field(description="DNS-style name, at most 253.", examples=["shop-api"]),
]
Reason = Annotated[str, StringConstraints(min_length=1, max_length=2000)]
Notes = Annotated[str, StringConstraints(min_length=1, max_length=4000)]
DisplayName = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Email = Annotated[str, StringConstraints(pattern=r"^[^@\s]{1,64}@[^@\s]{1,255}$", max_length=320)]
Hex64 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


def _scope(text: str) -> str:
    try:
        return str(Scope.parse(text))
    except GovernanceError as e:
        raise ValueError(e.message) from None


ScopeStr = Annotated[
    str,
    StringConstraints(min_length=1, max_length=270),
    AfterValidator(_scope),
    Field(
        description="org, team:<id>, app:<name>, namespace:<name> or cluster:<name>.",
        examples=["team:payments"],
    ),
]


def _text_only(value: object) -> object:
    if not isinstance(value, str):
        raise ValueError("expected an ISO 8601 string with a time zone")
    return value


IsoTime = Annotated[
    AwareDatetime,
    BeforeValidator(_text_only),
    Field(strict=False, description="ISO 8601 with a zone, e.g. 2027-01-31T00:00:00Z."),
]
"""JSON bodies are validated as Python objects, where strict mode refuses every string for a
datetime; this accepts exactly an ISO string with a zone (never a number)."""

RoleName = Annotated[
    Role, Field(strict=False, description="security, devops, compliance, admin, ci or cluster.")
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


# -- requests ------------------------------------------------------------------------------------


class UserCreate(Strict):
    id: IdStr
    kind: Literal["person", "service"] = "person"
    display_name: DisplayName | None = None
    email: Email | None = None


class TeamCreate(Strict):
    id: IdStr
    display_name: DisplayName | None = None


class MemberAdd(Strict):
    identity: IdStr


class AssetCreate(Strict):
    kind: Literal["app", "namespace", "cluster"] = "app"
    name: NameStr
    team: IdStr


class AssetMove(Strict):
    team: IdStr


class TokenCreate(Strict):
    identity: IdStr | None = Field(default=None, description="Whose token; default: the caller.")
    description: Annotated[str, StringConstraints(max_length=200)] = ""
    ttl_seconds: Annotated[int, Field(ge=60, le=366 * 24 * 3600)] | None = None


class BindingCreate(Strict):
    identity: IdStr
    role: RoleName
    scope: ScopeStr = "org:*"


class MitigationCreate(Strict):
    rule_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    principal: IdStr
    owner: IdStr
    reason: Reason
    expires_at: IsoTime


class RulesProposal(Strict):
    document: Annotated[str, StringConstraints(min_length=1, max_length=200_000)] = Field(
        description="The complete new rule set, as YAML or JSON in the sod-rules.yaml format."
    )


class VoteBody(Strict):
    reason: Annotated[str, StringConstraints(max_length=2000)] = ""
    seen_digest: Hex64 | None = Field(
        default=None, description="The subject digest the checker reviewed; refused if it changed."
    )


class WithdrawBody(Strict):
    reason: Reason


class BreakglassOpen(Strict):
    reason: Reason
    scope: ScopeStr = "org:*"
    duration_minutes: Annotated[int, Field(ge=1, le=24 * 60)] = 60


class BreakglassReview(Strict):
    outcome: Literal["justified", "unjustified"]
    notes: Notes


class Empty(Strict):
    pass


T = TypeVar("T")

# -- responses -----------------------------------------------------------------------------------


class Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class Health(Out):
    status: Literal["ok"]
    version: str
    database: str
    schema_revision: str | None


class BindingOut(Out):
    id: str
    identity: str
    role: str
    scope: str
    created_at: datetime
    created_by: str


class BindingPending(Out):
    """``POST /role-bindings`` of a sensitive role (202): nothing is bound until it is approved."""

    state: Literal["pending"]
    approval_id: str = Field(description="Approve with POST /approvals/{approval_id}/approve.")
    identity: str
    role: str
    scope: str
    approver_duty: str
    eligible_approvers: int = Field(description="How many people could approve it now.")
    expires_at: datetime


class WhoAmI(Out):
    id: str
    kind: str
    display_name: str
    teams: list[str]
    bindings: list[str]
    duties: list[str]
    token_id: str
    token_purpose: str
    token_expires_at: datetime


class UserOut(Out):
    id: str
    kind: str
    display_name: str
    email: str | None
    created_at: datetime
    created_by: str
    disabled: bool
    teams: list[str] | None = None
    bindings: list[str] | None = None


class TeamOut(Out):
    id: str
    display_name: str
    created_at: datetime
    members: list[str]
    assets: list[str]


class AssetOut(Out):
    kind: str
    name: str
    scope: str
    team: str
    created_at: datetime
    created_by: str


class TokenOut(Out):
    id: str
    identity: str
    description: str
    created_at: datetime
    created_by: str
    expires_at: datetime
    revoked_at: datetime | None
    state: str


class TokenCreated(TokenOut):
    token: str = Field(description="The secret: shown once, never stored or shown again.")


class RoleOut(Out):
    role: str
    kind: str
    description: str
    duties: list[str]
    needs_approval: bool = False
    """Binding this role opens an approval that a security member must grant (sensitive role)."""


class MitigationOut(Out):
    id: str
    rule_id: str
    principal: str
    owner: str
    reason: str
    expires_at: datetime
    created_at: datetime
    created_by: str
    revoked_at: datetime | None
    active: bool


class ApprovalOut(Out):
    id: str
    kind: str
    subject: str
    subject_digest: str
    scope: str
    maker: str
    severity: str
    state: str
    quorum: int
    approvals: list[str]
    rejected_by: str | None
    approver_duty: str
    created_at: datetime
    expires_at: datetime
    closed_at: datetime | None
    closed_reason: str
    applied_at: datetime | None
    details: dict[str, Any] | None = Field(
        default=None,
        description="What the checker should know, by kind (shown by GET /approvals/{id} only); "
        "for role.binding: the binding, the person and their enrollment and token state.",
    )


class GrantOut(Out):
    id: str
    opener: str
    reason: str
    scope: str
    state: str
    opened_at: datetime
    expires_at: datetime
    closed_at: datetime | None
    closed_by: str | None
    reviewer: str | None
    review_outcome: str | None
    review_notes: str | None
    reviewed_at: datetime | None


class AuditEntryOut(Out):
    seq: int
    ts: str
    actor: str
    roles: list[str]
    action: str
    object: str
    outcome: str
    state_digest: str | None
    details: dict[str, Any]
    prev_hash: str
    entry_hash: str


class Page(Out, Generic[T]):
    items: list[T]
    next_cursor: str | None
