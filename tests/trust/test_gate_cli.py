"""The gate through the CLI: `dutyguard scan --state DIR --trust KEY` fails closed, naming the check.

Each attack test asserts exit code 2, the failed check in the message, and that nothing was
scanned (no report on stdout): verification happens before any input is read.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from dutyguard.audit.signing import Signer
from dutyguard.cli import main
from dutyguard.trust.state import BUNDLE_FILE, SNAPSHOT_FILE
from tests.trust.simulator import NOW, ControlPlane, grant

NODE_EXPORTER = "checkov/tests/kubernetes/checks/example_HostPort/DS-node-exporter-FAILED.yaml"
SUPPRESSED = "checkov/tests/kubernetes/checks/example_Suppressed/suppress-checks-PASSED.yaml"


@pytest.fixture(autouse=True)
def _clock(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("DUTYGUARD_FAIL_ON", "DUTYGUARD_ALLOWED_REGISTRIES", "DUTYGUARD_STATE", "DUTYGUARD_TRUST"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    set_now(monkeypatch, NOW)


def set_now(monkeypatch: pytest.MonkeyPatch, when: datetime) -> None:
    monkeypatch.setattr("dutyguard.trust._time.utc_now", lambda: when)


@pytest.fixture
def cp() -> ControlPlane:
    return ControlPlane()


@pytest.fixture
def node_exporter(shared_data: Path) -> str:
    return str(shared_data / NODE_EXPORTER)


class Runner:
    def __init__(self, tmp_path: Path, cp: ControlPlane, capsys: pytest.CaptureFixture[str]) -> None:
        self.state = tmp_path / "state"
        self.key = cp.key_file(tmp_path / "cp.pub")
        self.state_file = tmp_path / "runner" / "trusted-state.json"
        self.capsys = capsys

    def scan(self, *args: str) -> tuple[int, str, str]:
        code = main(
            [
                "scan",
                "--state",
                str(self.state),
                "--trust",
                str(self.key),
                "--state-file",
                str(self.state_file),
                *args,
            ]
        )
        out, err = self.capsys.readouterr()
        return code, out, err

    def json(self, *args: str) -> tuple[int, dict[str, object], str]:
        code, out, err = self.scan("-f", "json", *args)
        return code, (json.loads(out) if out else {}), err


@pytest.fixture
def runner(tmp_path: Path, cp: ControlPlane, capsys: pytest.CaptureFixture[str]) -> Runner:
    return Runner(tmp_path, cp, capsys)


def findings(report: dict[str, object]) -> list[dict[str, object]]:
    items = report["findings"]
    assert isinstance(items, list)
    return items


def assert_refused(result: tuple[int, str, str], check: str) -> str:
    code, out, err = result
    assert code == 2, err
    assert f"verification failed [{check}]" in err
    assert out == "", "nothing may be scanned when the signed state does not verify"
    return err


def edit_payload(path: Path, change) -> None:  # type: ignore[no-untyped-def]
    doc = json.loads(path.read_bytes())
    payload = json.loads(base64.b64decode(doc["payload"]))
    change(payload)
    doc["payload"] = base64.b64encode(
        json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    ).decode()
    path.write_text(json.dumps(doc))


# --- the signed state decides ----------------------------------------------------------------------
def test_signed_bundle_is_enforced(cp: ControlPlane, runner: Runner, node_exporter: str) -> None:
    cp.pull(runner.state, cp.publish(), cp.snapshot())
    code, report, _ = runner.json(node_exporter)
    assert code == 1
    policy = report["policy"]
    assert isinstance(policy, dict)
    assert policy["source"].startswith("signed policy bundle acme-baseline v1 (sha256:")
    assert "exception snapshot v1" in policy["source"]
    rules = {f["rule_id"] for f in findings(report)}
    # the bundle includes the baseline pack only: no restricted or k8s.* rule ran
    assert rules == {"pss.host-ports", "pss.host-namespaces", "pss.host-path-volumes"}
    recorded = json.loads(runner.state_file.read_text())
    assert recorded["issuers"][cp.issuer]["bundle"]["version"] == 1


def test_without_state_the_default_is_said_to_be_unsigned(
    node_exporter: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["scan", "-f", "json", node_exporter])
    report = json.loads(capsys.readouterr().out)
    assert code == 1
    assert report["policy"]["source"] == "built-in default policy (unsigned)"


# --- named attacks ---------------------------------------------------------------------------------
def test_edited_bundle_rejected(cp: ControlPlane, runner: Runner, node_exporter: str) -> None:
    cp.pull(runner.state, cp.publish(), cp.snapshot())

    def weaken(p: dict) -> None:  # type: ignore[type-arg]
        p["bundle"]["spec"]["rules"]["include"] = [{"id": "pss.host-ports"}]

    edit_payload(runner.state / BUNDLE_FILE, weaken)
    err = assert_refused(runner.scan(node_exporter), "signature")
    assert BUNDLE_FILE in err


def test_edited_snapshot_rejected(cp: ControlPlane, runner: Runner, node_exporter: str) -> None:
    cp.pull(runner.state, cp.publish(), cp.snapshot((grant("exc-1", "pss.host-ports", app="node-exporter"),)))

    def extend(p: dict) -> None:  # type: ignore[type-arg]
        p["exceptions"][0]["expires"] = "2030-01-01T00:00:00Z"

    edit_payload(runner.state / SNAPSHOT_FILE, extend)
    err = assert_refused(runner.scan(node_exporter), "signature")
    assert SNAPSHOT_FILE in err


def test_replayed_older_bundle_rejected(cp: ControlPlane, runner: Runner, node_exporter: str) -> None:
    v1 = cp.publish()
    v2 = cp.publish()
    snap = cp.snapshot()
    cp.pull(runner.state, v2, snap)
    assert runner.scan(node_exporter)[0] == 1
    cp.pull(runner.state, v1, snap)
    err = assert_refused(runner.scan(node_exporter), "rollback")
    assert "bundle v1 is older than v2" in err


def test_replayed_older_snapshot_rejected(cp: ControlPlane, runner: Runner, node_exporter: str) -> None:
    bundle = cp.publish()
    with_waiver = cp.snapshot((grant("exc-1", "pss.host-ports", app="node-exporter"),))
    revoked = cp.snapshot()  # v2: the exception was revoked
    cp.pull(runner.state, bundle, revoked)
    assert runner.scan(node_exporter)[0] == 1
    cp.pull(runner.state, bundle, with_waiver)
    err = assert_refused(runner.scan(node_exporter, "--app", "node-exporter"), "rollback")
    assert "exception snapshot v1 is older than v2" in err


def test_expired_bundle_rejected(cp: ControlPlane, runner: Runner, node_exporter: str) -> None:
    cp.pull(runner.state, cp.publish(issued_at=NOW - timedelta(days=31)), cp.snapshot())
    err = assert_refused(runner.scan(node_exporter), "expired")
    assert "bundle v1 expired at" in err


def test_bundle_signed_by_other_key_rejected(cp: ControlPlane, runner: Runner, node_exporter: str) -> None:
    intruder = Signer.generate()
    cp.pull(runner.state, cp.publish(signer=intruder), cp.snapshot())
    err = assert_refused(runner.scan(node_exporter), "signature")
    assert intruder.key_id[:16] in err
    assert "not trusted" in err


def test_exception_scope_cannot_be_widened_after_signing(
    cp: ControlPlane, runner: Runner, node_exporter: str
) -> None:
    narrow = grant("exc-1", "pss.host-ports", app="payments", namespace="payments")
    cp.pull(runner.state, cp.publish(), cp.snapshot((narrow,)))

    def widen(p: dict) -> None:  # type: ignore[type-arg]
        p["exceptions"][0]["scope"] = {"namespace": "monitoring"}

    edit_payload(runner.state / SNAPSHOT_FILE, widen)
    assert_refused(runner.scan(node_exporter, "--app", "node-exporter"), "signature")


def test_expired_exception_not_applied(
    cp: ControlPlane, runner: Runner, node_exporter: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    waiver = grant(
        "exc-7",
        "pss.host-ports",
        app="node-exporter",
        approved_at=NOW - timedelta(days=2),
        expires=NOW + timedelta(hours=2),
    )
    already_expired = grant(
        "exc-8", "pss.host-namespaces", app="node-exporter", approved_at=NOW - timedelta(days=3), expires=NOW
    )
    cp.pull(runner.state, cp.publish(), cp.snapshot((waiver, already_expired)))
    _, report, _ = runner.json(node_exporter, "--app", "node-exporter")
    by_rule = {(f["rule_id"], f["location"]["line"]): f for f in findings(report)}  # type: ignore[index]
    assert by_rule[("pss.host-ports", 33)]["waiver"] == {
        "exception_id": "exc-7",
        "expires": "2025-06-01T14:00:00Z",
    }
    assert by_rule[("pss.host-ports", 33)]["blocking"] is False
    # expires == scan time: no longer valid
    assert by_rule[("pss.host-namespaces", 53)]["waiver"] is None
    assert by_rule[("pss.host-namespaces", 53)]["blocking"] is True

    # Three hours later the same (still unexpired) snapshot no longer waives anything.
    set_now(monkeypatch, NOW + timedelta(hours=3))
    code, report, _ = runner.json(node_exporter, "--app", "node-exporter")
    assert code == 1
    assert all(f["waiver"] is None for f in findings(report))
    summary = report["summary"]
    assert isinstance(summary, dict)
    assert summary["waived"] == 0


def test_inline_suppression_is_not_an_exception(cp: ControlPlane, runner: Runner, shared_data: Path) -> None:
    # checkov's own fixture of skip annotations (checkov.io/skip, bridgecrew.io/skip). Signed
    # state with no exception: every suppression is reported, none waives anything.
    cp.pull(runner.state, cp.publish(), cp.snapshot())
    code, report, _ = runner.json(str(shared_data / SUPPRESSED))
    assert code == 1
    requests = report["suppression_requests"]
    assert isinstance(requests, list)
    assert requests
    assert all(r["honoured"] is False for r in requests)
    targeted = {rule for r in requests for rule in r["matched_rules"]}
    assert "pss.host-namespaces" in targeted  # checkov.io/skip1: CKV_K8S_1 on line 143
    host_ns = [f for f in findings(report) if f["rule_id"] == "pss.host-namespaces"]
    assert host_ns
    assert all(f["waiver"] is None and f["blocking"] is True for f in host_ns)
    summary = report["summary"]
    assert isinstance(summary, dict)
    assert summary["waived"] == 0


# --- more fail-closed cases ------------------------------------------------------------------------
def test_missing_snapshot_rejected(cp: ControlPlane, runner: Runner, node_exporter: str) -> None:
    cp.pull(runner.state, cp.publish(), cp.snapshot())
    (runner.state / SNAPSHOT_FILE).unlink()
    assert SNAPSHOT_FILE in assert_refused(runner.scan(node_exporter), "missing")


def test_unsigned_bundle_rejected(cp: ControlPlane, runner: Runner, node_exporter: str) -> None:
    cp.pull(runner.state, cp.publish(), cp.snapshot())
    doc = json.loads((runner.state / BUNDLE_FILE).read_bytes())
    doc["signatures"] = []
    (runner.state / BUNDLE_FILE).write_text(json.dumps(doc))
    assert_refused(runner.scan(node_exporter), "unsigned")


def test_plain_yaml_bundle_in_place_of_the_signed_one_rejected(
    cp: ControlPlane, runner: Runner, node_exporter: str
) -> None:
    cp.pull(runner.state, cp.publish(), cp.snapshot())
    (runner.state / BUNDLE_FILE).write_text("apiVersion: dutyguard.dev/v1\nkind: PolicyBundle\n")
    assert_refused(runner.scan(node_exporter), "malformed")


def test_damaged_state_file_fails_closed(cp: ControlPlane, runner: Runner, node_exporter: str) -> None:
    cp.pull(runner.state, cp.publish(), cp.snapshot())
    runner.state_file.parent.mkdir(parents=True)
    runner.state_file.write_text("{}")
    assert_refused(runner.scan(node_exporter), "state-file")


def test_default_state_file_is_under_the_cache_dir(
    cp: ControlPlane, tmp_path: Path, node_exporter: str, capsys: pytest.CaptureFixture[str]
) -> None:
    state = cp.pull(tmp_path / "state", cp.publish(), cp.snapshot())
    key = cp.key_file(tmp_path / "cp.pub")
    assert main(["scan", "--state", str(state), "--trust", str(key), node_exporter]) == 1
    capsys.readouterr()
    assert (tmp_path / "cache" / "dutyguard" / "trusted-state.json").is_file()


@pytest.mark.parametrize(
    "flag",
    [["--fail-on", "critical"], ["--pss-level", "baseline"], ["--allowed-registry", "quay.io"]],
    ids=["fail-on", "pss-level", "allowed-registry"],
)
def test_local_policy_flags_cannot_override_the_signed_bundle(
    cp: ControlPlane, runner: Runner, node_exporter: str, flag: list[str]
) -> None:
    cp.pull(runner.state, cp.publish(), cp.snapshot())
    code, out, err = runner.scan(*flag, node_exporter)
    assert code == 2
    assert flag[0] in err
    assert "signed policy bundle decides" in err
    assert out == ""


def test_fail_on_from_the_environment_cannot_override_either(
    cp: ControlPlane, runner: Runner, node_exporter: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    cp.pull(runner.state, cp.publish(), cp.snapshot())
    monkeypatch.setenv("DUTYGUARD_FAIL_ON", "critical")
    code, _, err = runner.scan(node_exporter)
    assert code == 2
    assert "set from the environment" in err


def test_trust_without_state_is_a_usage_error(
    tmp_path: Path, node_exporter: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["scan", "--trust", "ed25519:" + "A" * 43 + "=", node_exporter]) == 2
    assert "--state" in capsys.readouterr().err


def test_state_without_trust_fails_closed(
    cp: ControlPlane, tmp_path: Path, node_exporter: str, capsys: pytest.CaptureFixture[str]
) -> None:
    state = cp.pull(tmp_path / "state", cp.publish(), cp.snapshot())
    assert main(["scan", "--state", str(state), node_exporter]) == 2
    assert "no trusted key" in capsys.readouterr().err


def test_server_without_trust_fails_closed_before_any_download(
    node_exporter: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["scan", "--server", "http://127.0.0.1:9", node_exporter]) == 2
    assert "[trust]: no trusted key" in capsys.readouterr().err


def test_unreachable_server_fails_closed(
    cp: ControlPlane, tmp_path: Path, node_exporter: str, capsys: pytest.CaptureFixture[str]
) -> None:
    key = cp.key_file(tmp_path / "cp.pub")
    code = main(["scan", "--server", "http://127.0.0.1:9", "--trust", str(key), node_exporter])
    err = capsys.readouterr().err
    assert code == 2
    # no HTTP answer has no status code to show ("0 download failed" read like one)
    assert (
        "verification failed [missing]: cannot fetch the signed state: download failed: http://127.0.0.1:9"
        in err
    )


def test_bundle_scoped_to_other_apps_is_refused(cp: ControlPlane, runner: Runner, node_exporter: str) -> None:
    scoped = """\
