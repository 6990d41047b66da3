"""First start: the one-time bootstrap administrator token, the first Security member, and the demo organisation.

The bootstrap token is issued once per database, ever: the claim is a row in ``server_state``
written in the same transaction as the token, so neither a restart nor two processes starting
at once can print it twice.

The first Security member: binding a sensitive role needs a security approver
(``governance.grants``), and a new installation has none. So the first organisation-wide binding
of a role holding ``role.approve`` made while nobody holds it takes effect at once (the bootstrap
administrator's ``dutyguard role bind alice security``). That window is claimed once per
database like the bootstrap token (:data:`FIRST_APPROVER_KEY`), in the binding's transaction;
it is also closed at start-up as soon as anyone holds ``role.approve`` (databases from before
this rule, the demo organisation). After it is closed, removing every approver never reopens it. The demo organisation (``dutyguard up --demo``) seeds teams, people
in every role, services, apps and ownership, plus one pending rule change, so every flow can be
tried at once; its tokens are printed and kept in a 0600 file in the data directory.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy.engine import Connection

from dutyguard.governance import grants
from dutyguard.governance.authz import Binding
from dutyguard.governance.duties import PrincipalKind, Role
from dutyguard.governance.scope import ORG, Scope, ScopeKind
from dutyguard.governance.sod import find_conflicts, parse_rules_text, propose_rules_change
from dutyguard.server import store
from dutyguard.server.approval_kinds import rules_payload
from dutyguard.server.auditing import SYSTEM, record
from dutyguard.server.routes.tokens import issue
from dutyguard.server.runtime import Runtime

BOOTSTRAP_ADMIN = "admin"
_BOOTSTRAP_KEY = "bootstrap"
_DEMO_KEY = "demo"
DEMO_ACTOR = "system:demo"
FIRST_APPROVER_KEY = "first-approver"
"""``server_state`` row whose presence means: the first-approver window is closed for good."""


def approver_roles(rt: Runtime) -> list[Role]:
    """The roles whose holders can approve a sensitive binding (``security``)."""
    return sorted(rt.roles.roles_with(grants.approver_duty()))


def first_approver_window_open(conn: Connection) -> bool:
    return store.get_state(conn, FIRST_APPROVER_KEY) is None


def close_first_approver_window(
    conn: Connection, now: datetime, how: str, binding: str | None = None
) -> bool:
    """Claim the window in ``conn``'s transaction; ``False`` if it was already closed."""
    value = json.dumps({"at": now.isoformat(), "how": how, "binding": binding})
    return store.claim_state(conn, FIRST_APPROVER_KEY, value, now)


def close_window_if_staffed(rt: Runtime) -> bool:
    """Close the window if someone already holds an approver role; ``True`` when this call closed it."""
    with rt.db.read() as conn:
        # read first: every start comes here, and nearly always there is nothing to write
        # a disabled holder counts: disabling every approver must not look like a new installation
        if not first_approver_window_open(conn) or not store.anyone_bound(conn, approver_roles(rt)):
            return False
    now = rt.now()
    with rt.db.write() as conn:
        if not close_first_approver_window(conn, now, "an approver existed at start-up"):
            return False
        record(
            rt,
            conn,
            actor=SYSTEM,
            principal=None,
            roles=("system",),
            action="role.first-approver.closed",
            obj="org",
            details={"reason": "someone already holds role.approve"},
        )
    return True


