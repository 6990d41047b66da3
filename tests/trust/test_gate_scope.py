"""The CI gate enforces the signed bundle's scope: a scan the bundle does not govern is refused.

`--app`, `--cluster` and the registry of `--subject oci://…` are compared before anything is read;
every object declaring a namespace is compared while it is read (objects outside are named with
their file and line, never evaluated). Either refusal is exit 2. Inputs are checkov's own
Kubernetes fixtures (node-exporter in `monitoring`, the CloudWatch agent in `amazon-cloudwatch`).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dutyguard.trust.gate import MAX_INPUTS_SHOWN, MAX_OBJECTS_SHOWN
from tests.trust.simulator import NOW, ControlPlane
from tests.trust.test_gate_cli import NODE_EXPORTER, Runner, set_now

CLOUDWATCH = (
    "checkov/tests/kubernetes/checks/example_DockerSocketVolume/cloudwatch-agent-1PASSED-1FAILED.yaml"
)
# a Pod without metadata.namespace: where it lands is decided at deploy time
NO_NAMESPACE = "checkov/tests/kubernetes/checks/example_HostPort/nginx-app-FAILED.yaml"
IMAGE_DIGEST = "sha256:" + "5e" * 32

# (kind, name) of every object of CLOUDWATCH that declares a namespace; its ClusterRoles and
# ClusterRoleBindings declare none (only their subjects do).
CLOUDWATCH_NAMESPACED = [
    ("ConfigMap", "cwagentconfig"),
    ("DaemonSet", "cloudwatch-agent"),
    ("ServiceAccount", "cloudwatch-agent"),
    ("ConfigMap", "cluster-info"),
    ("ConfigMap", "fluentd-config"),
    ("DaemonSet", "fluentd-cloudwatch"),
    ("ServiceAccount", "fluentd"),
]


def bundle(scope: str, rules: str = "{include: [{pack: pss-baseline}]}") -> str:
    return f"""\
apiVersion: dutyguard.dev/v1
kind: PolicyBundle
metadata: {{name: monitoring-only}}
spec:
  rules: {rules}
  podSecurity: {{default: baseline}}
  scope: {scope}