apiVersion: dutyguard.dev/v1
kind: PolicyBundle
metadata: {name: payments-only}
spec:
  scope: {apps: [payments]}
"""
    cp.pull(runner.state, cp.publish(scoped), cp.snapshot())
    code, out, err = runner.scan(node_exporter, "--app", "search")
    assert code == 2
    assert "does not govern this scan: app 'search' is not among payments" in err
    assert out == ""


def test_state_file_only_moves_forward(cp: ControlPlane, runner: Runner, node_exporter: str) -> None:
    cp.pull(runner.state, cp.publish(), cp.snapshot())
    assert runner.scan(node_exporter)[0] == 1
    first = runner.state_file.stat().st_mtime_ns
    assert runner.scan(node_exporter)[0] == 1  # same state again: nothing new to record
    assert runner.state_file.stat().st_mtime_ns == first
    cp.pull(runner.state, cp.publish(), cp.snapshot())
    assert runner.scan(node_exporter)[0] == 1
    recorded = json.loads(runner.state_file.read_text())["issuers"][cp.issuer]
    assert recorded["bundle"]["version"] == 2
    assert recorded["snapshot"]["version"] == 2


def test_plain_scan_loads_no_trust_code(node_exporter: str) -> None:
    # Startup matters for single-file scans: signed-state code is imported only with --state.
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from dutyguard.cli import main\n"
        f"main(['scan', '-f', 'json', '-o', '/dev/null', {node_exporter!r}])\n"
        "print(sorted(m for m in sys.modules if m.startswith(('dutyguard.trust', 'dutyguard.policy',"
        " 'dutyguard.exceptions', 'cryptography'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"


# --- --server and --attest, with the control plane replaced by what it would answer -----------------
IMAGE = "oci://registry.example.com/shop/api@sha256:" + "5e" * 32
PASSING = "checkov/tests/kubernetes/checks/example_HostPort/nginx-app-PASSED.yaml"


def _serve_from(monkeypatch: pytest.MonkeyPatch, state: Path) -> None:
    """``--server`` downloads into a temporary directory; here it is the simulator's pull."""
    import contextlib

    @contextlib.contextmanager
    def pulled(url: str):  # type: ignore[no-untyped-def]
        yield state

    monkeypatch.setattr("dutyguard.cli.gate_client.pulled", pulled)


