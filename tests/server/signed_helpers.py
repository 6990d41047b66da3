"""Helpers for the signed-state tests: publish a bundle, request exceptions, verify what is served."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta
from typing import Any

from dutyguard.governance.authz import Binding
from dutyguard.governance.duties import PrincipalKind, Role
from dutyguard.governance.scope import ORG
from dutyguard.rules import default_registry
from dutyguard.server import store
from dutyguard.server.routes.tokens import issue
from dutyguard.trust.keys import Keyring
from dutyguard.trust.state import SeenState, TrustedState, VerifiedBundle, VerifiedSnapshot
from tests.server.conftest import Org

BUNDLE = """\
apiVersion: dutyguard.dev/v1
kind: PolicyBundle
metadata:
  name: acme
spec:
  rules:
    include: [{pack: pss-baseline}, {pack: pss-restricted}]
  severity:
    pss.host-ports: high
"""

FP = "ab" * 16


def ok(r: Any, status: int | tuple[int, ...] = (200, 201)) -> Any:
    wanted = (status,) if isinstance(status, int) else status
    assert r.status_code in wanted, (r.status_code, r.json())
    return r.json()


def propose(org: Org, text: str = BUNDLE, maker: str = "alice", message: str = "change") -> dict[str, Any]:
    return ok(org.post(maker, "/policies/proposals", {"document": text, "message": message}), 201)


def publish(org: Org, text: str = BUNDLE, maker: str = "alice", approver: str = "sam") -> dict[str, Any]:
    """Propose and approve; the published version's record."""
    p = propose(org, text, maker)
    done = ok(org.post(approver, f"/policies/proposals/{p['id']}/approve"))
    assert done["published_version"], done
    return ok(org.get("carol", f"/policies/{done['published_version']}"))


def empty_submission(org: Org, bundle: dict[str, Any], who: str = "ci-shop") -> dict[str, Any]:
    """A clean gate result for shop-api under ``bundle`` and the snapshot served now."""
    snapshot = ok(org.get(who, "/state/exceptions"))
    return {
        "subject": "git:" + "c0" * 20,
        "app": "shop-api",
        "policy": {"version": bundle["version"], "digest": bundle["digest"]},
        "snapshot_version": json.loads(base64.b64decode(snapshot["payload"]))["version"],
        "findings": [],
        "errors": 0,
    }


def person(org: Org, ident: str, role: Role, teams: tuple[str, ...] = ()) -> None:
    """One more person with a role at organisation scope, and a token (test set-up, not a flow)."""
    rt = org.rt
    now = rt.now()
    with rt.db.write() as conn:
        store.create_identity(conn, ident, PrincipalKind.PERSON, ident, None, "test", now)
        store.insert_binding(conn, Binding(ident, role, ORG), "test", now)
        for team in teams:
            store.add_member(conn, team, ident, now)
        _rec, text = issue(rt, conn, ident, "test", "test", now + timedelta(days=1))
    org.tokens[ident] = text


def request_exception(org: Org, who: str = "dave", **fields: Any) -> Any:
    body: dict[str, Any] = {
        "rule_id": "pss.host-ports",
        "app": "shop-api",
        "fingerprint": FP,
        "justification": "the node exporter must listen on the host port",
        "compensating_control": "NetworkPolicy limits the port to the scraper",
        "days": 10,
    }
    body.update(fields)
    return org.post(who, "/exceptions", {k: v for k, v in body.items() if v is not None})


def keyring(org: Org) -> Keyring:
    return Keyring.from_json(ok(org.client.get("/api/v1/keys")), "GET /keys")


def served(org: Org, who: str = "ci-shop") -> tuple[bytes, bytes]:
    b = org.get(who, "/state/bundle")
    s = org.get(who, "/state/exceptions")
    assert b.status_code == 200, b.json()
    assert s.status_code == 200, s.json()
    return b.content, s.content


def verify(
    org: Org,
    data: tuple[bytes, bytes] | None = None,
    now: datetime | None = None,
    seen: SeenState | None = None,
) -> tuple[VerifiedBundle, VerifiedSnapshot]:
    """What a runner accepts, checked the way the gate checks it."""
    bundle, snapshot = data or served(org)
    state = TrustedState(keyring(org), default_registry(), now or org.clock(), seen or SeenState())
    return state.update_bundle(bundle, "bundle"), state.update_snapshot(snapshot, "snapshot")
