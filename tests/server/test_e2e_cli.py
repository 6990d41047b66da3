"""End to end: ``dutyguard up --demo`` in a subprocess (real uvicorn on a free loopback port),
driven by the real CLI for the main flows, on SQLite and on PostgreSQL.

The CLI runs in-process (``dutyguard.cli.main``) with ``DUTYGUARD_URL``/``DUTYGUARD_TOKEN`` in the
environment, exactly as a user's shell would set them; it talks to the server over HTTP.
"""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path
from typing import Any

import pytest

from dutyguard.cli import main
from tests.server.live import Receiver, dutyguard_up

pytestmark = pytest.mark.slow


class Cli:
    def __init__(
        self,
        url: str,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
        tokens: dict[str, str],
    ) -> None:
        self.url = url
        self.mp = monkeypatch
        self.capsys = capsys
        self.tokens = tokens

    def run(self, who: str | None, *argv: str) -> tuple[int, str, str]:
        self.mp.setenv("DUTYGUARD_URL", self.url)
        if who is None:
            self.mp.delenv("DUTYGUARD_TOKEN", raising=False)
        else:
            self.mp.setenv("DUTYGUARD_TOKEN", self.tokens[who])
        self.capsys.readouterr()
        code = main(list(argv))
        out = self.capsys.readouterr()
        return code, out.out, out.err

    def ok(self, who: str | None, *argv: str) -> str:
        code, out, err = self.run(who, *argv)
        assert code == 0, f"{argv}: exit {code}\n{out}\n{err}"
        return out

    def json(self, who: str | None, *argv: str) -> Any:
        return json.loads(self.ok(who, *argv, "--format", "json"))

    def refused(self, who: str | None, *argv: str) -> str:
        code, out, err = self.run(who, *argv)
        assert code == 2, f"{argv}: expected exit 2, got {code}\n{out}\n{err}"
        return err


def _tokens(lines: list[str]) -> dict[str, str]:
    """Persona → token from the start-up banner (the bootstrap admin's is the first)."""
    tokens: dict[str, str] = {}
    who = "admin"
    for line in lines:
        m = re.match(r"^  (\S+)\s{2,}", line)
        if m:
            who = m.group(1)
        t = re.search(r"DUTYGUARD_TOKEN=(dgt_\S+)", line)
        if t:
            tokens[who] = t.group(1)
    return tokens


@pytest.fixture
def env(database_url: str) -> dict[str, str]:
    # The SQLite fixture points into the test's tmp dir; the default (data dir) is tested too.
    return {"DUTYGUARD_DATABASE_URL": database_url}