def _attested(monkeypatch: pytest.MonkeyPatch, decision: str, grant_id: str | None = None) -> None:
    answer = {
        "id": "att-0123456789abcdef",
        "decision": decision,
        "subject": IMAGE,
        "breakglass_grant": grant_id,
        "envelope": {"payloadType": "application/vnd.in-toto+json", "payload": "", "signatures": []},
    }
    monkeypatch.setattr("dutyguard.cli.gate_client.submit", lambda *args: answer)


def _server_scan(runner: Runner, *args: str) -> tuple[int, str, str]:
    code = main(
        ["scan", "--server", "https://cp.test.example", "--trust", str(runner.key),
         "--state-file", str(runner.state_file), "--app", "shop-api", *args]
    )  # fmt: skip
    out, err = runner.capsys.readouterr()
    return code, out, err


def test_server_state_failure_names_the_url_not_a_temporary_file(
    cp: ControlPlane, runner: Runner, node_exporter: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    cp.pull(runner.state, cp.publish(), cp.snapshot())
    edit_payload(runner.state / BUNDLE_FILE, lambda p: p["bundle"]["spec"].update(rules={}))
    _serve_from(monkeypatch, runner.state)
    code, out, err = _server_scan(runner, node_exporter)
    assert (code, out) == (2, "")
    assert err.startswith(
        "dutyguard: error: https://cp.test.example/api/v1/state/bundle: verification failed"
    )
    assert str(runner.state) not in err


def test_attested_fail_fails_a_gate_that_passed_locally(
    cp: ControlPlane, runner: Runner, shared_data: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cp.pull(runner.state, cp.publish(), cp.snapshot())
    _serve_from(monkeypatch, runner.state)
    _attested(monkeypatch, "fail")
    out_file = tmp_path / "att.json"
    args = ("--subject", IMAGE, "--attest", "--attest-output", str(out_file), str(shared_data / PASSING))
    code, _, err = _server_scan(runner, *args)
    assert code == 1, err
    assert "the control plane decided fail where this runner passed" in err
    assert out_file.is_file()  # the signed verdict is kept: it is the evidence of the failure
    _attested(monkeypatch, "pass")
    assert _server_scan(runner, *args)[0] == 0


def test_breakglass_attestation_lets_a_blocked_gate_pass_loudly(
    cp: ControlPlane, runner: Runner, node_exporter: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cp.pull(runner.state, cp.publish(), cp.snapshot())
    _serve_from(monkeypatch, runner.state)
    _attested(monkeypatch, "breakglass", "bg-42")
    code, _, err = _server_scan(
        runner, "--subject", IMAGE, "--attest", "--attest-output", str(tmp_path / "a.json"), node_exporter
    )
    assert code == 0, err
    assert "decision breakglass" in err
    assert "BREAK-GLASS" in err and "grant bg-42" in err
    # without the grant the same scan is the failure it is
    _attested(monkeypatch, "fail")
    assert _server_scan(runner, "--subject", IMAGE, "--attest", "--attest-output", str(tmp_path / "b.json"),
                        node_exporter)[0] == 1  # fmt: skip


def test_unwritable_attestation_output_exits_2_naming_the_attestation(
    cp: ControlPlane, runner: Runner, shared_data: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cp.pull(runner.state, cp.publish(), cp.snapshot())
    _serve_from(monkeypatch, runner.state)
    _attested(monkeypatch, "pass")
    target = tmp_path / "no-such-dir" / "att.json"
    code, _, err = _server_scan(
        runner, "--subject", IMAGE, "--attest", "--attest-output", str(target), str(shared_data / PASSING)
    )
    assert code == 2
    assert f"--attest-output: cannot write {target}" in err
    assert "dutyguard attest get att-0123456789abcdef" in err
    assert "Traceback" not in err
