"""An id is not an oracle: a caller who could not act on an object even if it existed gets, for an
id that names nothing, the very 403 they get for an existing object (same body but ``instance``,
one audit entry alike), on SQLite and PostgreSQL. A caller who could act on such an object (holds
the route's duty over some scope) gets a useful 404.

Every persona is one of the demo organisation's (``server.bootstrap``); every object is made
through the API by someone other than the prober.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import sqlalchemy as sa

from dutyguard.governance.approvals import ApprovalKind, default_policy
from dutyguard.server import store
from dutyguard.server import tables as t
from tests.server.conftest import Org
from tests.server.signed_helpers import FP, empty_submission, ok, propose, publish, request_exception

GHOST = "0123456789abcdef"  # the hex tail the server's ids have; no object carries it
REASON = {"reason": "probing whether this id exists"}


def _call(org: Org, who: str, method: str, path: str, body: Any) -> Any:
    return org.client.request(method, f"/api/v1{path}", headers=org.h(who), json=body)


def _same_refusal(
    org: Org, who: str, method: str, route: str, existing: str, missing: str, body: Any = None
) -> None:
    """``who`` gets one indistinguishable, audited 403 for ``route`` (one ``{param}``) naming the
    ``existing`` object and naming the ``missing`` id."""
    answers = []
    entries = []
    for value in (existing, missing):
        path = re.sub(r"\{\w+\}", value, route)
        before = org.audit(actor=who, outcome="refused")
        r = _call(org, who, method, path, body)
        assert r.status_code == 403, (who, path, r.status_code, r.json())
        assert r.headers["content-type"] == "application/problem+json"
        after = org.audit(actor=who, outcome="refused")
        assert len(after) == len(before) + 1, f"{method} {path}: the refusal is not audited once"
        entries.append(after[-1])
        answers.append(r.json())
    seen, probed = answers
    assert (probed["type"], probed["title"], probed["status"]) == (
        "urn:dutyguard:problem:forbidden",
        "Not allowed",
        403,
    )
    assert {k: v for k, v in seen.items() if k != "instance"} == {
        k: v for k, v in probed.items() if k != "instance"
    }
    for problem in answers:
        detail = problem["detail"].lower()
        assert "exist" not in detail and "not found" not in detail, detail
        assert existing not in problem["detail"] and missing not in problem["detail"]
    # The trail records a refusal of the route, not of an object: the same entry for both ids.
    for entry in entries:
        assert (entry["action"], entry["object"]) == ("request.denied", f"{method} {route}")
    assert entries[0]["details"] == entries[1]["details"]


def _not_found(org: Org, who: str, method: str, path: str, body: Any = None) -> dict[str, Any]:
    r = _call(org, who, method, path, body)
    assert r.status_code == 404, (who, path, r.status_code, r.json())
    problem: dict[str, Any] = r.json()
    assert (problem["type"], problem["title"]) == ("urn:dutyguard:problem:not-found", "Not found")
    return problem


def _pending_rules_change(org: Org) -> str:
    items = ok(org.get("sam", "/approvals", state="pending"))["items"]
    (req,) = [i for i in items if i["kind"] == "sod.rules.change"]
    return str(req["id"])


def _exception(org: Org) -> str:
    publish(org)
    return str(ok(request_exception(org))["id"])  # dave's, on app:shop-api (team payments)


# -- approvals --------------------------------------------------------------------------------------


def test_ci_token_cannot_probe_approval_ids(org: Org) -> None:
    existing, missing = _pending_rules_change(org), f"apr-{GHOST}"
    _same_refusal(org, "ci-shop", "GET", "/approvals/{approval_id}", existing, missing)
    for verb in ("approve", "reject", "withdraw"):
        route = f"/approvals/{{approval_id}}/{verb}"
        _same_refusal(org, "ci-shop", "POST", route, existing, missing, REASON)
    assert ok(org.get("sam", f"/approvals/{existing}"))["state"] == "pending"  # nothing decided


def test_missing_approval_refusal_names_every_kinds_duty_not_this_ones(org: Org) -> None:
    """The kind (hence the duty) of a request is known only once it is read: a caller holding
    none of any kind's approver duties is told all of them, whatever the id, so neither a
    request's existence nor its kind leaks."""
    existing = _pending_rules_change(org)
    r = org.post("dave", f"/approvals/{existing}/approve", REASON)
    kinds = (ApprovalKind.SOD_RULES_CHANGE, ApprovalKind.ROLE_BINDING)
    approvers = sorted(default_policy(k).approver_duty.value for k in kinds)
    assert (r.status_code, r.json()["duties"], r.json()["target"]) == (403, approvers, "org:*")
    assert "duty" not in r.json()
    _same_refusal(org, "dave", "POST", "/approvals/{approval_id}/approve", existing, f"apr-{GHOST}", REASON)