def test_demo_flows_through_the_cli(
    tmp_path: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    with (
        Receiver() as hook,
        dutyguard_up(["--demo", "--notify-webhook", hook.url], env, data) as (url, _proc, lines),
    ):
        tokens = _tokens(lines)
        assert set(tokens) >= {
            "admin",
            "alice",
            "sam",
            "dave",
            "erin",
            "carol",
            "adam",
            "ci-shop",
            "cluster-prod-eu",
        }
        for name in ("signing-key.pem", "token-key", "demo-tokens.json"):
            assert stat.S_IMODE((data / name).stat().st_mode) == 0o600, name
        cli = Cli(url, monkeypatch, capsys, tokens)

        # whoami, and the problem shown when there is no token at all
        assert cli.json("dave", "whoami")["bindings"] == ["devops@team:payments"]
        err = cli.refused(None, "whoami")
        assert "401 Authentication required" in err

        # identities, teams, ownership
        cli.ok("adam", "user", "create", "frank", "--name", "Frank")
        cli.ok("adam", "team", "add-member", "payments", "frank")
        cli.ok("adam", "app", "add", "billing", "--team", "payments")
        assert "app:billing" in cli.json("carol", "team", "show", "payments")["assets"]
        assert {a["scope"] for a in cli.json("dave", "app", "list", "--team", "payments")} >= {
            "app:billing",
            "app:shop-api",
        }
        assert (
            cli.json("adam", "role", "bind", "frank", "devops", "--scope", "team:payments")["scope"]
            == "team:payments"
        )

        # a toxic binding is refused with the rules named, and audited
        err = cli.refused("adam", "role", "bind", "dave", "security")
        assert "409 Segregation of duties conflict" in err
        assert "sod.operate-author-policy" in err

        # tokens: enrollment token for frank, exchanged by `dutyguard login`, stored 0600
        enroll = cli.json("adam", "token", "create", "--for", "frank")
        assert enroll["state"].endswith("(enrollment)")
        cli.tokens["frank-enroll"] = enroll["token"]
        out = cli.ok("frank-enroll", "login")
        assert "logged in" in out
        assert "as frank" in out
        cred = tmp_path / "config" / "dutyguard" / "credentials.json"
        assert stat.S_IMODE(cred.stat().st_mode) == 0o600
        assert cli.json(None, "whoami")["id"] == "frank"  # from the stored credentials
        frank_tokens = cli.json(None, "token", "list")
        assert [t["state"] for t in frank_tokens if t["id"] == enroll["id"]] == ["revoked (enrollment)"]
        mine = cli.json("dave", "token", "create", "--ttl", "1h", "-d", "laptop")
        cli.tokens["dave-laptop"] = mine["token"]
        cli.ok("dave-laptop", "whoami")
        cli.ok("dave", "token", "revoke", mine["id"])
        assert "token was revoked" in cli.refused("dave-laptop", "whoami")

        # the SoD report with the RACI matrix
        report = cli.ok("carol", "sod", "report")
        assert "RACI" in report
        assert "policy-authoring" in report
        assert "FORBIDDEN ROLE PAIRS" in report
        assert cli.json("carol", "sod", "report")["unmitigated"] == 0

        # maker-checker on the demo's pending rule change
        (pending,) = cli.json("sam", "approval", "list", "--state", "pending")
        assert pending["maker"] == "alice"
        assert "self_approval" in cli.refused("alice", "approval", "approve", pending["id"])
        assert "sod.rules.approve" in cli.refused("dave", "approval", "approve", pending["id"])
        assert (
            cli.json("sam", "approval", "approve", pending["id"], "--digest", pending["subject_digest"])[
                "state"
            ]
            == "approved"
        )
        assert cli.json("carol", "sod", "rules")["version"] == 1

        # break-glass: open (alarm), close, review by someone else
        grant = cli.json(
            "dave",
            "breakglass",
            "open",
            "--reason",
            "checkout down, hotfix deploy",
            "--scope",
            "app:shop-api",
            "--minutes",
            "30",
        )
        alarm = hook.wait_for("breakglass.opened")
        assert alarm["grant"] == grant["id"]
        assert alarm["opener"] == "dave"
        assert cli.json("dave", "breakglass", "close", grant["id"])["state"] == "closed"
        # the opener can never review: devops holds no breakglass.review (and SoD keeps it that way)
        assert "lacks breakglass.review" in cli.refused(
            "dave", "breakglass", "review", grant["id"], "--outcome", "justified", "--notes", "me"
        )
        reviewed = cli.json(
            "alice",
            "breakglass",
            "review",
            grant["id"],
            "--outcome",
            "justified",
            "--notes",
            "hotfix was needed",
        )
        assert reviewed["state"] == "reviewed"
        assert reviewed["reviewer"] == "alice"

        # audit: export, offline verify with the pinned key, live verify
        key = cli.json("carol", "audit", "public-key")["public_key"]
        export = tmp_path / "audit.jsonl"
        cli.ok("carol", "audit", "export", str(export))
        assert ": OK" in cli.ok("carol", "audit", "verify", str(export), "--key", key)
        assert cli.json("carol", "audit", "verify", "--server")["ok"] is True
        actions = [e["action"] for e in cli.json("carol", "audit", "entries", "--limit", "500")["items"]]
        for expected in (
            "bootstrap",
            "demo.seed",
            "role.bind",
            "token.create",
            "token.revoke",
            "approval.approve",
            "sod.rules.change.apply",
            "breakglass.open",
            "breakglass.review",
            "auth.failed",
        ):
            assert expected in actions, expected

    # restart: the bootstrap token is never printed twice; the demo is not seeded twice
    with dutyguard_up(["--demo"], env, data) as (_url, _proc, again):
        text = "\n".join(again)
        assert "DUTYGUARD_TOKEN=" not in text
        assert "already seeded" in text


def test_init_then_up_prints_nothing_secret(
    tmp_path: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert main(["init", "--data-dir", str(data), "--format", "json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["token"].startswith("dgt_")
    assert first["audit_public_key"].startswith("ed25519:")
    assert main(["init", "--data-dir", str(data)]) == 2
    assert "already initialised" in capsys.readouterr().err
    with dutyguard_up([], env, data) as (url, _proc, lines):
        assert not any("DUTYGUARD_TOKEN=" in line for line in lines)
        cli = Cli(url, monkeypatch, capsys, {"admin": first["token"]})
        assert cli.json("admin", "whoami")["id"] == "admin"


def test_db_upgrade_command(tmp_path: Path, database_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["db", "upgrade", "--database-url", database_url, "--data-dir", str(tmp_path / "d")]) == 0
    assert "(empty) -> 0002" in capsys.readouterr().out
    assert main(["db", "upgrade", "--database-url", database_url, "--data-dir", str(tmp_path / "d")]) == 0
    assert "0002 -> 0002" in capsys.readouterr().out
    assert main(["db", "current", "--database-url", database_url]) == 0
    assert "current: 0002  head: 0002" in capsys.readouterr().out


def test_up_refuses_plain_http_on_a_public_address(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["up", "--host", "0.0.0.0", "--data-dir", str(tmp_path / "d")])
    assert code == 2
    assert "refusing to serve tokens in plain HTTP" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()  # refused before anything was created


def test_up_with_two_workers_serves_from_both(
    tmp_path: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--workers 2``: the parent bootstraps once, each worker rebuilds the same settings from the environment."""
    with dutyguard_up(["--workers", "2", "--demo"], env, tmp_path / "data") as (url, _proc, lines):
        tokens = _tokens(lines)
        cli = Cli(url, monkeypatch, capsys, tokens)
        for _ in range(6):  # spread over the workers' connections
            assert cli.json("carol", "whoami")["id"] == "carol"
        cli.ok("adam", "team", "create", "from-worker")
        assert cli.json("carol", "audit", "verify", "--server")["ok"] is True
