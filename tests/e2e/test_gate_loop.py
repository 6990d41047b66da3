"""Issue 4's "done when", as one run through the real CLI against a real ``dutyguard up``.

``dutyguard up --demo`` runs in a subprocess on a loopback port (SQLite, and a real
PostgreSQL); every step is a ``dutyguard`` command run the way a person or a pipeline runs it,
with that persona's token in ``DUTYGUARD_TOKEN``:

1. Security (alice) proposes a bundle; alice cannot approve it herself; sam approves: v1 is
   published, signed by the control plane.
2. DevOps' pipeline (the ``ci-shop`` token) runs ``dutyguard scan --server URL --trust KEYRING``
   on checkov's nginx Deployment with a hostPort: the gate fails (exit 1) on ``pss.host-ports``.
3. DevOps (dave) requests an exception for that finding's fingerprint; dave cannot approve it;
   Security (sam) approves it.
4. The pipeline passes: the finding is still reported, marked waived with the exception id;
   with ``--attest`` the control plane signs an attestation, which ``dutyguard attest verify``
   accepts (and which names the waiver, the bundle and the submitting pipeline).
5. Two days pass on the control plane's clock (``DUTYGUARD_UNSAFE_CLOCK_FILE``, a test-only
   setting; nobody sleeps): the next snapshot leaves the expired exception out and the pipeline
   fails again; the audit trail records the expiry.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.server.live import dutyguard_up
from tests.server.test_e2e_cli import Cli, _tokens

pytestmark = pytest.mark.slow

MANIFEST = "checkov/tests/kubernetes/checks/example_HostPort/nginx-app-FAILED.yaml"
IMAGE = "oci://registry.example.com/shop/api@sha256:" + "5e" * 32

BUNDLE = """\
apiVersion: dutyguard.dev/v1
kind: PolicyBundle
metadata:
  name: acme-shop
  description: Pod Security baseline for the shop; CI blocks high and critical.
spec:
  rules:
    include: [{pack: pss-baseline}]
  exceptions:
    maxDays: {critical: 7, high: 14, medium: 90, low: 180, info: 365}