def test_security_gets_404_for_missing_approval(org: Org) -> None:
    problem = _not_found(org, "sam", "POST", f"/approvals/apr-{GHOST}/approve", REASON)
    assert f"apr-{GHOST}" in problem["detail"]
    _not_found(org, "carol", "GET", f"/approvals/apr-{GHOST}")  # compliance reads every kind
    # an administrator makes role.binding requests, so could withdraw one: 404 is useful to them
    _not_found(org, "adam", "POST", f"/approvals/apr-{GHOST}/withdraw", REASON)


# -- policy proposals ---------------------------------------------------------------------------------


def test_devops_cannot_probe_policy_proposal_ids(org: Org) -> None:
    existing, missing = propose(org)["id"], f"pol-{GHOST}"
    for verb in ("approve", "reject", "withdraw"):
        route = f"/policies/proposals/{{proposal_id}}/{verb}"
        _same_refusal(org, "dave", "POST", route, existing, missing, REASON)
    # devops reads policy, every proposal included: a missing one is a plain 404 to them
    _not_found(org, "dave", "GET", f"/policies/proposals/{missing}")
    _same_refusal(org, "ci-shop", "GET", "/policies/proposals/{proposal_id}", existing, missing)


# -- exceptions ------------------------------------------------------------------------------------------


_EXCEPTION_WRITES = (
    ("POST", "/exceptions/{exception_id}/approve", REASON),
    ("POST", "/exceptions/{exception_id}/reject", REASON),
    ("POST", "/exceptions/{exception_id}/withdraw", REASON),
    ("PUT", "/exceptions/{exception_id}/scope", {"app": "shop-api", "fingerprint": FP, **REASON}),
    ("POST", "/exceptions/{exception_id}/revoke", REASON),
)


def test_compliance_cannot_probe_exception_ids_on_write_routes(org: Org) -> None:
    existing, missing = _exception(org), f"exc-{GHOST}"
    for method, route, body in _EXCEPTION_WRITES:
        _same_refusal(org, "carol", method, route, existing, missing, body)
    # compliance reads every exception: there a missing id is an honest 404
    _not_found(org, "carol", "GET", f"/exceptions/{missing}")
    assert ok(org.get("carol", f"/exceptions/{existing}"))["status"] == "pending"


def test_ci_token_cannot_probe_exception_ids(org: Org) -> None:
    existing, missing = _exception(org), f"exc-{GHOST}"
    _same_refusal(org, "ci-shop", "GET", "/exceptions/{exception_id}", existing, missing)
    for method, route, body in _EXCEPTION_WRITES:
        _same_refusal(org, "ci-shop", method, route, existing, missing, body)


def test_security_gets_404_for_missing_exception(org: Org) -> None:
    existing, missing = _exception(org), f"exc-{GHOST}"
    for verb in ("approve", "reject", "revoke"):
        problem = _not_found(org, "sam", "POST", f"/exceptions/{missing}/{verb}", REASON)
        assert missing in problem["detail"]
    # Security never requests exceptions: withdrawing or re-scoping one is refused whether it
    # exists or not, with the same answer as for dave's.
    for method, route, body in _EXCEPTION_WRITES[2:4]:
        _same_refusal(org, "sam", method, route, existing, missing, body)


