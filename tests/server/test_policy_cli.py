"""Policy commands through the real CLI against a real server (uvicorn on loopback), on SQLite and
PostgreSQL: ``policy rollback VERSION`` proposes an earlier version's content again, so that once
approved it is published as a *new* version (runners never see a version number go back)."""

from __future__ import annotations

import json

import pytest

from dutyguard.server.app import create_app
from tests.server.conftest import Org
from tests.server.live import threaded
from tests.server.signed_helpers import BUNDLE, ok, publish, verify
from tests.server.test_exceptions_cli import _cli

NO_RESTRICTED = BUNDLE.replace(", {pack: pss-restricted}", "")


def test_rollback_proposes_old_content_as_a_new_version(
    org: Org, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    v1 = publish(org)
    v2 = publish(org, NO_RESTRICTED)
    with threaded(create_app(runtime=org.rt)) as url:
        code, out, err = _cli(
            monkeypatch, capsys, url, org.tokens["alice"], "policy", "rollback", "1", "-m", "restricted again", "-f",
            "json",
        )  # fmt: skip
        assert code == 0, err
        p = json.loads(out)
        # the same content as v1 (same digest), judged against v2 like any proposal
        assert (p["digest"], p["base_version"], p["maker"]) == (v1["digest"], 2, "alice")
        assert p["state"] == "pending"
        assert any(c["effect"] == "strengthens" for c in p["changes"])
        # maker-checker as for any proposal: alice cannot approve her own rollback
        code, _, err = _cli(monkeypatch, capsys, url, org.tokens["alice"], "policy", "approve", p["id"])
        assert code == 2
        assert "self_approval" in err
        # devops can read old versions but cannot propose one again
        code, _, err = _cli(
            monkeypatch, capsys, url, org.tokens["dave"], "policy", "rollback", "1", "-m", "x"
        )
        assert code == 2
        assert "policy.propose" in err
        # rolling back to what is in force changes nothing; a version that never existed is named
        code, _, err = _cli(
            monkeypatch, capsys, url, org.tokens["alice"], "policy", "rollback", "2", "-m", "x"
        )
        assert (code, "unchanged" in err) == (2, True)
        code, _, err = _cli(
            monkeypatch, capsys, url, org.tokens["alice"], "policy", "rollback", "9", "-m", "x"
        )
        assert (code, "policy v9 does not exist" in err) == (2, True)
    ok(org.post("sam", f"/policies/proposals/{p['id']}/approve"))
    v3 = ok(org.get("carol", "/policies/current"))
    assert (v3["version"], v3["digest"], v3["previous_digest"]) == (3, v1["digest"], v2["digest"])
    bundle, _ = verify(org)
    assert bundle.published.version == 3
    assert org.audit(actor="alice", action="policy.propose", object=f"policy-proposal:{p['id']}")