"""


def scanned(runner: Runner, *args: str) -> tuple[int, Any, str]:
    """``runner.json``, its report typed loosely for reading."""
    return runner.json(*args)


@pytest.fixture(autouse=True)
def _clock(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("DUTYGUARD_FAIL_ON", "DUTYGUARD_ALLOWED_REGISTRIES", "DUTYGUARD_STATE", "DUTYGUARD_TRUST"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    set_now(monkeypatch, NOW)


@pytest.fixture
def cp() -> ControlPlane:
    return ControlPlane()


@pytest.fixture
def runner(tmp_path: Path, cp: ControlPlane, capsys: pytest.CaptureFixture[str]) -> Runner:
    return Runner(tmp_path, cp, capsys)


# --- namespaces, while reading ------------------------------------------------------------------
def test_manifest_in_namespace_outside_scope_refuses_the_scan(
    cp: ControlPlane, runner: Runner, shared_data: Path
) -> None:
    cp.pull(runner.state, cp.publish(bundle("{namespaces: [monitoring]}")), cp.snapshot())
    cloudwatch = shared_data / CLOUDWATCH
    code, report, err = scanned(runner, str(shared_data / NODE_EXPORTER), str(cloudwatch))
    assert code == 2, err
    (error,) = report["errors"]
    assert error["source"] == str(cloudwatch)
    message = error["message"]
    assert (
        f"{len(CLOUDWATCH_NAMESPACED)} object(s) outside the scope of policy bundle monitoring-only"
        in message
    )
    assert "which governs namespaces monitoring" in message
    for kind, name in CLOUDWATCH_NAMESPACED:
        assert f"{kind} {name} in namespace 'amazon-cloudwatch'" in message
    assert "ClusterRole" not in message
    # every object is named with the line it starts on in the file
    named = [
        part.split(": ", 1)[0] for part in message.split(" (they were not evaluated): ", 1)[1].split("; ")
    ]
    assert all(n.startswith("line ") for n in named), named
    # objects outside the scope are not evaluated; node-exporter (in monitoring) is
    files = {f["location"]["file"] for f in report["findings"]}
    assert files == {str(shared_data / NODE_EXPORTER)}
    assert f"dutyguard: error: {cloudwatch}: 7 object(s) outside the scope" in err


def test_objects_are_named_by_their_line(cp: ControlPlane, runner: Runner, shared_data: Path) -> None:
    cp.pull(runner.state, cp.publish(bundle("{namespaces: [monitoring]}")), cp.snapshot())
    cloudwatch = shared_data / CLOUDWATCH
    _, report, _ = scanned(runner, str(cloudwatch))
    message = report["errors"][0]["message"]
    text = cloudwatch.read_text().splitlines()
    for part in message.split(" (they were not evaluated): ", 1)[1].split("; "):
        line = int(part.split(":", 1)[0].removeprefix("line "))
        kind, name = part.split(": ", 1)[1].split(" in namespace")[0].split(" ")
        # the named line is inside the object's document: its kind and name follow before the next ---
        doc = []
        for row in text[line - 1 :]:
            if row.startswith("---"):
                break
            doc.append(row)
        assert f"kind: {kind}" in doc and f"  name: {name}" in doc, (line, kind, name)


def test_manifest_in_scope_namespace_is_evaluated_as_usual(
    cp: ControlPlane, runner: Runner, shared_data: Path
) -> None:
    cp.pull(runner.state, cp.publish(bundle("{namespaces: [monitoring, amazon-cloudwatch]}")), cp.snapshot())
    code, report, err = scanned(runner, str(shared_data / NODE_EXPORTER), str(shared_data / CLOUDWATCH))
    assert code == 1, err
    assert report["errors"] == []
    assert {f["location"]["file"] for f in report["findings"]} == {
        str(shared_data / NODE_EXPORTER),
        str(shared_data / CLOUDWATCH),
    }


def test_object_without_namespace_is_not_compared_in_ci(
    cp: ControlPlane, runner: Runner, shared_data: Path
) -> None:
    # CI cannot know where it lands (kubectl -n, a Helm release): admission compares it.
    path = shared_data / NO_NAMESPACE
    assert "namespace:" not in path.read_text()
    cp.pull(runner.state, cp.publish(bundle("{namespaces: [prod]}")), cp.snapshot())
    code, report, err = scanned(runner, str(path))
    assert code == 1, err
    assert report["errors"] == []
    assert {f["rule_id"] for f in report["findings"]} >= {"pss.host-ports"}


def test_namespace_scope_is_checked_even_when_no_rule_reads_manifests(
    cp: ControlPlane, runner: Runner, shared_data: Path
) -> None:
    # A secrets-only bundle would not parse YAML at all; its scope still needs the objects.
    cp.pull(
        runner.state,
        cp.publish(bundle("{namespaces: [monitoring]}", rules="{include: [{pack: secrets}]}")),
        cp.snapshot(),
    )
    code, report, err = scanned(runner, str(shared_data / CLOUDWATCH))
    assert code == 2, err
    assert "7 object(s) outside the scope" in report["errors"][0]["message"]


def test_manifest_from_stdin_outside_scope_refuses_the_scan(
    cp: ControlPlane, runner: Runner, shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io
    import sys

    cp.pull(runner.state, cp.publish(bundle("{namespaces: [monitoring]}")), cp.snapshot())
    data = (shared_data / CLOUDWATCH).read_bytes()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    code, report, err = scanned(runner, "-")
    assert code == 2, err
    assert report["errors"][0]["source"] == "-"
    assert "DaemonSet fluentd-cloudwatch in namespace 'amazon-cloudwatch'" in report["errors"][0]["message"]


def test_many_files_outside_scope_are_listed_up_to_a_cap(
    cp: ControlPlane, runner: Runner, shared_data: Path, tmp_path: Path
) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    n = MAX_INPUTS_SHOWN + 5
    for i in range(n):
        shutil.copy(shared_data / CLOUDWATCH, tree / f"agent-{i:02}.yaml")
    cp.pull(runner.state, cp.publish(bundle("{namespaces: [monitoring]}")), cp.snapshot())
    code, report, err = scanned(runner, str(tree))
    assert code == 2, err
    errors = report["errors"]
    assert len(errors) == MAX_INPUTS_SHOWN + 1
    assert (
        errors[-1]["message"]
        == "... and 5 more file(s) with objects outside the scope of policy bundle monitoring-only"
    )
    assert len(err.splitlines()) == MAX_INPUTS_SHOWN + 1
    assert report["findings"] == []


def test_objects_outside_scope_are_listed_up_to_a_cap_per_file(
    cp: ControlPlane, runner: Runner, shared_data: Path, tmp_path: Path
) -> None:
    docs = (shared_data / CLOUDWATCH).read_text()
    path = tmp_path / "twice.yaml"
    path.write_text(docs + "\n---\n" + docs)  # 14 objects in amazon-cloudwatch
    cp.pull(runner.state, cp.publish(bundle("{namespaces: [monitoring]}")), cp.snapshot())
    code, report, _ = scanned(runner, str(path))
    assert code == 2
    message = report["errors"][0]["message"]
    assert message.startswith(f"{path}: 14 object(s) outside the scope")
    assert message.count("in namespace 'amazon-cloudwatch'") == MAX_OBJECTS_SHOWN
    assert message.endswith(f"; and {14 - MAX_OBJECTS_SHOWN} more")


_FRESH_SCAN = """
import json, sys
from datetime import datetime
import dutyguard.trust._time as t
from dutyguard import parallel
from dutyguard.cli import main
now = datetime.fromisoformat(sys.argv[1])
t.utc_now = lambda: now
forks = []
real = parallel.fork_map
def counted(*a, **k):
    forks.append(1)
    return real(*a, **k)