def bootstrap(rt: Runtime, admin_id: str = BOOTSTRAP_ADMIN) -> str | None:
    """Create the first administrator and its token; ``None`` if this database was bootstrapped before.

    Also closes the first-approver window of a database that already has an approver."""
    close_window_if_staffed(rt)
    now = rt.now()
    with rt.db.write() as conn:
        if not store.claim_state(
            conn, _BOOTSTRAP_KEY, json.dumps({"admin": admin_id, "at": now.isoformat()}), now
        ):
            return None
        if store.get_identity(conn, admin_id) is None:
            store.create_identity(
                conn, admin_id, PrincipalKind.PERSON, "Bootstrap administrator", None, SYSTEM, now
            )
        binding = Binding(admin_id, Role.ADMIN, ORG)
        if store.find_binding(conn, binding) is None:
            store.insert_binding(conn, binding, SYSTEM, now)
        rec, text = issue(rt, conn, admin_id, "bootstrap", SYSTEM, now + rt.settings.default_token_ttl)
        record(
            rt,
            conn,
            actor=SYSTEM,
            principal=None,
            roles=("system",),
            action="bootstrap",
            obj=f"user:{admin_id}",
            details={"token_id": rec.id, "binding": str(binding), "expires_at": rec.expires_at.isoformat()},
        )
    return text


def is_bootstrapped(rt: Runtime) -> bool:
    with rt.db.read() as conn:
        return store.get_state(conn, _BOOTSTRAP_KEY) is not None


# -- the demo organisation ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Persona:
    id: str
    kind: PrincipalKind
    display_name: str
    teams: tuple[str, ...]
    bindings: tuple[tuple[Role, Scope], ...]
    story: str


TEAMS = {
    "payments": ("Payments", [("app", "shop-api"), ("app", "checkout"), ("namespace", "shop-prod")]),
    "platform": ("Platform", [("cluster", "prod-eu"), ("namespace", "platform-system")]),
    "secops": ("Security operations", []),
    "audit": ("Internal audit", []),
    "it": ("IT administration", []),
}

PERSONAS = (
    Persona(
        "alice",
        PrincipalKind.PERSON,
        "Alice (security)",
        ("secops",),
        ((Role.SECURITY, ORG),),
        "authors policy and conflict rules, approves others' changes, reviews break-glass",
    ),
    Persona(
        "sam",
        PrincipalKind.PERSON,
        "Sam (security)",
        ("secops",),
        ((Role.SECURITY, ORG),),
        "the second security approver (maker-checker)",
    ),
    Persona(
        "dave",
        PrincipalKind.PERSON,
        "Dave (devops, payments)",
        ("payments",),
        ((Role.DEVOPS, Scope(ScopeKind.TEAM, "payments")),),
        "runs the payments apps; may open break-glass for them",
    ),
    Persona(
        "erin",
        PrincipalKind.PERSON,
        "Erin (devops, platform)",
        ("platform",),
        ((Role.DEVOPS, Scope(ScopeKind.TEAM, "platform")),),
        "runs the prod-eu cluster",
    ),
    Persona(
        "carol",
        PrincipalKind.PERSON,
        "Carol (compliance)",
        ("audit",),
        ((Role.COMPLIANCE, ORG),),
        "reads everything, exports and verifies the audit trail",
    ),
    Persona(
        "adam",
        PrincipalKind.PERSON,
        "Adam (admin)",
        ("it",),
        ((Role.ADMIN, ORG),),
        "manages users, teams, ownership, tokens and role bindings",
    ),
    Persona(
        "ci-shop",
        PrincipalKind.SERVICE,
        "CI pipeline of shop-api",
        (),
        ((Role.CI, Scope(ScopeKind.APP, "shop-api")),),
        "submits scans for shop-api",
    ),
    Persona(
        "cluster-prod-eu",
        PrincipalKind.SERVICE,
        "prod-eu cluster agent",
        (),
        ((Role.CLUSTER, Scope(ScopeKind.CLUSTER, "prod-eu")),),
        "admission webhook and sensors of prod-eu",
    ),
)

_DEMO_RULE = """
  - id: sod.contain-and-breakglass
    title: Containing incidents and bypassing enforcement
    severity: high
    rationale: >-
      Whoever triggers containment must not also be able to open break-glass around it.
    refs:
      - NIST SP 800-53 IR-4
    left:
      any: [incident.contain]
    right:
      any: [breakglass.open]
"""


