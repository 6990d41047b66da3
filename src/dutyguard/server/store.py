"""Repositories: every query of the control plane, over a caller-supplied connection.

Functions take the :class:`sqlalchemy.Connection` of the caller's transaction so a change and
its audit entry commit together. Rows come back as governance value types (``Principal``,
``Binding``, ``Mitigation``, ``Grant``, ``ApprovalRequest``) or as small frozen records; no
SQLAlchemy row leaves this module.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from dutyguard.governance.approvals import ApprovalRequest
from dutyguard.governance.authz import Binding, Principal
from dutyguard.governance.breakglass import Grant, Review, ReviewOutcome
from dutyguard.governance.duties import PrincipalKind, Role, RoleTable
from dutyguard.governance.scope import ASSET_KINDS, Ownership, Scope, ScopeKind
from dutyguard.governance.sod import Mitigation, RuleSet, parse_rules_text
from dutyguard.server import tables as t


def new_id(prefix: str) -> str:
    """``<prefix>-<16 hex>``: unguessable and valid as a governance id."""
    return f"{prefix}-{secrets.token_hex(8)}"


# -- identities ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Identity:
    id: str
    kind: PrincipalKind
    display_name: str
    email: str | None
    created_at: datetime
    created_by: str
    disabled_at: datetime | None


def _identity(row: sa.Row[tuple[object, ...]]) -> Identity:
    m = row._mapping
    return Identity(
        id=m["id"],
        kind=PrincipalKind(m["kind"]),
        display_name=m["display_name"],
        email=m["email"],
        created_at=m["created_at"],
        created_by=m["created_by"],
        disabled_at=m["disabled_at"],
    )


# Hot-path statements are built once: constructing a select per call costs more than SQLite
# takes to run it (measured ~2x per query on the authentication path).
_IDENTITY = sa.select(t.identities).where(t.identities.c.id == sa.bindparam("id"))


def get_identity(conn: Connection, identity_id: str) -> Identity | None:
    row = conn.execute(_IDENTITY, {"id": identity_id}).first()
    return _identity(row) if row else None


def list_identities(
    conn: Connection, after: str | None, limit: int, kind: str | None = None
) -> list[Identity]:
    q = sa.select(t.identities).order_by(t.identities.c.id).limit(limit)
    if after is not None:
        q = q.where(t.identities.c.id > after)
    if kind is not None:
        q = q.where(t.identities.c.kind == kind)
    return [_identity(r) for r in conn.execute(q)]


def create_identity(
    conn: Connection,
    identity_id: str,
    kind: PrincipalKind,
    display_name: str,
    email: str | None,
    actor: str,
    now: datetime,
) -> Identity:
    conn.execute(
        t.identities.insert().values(
            id=identity_id,
            kind=kind.value,
            display_name=display_name,
            email=email,
            created_at=now,
            created_by=actor,
        )
    )
    return Identity(identity_id, kind, display_name, email, now, actor, None)


def disable_identity(conn: Connection, identity_id: str, now: datetime) -> None:
    conn.execute(t.identities.update().where(t.identities.c.id == identity_id).values(disabled_at=now))


# -- teams and ownership -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Team:
    id: str
    display_name: str
    created_at: datetime
    members: tuple[str, ...]
    assets: tuple[Scope, ...]


_TEAM_EXISTS = sa.select(t.teams.c.id).where(t.teams.c.id == sa.bindparam("id"))
_TEAM = sa.select(t.teams).where(t.teams.c.id == sa.bindparam("id"))
_MEMBERS_OF = (
    sa.select(t.team_members.c.team_id, t.team_members.c.identity_id)
    .where(t.team_members.c.team_id.in_(sa.bindparam("ids", expanding=True)))
    .order_by(t.team_members.c.identity_id)
)
_ASSETS_OF = (
    sa.select(t.assets.c.team_id, t.assets.c.kind, t.assets.c.name)
    .where(t.assets.c.team_id.in_(sa.bindparam("ids", expanding=True)))
    .order_by(t.assets.c.kind, t.assets.c.name)
)


def team_exists(conn: Connection, team_id: str) -> bool:
    return conn.execute(_TEAM_EXISTS, {"id": team_id}).first() is not None


def get_team(conn: Connection, team_id: str) -> Team | None:
    row = conn.execute(_TEAM, {"id": team_id}).first()
    return None if row is None else _teams(conn, [row])[0]


def _teams(conn: Connection, rows: Sequence[sa.Row[tuple[object, ...]]]) -> list[Team]:
    """Teams with members and assets in three queries, whatever the page size."""
    ids = [r._mapping["id"] for r in rows]
    if not ids:
        return []
    members: dict[str, list[str]] = {i: [] for i in ids}
    for team_id, identity_id in conn.execute(_MEMBERS_OF, {"ids": ids}):
        members[team_id].append(identity_id)
    assets: dict[str, list[Scope]] = {i: [] for i in ids}
    for team_id, kind, name in conn.execute(_ASSETS_OF, {"ids": ids}):
        assets[team_id].append(Scope(ScopeKind(kind), name))
    return [
        Team(
            id=m["id"],
            display_name=m["display_name"],
            created_at=m["created_at"],
            members=tuple(members[m["id"]]),
            assets=tuple(assets[m["id"]]),
        )
        for m in (r._mapping for r in rows)
    ]


def list_teams(conn: Connection, after: str | None, limit: int) -> list[Team]:
    q = sa.select(t.teams).order_by(t.teams.c.id).limit(limit)
    if after is not None:
        q = q.where(t.teams.c.id > after)
    return _teams(conn, conn.execute(q).all())


def create_team(conn: Connection, team_id: str, display_name: str, actor: str, now: datetime) -> None:
    conn.execute(
        t.teams.insert().values(id=team_id, display_name=display_name, created_at=now, created_by=actor)
    )


def add_member(conn: Connection, team_id: str, identity_id: str, now: datetime) -> bool:
    exists = conn.execute(
        sa.select(t.team_members.c.team_id).where(
            t.team_members.c.team_id == team_id, t.team_members.c.identity_id == identity_id
        )
    ).first()
    if exists:
        return False
    conn.execute(t.team_members.insert().values(team_id=team_id, identity_id=identity_id, added_at=now))
    return True


def remove_member(conn: Connection, team_id: str, identity_id: str) -> bool:
    res = conn.execute(
        t.team_members.delete().where(
            t.team_members.c.team_id == team_id, t.team_members.c.identity_id == identity_id
        )
    )
    return bool(res.rowcount)


@dataclass(frozen=True, slots=True)
class Asset:
    scope: Scope
    team_id: str
    created_at: datetime
    created_by: str


_ASSET = sa.select(t.assets).where(
    t.assets.c.kind == sa.bindparam("kind"), t.assets.c.name == sa.bindparam("name")
)


def get_asset(conn: Connection, scope: Scope) -> Asset | None:
    row = conn.execute(_ASSET, {"kind": scope.kind.value, "name": scope.id}).first()
    if row is None:
        return None
    m = row._mapping
    return Asset(scope, m["team_id"], m["created_at"], m["created_by"])


def list_assets(
    conn: Connection, after: tuple[str, str] | None, limit: int, team_id: str | None = None
) -> list[Asset]:
    q = sa.select(t.assets).order_by(t.assets.c.kind, t.assets.c.name).limit(limit)
    if after is not None:
        q = q.where(sa.tuple_(t.assets.c.kind, t.assets.c.name) > sa.tuple_(*after))
    if team_id is not None:
        q = q.where(t.assets.c.team_id == team_id)
    return [
        Asset(Scope(ScopeKind(m["kind"]), m["name"]), m["team_id"], m["created_at"], m["created_by"])
        for m in (r._mapping for r in conn.execute(q))
    ]


def put_asset(conn: Connection, scope: Scope, team_id: str, actor: str, now: datetime) -> None:
    conn.execute(
        t.assets.insert().values(
            kind=scope.kind.value, name=scope.id, team_id=team_id, created_at=now, created_by=actor
        )
    )


def move_asset(conn: Connection, scope: Scope, team_id: str) -> None:
    conn.execute(
        t.assets.update()
        .where(t.assets.c.kind == scope.kind.value, t.assets.c.name == scope.id)
        .values(team_id=team_id)
    )


def delete_asset(conn: Connection, scope: Scope) -> None:
    conn.execute(t.assets.delete().where(t.assets.c.kind == scope.kind.value, t.assets.c.name == scope.id))


def ownership_for(
    conn: Connection | None, principals: Iterable[Principal], targets: Iterable[Scope]
) -> Ownership:
    """The part of the ownership registry a decision needs: the targets' owners and the principals' teams.

    Loading only this keeps a request to a handful of indexed reads however large the registry is;
    ``Ownership.covers`` gives the same answer as with the full registry for these scopes.
    """
    teams: set[str] = set()
    for p in principals:
        teams.update(b.scope.id for b in p.bindings if b.scope.kind is ScopeKind.TEAM)
    owners: dict[Scope, str] = {}
    for target in targets:
        if target.kind is ScopeKind.TEAM:
            teams.add(target.id)
        elif target.kind in ASSET_KINDS:
            if conn is None:
                raise ValueError(f"deciding on {target} needs the ownership registry")
            asset = get_asset(conn, target)
            if asset is not None:
                owners[target] = asset.team_id
                teams.add(asset.team_id)
    return Ownership.build(teams, owners)


# -- principals and bindings ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoredBinding:
    id: str
    binding: Binding
    created_at: datetime
    created_by: str


def _binding(m: sa.RowMapping) -> StoredBinding:
    return StoredBinding(
        id=m["id"],
        binding=Binding(m["identity_id"], Role(m["role"]), Scope(ScopeKind(m["scope_kind"]), m["scope_id"])),
        created_at=m["created_at"],
        created_by=m["created_by"],
    )


_BINDINGS_OF = (
    sa.select(t.role_bindings)
    .where(t.role_bindings.c.identity_id == sa.bindparam("id"))
    .order_by(t.role_bindings.c.id)
)
_TEAMS_OF = sa.select(t.team_members.c.team_id).where(t.team_members.c.identity_id == sa.bindparam("id"))


def bindings_of(conn: Connection, identity_id: str) -> list[StoredBinding]:
    return [_binding(r._mapping) for r in conn.execute(_BINDINGS_OF, {"id": identity_id})]


def teams_of(conn: Connection, identity_id: str) -> frozenset[str]:
    return frozenset(conn.execute(_TEAMS_OF, {"id": identity_id}).scalars())


# Bindings and team memberships in one round trip: every authenticated request needs both.
_GRANTS_OF = sa.union_all(
    sa.select(
        sa.literal("b").label("what"),
        t.role_bindings.c.id.label("key"),
        t.role_bindings.c.role.label("a"),
        t.role_bindings.c.scope_kind.label("b"),
        t.role_bindings.c.scope_id.label("c"),
    ).where(t.role_bindings.c.identity_id == sa.bindparam("id")),
    sa.select(
        sa.literal("t"),
        t.team_members.c.team_id,
        sa.null(),
        sa.null(),
        sa.null(),
    ).where(t.team_members.c.identity_id == sa.bindparam("id")),
)


def load_principal(conn: Connection, identity: Identity) -> Principal:
    bindings: list[tuple[str, Binding]] = []
    teams: set[str] = set()
    for what, key, role, scope_kind, scope_id in conn.execute(_GRANTS_OF, {"id": identity.id}):
        if what == "t":
            teams.add(key)
        else:
            bindings.append((key, Binding(identity.id, Role(role), Scope(ScopeKind(scope_kind), scope_id))))
    return Principal(
        id=identity.id,
        kind=identity.kind,
        teams=frozenset(teams),
        bindings=tuple(b for _, b in sorted(bindings, key=lambda kb: kb[0])),
    )


def all_principals(conn: Connection) -> list[Principal]:
    """Every enabled identity with its bindings (for the SoD report)."""
    kinds = {
        r.id: PrincipalKind(r.kind)
        for r in conn.execute(
            sa.select(t.identities.c.id, t.identities.c.kind).where(t.identities.c.disabled_at.is_(None))
        )
    }
    bindings: dict[str, list[Binding]] = {}
    for r in conn.execute(sa.select(t.role_bindings).order_by(t.role_bindings.c.id)):
        sb = _binding(r._mapping)
        bindings.setdefault(sb.binding.principal_id, []).append(sb.binding)
    teams: dict[str, set[str]] = {}
    for team_id, identity_id in conn.execute(
        sa.select(t.team_members.c.team_id, t.team_members.c.identity_id)
    ):
        teams.setdefault(identity_id, set()).add(team_id)
    return [
        Principal(pid, kind, frozenset(teams.get(pid, ())), tuple(bindings.get(pid, ())))
        for pid, kind in sorted(kinds.items())
    ]


def list_bindings(
    conn: Connection, after: str | None, limit: int, identity_id: str | None = None, role: str | None = None
) -> list[StoredBinding]:
    q = sa.select(t.role_bindings).order_by(t.role_bindings.c.id).limit(limit)
    if after is not None:
        q = q.where(t.role_bindings.c.id > after)
    if identity_id is not None:
        q = q.where(t.role_bindings.c.identity_id == identity_id)
    if role is not None:
        q = q.where(t.role_bindings.c.role == role)
    return [_binding(r._mapping) for r in conn.execute(q)]


def get_binding(conn: Connection, binding_id: str) -> StoredBinding | None:
    row = conn.execute(sa.select(t.role_bindings).where(t.role_bindings.c.id == binding_id)).first()
    return _binding(row._mapping) if row else None


def find_binding(conn: Connection, binding: Binding) -> StoredBinding | None:
    row = conn.execute(
        sa.select(t.role_bindings).where(
            t.role_bindings.c.identity_id == binding.principal_id,
            t.role_bindings.c.role == binding.role.value,
            t.role_bindings.c.scope_kind == binding.scope.kind.value,
            t.role_bindings.c.scope_id == binding.scope.id,
        )
    ).first()
    return _binding(row._mapping) if row else None


def insert_binding(conn: Connection, binding: Binding, actor: str, now: datetime) -> StoredBinding:
    sb = StoredBinding(new_id("rb"), binding, now, actor)
    conn.execute(
        t.role_bindings.insert().values(
            id=sb.id,
            identity_id=binding.principal_id,
            role=binding.role.value,
            scope_kind=binding.scope.kind.value,
            scope_id=binding.scope.id,
            created_at=now,
            created_by=actor,
        )
    )
    return sb


def delete_binding(conn: Connection, binding_id: str) -> None:
    conn.execute(t.role_bindings.delete().where(t.role_bindings.c.id == binding_id))


# -- tokens ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TokenRecord:
    id: str
    identity_id: str
    secret_hash: str
    description: str
    purpose: str
    created_at: datetime
    created_by: str
    expires_at: datetime
    revoked_at: datetime | None
    revoked_by: str | None

    def state(self, now: datetime) -> str:
        if self.revoked_at is not None:
            return "revoked"
        return "expired" if now >= self.expires_at else "active"


def _token(m: sa.RowMapping) -> TokenRecord:
    return TokenRecord(
        id=m["id"],
        identity_id=m["identity_id"],
        secret_hash=m["secret_hash"],
        description=m["description"],
        purpose=m["purpose"],
        created_at=m["created_at"],
        created_by=m["created_by"],
        expires_at=m["expires_at"],
        revoked_at=m["revoked_at"],
        revoked_by=m["revoked_by"],
    )


@dataclass(frozen=True, slots=True)
class TokenAndIdentity:
    token: TokenRecord
    identity: Identity


_TOKEN_AND_IDENTITY = (
    sa.select(
        t.api_tokens,
        t.identities.c.kind.label("i_kind"),
        t.identities.c.display_name.label("i_display_name"),
        t.identities.c.email.label("i_email"),
        t.identities.c.created_at.label("i_created_at"),
        t.identities.c.created_by.label("i_created_by"),
        t.identities.c.disabled_at.label("i_disabled_at"),
    )
    .join(t.identities, t.identities.c.id == t.api_tokens.c.identity_id)
    .where(t.api_tokens.c.id == sa.bindparam("id"))
)


def token_with_identity(conn: Connection, token_id: str) -> TokenAndIdentity | None:
    """One indexed join: what authenticating a request needs."""
    row = conn.execute(_TOKEN_AND_IDENTITY, {"id": token_id}).first()
    if row is None:
        return None
    m = row._mapping
    identity = Identity(
        id=m["identity_id"],
        kind=PrincipalKind(m["i_kind"]),
        display_name=m["i_display_name"],
        email=m["i_email"],
        created_at=m["i_created_at"],
        created_by=m["i_created_by"],
        disabled_at=m["i_disabled_at"],
    )
    return TokenAndIdentity(_token(m), identity)


def get_token(conn: Connection, token_id: str) -> TokenRecord | None:
    row = conn.execute(sa.select(t.api_tokens).where(t.api_tokens.c.id == token_id)).first()
    return _token(row._mapping) if row else None


def insert_token(
    conn: Connection,
    token_id: str,
    identity_id: str,
    secret_hash: str,
    description: str,
    actor: str,
    now: datetime,
    expires_at: datetime,
    purpose: str = "api",
) -> TokenRecord:
    conn.execute(
        t.api_tokens.insert().values(
            id=token_id,
            identity_id=identity_id,
            secret_hash=secret_hash,
            description=description,
            purpose=purpose,
            created_at=now,
            created_by=actor,
            expires_at=expires_at,
        )
    )
    return TokenRecord(
        token_id, identity_id, secret_hash, description, purpose, now, actor, expires_at, None, None
    )


def list_tokens(
    conn: Connection, identity_id: str | None, after: str | None, limit: int
) -> list[TokenRecord]:
    q = sa.select(t.api_tokens).order_by(t.api_tokens.c.id).limit(limit)
    if identity_id is not None:
        q = q.where(t.api_tokens.c.identity_id == identity_id)
    if after is not None:
        q = q.where(t.api_tokens.c.id > after)
    return [_token(r._mapping) for r in conn.execute(q)]


def revoke_token(conn: Connection, token_id: str, actor: str, now: datetime) -> None:
    conn.execute(
        t.api_tokens.update()
        .where(t.api_tokens.c.id == token_id, t.api_tokens.c.revoked_at.is_(None))
        .values(revoked_at=now, revoked_by=actor)
    )


def revoke_tokens_of(conn: Connection, identity_id: str, actor: str, now: datetime) -> int:
    res = conn.execute(
        t.api_tokens.update()
        .where(t.api_tokens.c.identity_id == identity_id, t.api_tokens.c.revoked_at.is_(None))
        .values(revoked_at=now, revoked_by=actor)
    )
    return int(res.rowcount or 0)


# -- SoD: mitigations and rule sets --------------------------------------------------------------


def _mitigation(m: sa.RowMapping) -> Mitigation:
    return Mitigation(
        id=m["id"],
        rule_id=m["rule_id"],
        principal_id=m["principal_id"],
        owner=m["owner"],
        reason=m["reason"],
        expires_at=m["expires_at"],
        created_at=m["created_at"],
        created_by=m["created_by"],
        revoked_at=m["revoked_at"],
        revoked_by=m["revoked_by"],
    )


def mitigations(conn: Connection, principal_id: str | None = None) -> list[Mitigation]:
    q = sa.select(t.sod_mitigations).order_by(t.sod_mitigations.c.id)
    if principal_id is not None:
        q = q.where(t.sod_mitigations.c.principal_id == principal_id)
    return [_mitigation(r._mapping) for r in conn.execute(q)]


def get_mitigation(conn: Connection, mitigation_id: str) -> Mitigation | None:
    row = conn.execute(sa.select(t.sod_mitigations).where(t.sod_mitigations.c.id == mitigation_id)).first()
    return _mitigation(row._mapping) if row else None


def insert_mitigation(conn: Connection, m: Mitigation) -> None:
    conn.execute(
        t.sod_mitigations.insert().values(
            id=m.id,
            rule_id=m.rule_id,
            principal_id=m.principal_id,
            owner=m.owner,
            reason=m.reason,
            expires_at=m.expires_at,
            created_at=m.created_at,
            created_by=m.created_by,
        )
    )


def revoke_mitigation(conn: Connection, mitigation_id: str, actor: str, now: datetime) -> None:
    conn.execute(
        t.sod_mitigations.update()
        .where(t.sod_mitigations.c.id == mitigation_id)
        .values(revoked_at=now, revoked_by=actor)
    )


_LATEST_RULES = sa.select(t.sod_rule_sets).order_by(t.sod_rule_sets.c.version.desc()).limit(1)


@dataclass(frozen=True, slots=True)
class ActiveRules:
    version: int
    rules: RuleSet


_LATEST_RULES = (
    sa.select(t.sod_rule_sets.c.version, t.sod_rule_sets.c.digest, t.sod_rule_sets.c.document)
    .order_by(t.sod_rule_sets.c.version.desc())
    .limit(1)
)
_PARSED_RULES: dict[tuple[int, str, int], RuleSet] = {}
"""(version, digest, id of the role table) → parsed rules: every write records the rules' digest,
and parsing the stored document each time would cost more than the write."""


def current_rules(conn: Connection, shipped: RuleSet, roles: RoleTable) -> ActiveRules:
    """The conflict rules in force: the latest approved change, else the shipped file (version 0)."""
    row = conn.execute(_LATEST_RULES).first()
    if row is None:
        return ActiveRules(0, shipped)
    version, digest, document = int(row[0]), str(row[1]), str(row[2])
    key = (version, digest, id(roles))
    rules = _PARSED_RULES.get(key)
    if rules is None:
        rules = parse_rules_text(document, f"sod_rule_sets v{version}", roles)
        if rules.digest != digest:
            from dutyguard.errors import GovernanceError

            raise GovernanceError(
                "invalid_rules", f"stored conflict rules v{version} do not match their digest"
            )
        if len(_PARSED_RULES) > 64:
            _PARSED_RULES.clear()
        _PARSED_RULES[key] = rules
    return ActiveRules(version, rules)


def insert_rules(conn: Connection, version: int, rules: RuleSet, approval_id: str, now: datetime) -> None:
    conn.execute(
        t.sod_rule_sets.insert().values(
            version=version,
            document=rules.document(),
            digest=rules.digest,
            approval_id=approval_id,
            created_at=now,
        )
    )


# -- approvals ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoredRequest:
    request: ApprovalRequest
    payload: str
    applied_at: datetime | None


def _doc(request: ApprovalRequest) -> str:
    return json.dumps(request.to_json(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def insert_request(conn: Connection, request: ApprovalRequest, payload: str) -> None:
    conn.execute(
        t.approval_requests.insert().values(
            id=request.id,
            kind=request.kind,
            state=request.state.value,
            maker=request.maker,
            created_at=request.created_at,
            expires_at=request.expires_at,
            document=_doc(request),
            payload=payload,
        )
    )


def update_request(conn: Connection, request: ApprovalRequest, applied_at: datetime | None = None) -> None:
    values: dict[str, object] = {"state": request.state.value, "document": _doc(request)}
    if applied_at is not None:
        values["applied_at"] = applied_at
    conn.execute(t.approval_requests.update().where(t.approval_requests.c.id == request.id).values(**values))


def _stored_request(m: sa.RowMapping) -> StoredRequest:
    # from_json re-checks every invariant: a row edited to add the maker's vote is refused.
    request = ApprovalRequest.from_json(json.loads(m["document"]))
    if request.id != m["id"] or request.state.value != m["state"]:
        from dutyguard.errors import GovernanceError

        raise GovernanceError(
            "invalid_request", f"approval request {m['id']}: columns disagree with document"
        )
    return StoredRequest(request, m["payload"], m["applied_at"])


def get_request(conn: Connection, request_id: str, *, for_update: bool = False) -> StoredRequest | None:
    q = sa.select(t.approval_requests).where(t.approval_requests.c.id == request_id)
    if for_update:
        q = q.with_for_update()
    row = conn.execute(q).first()
    return _stored_request(row._mapping) if row else None


def list_requests(
    conn: Connection,
    after: str | None,
    limit: int,
    kinds: Sequence[str],
    state: str | None = None,
) -> list[StoredRequest]:
    q = (
        sa.select(t.approval_requests)
        .where(t.approval_requests.c.kind.in_(list(kinds)))
        .order_by(t.approval_requests.c.id)
        .limit(limit)
    )
    if after is not None:
        q = q.where(t.approval_requests.c.id > after)
    if state is not None:
        q = q.where(t.approval_requests.c.state == state)
    return [_stored_request(r._mapping) for r in conn.execute(q)]


# -- break-glass -------------------------------------------------------------------------------------


def _grant(m: sa.RowMapping) -> Grant:
    review = None
    if m["reviewed_at"] is not None:
        review = Review(
            m["reviewer"], ReviewOutcome(m["review_outcome"]), m["review_notes"], m["reviewed_at"]
        )
    return Grant(
        id=m["id"],
        opener=m["opener"],
        reason=m["reason"],
        scope=Scope(ScopeKind(m["scope_kind"]), m["scope_id"]),
        opened_at=m["opened_at"],
        expires_at=m["expires_at"],
        closed_at=m["closed_at"],
        closed_by=m["closed_by"],
        review=review,
    )


def insert_grant(conn: Connection, g: Grant) -> None:
    conn.execute(
        t.breakglass_grants.insert().values(
            id=g.id,
            opener=g.opener,
            reason=g.reason,
            scope_kind=g.scope.kind.value,
            scope_id=g.scope.id,
            opened_at=g.opened_at,
            expires_at=g.expires_at,
        )
    )


def update_grant(conn: Connection, g: Grant) -> None:
    conn.execute(
        t.breakglass_grants.update()
        .where(t.breakglass_grants.c.id == g.id)
        .values(
            closed_at=g.closed_at,
            closed_by=g.closed_by,
            reviewed_at=g.review.at if g.review else None,
            reviewer=g.review.reviewer if g.review else None,
            review_outcome=g.review.outcome.value if g.review else None,
            review_notes=g.review.notes if g.review else None,
        )
    )


def get_grant(conn: Connection, grant_id: str, *, for_update: bool = False) -> Grant | None:
    q = sa.select(t.breakglass_grants).where(t.breakglass_grants.c.id == grant_id)
    if for_update:
        q = q.with_for_update()
    row = conn.execute(q).first()
    return _grant(row._mapping) if row else None


_OPEN_GRANTS_OF = sa.select(t.breakglass_grants).where(
    t.breakglass_grants.c.opener == sa.bindparam("opener"),
    t.breakglass_grants.c.closed_at.is_(None),
    t.breakglass_grants.c.expires_at > sa.bindparam("now", type_=t.UTCDateTime()),
)


def grants_of(conn: Connection, opener: str, now: datetime) -> list[Grant]:
    """The opener's grants that may still be open at ``now``."""
    return [_grant(r._mapping) for r in conn.execute(_OPEN_GRANTS_OF, {"opener": opener, "now": now})]


