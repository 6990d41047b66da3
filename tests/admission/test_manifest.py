"""The manifests: valid for a current Kubernetes (offline schemas), fail closed, and clean under our own scan."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from dutyguard.admission.certs import CertFiles
from dutyguard.admission.decide import EVALUATED_KINDS
from dutyguard.admission.manifest import ManifestOptions, manifests, render
from dutyguard.cli import main as cli_main
from dutyguard.errors import ConfigError
from tests.conftest import make_scanner

PINNED = "registry.example.com/dutyguard/dutyguard@sha256:" + "ab" * 32
KINDS = [
    "Namespace",
    "ServiceAccount",
    "ClusterRole",  # namespace labels (on by default): read namespaces
    "ClusterRoleBinding",
    "Deployment",
    "Service",
    "PodDisruptionBudget",
    "NetworkPolicy",
    "ValidatingWebhookConfiguration",
]


def _docs(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def _by_kind(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["kind"]: d for d in docs}


@pytest.fixture(scope="module")
def cli_output(tmp_path_factory: pytest.TempPathFactory, certs: CertFiles) -> str:
    out = tmp_path_factory.mktemp("manifest") / "all.yaml"
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = cli_main(["admission", "manifest", "--image", PINNED, "--tls-dir", str(certs.cert.parent)])
    assert rc == 0
    out.write_text(buf.getvalue())
    return buf.getvalue()


def test_manifest_has_every_object(cli_output: str) -> None:
    kinds = [d["kind"] for d in _docs(cli_output)]
    assert kinds == [*KINDS[:4], "Secret", *KINDS[4:]]


@pytest.mark.parametrize("version", [kubernetes_validate.latest_version(), "1.30.0"])
def test_manifest_is_valid_against_the_kubernetes_api_schemas(cli_output: str, version: str) -> None:
    for doc in _docs(cli_output):
        kubernetes_validate.validate(doc, version, strict=True)  # raises on the first problem


def test_schema_check_would_catch_a_broken_manifest(cli_output: str) -> None:
    hook = _by_kind(_docs(cli_output))["ValidatingWebhookConfiguration"]
    hook["webhooks"][0]["sideEffect"] = "None"  # a typo: strict validation must refuse it
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(hook, kubernetes_validate.latest_version(), strict=True)


def test_webhook_configuration_fails_closed_and_exempts_itself(cli_output: str, certs: CertFiles) -> None:
    (hook,) = _by_kind(_docs(cli_output))["ValidatingWebhookConfiguration"]["webhooks"]
    assert hook["failurePolicy"] == "Fail"
    assert hook["sideEffects"] == "None"
    assert hook["admissionReviewVersions"] == ["v1"]
    assert 1 <= hook["timeoutSeconds"] <= 10
    assert hook["namespaceSelector"]["matchExpressions"] == [
        {
            "key": "kubernetes.io/metadata.name",
            "operator": "NotIn",
            "values": ["dutyguard-system", "kube-system"],
        }
    ]
    assert hook["clientConfig"]["service"]["path"] == "/validate"
    assert base64.b64decode(hook["clientConfig"]["caBundle"]) == certs.ca_cert.read_bytes()
    covered = {(g, r) for rule in hook["rules"] for g in rule["apiGroups"] for r in rule["resources"]}
    assert covered == {(g, r) for (g, _k), r in EVALUATED_KINDS.items()} | {("", "pods/ephemeralcontainers")}
    assert all(rule["operations"] == ["CREATE", "UPDATE"] for rule in hook["rules"])


def test_deployment_runs_two_replicas_with_a_disruption_budget(cli_output: str) -> None:
    docs = _by_kind(_docs(cli_output))
    dep, pdb, svc = docs["Deployment"], docs["PodDisruptionBudget"], docs["Service"]
    assert dep["spec"]["replicas"] == 2
    labels = dep["spec"]["template"]["metadata"]["labels"]
    for selector in (
        dep["spec"]["selector"]["matchLabels"],
        pdb["spec"]["selector"]["matchLabels"],
        svc["spec"]["selector"],
    ):
        assert selector.items() <= labels.items()
    assert pdb["spec"]["minAvailable"] == 1
    np = docs["NetworkPolicy"]
    assert np["spec"]["policyTypes"] == ["Ingress", "Egress"]


def test_deployment_passes_dutyguards_own_restricted_scan(cli_output: str, tmp_path: Path) -> None:
    path = tmp_path / "webhook.yaml"
    path.write_text(cli_output)
    report = make_scanner().scan([str(path)])
    assert report.errors == ()
    assert report.pss_level == "restricted"
    # Not only no blocking finding: nothing at all, with the image pinned by digest.
    assert [(f.rule_id, f.location.kind, f.location.field) for f in report.findings] == []
    assert report.exit_code == 0


def test_default_image_only_misses_its_digest(tmp_path: Path) -> None:
    path = tmp_path / "webhook.yaml"
    path.write_text(render(manifests(ManifestOptions(ca_bundle=b"-"))))
    report = make_scanner().scan([str(path)])
    assert report.exit_code == 0
    assert {f.rule_id for f in report.findings} == {"k8s.image-not-pinned-by-digest"}


def test_control_plane_mode_mounts_trust_and_token_as_files(tmp_path: Path) -> None:
    docs = manifests(
        ManifestOptions(
            image=PINNED,
            ca_bundle=b"-",
            control_plane="https://cp.example",
            cluster="prod-1",
            trust_key=b"ed25519:AAAA",
        )
    )
    kinds = _by_kind(docs)
    assert kinds["ConfigMap"]["data"] == {"control-plane.pub": "ed25519:AAAA"}
    args = kinds["Deployment"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--control-plane") + 1] == "https://cp.example"
    assert args[args.index("--token-file") + 1] == "/var/run/secrets/dutyguard/token"
    assert "--token" not in args
    assert all("env" not in c for c in kinds["Deployment"]["spec"]["template"]["spec"]["containers"])
    for doc in docs:
        kubernetes_validate.validate(
            json.loads(json.dumps(doc)), kubernetes_validate.latest_version(), strict=True
        )


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        (ManifestOptions(control_plane="https://cp"), "--trust"),
        (ManifestOptions(control_plane="https://cp", trust_key=b"k"), "--cluster"),
        (ManifestOptions(failure_policy="Open"), "Fail or Ignore"),
        (ManifestOptions(timeout_seconds=60), "between 1 and 30"),
    ],
)
def test_unsafe_or_invalid_options_are_refused(options: ManifestOptions, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        manifests(options)
