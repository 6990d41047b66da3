"""Exceptions through the real CLI against a real server (uvicorn on loopback), on SQLite and
PostgreSQL: ``--from-suppression`` turns an inline suppression that a scan reported (never
honoured) into a request for the finding it tried to silence, in the resource it sits in;
ambiguous or empty cases are refused rather than guessed. Also ``state pull`` and ``keys export``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dutyguard.cli import main
from dutyguard.server.app import create_app
from tests.server.conftest import Org
from tests.server.live import threaded
from tests.server.signed_helpers import publish

SUPPRESSED = "checkov/tests/kubernetes/checks/example_Suppressed/suppress-checks-PASSED.yaml"


def _cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], url: str, token: str, *argv: str
) -> tuple[int, str, str]:
    monkeypatch.setenv("DUTYGUARD_URL", url)
    monkeypatch.setenv("DUTYGUARD_TOKEN", token)
    capsys.readouterr()
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_request_from_a_reported_suppression(
    org: Org,
    shared_data: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("DUTYGUARD_FAIL_ON", raising=False)
    publish(org, "apiVersion: dutyguard.dev/v1\nkind: PolicyBundle\nmetadata: {name: all-rules}\nspec: {}\n")
    report = tmp_path / "report.json"
    assert main(["scan", "-f", "json", "-o", str(report), str(shared_data / SUPPRESSED)]) == 1
    sups = json.loads(report.read_text())["suppression_requests"]
    assert (sups[8]["line"], sups[8]["matched_rules"]) == (168, ["k8s.no-cpu-limit"])
    with threaded(create_app(runtime=org.rt)) as url:
        dave = org.tokens["dave"]
        request = [
            "exception",
            "request",
            "--app",
            "shop-api",
            "--compensating-control",
            "quota on the namespace",
        ]

        def ask(spec: str, *more: str) -> tuple[int, str, str]:
            return _cli(
                monkeypatch, capsys, url, dave, *request, "--days", "30", "--from-suppression", spec, *more
            )

        # the ReplicationController `myapp` (line 168): one finding of the rule in that resource
        code, out, err = ask(f"{report}:8", "--format", "json")
        assert code == 0, err
        made: dict[str, Any] = json.loads(out)
        assert (made["rule_id"], made["scope"]) == (
            "k8s.no-cpu-limit",
            {"app": "shop-api", "fingerprint": "e94043acc15f075cf86d25d635972910"},
        )
        assert made["justification"].startswith("I don't need CPU (inline suppression at ")
        assert made["status"] == "pending"  # still needs Security: the suppression itself waived nothing
        # two containers of the Pod at line 10 escalate privileges: refused, listing both
        code, _, err = ask(f"{report}:0")
        assert code == 2
        assert "several findings match" in err
        assert "eec907258755d9855abf972c65515874" in err and "8944a59678d234492ecd685d903265db" in err
        # line 143 names pss.host-namespaces, which its Deployment does not violate
        code, _, err = ask(f"{report}:7")
        assert code == 2
        assert "has no such finding" in err
        # a report with twelve suppressions needs an index
        code, _, err = ask(str(report))
        assert code == 2
        assert "pick one with" in err
    assert len(org.audit(actor="dave", action="exception.request", outcome="success")) == 1


def test_state_pull_and_keys_export(
    org: Org, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    publish(org)
    with threaded(create_app(runtime=org.rt)) as url:
        ci = org.tokens["ci-shop"]
        code, _, err = _cli(monkeypatch, capsys, url, ci, "keys", "export", "-o", str(tmp_path / "ring.json"))
        assert code == 0, err
        code, out, err = _cli(
            monkeypatch,
            capsys,
            url,
            ci,
            "state",
            "pull",
            str(tmp_path / "state"),
            "--trust",
            str(tmp_path / "ring.json"),
        )
        assert code == 0, err
        assert "verified: signed policy bundle acme v1" in out
        assert sorted(p.name for p in (tmp_path / "state").iterdir()) == [
            "bundle.dsse.json",
            "exceptions.dsse.json",
        ]
        # the saved state is what a runner enforces offline
        code, out, err = _cli(
            monkeypatch, capsys, url, ci, "scan", "--state", str(tmp_path / "state"), "--trust",
            str(tmp_path / "ring.json"), "--state-file", str(tmp_path / "seen.json"), "-f", "json",
            str(tmp_path / "ring.json"),
        )  # fmt: skip
        assert code == 0, err
        assert json.loads(out)["policy"]["source"].startswith("signed policy bundle acme v1")
        # pulling with a key that did not sign it saves nothing
        other = tmp_path / "other.pub"
        other.write_text("ed25519:" + "A" * 43 + "=\n")
        code, _, err = _cli(
            monkeypatch, capsys, url, ci, "state", "pull", str(tmp_path / "s2"), "--trust", str(other)
        )
        assert code == 2
        assert "[signature]" in err
        assert not (tmp_path / "s2" / "bundle.dsse.json").exists()
        # a token without state.read cannot pull
        code, _, err = _cli(
            monkeypatch, capsys, url, org.tokens["alice"], "state", "pull", str(tmp_path / "s3")
        )
        assert code == 2
        assert "[missing]" in err and "403" in err
        # a path that cannot be written is an error naming it (exit 2), never a traceback
        blocker = tmp_path / "a-file"
        blocker.write_text("")
        for argv, named in (
            (
                ("keys", "export", "-o", str(blocker / "ring.json")),
                f"--output: cannot write {blocker}/ring.json",
            ),
            (
                ("state", "pull", str(blocker / "state")),
                f"{blocker}/state: cannot save the signed state there",
            ),
        ):
            code, _, err = _cli(monkeypatch, capsys, url, ci, *argv)
            assert (code, err.startswith(f"dutyguard: error: {named}")) == (2, True), err