parallel.fork_map = counted
code = main(sys.argv[2:])
sys.stderr.write(json.dumps({"code": code, "forks": len(forks)}) + "\\n")
"""


def fresh_scan(runner: Runner, *args: str) -> tuple[int, Any, int]:
    """The gate in a fresh interpreter: forking needs a process with one thread, and this test
    process may hold threads other tests left behind (then the scan quietly stays serial)."""
    argv = ["scan", "--state", str(runner.state), "--trust", str(runner.key)]
    argv += ["--state-file", str(runner.state_file), "-f", "json", *args]
    proc = subprocess.run(
        [sys.executable, "-c", _FRESH_SCAN, NOW.isoformat(), *argv], capture_output=True, check=False
    )
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    status = json.loads(proc.stderr.decode().strip().splitlines()[-1])
    return int(status["code"]), json.loads(proc.stdout), int(status["forks"])


def test_parallel_scan_refuses_the_same_objects(cp: ControlPlane, runner: Runner, shared_data: Path) -> None:
    # Forked workers read the inputs: what they refuse travels back with their errors.
    tree = shared_data / "checkov/tests/kubernetes/checks"
    cp.pull(
        runner.state,
        cp.publish(bundle("{namespaces: [default]}", rules="{include: [{pack: pss-baseline}, {pack: k8s}]}")),
        cp.snapshot(),
    )
    *one, forks = fresh_scan(runner, "-j", "1", str(tree))
    assert forks == 0
    *two, forks = fresh_scan(runner, "-j", "2", str(tree))
    assert forks == 1, "the scan was not shared out"
    assert one[0] == two[0] == 2
    assert one[1]["errors"] == two[1]["errors"]
    assert one[1]["findings"] == two[1]["findings"]
    # (checkov's tree also holds malformed manifests: their errors are kept as they are)
    scoped = [e for e in one[1]["errors"] if "outside the scope of policy bundle" in e["message"]]
    assert len(scoped) == MAX_INPUTS_SHOWN + 1
    assert scoped[-1]["source"] == "<scope>"
    assert scoped[-1]["message"].endswith(
        "more file(s) with objects outside the scope of policy bundle monitoring-only"
    )
    assert any("spec.containers is not a list" in e["message"] for e in one[1]["errors"])
    # objects in the governed namespace were evaluated, none outside it
    assert {f["location"]["namespace"] for f in one[1]["findings"]} <= {"default", None}
    assert any(f["location"]["namespace"] == "default" for f in one[1]["findings"])


# --- what the pipeline says it gates, before reading --------------------------------------------
def test_image_subject_from_registry_outside_scope_refuses_the_gate(
    cp: ControlPlane, runner: Runner, shared_data: Path
) -> None:
    cp.pull(runner.state, cp.publish(bundle("{registries: [registry.example.com/acme]}")), cp.snapshot())
    subject = f"oci://ghcr.io/acme/exporter@{IMAGE_DIGEST}"
    code, out, err = runner.scan(str(shared_data / NODE_EXPORTER), "--subject", subject)
    assert code == 2
    assert out == "", "nothing is scanned for a subject the bundle does not govern"
    assert "policy bundle monitoring-only does not govern this scan" in err
    assert (
        f"image 'ghcr.io/acme/exporter@{IMAGE_DIGEST}' (registry ghcr.io) is not from registry.example.com/acme"
        in err
    )


def test_image_subject_prefix_matches_whole_path_components(
    cp: ControlPlane, runner: Runner, shared_data: Path
) -> None:
    # The same matching as allowedRegistries: acme admits acme/exporter, never acme-evil/exporter.
    cp.pull(runner.state, cp.publish(bundle("{registries: [registry.example.com/acme]}")), cp.snapshot())
    ok = runner.scan(
        str(shared_data / NODE_EXPORTER),
        "--subject",
        f"oci://registry.example.com/acme/exporter@{IMAGE_DIGEST}",
    )
    assert ok[0] == 1, ok[2]
    evil = runner.scan(
        str(shared_data / NODE_EXPORTER),
        "--subject",
        f"oci://registry.example.com/acme-evil/exporter@{IMAGE_DIGEST}",
    )
    assert evil[0] == 2 and "is not from registry.example.com/acme" in evil[2]


def test_git_subject_has_no_registry_to_compare(cp: ControlPlane, runner: Runner, shared_data: Path) -> None:
    cp.pull(runner.state, cp.publish(bundle("{registries: [registry.example.com]}")), cp.snapshot())
    code, _, err = runner.scan(str(shared_data / NODE_EXPORTER), "--subject", "git:" + "ab" * 20)
    assert code == 1, err


def test_bundle_for_other_cluster_refuses_the_gate(
    cp: ControlPlane, runner: Runner, shared_data: Path
) -> None:
    cp.pull(runner.state, cp.publish(bundle("{clusters: [prod-eu, prod-us]}")), cp.snapshot())
    code, out, err = runner.scan(str(shared_data / NODE_EXPORTER), "--cluster", "staging")
    assert code == 2 and out == ""
    assert "cluster 'staging' is not among prod-eu, prod-us" in err
    assert runner.scan(str(shared_data / NODE_EXPORTER), "--cluster", "prod-us")[0] == 1


def test_hostile_namespace_and_name_are_bounded_in_the_refusal(
    cp: ControlPlane, runner: Runner, tmp_path: Path
) -> None:
    # Names come from the scanned file: a megabyte-long namespace must not become a megabyte error.
    huge = "n" * 1_000_000
    path = tmp_path / "hostile.yaml"
    path.write_text(
        f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {'x' * 100_000}\n  namespace: {huge}\n"
    )
    cp.pull(runner.state, cp.publish(bundle("{namespaces: [monitoring]}")), cp.snapshot())
    code, report, err = scanned(runner, str(path))
    assert code == 2, err[:500]
    (error,) = report["errors"]
    assert "1 object(s) outside the scope of policy bundle monitoring-only" in error["message"]
    assert len(error["message"]) < 1000