"""


@pytest.fixture
def env(database_url: str, tmp_path: Path) -> dict[str, str]:
    clock = tmp_path / "clock-offset"
    clock.write_text("0")
    return {"DUTYGUARD_DATABASE_URL": database_url, "DUTYGUARD_UNSAFE_CLOCK_FILE": str(clock)}


def test_security_policy_devops_exception_attested_pass_then_expiry(
    tmp_path: Path,
    shared_data: Path,
    env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("DUTYGUARD_FAIL_ON", raising=False)
    manifest = str(shared_data / MANIFEST)
    keyring = tmp_path / "keyring.json"
    attestation = tmp_path / "attestation.dsse.json"
    (tmp_path / "bundle.yaml").write_text(BUNDLE)

    with dutyguard_up(["--demo"], env, tmp_path / "data") as (url, _proc, lines):
        assert any("UNSAFE: the clock is shifted" in line for line in lines)
        cli = Cli(url, monkeypatch, capsys, _tokens(lines))
        pipeline = [
            "scan", "--server", url, "--trust", str(keyring),
            "--state-file", str(tmp_path / "runner-seen.json"),
            "--app", "shop-api", "--subject", IMAGE, "-f", "json", manifest,
        ]  # fmt: skip

        # 1. Security proposes, a second member approves: v1 is published and signed.
        assert cli.run(None, "policy", "lint", str(tmp_path / "bundle.yaml"))[0] == 0
        proposal = cli.json(
            "alice", "policy", "propose", str(tmp_path / "bundle.yaml"), "-m", "baseline for shop"
        )
        assert proposal["state"] == "pending"
        assert proposal["changes"][0]["what"].startswith("first publication")
        assert "self_approval" in cli.refused("alice", "policy", "approve", proposal["id"])
        assert "policy.approve" in cli.refused("dave", "policy", "approve", proposal["id"])
        approved = cli.json("sam", "policy", "approve", proposal["id"], "--digest", proposal["digest"])
        assert approved["published_version"] == 1
        history = cli.json("carol", "policy", "history")
        assert [(v["version"], v["digest"], v["published_by"]) for v in history] == [
            (1, proposal["digest"], "sam")
        ]
        cli.ok(None, "keys", "export", "--output", str(keyring))

        # 2. The pipeline fails on the published bundle.
        code, out, err = cli.run("ci-shop", *pipeline)
        assert code == 1, err
        report = json.loads(out)
        assert report["policy"]["source"].startswith("signed policy bundle acme-shop v1")
        (finding,) = [f for f in report["findings"] if f["blocking"]]
        assert finding["rule_id"] == "pss.host-ports"
        assert finding["location"]["field"] == "spec.template.spec.containers[0].ports[1].hostPort"
        assert finding["waiver"] is None

        # 3. DevOps requests an exception for that finding; Security (not DevOps) approves it.
        request = cli.json(
            "dave", "exception", "request", "--rule", "pss.host-ports", "--fingerprint", finding["fingerprint"],
            "--app", "shop-api", "--justification", "the ingress node port is fronted by the cloud LB",
            "--compensating-control", "NetworkPolicy allows only the LB subnet", "--days", "1",
        )  # fmt: skip
        assert (request["status"], request["severity"], request["quorum"]) == ("pending", "high", 1)
        # The walkthrough (docs/walkthrough.md) shows this message word for word.
        assert "dave lacks exception.approve on team:payments" in cli.refused(
            "dave", "exception", "approve", request["id"]
        )
        granted = cli.json("sam", "exception", "approve", request["id"])
        assert granted["status"] == "active"
        assert granted["approvals"] == ["sam"]

        # 4. The pipeline passes: the finding is shown as waived, and the decision is attested.
        code, out, err = cli.run("ci-shop", *pipeline, "--attest", "--attest-output", str(attestation))
        assert code == 0, err
        report = json.loads(out)
        (waived,) = [f for f in report["findings"] if f["rule_id"] == "pss.host-ports"]
        assert waived["blocking"] is False
        assert waived["waiver"]["exception_id"] == request["id"]
        assert report["summary"]["waived"] == 1
        assert "decision pass" in err
        verified = cli.run(
            None, "attest", "verify", str(attestation), "--trust", str(keyring), "--subject", IMAGE,
            "--require-pass", "--json",
        )  # fmt: skip
        assert verified[0] == 0, verified[2]
        predicate = json.loads(verified[1])["statement"]["predicate"]
        assert predicate["decision"] == "pass"
        assert predicate["submitter"] == "ci-shop"
        assert predicate["policy"]["version"] == 1
        assert predicate["policy"]["digest"] == proposal["digest"]
        assert [w["exceptionId"] for w in predicate["waivedFindings"]] == [request["id"]]
        # the attestation is indexed by subject for admission
        (indexed,) = cli.json("carol", "attest", "list", "--subject", IMAGE)
        assert indexed["decision"] == "pass"

        # 5. The exception expires: the next snapshot leaves it out and the pipeline fails again.
        Path(env["DUTYGUARD_UNSAFE_CLOCK_FILE"]).write_text(str(2 * 24 * 3600))
        code, out, err = cli.run("ci-shop", *pipeline)
        assert code == 1, err
        report = json.loads(out)
        (again,) = [f for f in report["findings"] if f["blocking"]]
        assert again["fingerprint"] == finding["fingerprint"]
        assert again["waiver"] is None
        assert cli.json("sam", "exception", "show", request["id"])["status"] == "expired"
        entries: list[dict[str, Any]] = cli.json("carol", "audit", "entries", "--limit", "500")["items"]
        actions = [(e["action"], e["object"]) for e in entries]
        for expected in (
            ("policy.propose", f"policy-proposal:{proposal['id']}"),
            ("policy.publish", "policy:v1"),
            ("exception.request", f"exception:{request['id']}"),
            ("exception.grant", f"exception:{request['id']}"),
            ("exception.expire", f"exception:{request['id']}"),
        ):
            assert expected in actions, expected
        refused = {(e["actor"], e["action"]) for e in entries if e["outcome"] == "refused"}
        assert {("alice", "policy.approve"), ("dave", "request.denied")} <= refused
