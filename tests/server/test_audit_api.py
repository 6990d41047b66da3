"""The audit trail through the API and the CLI: every change and refusal is an entry, nobody can
write to it through the API, and direct database tampering is detected by the live verify
endpoint, by ``dutyguard audit verify --server`` and by an offline ``audit verify FILE --key``.

Runs on SQLite and PostgreSQL; the tampering is plain SQL by someone who owns the database
(the append-only triggers are dropped first, as such an attacker would).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dutyguard.audit.tables import drop_append_only_ddl
from dutyguard.cli import main
from dutyguard.server.app import create_app
from dutyguard.server.runtime import Runtime, open_runtime
from dutyguard.server.settings import Settings
from tests.server.conftest import FakeClock, Org
from tests.server.live import threaded

EVERY = 4


@pytest.fixture
def runtime(tmp_path: Path, database_url: str, clock: FakeClock) -> Iterator[Runtime]:
    rt = open_runtime(
        Settings(data_dir=tmp_path / "data", database_url=database_url, checkpoint_every=EVERY), clock=clock
    )
    yield rt
    rt.close()


@pytest.fixture
def busy(org: Org) -> Org:
    """Twelve more changes: checkpoints at 4, 8, 12; entries 1..15."""
    for i in range(12):
        assert org.post("adam", "/teams", {"id": f"team-{i}"}).status_code == 201
    assert len(org.audit()) == 15
    return org


@pytest.fixture
def live(busy: Org) -> Iterator[str]:
    with threaded(create_app(runtime=busy.rt)) as url:
        yield url


def cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], url: str, token: str, *argv: str
) -> tuple[int, str]:
    monkeypatch.setenv("DUTYGUARD_URL", url)
    monkeypatch.setenv("DUTYGUARD_TOKEN", token)
    capsys.readouterr()
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out + out.err


def tamper(rt: Runtime, *stmts: str) -> None:
    with rt.db.engine.begin() as conn:
        for stmt in drop_append_only_ddl(rt.db.dialect):
            conn.exec_driver_sql(stmt)
        for stmt in stmts:
            conn.exec_driver_sql(stmt)


ATTACKS: dict[str, tuple[tuple[str, ...], str, int]] = {
    "edit": (("UPDATE audit_entries SET actor = 'mallory' WHERE seq = 6",), "edited", 6),
    "delete": (("DELETE FROM audit_entries WHERE seq = 6",), "deleted", 6),
    "reorder": (
        (
            "UPDATE audit_entries SET seq = -6 WHERE seq = 5",
            "UPDATE audit_entries SET seq = 5 WHERE seq = 6",
            "UPDATE audit_entries SET seq = 6 WHERE seq = -6",
        ),
        "reordered",
        5,
    ),
    "truncate": (("DELETE FROM audit_entries WHERE seq > 10",), "truncated", 11),
}


def test_changes_and_refusals_are_entries_with_state_digest(org: Org) -> None:
    org.post("adam", "/teams", {"id": "search"})
    org.post("dave", "/teams", {"id": "shadow"})  # refused: devops cannot manage teams
    ok = org.audit(action="team.create", actor="adam")[-1]
    refused = org.audit(action="request.denied", actor="dave")[-1]
    assert ok["object"] == "team:search"
    assert ok["outcome"] == "success"
    assert refused["outcome"] == "refused"
    assert refused["details"]["duty"] == "team.manage"
    page = org.get("carol", "/audit/entries", limit=500).json()
    by_seq = {e["seq"]: e for e in page["items"]}
    assert by_seq[ok["seq"]]["roles"] == ["admin"]
    assert by_seq[ok["seq"]]["state_digest"].startswith("sha256:")
    assert by_seq[ok["seq"]]["prev_hash"] == by_seq[ok["seq"] - 1]["entry_hash"]


def test_audit_entries_paginate_without_gaps(org: Org) -> None:
    for i in range(7):
        org.post("adam", "/teams", {"id": f"p-{i}"})
    seqs: list[int] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = org.get("carol", "/audit/entries", **params).json()
        seqs += [e["seq"] for e in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seqs == list(range(1, len(org.audit()) + 1))


def test_no_route_writes_or_deletes_entries(org: Org) -> None:
    paths = org.client.app.openapi()["paths"]  # type: ignore[attr-defined]
    for path, ops in paths.items():
        if path.startswith("/api/v1/audit"):
            assert set(ops) == {"get"}, path
    assert org.client.delete("/api/v1/audit/entries", headers=org.h("admin")).status_code == 405


def test_admin_cannot_read_the_trail(org: Org) -> None:
    """Access administrators do not administer audit (AC-5): admin has no audit duty at all."""
    for path in ("/audit/entries", "/audit/export", "/audit/verify"):
        assert org.get("adam", path).status_code == 403, path


def test_untampered_trail_verifies_everywhere(
    busy: Org, live: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    report = busy.get("carol", "/audit/verify").json()
    assert report["ok"] is True
    assert report["entries"] == 15
    assert report["signed_size"] == 12
    export = tmp_path / "trail.jsonl"
    code, out = cli(monkeypatch, capsys, live, busy.tokens["carol"], "audit", "export", str(export))
    assert code == 0, out
    key = busy.rt.signer.verifier.public_text()
    code, out = cli(
        monkeypatch, capsys, live, busy.tokens["carol"], "audit", "verify", str(export), "--key", key
    )
    assert code == 0, out
    assert ": OK" in out


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_audit_row_tampering_detected(
    attack: str,
    busy: Org,
    live: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Edit, delete, reorder, truncate: the API, the CLI (--server) and an offline verify all name it."""
    stmts, kind, seq = ATTACKS[attack]
    tamper(busy.rt, *stmts)
    report = busy.get("carol", "/audit/verify").json()
    assert report["ok"] is False
    assert (kind, seq) in [(p["kind"], p["seq"]) for p in report["problems"]]
    assert report["first_bad_seq"] == seq

    code, out = cli(
        monkeypatch, capsys, live, busy.tokens["carol"], "audit", "verify", "--server", "-f", "json"
    )
    assert code == 2
    server_report = json.loads(out[: out.rindex("}") + 1])
    assert server_report["ok"] is False
    assert server_report["first_bad_seq"] == seq

    export = tmp_path / "trail.jsonl"
    assert cli(monkeypatch, capsys, live, busy.tokens["carol"], "audit", "export", str(export))[0] == 0
    key = busy.rt.signer.verifier.public_text()
    code, out = cli(
        monkeypatch, capsys, live, busy.tokens["carol"], "audit", "verify", str(export), "--key", key
    )
    assert code == 2
    assert "TAMPERED" in out
    assert f"entry {seq}" in out or f"entries {seq}.." in out
    assert kind in out


