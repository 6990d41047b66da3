"""Developers' inline suppressions never silence a finding: each becomes a suppression request
with file, line, syntax, the rule ids it names and what they are in dutyguard."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from dutyguard.core.model import SuppressionRequest
from dutyguard.core.rule import RuleRegistry
from dutyguard.rules import default_registry
from dutyguard.sources.interface import InputFile
from dutyguard.suppressions import MAX_REQUESTS, detect_suppressions
from tests.conftest import make_scanner


@pytest.fixture(scope="module")
def registry() -> RuleRegistry:
    return default_registry()


def detect(registry: RuleRegistry, name: str, text: str) -> list[SuppressionRequest]:
    return detect_suppressions(InputFile(name=name, data=textwrap.dedent(text).encode()), registry)


def brief(reqs: list[SuppressionRequest]) -> list[tuple[int, str, tuple[str, ...], str]]:
    return [(r.line, r.syntax, r.targets, r.reason) for r in reqs]


PRIVILEGED_POD = """\
    apiVersion: v1
    kind: Pod
    metadata:
      name: agent
      annotations:
        {annotation}
    spec:
      containers:
        - name: agent
          image: registry.shop.internal/agent:1.4.2
          securityContext:
            privileged: true
    """


# --- the gate is not silenced --------------------------------------------------------------------
def _scan_pod(
    tmp_path: Path, annotation: str
) -> tuple[list[tuple[str, int | None]], list[SuppressionRequest], int]:
    path = tmp_path / "pod.yaml"
    path.write_text(textwrap.dedent(PRIVILEGED_POD).format(annotation=annotation))
    report = make_scanner().scan([str(path)])
    assert not report.errors
    privileged = [(f.rule_id, f.location.line) for f in report.findings if f.rule_id == "pss.privileged"]
    return privileged, list(report.suppression_requests), report.exit_code


def test_checkov_skip_annotation_does_not_silence_finding(tmp_path: Path) -> None:
    findings, reqs, code = _scan_pod(tmp_path, "checkov.io/skip1: CKV_K8S_16=the agent needs the host")
    assert findings == [("pss.privileged", 12)]
    assert code == 1
    assert brief(reqs) == [(6, "checkov.io/skip", ("CKV_K8S_16",), "the agent needs the host")]
    assert reqs[0].matched_rules == ("pss.privileged",)
    assert reqs[0].file == str(tmp_path / "pod.yaml")


def test_trivy_ignore_comment_does_not_silence_finding(tmp_path: Path) -> None:
    findings, reqs, code = _scan_pod(tmp_path, "#trivy:ignore:AVD-KSV-0017")
    assert findings == [("pss.privileged", 12)]
    assert code == 1
    assert [(r.line, r.syntax, r.targets, r.matched_rules) for r in reqs] == [
        (6, "trivy:ignore", ("AVD-KSV-0017",), ("pss.privileged",))
    ]


def test_dutyguard_ignore_does_not_silence_finding(tmp_path: Path) -> None:
    findings, reqs, code = _scan_pod(
        tmp_path, "# dutyguard:ignore=pss.privileged vendor agent, ticket SEC-42"
    )
    assert findings == [("pss.privileged", 12)]
    assert code == 1
    assert brief(reqs) == [(6, "dutyguard:ignore", ("pss.privileged",), "vendor agent, ticket SEC-42")]


def test_kubescape_ignore_label_does_not_silence_finding(tmp_path: Path) -> None:
    findings, reqs, code = _scan_pod(tmp_path, 'kubescape.io/ignore: "true"')
    assert findings == [("pss.privileged", 12)]
    assert code == 1
    assert brief(reqs) == [(6, "kubescape.io/ignore", (), "true")]


def test_trivyignore_file_does_not_silence_finding(tmp_path: Path) -> None:
    (tmp_path / "pod.yaml").write_text(textwrap.dedent(PRIVILEGED_POD).format(annotation="team: infra"))
    (tmp_path / ".trivyignore").write_text(
        "# accepted by the infra team\nKSV017\nCVE-2024-3094 exp:2025-01-01\n"
    )
    report = make_scanner().scan([str(tmp_path)])
    assert [f.rule_id for f in report.findings if f.rule_id == "pss.privileged"] == ["pss.privileged"]
    assert report.exit_code == 1
    assert [
        (Path(r.file).name, r.line, r.targets, r.matched_rules, r.reason) for r in report.suppression_requests
    ] == [
        (".trivyignore", 2, ("KSV017",), ("pss.privileged",), ""),
        (".trivyignore", 3, ("CVE-2024-3094",), (), "exp:2025-01-01"),
    ]


# --- real third-party inputs ------------------------------------------------------------------------
def test_checkov_suppressed_examples(shared_data: Path, registry: RuleRegistry) -> None:
    path = shared_data / "checkov/tests/kubernetes/checks/example_Suppressed/suppress-checks-PASSED.yaml"
    reqs = detect_suppressions(InputFile(name=str(path), data=path.read_bytes()), registry)
    assert [(r.line, r.syntax, r.targets) for r in reqs] == [
        (10, "checkov.io/skip", ("CKV_K8S_20",)),
        (11, "checkov.io/skip", ("CKV_K8S_14",)),
        (12, "checkov.io/skip", ("CKV_K8S_11",)),
        (42, "bridgecrew.io/skip", ("CKV_K8S_20",)),
        (43, "bridgecrew.io/skip", ("CKV_K8S_14",)),
        (44, "bridgecrew.io/skip", ("CKV_K8S_11",)),
        (104, "checkov.io/skip", ("CKV_K8S_11",)),
        (143, "checkov.io/skip", ("CKV_K8S_1",)),
        (168, "checkov.io/skip", ("CKV_K8S_11",)),
        (192, "checkov.io/skip", ("CKV_K8S_11",)),
        (235, "checkov.io/skip", ("CKV_K8S_11",)),
        (280, "checkov.io/skip", ("CKV_K8S_11",)),
    ]
    assert reqs[0].reason == "I don't care about Privilege Escalation in the first container in this pod"
    assert reqs[1].reason == ""
    # translated through the rules' equivalents (whichever rules exist for them)
    assert all(r.matched_rules == registry.translate(r.targets[0]) for r in reqs)


def test_checkov_skip_comment_on_secret_does_not_silence_it(shared_data: Path) -> None:
    path = shared_data / "checkov/tests/kubernetes/checks/example_Secrets/pod-secretEnvironment-FAILED.yaml"
    report = make_scanner().scan([str(path)])
    assert (48, "secrets.generic-password") in {(f.location.line, f.rule_id) for f in report.findings}
    req = next(r for r in report.suppression_requests if r.line == 48)
    assert (req.syntax, req.targets, req.reason) == ("checkov:skip", ("CKV_SECRET_6",), "")
    assert "secrets.generic-password" in req.matched_rules


# --- each syntax -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        (
            "Dockerfile",
            """\
            # hadolint ignore=DL3008,DL3009
            RUN apt-get install -y curl
            # hadolint global ignore=DL3003
            # checkov:skip=CKV_DOCKER_2,CKV_DOCKER_3:healthcheck comes from the platform
            """,
            [
                (1, "hadolint ignore", ("DL3008", "DL3009"), ""),
                (3, "hadolint global ignore", ("DL3003",), ""),
                (4, "checkov:skip", ("CKV_DOCKER_2", "CKV_DOCKER_3"), "healthcheck comes from the platform"),
            ],
        ),
        (
            "main.tf",
            """\
            resource "x" "y" { # tfsec:ignore:aws-s3-enable-versioning
              #trivy:ignore:AVD-AWS-0089[bucket=logs]:exp:2025-06-30
              # kics-scan ignore-line
              # kics-scan disable=e592a0c5-5bdb-414c-9066-5dba7cdea370,8ce16ad3
              # bridgecrew:skip=CKV_AWS_18
            """,
            [
                (1, "tfsec:ignore", ("aws-s3-enable-versioning",), ""),
                (2, "trivy:ignore", ("AVD-AWS-0089",), "[bucket=logs] exp:2025-06-30"),
                (3, "kics-scan", (), ""),
                (4, "kics-scan", ("e592a0c5-5bdb-414c-9066-5dba7cdea370", "8ce16ad3"), ""),
                (5, "bridgecrew:skip", ("CKV_AWS_18",), ""),
            ],
        ),
        (
            "app.py",
            """\
            DB_PASSWORD = "x"  # nosec B105
            TOKEN = "y"  # noqa: S105, E501
            subprocess.run(cmd, shell=True)  # nosec
            api_key = "z"  # nosec
            import os  # noqa: F401
            key = load()  # gitleaks:allow
            pw = "q"  # pragma: allowlist secret
            # pragma: allowlist nextline secret
            x = 1  # trufflehog:ignore
            """,
            [
                (1, "nosec", ("B105",), ""),
                (2, "noqa", ("S105",), ""),
                (4, "nosec", (), ""),
                (6, "gitleaks:allow", (), ""),
                (7, "pragma: allowlist secret", (), ""),
                (8, "pragma: allowlist secret", (), ""),
                (9, "trufflehog:ignore", (), ""),
            ],
        ),
        (
            "deploy.json",
            """\
            {"metadata": {"annotations": {
              "checkov.io/skip2": "CKV_K8S_20=needs escalation",
              "ignore-check.kube-linter.io/privileged-container": "vendor image",
              "kube-score/ignore": "container-security-context-privileged,pod-probes",
              "polaris.fairwinds.com/runAsPrivileged-exempt": "true",
              "polaris.fairwinds.com/exempt": "false"},
              "labels": {"admission.gatekeeper.sh/ignore": "true"}}}
            """,
            [
                (2, "checkov.io/skip", ("CKV_K8S_20",), "needs escalation"),
                (3, "kube-linter", ("privileged-container",), "vendor image"),
                (4, "kube-score/ignore", ("container-security-context-privileged", "pod-probes"), ""),
                (5, "polaris exempt", ("runAsPrivileged",), ""),
                (7, "admission.gatekeeper.sh/ignore", (), ""),
            ],
        ),
        (
            "exception.yaml",
            """\
            apiVersion: kyverno.io/v2
            kind: PolicyException
            metadata:
              name: allow-agent
            """,
            [(2, "kyverno PolicyException", (), "")],
        ),
    ],
    ids=["dockerfile", "terraform", "python", "annotations-json", "kyverno"],
)
def test_suppression_syntaxes(
    registry: RuleRegistry, name: str, text: str, expected: list[tuple[int, str, tuple[str, ...], str]]
) -> None:
    assert brief(detect(registry, name, text)) == expected


def test_trivyignore_yaml_entries(registry: RuleRegistry) -> None:
    reqs = detect(
        registry,
        "repo/.trivyignore.yaml",
        """\
        misconfigurations:
          - id: AVD-KSV-0017
            statement: the log agent reads host logs
          - id: KSV-0017
        secrets:
          - id: aws-access-key-id
            paths: ["test/fixtures/creds.ini"]
        vulnerabilities:
          - id: CVE-2023-44487
            expired_at: 2025-01-01
        """,
    )
    assert [(r.line, r.targets, r.matched_rules, r.reason) for r in reqs] == [
        (2, ("AVD-KSV-0017",), ("pss.privileged",), "the log agent reads host logs"),
        (4, ("KSV-0017",), ("pss.privileged",), ""),
        (6, ("aws-access-key-id",), ("secrets.aws-access-key-id",), ""),
        (9, ("CVE-2023-44487",), (), ""),
    ]


def test_unparseable_trivyignore_yaml_is_reported_as_everything(registry: RuleRegistry) -> None:
    reqs = detect(registry, ".trivyignore.yaml", "misconfigurations: [\n  - id: KSV017\n")
    assert [(r.line, r.syntax, r.targets) for r in reqs] == [(1, ".trivyignore.yaml", ())]
    assert "invalid YAML" in reqs[0].reason


def test_trivyignore_yaml_alias_bomb_is_refused(registry: RuleRegistry) -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
        f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(9)
    )
    reqs = detect_suppressions(InputFile(name=".trivyignore.yaml", data=bomb.encode()), registry)
    assert [(r.syntax, r.targets) for r in reqs] == [(".trivyignore.yaml", ())]


# --- bounds and hygiene --------------------------------------------------------------------------------
def test_suppression_text_never_includes_the_secret(registry: RuleRegistry) -> None:
    secret = "Vq7Lz2Wp9Kx4Rt1Ym8Nc"
    (req,) = detect(registry, "settings.py", f'DB_PASSWORD = "{secret}"  # pragma: allowlist secret\n')
    assert secret not in req.text
    assert secret not in req.reason
    assert req.text == "pragma: allowlist secret"


def test_suppression_flood_is_capped(registry: RuleRegistry) -> None:
    text = "x = 1  # checkov:skip=CKV_K8S_16:why\n" * (MAX_REQUESTS + 500)
    reqs = detect_suppressions(InputFile(name="flood.py", data=text.encode()), registry)
    assert len(reqs) == MAX_REQUESTS + 1
    assert reqs[-1].syntax == "(limit)"
    assert reqs[-2].line == MAX_REQUESTS
    assert "more than 1000" in reqs[-1].text


def test_long_line_is_cut_around_the_directive(registry: RuleRegistry) -> None:
    text = "a" * 1_000_000 + " # hadolint ignore=DL3008 " + "b" * 1_000_000 + "\n"
    reqs = detect_suppressions(InputFile(name="Dockerfile", data=text.encode()), registry)
    assert brief(reqs) == [(1, "hadolint ignore", ("DL3008",), "")]


def test_invalid_utf8_does_not_hide_a_suppression(registry: RuleRegistry) -> None:
    data = b"\xff\xfe\xfd junk\n# checkov:skip=CKV_K8S_16:legacy \xe9\n"
    reqs = detect_suppressions(InputFile(name="x.yaml", data=data), registry)
    assert [(r.line, r.targets) for r in reqs] == [(2, ("CKV_K8S_16",))]


def test_kustomize_rendering_is_not_reported_twice(registry: RuleRegistry) -> None:
    rendered = InputFile(name="overlay (kustomize)", data=b"# checkov:skip=CKV_K8S_16\n", origin="kustomize")
    member = InputFile(
        name="overlay/pod.yaml", data=b"# checkov:skip=CKV_K8S_16\n", origin="kustomize-member"
    )
    assert detect_suppressions(rendered, registry) == []
    assert len(detect_suppressions(member, registry)) == 1


def test_lookalikes_outside_directives_are_not_requests(registry: RuleRegistry) -> None:
    text = """\
    # We run hadolint in CI and never use nosec on subprocess calls.
    noqa_count = 3
    description: "see the checkov docs about skip annotations"
    """
    assert detect(registry, "notes.py", text) == []