def list_grants(
    conn: Connection, after: str | None, limit: int, pending_review: bool, now: datetime
) -> list[Grant]:
    q = sa.select(t.breakglass_grants).order_by(t.breakglass_grants.c.id).limit(limit)
    if after is not None:
        q = q.where(t.breakglass_grants.c.id > after)
    if pending_review:
        q = q.where(
            t.breakglass_grants.c.reviewed_at.is_(None),
            sa.or_(t.breakglass_grants.c.closed_at.is_not(None), t.breakglass_grants.c.expires_at <= now),
        )
    return [_grant(r._mapping) for r in conn.execute(q)]


# -- installation state ------------------------------------------------------------------------------


def get_state(conn: Connection, key: str) -> str | None:
    return conn.execute(sa.select(t.server_state.c.value).where(t.server_state.c.key == key)).scalar()


def claim_state(conn: Connection, key: str, value: str, now: datetime) -> bool:
    """Insert ``key`` once; ``False`` when it already exists (another process won the race)."""
    if get_state(conn, key) is not None:
        return False
    try:
        with conn.begin_nested():
            conn.execute(t.server_state.insert().values(key=key, value=value, updated_at=now))
    except sa.exc.IntegrityError:
        return False
    return True


# -- sensitive role bindings -------------------------------------------------------------------------


