"""The CLI side of sensitive bindings, against a real server (uvicorn on loopback), on SQLite and
PostgreSQL: ``role bind`` of security says which approval is pending and how to approve it; the
admin's own ``approval approve`` is refused; security approves with ``approval approve``."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

import pytest

from dutyguard.cli import main
from dutyguard.server.app import create_app
from dutyguard.server.routes.tokens import issue
from tests.server.conftest import Org
from tests.server.live import threaded


class _Cli:
    def __init__(
        self, url: str, org: Org, mp: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        self.url, self.org, self.mp, self.capsys = url, org, mp, capsys

    def run(self, who: str, *argv: str) -> tuple[int, str, str]:
        self.mp.setenv("DUTYGUARD_URL", self.url)
        self.mp.setenv("DUTYGUARD_TOKEN", self.org.tokens[who])
        self.capsys.readouterr()
        code = main(list(argv))
        out = self.capsys.readouterr()
        return code, out.out, out.err


def test_role_bind_of_security_is_pending_until_security_approves(
    org: Org, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert org.post("adam", "/users", {"id": "mallory"}).status_code == 201
    with org.rt.db.write() as conn:
        _rec, org.tokens["mallory"] = issue(
            org.rt, conn, "mallory", "t", "mallory", org.rt.now() + timedelta(days=1)
        )
    with threaded(create_app(runtime=org.rt)) as url:
        cli = _Cli(url, org, monkeypatch, capsys)
        code, out, err = cli.run("adam", "role", "bind", "mallory", "security")
        assert code == 0, err
        m = re.search(r"^pending approval (apr-[0-9a-f]{16}): security@org:\* for mallory$", out, re.M)
        assert m, out
        approval = m.group(1)
        assert f"dutyguard approval approve {approval}" in out
        assert "2 eligible approver(s)" in out

        code, out, _ = cli.run("adam", "role", "list", "--identity", "mallory", "--format", "json")
        assert (code, json.loads(out)) == (0, [])

        # a second request in JSON mode is refused and names the pending one
        code, out, err = cli.run("adam", "role", "bind", "mallory", "security", "--format", "json")
        assert code == 2
        assert json.loads(out)["approval_id"] == approval

        for who in ("adam", "mallory", "dave"):
            code, _, err = cli.run(who, "approval", "approve", approval, "--reason", "fine")
            assert code == 2, who
            assert "403" in err, err

        code, out, err = cli.run("alice", "approval", "show", approval)
        assert code == 0, err
        assert re.search(r"^kind:\s+role\.binding$", out, re.M)
        assert "binding:" in out and "  role: security" in out
        assert "enrollment_tokens: -" in out  # adam never issued one
        assert "active_api_tokens:" in out

        code, out, err = cli.run(
            "alice", "approval", "approve", approval, "--reason", "checked", "-f", "json"
        )
        assert code == 0, err
        assert json.loads(out)["state"] == "approved"
        code, out, _ = cli.run("carol", "role", "list", "--identity", "mallory", "--format", "json")
        assert [(b["role"], b["scope"], b["created_by"]) for b in json.loads(out)] == [
            ("security", "org:*", "adam")
        ]

        # a conflicting binding is refused outright, nothing pending
        code, out, err = cli.run("adam", "role", "bind", "mallory", "devops", "--scope", "team:payments")
        assert code == 2
        assert "409 Segregation of duties conflict" in err
        # a role that is not sensitive still binds at once, printed as before
        assert org.post("adam", "/users", {"id": "nina"}).status_code == 201
        code, out, err = cli.run("adam", "role", "bind", "nina", "compliance")
        assert code == 0, err
        assert "pending" not in out
        assert re.search(r"^role:\s+compliance$", out, re.M), out