def test_devops_of_another_team_learns_existence_only_as_a_holder_of_the_duty(org: Org) -> None:
    """The rule's boundary, stated: erin requests exceptions for her own team's assets, so she
    could withdraw one; a missing id is 404 to her, dave's existing one a 403 for its scope. She
    learns nothing ``GET /exceptions`` does not show her (devops reads every exception)."""
    existing = _exception(org)
    _not_found(org, "erin", "POST", f"/exceptions/exc-{GHOST}/withdraw", REASON)
    r = org.post("erin", f"/exceptions/{existing}/withdraw", REASON)
    assert (r.status_code, r.json()["target"]) == (403, "app:shop-api")
    assert existing in [e["id"] for e in ok(org.get("erin", "/exceptions"))["items"]]


def test_tampered_exception_is_not_reported_to_who_could_never_act(org: Org) -> None:
    """A row edited outside dutyguard answers 409 ``tampered`` only past the check a caller
    without the duty fails: to them it is one more indistinguishable 403."""
    existing = _exception(org)
    with org.rt.db.write() as conn:
        conn.execute(
            sa.update(t.exception_requests)
            .where(t.exception_requests.c.id == existing)
            .values(justification="edited in the database")
        )
    r = org.post("sam", f"/exceptions/{existing}/approve", REASON)
    assert (r.status_code, r.json()["type"]) == (409, "urn:dutyguard:problem:tampered"), r.json()
    _same_refusal(
        org, "carol", "POST", "/exceptions/{exception_id}/approve", existing, f"exc-{GHOST}", REASON
    )


# -- break-glass grants, tokens, attestations, role bindings ---------------------------------------------


def test_devops_cannot_probe_break_glass_grant_ids(org: Org) -> None:
    """dave may open, and close, his own grants; another's or a missing one needs
    ``breakglass.review``: the same 403 to him."""
    erin = ok(
        org.post("erin", "/breakglass", {"reason": "prod-eu down, rollback", "scope": "cluster:prod-eu"})
    )
    route, missing = "/breakglass/{grant_id}/close", f"bg-{GHOST}"
    _same_refusal(org, "dave", "POST", route, erin["id"], missing, {})
    _same_refusal(org, "ci-shop", "POST", route, erin["id"], missing, {})
    _not_found(org, "alice", "POST", f"/breakglass/{missing}/close", {})
    own = ok(org.post("dave", "/breakglass", {"reason": "payments outage", "scope": "app:shop-api"}))
    assert ok(org.post("dave", f"/breakglass/{own['id']}/close", {}))["state"] == "closed"
    assert ok(org.get("alice", f"/breakglass/{erin['id']}"))["state"] == "open"


def test_ci_token_cannot_probe_token_ids(org: Org) -> None:
    """One's own tokens are listed (``GET /tokens``); any other id, existing or not, needs
    ``token.manage``."""
    with org.rt.db.read() as conn:
        daves = store.list_tokens(conn, "dave", None, 1)[0].id
    _same_refusal(org, "ci-shop", "DELETE", "/tokens/{token_id}", daves, GHOST)
    _same_refusal(org, "carol", "DELETE", "/tokens/{token_id}", daves, GHOST)
    _not_found(org, "adam", "DELETE", f"/tokens/{GHOST}")
    assert ok(org.get("dave", "/whoami"))["id"] == "dave"  # dave's token still works


def test_ci_token_cannot_probe_attestation_ids(org: Org) -> None:
    bundle = publish(org)
    made = ok(org.post("ci-shop", "/attestations", empty_submission(org, bundle)))
    # even the pipeline that made it reads no findings: one answer for every id
    _same_refusal(org, "ci-shop", "GET", "/attestations/{attestation_id}", made["id"], f"att-{GHOST}")
    _not_found(org, "carol", "GET", f"/attestations/att-{GHOST}")


@pytest.mark.parametrize("who", ["ci-shop", "dave", "carol"])
def test_role_binding_ids_cannot_be_probed(org: Org, who: str) -> None:
    with org.rt.db.read() as conn:
        erins = store.bindings_of(conn, "erin")[0].id
    _same_refusal(org, who, "DELETE", "/role-bindings/{binding_id}", erins, f"rb-{GHOST}")
    _not_found(org, "adam", "DELETE", f"/role-bindings/rb-{GHOST}")