def test_audit_row_edit_detected(busy: Org) -> None:
    tamper(busy.rt, *ATTACKS["edit"][0])
    problems = busy.get("carol", "/audit/verify").json()["problems"]
    assert [(p["kind"], p["seq"]) for p in problems] == [("edited", 6)]


def test_audit_row_delete_detected(busy: Org) -> None:
    tamper(busy.rt, *ATTACKS["delete"][0])
    problems = busy.get("carol", "/audit/verify").json()["problems"]
    assert ("deleted", 6) in [(p["kind"], p["seq"]) for p in problems]


def test_audit_row_reorder_detected(busy: Org) -> None:
    tamper(busy.rt, *ATTACKS["reorder"][0])
    problems = busy.get("carol", "/audit/verify").json()["problems"]
    assert [(p["kind"], p["seq"]) for p in problems] == [("reordered", 5), ("reordered", 6)]


def test_audit_truncate_detected(busy: Org) -> None:
    tamper(busy.rt, *ATTACKS["truncate"][0])
    problems = busy.get("carol", "/audit/verify").json()["problems"]
    assert [(p["kind"], p["seq"], p["last_seq"]) for p in problems] == [("truncated", 11, 12)]


def test_truncation_with_its_checkpoints_caught_by_an_earlier_export(
    busy: Org, live: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Cut entries and the checkpoints that covered them: the shorter log is self-consistent,
    but the auditor's earlier export still holds the signed checkpoint at 12."""
    earlier = tmp_path / "earlier.jsonl"
    token = busy.tokens["carol"]
    assert cli(monkeypatch, capsys, live, token, "audit", "export", str(earlier))[0] == 0
    tamper(
        busy.rt, "DELETE FROM audit_entries WHERE seq > 10", "DELETE FROM audit_checkpoints WHERE size > 10"
    )
    later = tmp_path / "later.jsonl"
    assert cli(monkeypatch, capsys, live, token, "audit", "export", str(later))[0] == 0
    key = busy.rt.signer.verifier.public_text()
    code, _ = cli(monkeypatch, capsys, live, token, "audit", "verify", str(later), "--key", key)
    assert code == 0  # blind: nothing in the file itself gives it away
    code, out = cli(
        monkeypatch,
        capsys,
        live,
        token,
        "audit",
        "verify",
        str(later),
        "--key",
        key,
        "--known",
        str(earlier),
        "-f",
        "json",
    )
    assert code == 2
    report = json.loads(out[: out.rindex("}") + 1])
    assert next((p["kind"], p["seq"]) for p in report["problems"]) == ("truncated", 11)


def test_verify_with_the_wrong_key_fails_closed(
    busy: Org, live: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from dutyguard.audit.signing import Signer

    export = tmp_path / "trail.jsonl"
    assert cli(monkeypatch, capsys, live, busy.tokens["carol"], "audit", "export", str(export))[0] == 0
    stranger = Signer.generate().verifier.public_text()
    code, out = cli(
        monkeypatch, capsys, live, busy.tokens["carol"], "audit", "verify", str(export), "--key", stranger
    )
    assert code == 2
    assert "TAMPERED" in out or "bad_checkpoint" in out


def test_offline_verify_needs_no_server(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], busy: Org
) -> None:
    """An auditor's laptop: the export file and the pinned key, nothing else (no URL, no token)."""
    from dutyguard.audit.export import export as do_export

    path = tmp_path / "trail.jsonl"
    with busy.rt.db.read() as conn, path.open("wb") as f:
        do_export(conn, f, busy.rt.now())
    pem = tmp_path / "audit.pub"
    pem.write_bytes(busy.rt.signer.verifier.public_pem())
    code = main(["audit", "verify", str(path), "--key", str(pem), "-f", "json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    assert report["ok"] is True
    assert report["signed_size"] == 12