@dataclass(frozen=True, slots=True)
class DemoLogin:
    persona: Persona
    token: str


def seed_demo(rt: Runtime) -> list[DemoLogin] | None:
    """Seed the demo organisation once; ``None`` if it exists already."""
    now = rt.now()
    logins: list[DemoLogin] = []
    with rt.db.write() as conn:
        if not store.claim_state(conn, _DEMO_KEY, json.dumps({"at": now.isoformat()}), now):
            return None
        for team_id, (name, assets) in TEAMS.items():
            if not store.team_exists(conn, team_id):
                store.create_team(conn, team_id, name, DEMO_ACTOR, now)
            for kind, asset in assets:
                scope = Scope(ScopeKind(kind), asset)
                if store.get_asset(conn, scope) is None:
                    store.put_asset(conn, scope, team_id, DEMO_ACTOR, now)
        for p in PERSONAS:
            if store.get_identity(conn, p.id) is None:
                store.create_identity(conn, p.id, p.kind, p.display_name, None, DEMO_ACTOR, now)
            for team_id in p.teams:
                store.add_member(conn, team_id, p.id, now)
            bindings = [Binding(p.id, role, scope) for role, scope in p.bindings]
            rules = store.current_rules(conn, rt.shipped_rules, rt.roles)
            # The demo obeys the rules it demonstrates.
            assert not find_conflicts(bindings, p.id, rules.rules, [], now, roles=rt.roles), p.id
            for b in bindings:
                if store.find_binding(conn, b) is None:
                    store.insert_binding(conn, b, DEMO_ACTOR, now)
            _rec, text = issue(rt, conn, p.id, "demo", DEMO_ACTOR, now + timedelta(days=30))
            logins.append(DemoLogin(p, text))
        # The demo seeds its security people itself: from here on, security is bound by approval.
        close_first_approver_window(conn, now, "demo organisation seeded")
        _demo_proposal(rt, conn)
        record(
            rt,
            conn,
            actor=DEMO_ACTOR,
            principal=None,
            roles=("system",),
            action="demo.seed",
            obj="org",
            details={"personas": [p.id for p in PERSONAS], "teams": sorted(TEAMS)},
        )
    return logins


def _demo_proposal(rt: Runtime, conn: Connection) -> None:
    """Alice proposes one more conflict rule, so Sam can approve (and Alice cannot)."""
    now = rt.now()
    current = store.current_rules(conn, rt.shipped_rules, rt.roles)
    proposed = parse_rules_text(_with_demo_rule(current.rules.to_json()), "demo proposal", rt.roles)
    identity = store.get_identity(conn, "alice")
    assert identity is not None
    alice = store.load_principal(conn, identity)
    ownership = store.ownership_for(conn, [alice], [ORG])
    request = propose_rules_change(
        store.new_id("apr"), alice, current.rules, proposed, now, ownership, roles=rt.roles, raci=rt.raci
    )
    store.insert_request(conn, request, rules_payload(proposed.document(), current.version))
    record(
        rt,
        conn,
        actor="alice",
        principal=alice,
        action="approval.open",
        obj=f"approval:{request.id}",
        details={"kind": request.kind, "subject_digest": request.subject_digest, "seeded_by": DEMO_ACTOR},
    )


def _with_demo_rule(rules: dict[str, object]) -> str:
    import yaml

    extra = yaml.safe_load("rules:" + _DEMO_RULE)["rules"]
    listed = rules["rules"]
    assert isinstance(listed, list)
    return json.dumps({**rules, "rules": [*listed, *extra]})


def write_demo_logins(rt: Runtime, logins: list[DemoLogin]) -> Path:
    """Keep the demo tokens in a 0600 file so the demo can be resumed after the terminal is gone."""
    path = rt.settings.data_dir / "demo-tokens.json"
    data = {login.persona.id: login.token for login in logins}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=True)
    os.chmod(path, 0o600)
    return path