def enabled_holders(conn: Connection, roles: Iterable[Role]) -> list[Principal]:
    """Enabled identities with a binding of one of ``roles`` (any scope), with all their bindings and teams."""
    names = sorted(r.value for r in roles)
    if not names:
        return []
    q = (
        sa.select(t.identities)
        .where(
            t.identities.c.disabled_at.is_(None),
            t.identities.c.id.in_(
                sa.select(t.role_bindings.c.identity_id).where(t.role_bindings.c.role.in_(names))
            ),
        )
        .order_by(t.identities.c.id)
    )
    return [load_principal(conn, _identity(r)) for r in conn.execute(q).all()]


def anyone_bound(conn: Connection, roles: Iterable[Role]) -> bool:
    """Does any identity, enabled or disabled, hold a binding of one of ``roles``?"""
    names = sorted(r.value for r in roles)
    if not names:
        return False
    q = sa.select(t.role_bindings.c.id).where(t.role_bindings.c.role.in_(names)).limit(1)
    return conn.execute(q).first() is not None


def pending_request_with_payload(conn: Connection, kind: str, payload: str, now: datetime) -> str | None:
    """The id of a request of ``kind`` about exactly ``payload`` that is still pending at ``now``."""
    row = conn.execute(
        sa.select(t.approval_requests.c.id)
        .where(
            t.approval_requests.c.kind == kind,
            t.approval_requests.c.state == "pending",
            t.approval_requests.c.expires_at > now,
            t.approval_requests.c.payload == payload,
        )
        .order_by(t.approval_requests.c.id)
        .limit(1)
    ).first()
    return None if row is None else str(row[0])


EXCHANGE_SEARCH_WINDOW = 200_000
"""How many of the newest audit entries are searched for where an enrollment token was redeemed
(the trail has no index on objects; this bounds the cost of showing an approval)."""


def enrollment_exchanges(
    conn: Connection, identity_id: str, window: int = EXCHANGE_SEARCH_WINDOW
) -> dict[str, str]:
    """Enrollment token id → the address it was exchanged from, read from the audit trail's
    ``token.create`` entries of ``identity_id`` among the newest ``window`` entries."""
    from dutyguard.audit.tables import audit_entries as a

    head = conn.execute(sa.select(sa.func.max(a.c.seq))).scalar()
    if head is None:
        return {}
    rows = conn.execute(
        sa.select(a.c.details)
        .where(
            a.c.seq > int(head) - window,
            a.c.action == "token.create",
            a.c.object == f"identity:{identity_id}",
            a.c.outcome == "success",
        )
        .order_by(a.c.seq.desc())
        .limit(100)
    ).scalars()
    out: dict[str, str] = {}
    for text in rows:
        try:
            details = json.loads(text)
        except ValueError:
            continue  # a damaged entry is the verifier's business; here it just tells us nothing
        token_id = details.get("exchanged_enrollment_token") if isinstance(details, dict) else None
        address = details.get("address") if isinstance(details, dict) else None
        if isinstance(token_id, str) and isinstance(address, str):
            out.setdefault(token_id, address)
    return out
