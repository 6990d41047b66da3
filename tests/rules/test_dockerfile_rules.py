"""Dockerfile rules against the peers' own fixtures (Checkov, Trivy), instruction by instruction, and
against our own cases. Where we deliberately differ from a peer, the test asserts our behaviour and
says why."""

from __future__ import annotations

import collections
import json
import re
from pathlib import Path

import pytest
import yaml

from dutyguard.core.evaluate import evaluate
from dutyguard.core.model import Finding, Severity
from dutyguard.core.policy import Policy
from dutyguard.core.rule import RuleRegistry
from dutyguard.limits import DEFAULT_LIMITS
from dutyguard.rules import default_registry
from dutyguard.rules.dockerfile import rules, secret_name
from dutyguard.sources.dockerfile import Dockerfile, parse_dockerfile
from dutyguard.sources.interface import InputFile
from tests.conftest import SHARED_DATA

DATA = Path(__file__).parent / "data" / "dockerfile"
CHECKOV = SHARED_DATA / "checkov"
TRIVY = SHARED_DATA / "trivy-checks"
REGISTRY = default_registry()


def scan(
    data: bytes | str, name: str = "Dockerfile", policy: Policy | None = None
) -> tuple[Dockerfile, list[Finding]]:
    raw = data.encode() if isinstance(data, str) else data
    df = parse_dockerfile(InputFile(name, raw), DEFAULT_LIMITS)
    ev = evaluate(REGISTRY, policy or Policy(), [df])
    assert not ev.errors, ev.errors
    return df, list(ev.findings)


def hits(text: str, rule: str, policy: Policy | None = None) -> list[tuple[int | None, Severity]]:
    _, found = scan(text, policy=policy)
    return sorted((f.location.line, f.severity) for f in found if f.rule_id == rule)


def lines(text: str, rule: str, policy: Policy | None = None) -> list[int | None]:
    return [line for line, _ in hits(text, rule, policy)]


def instruction_at(df: Dockerfile, line: int | None) -> int:
    assert line is not None
    (ins,) = [i for i in df.instructions if i.start_line <= line <= i.end_line]
    return ins.index


# --- registration ----------------------------------------------------------------------------


def test_every_rule_is_registered_in_the_dockerfile_pack_and_maps_to_controls(registry: RuleRegistry) -> None:
    ours = rules()
    assert len({r.meta.id for r in ours}) == len(ours) == 25
    for r in ours:
        assert r.meta.id.startswith("dockerfile.") and r.meta.pack == "dockerfile"
        assert r.meta.id in registry and r.target is Dockerfile
        assert any(c.startswith(("nist-800-190:", "cis-docker:")) for c in r.meta.controls)
        for peer_ids in r.meta.equivalents.values():
            for peer_id in peer_ids:
                assert r.meta.id in registry.translate(peer_id), peer_id


# --- Checkov graph checks (CKV2_DOCKER_*): every instruction of each fail file ---------------

GRAPH_DIR = CHECKOV / "tests" / "dockerfile" / "graph_builder" / "checks" / "resources"
GRAPH_CHECKS = sorted(p.name for p in GRAPH_DIR.iterdir()) if GRAPH_DIR.is_dir() else []
_TWO_WORD_ARG = re.compile(r"^ARG\s+\w+\s+\S+\s*$")
_BROKEN_QUOTE_CHECKS = {"EnvGitSslNoVerify", "EnvNodeTlsRejectUnauthorized", "EnvNpmConfigStrictSsl"} | {
    "EnvPythonHttpsVerify"
}


def _deliberately_not_flagged(check: str, rel: str, df: Dockerfile, text: list[str]) -> set[int]:
    """Lines Checkov fails that we pass, on purpose.

    - ``ARG NAME 0`` declares two build arguments, NAME and "0", both without defaults (BuildKit's
      ARG grammar has no "NAME value" form): NAME is not set, so nothing is disabled. Checkov's regex
      reads it as ENV's legacy form.
    - ``RUN LOL='123\\'' VAR='0' ...``: inside single quotes a backslash is literal, so the quote
      closes after ``\\``, the next quote opens ``' VAR='``, and the final ``'`` never closes. /bin/sh
      rejects the whole line (syntax error) and runs nothing, so no variable is set.
    """
    out = {n for n, line in enumerate(text, 1) if _TWO_WORD_ARG.match(line)}
    if check in _BROKEN_QUOTE_CHECKS and rel == "fail/Dockerfile.run.quotes":
        assert text[6].startswith("RUN LOL='123\\'' ")
        out.add(7)
    return out


@pytest.mark.parametrize("check", GRAPH_CHECKS)
def test_checkov_graph_check(shared_data: Path, check: str) -> None:
    policy_file = CHECKOV / "checkov" / "dockerfile" / "checks" / "graph_checks" / f"{check}.yaml"
    check_id = yaml.safe_load(policy_file.read_text())["metadata"]["id"]
    ours = set(REGISTRY.translate(check_id))
    assert ours, f"{check_id} has no dutyguard equivalent"
    expected = yaml.safe_load((GRAPH_DIR / check / "expected.yaml").read_text())
    want = collections.Counter(expected.get("fail") or [])
    files = sorted(GRAPH_DIR.joinpath(check).glob("*/Dockerfile*"))
    assert files
    for path in files:
        rel = path.relative_to(GRAPH_DIR / check).as_posix()
        text = path.read_text().split("\n")
        df, found = scan(path.read_bytes(), name=rel)
        flagged = {
            df.instructions[instruction_at(df, f.location.line)].start_line
            for f in found
            if f.rule_id in ours
        }
        if rel.startswith("pass"):
            assert flagged == set(), f"{rel}: {sorted(flagged)}"
            continue
        keywords = {k.rsplit(".", 1)[1] for k in want if k.rsplit(".", 1)[0] == rel}
        skipped = _deliberately_not_flagged(check, rel, df, text)
        every = {i.start_line for i in df.instructions if i.keyword in keywords}
        assert flagged == every - skipped, rel
        for kw in keywords:
            ours_kw = sum(1 for i in df.instructions if i.start_line in flagged and i.keyword == kw)
            theirs = want[f"{rel}.{kw}"] - sum(1 for n in skipped if text[n - 1].startswith(kw))
            assert ours_kw == theirs, (rel, kw)


def test_checkov_graph_fixtures_cover_every_ckv2_docker_check(shared_data: Path) -> None:
    ids = sorted(
        yaml.safe_load(p.read_text())["metadata"]["id"]
        for p in (CHECKOV / "checkov" / "dockerfile" / "checks" / "graph_checks").glob("*.yaml")
    )
    assert len(ids) == 17 and len(GRAPH_CHECKS) == 17
    assert all(REGISTRY.translate(i) for i in ids)


# --- Checkov single checks (CKV_DOCKER_*), resource by resource ---------------------------------

NOT_SECURITY_CHECKOV = {
    "CKV_DOCKER_6": "MAINTAINER is deprecated: style",
    "CKV_DOCKER_9": "apt instead of apt-get: style",
    "CKV_DOCKER_10": "relative WORKDIR: correctness",
    "CKV_DOCKER_11": "duplicate stage alias: BuildKit's own business",
}


def _checkov_single() -> list[dict[str, object]]:
    summary = CHECKOV / "EXPECTED_SUMMARY.json"
    if not summary.is_file():
        return []
    return [
        t for t in json.loads(summary.read_text()) if str(t.get("check_id", "")).startswith("CKV_DOCKER_")
    ]


SINGLE = _checkov_single()


def _strings(value: object) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []


def _resource(resource_id: str) -> tuple[str, str]:
    """``/failure/Dockerfile.simple.RUN`` is (``/failure/Dockerfile.simple``, ``RUN``); ``...Dockerfile.``
    (nothing after the dot) is the file as a whole."""
    file, _, keyword = resource_id.rpartition(".")
    return file, keyword


def test_checkov_checks_we_do_not_implement_are_the_documented_ones(shared_data: Path) -> None:
    missing = {str(t["check_id"]) for t in SINGLE if not REGISTRY.translate(str(t["check_id"]))}
    assert missing == set(NOT_SECURITY_CHECKOV)


@pytest.mark.parametrize(
    "test",
    [t for t in SINGLE if str(t["check_id"]) not in NOT_SECURITY_CHECKOV],
    ids=lambda t: str(t["check_id"]),
)
def test_checkov_example(shared_data: Path, test: dict[str, object]) -> None:
    ours = set(REGISTRY.translate(str(test["check_id"])))
    root = CHECKOV / str(test["example_dir"])
    failed_pairs = {_resource(r) for r in _strings(test.get("failed_resources"))}
    passed_files = {_resource(r)[0] for r in _strings(test.get("passed_resources"))}
    total = 0
    for path in sorted(root.glob("*/Dockerfile*")):
        rel = "/" + path.relative_to(root).as_posix()
        df, found = scan(path.read_bytes(), name=rel)
        mine = [f for f in found if f.rule_id in ours]
        total += len(mine)
        kinds = {df.instructions[instruction_at(df, f.location.line)].keyword for f in mine}
        expected_kinds = {k for f, k in failed_pairs if f == rel}
        if rel in passed_files or not expected_kinds:
            assert mine == [], rel
            continue
        for kind in expected_kinds:
            if kind == "":  # the whole file (no USER, no HEALTHCHECK): we point at the final FROM
                final = df.final_stage
                assert final is not None
                assert df.instructions[final.from_index].start_line in {f.location.line for f in mine}, rel
            else:
                assert kind in kinds, (rel, kind, kinds)
    counts = test["expected_summary"]
    assert isinstance(counts, dict)
    if "failed" in counts:
        assert total == counts["failed"]


# --- Trivy examples ------------------------------------------------------------------------------

NOT_IMPLEMENTED_TRIVY = {
    "DS006": "COPY --from its own stage: BuildKit refuses it",
    "DS007": "several ENTRYPOINTs: only the last counts (style)",
    "DS008": "port out of range: BuildKit refuses it",
    "DS009": "relative WORKDIR: correctness",
    "DS011": "COPY argument slashes: correctness",
    "DS012": "duplicate stage alias: correctness",
    "DS013": "RUN cd: style",
    "DS014": "wget and curl both: style",
    "DS016": "several CMDs: style",
    "DS022": "MAINTAINER: style",
    "DS023": "several HEALTHCHECKs: style",
    "DS030": "WORKDIR under /proc or /dev: not a security boundary the image build controls",
}
TRIVY_BAD_LINES = {
    "DS001": [1],
    "DS002": [1],  # no USER: the final FROM
    "DS004": [3],
    "DS005": [4],  # line 3 ADDs a .tar.gz: an archive ADD unpacks, so COPY would not do (Trivy agrees)
    "DS010": [2],
    "DS015": [2],
    "DS017": [2],
    "DS019": [3],
    "DS020": [2],
    "DS021": [3],
    "DS024": [2],
}


def _trivy_index() -> list[dict[str, object]]:
    index = TRIVY / "CHECK_INDEX.json"
    return json.loads(index.read_text()) if index.is_file() else []


def _short_alias(entry: dict[str, object]) -> str:
    aliases = entry["aliases"]
    assert isinstance(aliases, list)
    return next(str(a) for a in aliases if re.fullmatch(r"DS\d{3}", str(a)))


def test_trivy_checks_we_do_not_implement_are_the_documented_ones(shared_data: Path) -> None:
    docker = [e for e in _trivy_index() if str(e["id"]).startswith("DS")]
    assert len(docker) == 28
    missing = {_short_alias(e) for e in docker if not REGISTRY.translate(_short_alias(e))}
    assert missing == set(NOT_IMPLEMENTED_TRIVY)


@pytest.mark.parametrize("alias", sorted(TRIVY_BAD_LINES))
def test_trivy_examples(shared_data: Path, alias: str) -> None:
    (entry,) = [e for e in _trivy_index() if str(e["id"]).startswith("DS") and _short_alias(e) == alias]
    ours = set(REGISTRY.translate(alias))
    docs = yaml.safe_load((TRIVY / str(entry["examples_file"])).read_text())["dockerfile"]
    for good in docs["good"]:
        _, found = scan(good)
        assert [f for f in found if f.rule_id in ours] == [], good
    (bad,) = docs["bad"]
    _, found = scan(bad)
    assert sorted(f.location.line or 0 for f in found if f.rule_id in ours) == TRIVY_BAD_LINES[alias]


@pytest.mark.parametrize(
    ("golden", "fixture"),
    [
        ("dockerfile.json.golden", "fixtures/repo/dockerfile/Dockerfile"),
        ("dockerfile_file_pattern.json.golden", "fixtures/repo/dockerfile_file_pattern/Customfile"),
        ("dockerfile-custom-policies.json.golden", "fixtures/repo/custom-policy/Dockerfile"),
    ],
)
def test_trivy_integration_goldens(shared_data: Path, golden: str, fixture: str) -> None:
    """Trivy's own output on its fixtures: every built-in DS check it fails, we fail; every one it
    passes and we implement, we pass, except HEALTHCHECK NONE (below)."""
    root = SHARED_DATA / "trivy" / "integration" / "testdata"
    aliases = {str(e["id"]): _short_alias(e) for e in _trivy_index() if str(e["id"]).startswith("DS")}
    results = json.loads((root / golden).read_text())["Results"]
    failing = {
        aliases[m["ID"]] for r in results for m in r.get("Misconfigurations", []) if m["ID"] in aliases
    }
    _, found = scan((root / fixture).read_bytes(), name=fixture)
    ours = {f.rule_id for f in found}
    for alias in aliases.values():
        translated = set(REGISTRY.translate(alias))
        if alias in failing:
            assert translated & ours, alias
        elif alias == "DS026":
            # Trivy passes DS026 when any HEALTHCHECK instruction exists; "HEALTHCHECK NONE" switches
            # health checking off, which is what the rule is about, so we report it (low severity).
            assert [
                (f.location.line, f.message) for f in found if f.rule_id == "dockerfile.no-healthcheck"
            ] == [
                (
                    len((root / fixture).read_text().rstrip().split("\n")),
                    "HEALTHCHECK NONE disables health checking",
                )
            ]
        else:
            assert not translated & ours, alias


# --- a realistic multi-stage file --------------------------------------------------------------


def test_realistic_multistage_dockerfile() -> None:
    path = DATA / "multistage.Dockerfile"
    _, found = scan(path.read_bytes(), name=str(path))
    got = sorted((f.location.line, f.rule_id, f.severity.value) for f in found)
    assert got == [
        (3, "dockerfile.secret-in-env-or-arg", "medium"),  # global ARG NPM_TOKEN: build-arg secret
        (7, "dockerfile.secret-file-copied", "medium"),  # id_rsa in a builder stage, not the image
        (9, "dockerfile.tls-verification-disabled", "high"),  # git -c http.sslVerify=false, 2nd line of RUN
        (11, "dockerfile.package-update-alone", "medium"),
        (14, "dockerfile.secret-in-env-or-arg", "medium"),
        (15, "dockerfile.tls-verification-disabled", "high"),
        (17, "dockerfile.unsafe-file-permissions", "medium"),  # builder stage, but copied into the image
        (19, "dockerfile.no-healthcheck", "low"),
        (20, "dockerfile.secret-in-env-or-arg", "high"),
        (22, "dockerfile.apt-install-recommends", "low"),
        (22, "dockerfile.install-missing-yes", "low"),
        (22, "dockerfile.package-cache-not-cleaned", "low"),
        (22, "dockerfile.unpinned-packages", "low"),
        (23, "dockerfile.pipe-to-shell", "high"),
        (23, "dockerfile.sudo", "medium"),
        (28, "dockerfile.unsafe-file-permissions", "medium"),  # chmod u+s in a heredoc; 1777 /tmp is fine
        (32, "dockerfile.add-remote-source", "medium"),
        (33, "dockerfile.ssh-port", "medium"),
        (34, "dockerfile.root-user", "high"),
    ]


# --- the user ----------------------------------------------------------------------------------


def test_user_is_inherited_from_the_parent_stage() -> None:
    assert lines("FROM alpine:3.20 AS base\nUSER app\nFROM base\nRUN id\n", "dockerfile.root-user") == []


def test_root_in_a_builder_stage_is_fine_only_the_final_stage_counts() -> None:
    text = "FROM golang:1.22 AS b\nUSER root\nFROM alpine:3.20\nUSER 1000:1000\n"
    assert lines(text, "dockerfile.root-user") == []


@pytest.mark.parametrize("user", ["root", "0", "0:0", "root:staff", "00", "ContainerAdministrator"])
def test_root_users(user: str) -> None:
    assert hits(f"FROM alpine:3.20\nUSER app\nUSER {user}\n", "dockerfile.root-user") == [(3, Severity.HIGH)]


def test_missing_user_points_at_the_final_from() -> None:
    assert lines("FROM golang:1.22 AS b\nUSER app\nFROM alpine:3.20\nRUN id\n", "dockerfile.root-user") == [3]


def test_user_from_an_argument_without_default_is_unknown() -> None:
    text = "FROM alpine:3.20\nARG UID\nUSER ${UID}\n"
    assert hits(text, "dockerfile.root-user") == [(3, Severity.MEDIUM)]
    assert hits("FROM alpine:3.20\nARG UID=10001\nUSER $UID\n", "dockerfile.root-user") == []


# --- base images and registries ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ARG TAG=3.20\nFROM alpine:${TAG}\n", []),
        ("ARG TAG=latest\nFROM alpine:${TAG}\n", [(2, Severity.MEDIUM)]),
        ("ARG TAG\nFROM alpine:${TAG:-3.20}\n", []),  # the default is what the build uses as written
        ("ARG TAG\nFROM alpine:$TAG\n", [(2, Severity.LOW)]),  # unknown: reported, not blocking
        ("FROM alpine@sha256:" + "a" * 64 + "\n", []),
        ("FROM localhost:5000/app\n", [(1, Severity.MEDIUM)]),  # the port is not a tag
        ("FROM scratch\n", []),
        ("FROM alpine:3.20 AS Build\nFROM build\n", []),
        ("FROM alpine:3.20\nCOPY --from=nginx:latest /etc/nginx /etc/nginx\n", [(2, Severity.MEDIUM)]),
        ("FROM alpine:3.20 AS build\nFROM alpine:3.20\nCOPY --from=build /a /a\nCOPY --from=0 /b /b\n", []),
    ],
)
def test_unpinned_base_image(text: str, expected: list[tuple[int, Severity]]) -> None:
    assert hits(text, "dockerfile.unpinned-base-image") == expected


def test_untrusted_registry_only_with_an_allow_list() -> None:
    text = (
        "FROM ghcr.io/acme/base:1 AS a\nFROM ghcr.io/acme-evil/base:1 AS b\nFROM alpine:3.20\n"
        "ARG REG\nCOPY --from=${REG}/tools:1 /t /t\n"
    )
    assert lines(text, "dockerfile.untrusted-registry") == []
    policy = Policy(allowed_registries=("ghcr.io/acme",))
    # whole path components only; docker.io is not allowed; an unknown registry fails closed
    assert lines(text, "dockerfile.untrusted-registry", policy) == [2, 3, 5]


def test_untrusted_frontend() -> None:
    assert lines("# syntax=docker/dockerfile:1.7\nFROM alpine:3.20\n", "dockerfile.untrusted-frontend") == []
    text = "# escape=`\n# syntax=evil.example/frontend:1\nFROM alpine:3.20\n"
    assert lines(text, "dockerfile.untrusted-frontend") == [2]


# --- ADD, secrets, files ---------------------------------------------------------------------------


def test_add_rules() -> None:
    text = (
        "FROM alpine:3.20\n"
        "ADD https://example.com/a.zip /a\n"
        "ADD --checksum=sha256:" + "b" * 64 + " https://example.com/b.zip /b\n"
        "ADD https://github.com/acme/app.git#" + "c" * 40 + " /src\n"
        "ADD git@github.com:acme/app.git /src2\n"
        "ADD --checksum=" + "d" * 40 + " https://github.com/acme/lib.git /lib\n"
        "ADD app.tar.gz /opt/\n"
        "ADD ./conf /etc/conf\n"
    )
    assert lines(text, "dockerfile.add-remote-source") == [2, 5]
    assert lines(text, "dockerfile.add-instead-of-copy") == [8]


SECRET_NAMES = "DB_PASSWORD API_KEY apiKey GITHUB_TOKEN AWS_SECRET_ACCESS_KEY AWS_ACCESS_KEY_ID NPM_AUTH"
SECRET_NAMES += " SECRET_KEY_BASE PRIVATE_KEY DB_PASS client_secret HF_TOKEN REACT_APP_OPENAI_API_KEY"
NOT_SECRET_NAMES = (
    "PASSWORD_FILE TOKEN_URL GPG_KEY PUBLIC_KEY PWD AUTH_ENABLED KEYBOARD CACHE_KEY AZURE_CLIENT_ID"
)
NOT_SECRET_NAMES += " SECRET_NAME PATH PASSWORD_MIN_LENGTH AUTHOR"


@pytest.mark.parametrize("name", SECRET_NAMES.split())
def test_secret_names(name: str) -> None:
    assert secret_name(name)


@pytest.mark.parametrize("name", NOT_SECRET_NAMES.split())
def test_not_secret_names(name: str) -> None:
    assert not secret_name(name)


def test_secrets_in_env_and_arg() -> None:
    text = (
        "ARG GITHUB_TOKEN\n"  # no default: still recorded wherever the build passes it
        "FROM alpine:3.20\n"
        "ARG NPM_TOKEN=abc123\n"
        "ARG API_KEY=\n"
        "ENV TOKEN=$NPM_TOKEN\n"
        "ENV LOG=info \\\n"
        "    DB_PASSWORD=hunter2\n"
        "ENV PASSWORD_FILE=/run/secrets/db DB_PASSWORD2=/run/secrets/db\n"
        "ENV GPG_KEY=A035C8C19219BA821ECEA86B64E628F8D684696D\n"
        "ENV GOOGLE_APPLICATION_CREDENTIALS=/app/sa.json\n"
    )
    assert hits(text, "dockerfile.secret-in-env-or-arg") == [
        (1, Severity.MEDIUM),
        (3, Severity.HIGH),
        (5, Severity.HIGH),
        (7, Severity.HIGH),  # the pair's own line inside the continued ENV
        (10, Severity.HIGH),
    ]


def test_secret_files_copied() -> None:
    text = (
        "FROM alpine:3.20 AS build\nCOPY .npmrc /root/.npmrc\n"
        "FROM alpine:3.20\nCOPY id_ed25519 /root/.ssh/\nCOPY .env.example /app/\nCOPY certs/server.key /tls/\n"
        "COPY id_ed25519.pub /root/.ssh/\n"
        "COPY nodesource-repo.key /tmp/\nCOPY vendor.key /etc/apt/keyrings/vendor.key\n"  # public signing keys
    )
    assert hits(text, "dockerfile.secret-file-copied") == [
        (2, Severity.MEDIUM),  # only in a builder stage (and the build cache)
        (4, Severity.HIGH),
        (6, Severity.HIGH),
    ]


def test_passwords_set_in_the_image() -> None:
    text = (
        "FROM ubuntu:24.04\nRUN echo 'root:root' | chpasswd\nRUN useradd -m -p $(openssl passwd x) bob\n"
        "RUN useradd -m alice && passwd -l alice\nRUN echo chpasswd\n"
    )
    assert lines(text, "dockerfile.password-in-image") == [2, 3]


# --- shell ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("run", "flagged"),
    [
        ("curl -fsSL https://get.example.com | sh", True),
        ("curl -fsSL https://get.example.com | sudo -E bash -s -- --yes", True),
        ("wget -qO- https://get.example.com | bash", True),
        ("wget -O - https://x | tee /tmp/log | sh -", True),
        ('sh -c "$(curl -fsSL https://x)"', True),
        ("bash <(curl -s https://x)", True),
        ('eval "$(wget -O- https://x)"', True),
        ("curl -sSL https://x | python3 -", True),
        ("curl -o /tmp/i.sh https://x && sh /tmp/i.sh", False),  # downloaded to a file: verify step possible
        ("wget https://x | sh", False),  # wget writes to a file unless -O -
        ("curl -fsSL https://x | tar xz -C /opt", False),
        ("curl -fsSL https://x | gpg --dearmor -o /usr/share/keyrings/x.gpg", False),
        ("V=$(curl -s https://x/version) && echo $V", False),
        ("echo 'curl https://x | sh'", False),
        ("curl -fsSL https://x | bash -c 'echo ignored stdin'", False),
    ],
)
def test_pipe_to_shell(run: str, flagged: bool) -> None:
    assert lines(f"FROM alpine:3.20\nRUN {run}\n", "dockerfile.pipe-to-shell") == ([2] if flagged else [])


def test_pipe_to_shell_at_container_start_too() -> None:
    assert lines("FROM alpine:3.20\nCMD curl -s https://x | sh\n", "dockerfile.pipe-to-shell") == [2]


@pytest.mark.parametrize(
    ("run", "flagged"),
    [
        ("sudo apt-get install -y git", True),
        ("apt-get update && env DEBIAN_FRONTEND=noninteractive sudo apt-get install -y vim", True),
        ("sh -c 'sudo ls'", True),
        ("find / -name x | xargs sudo rm", True),
        ("doas apk add x", True),
        # hadolint (DL3004) also reads commands, not text; Checkov's substring match flags this one
        ('echo "use sudo to install"', False),
        ("apt-get install -y sudo sudoku", False),
        ("ls # sudo rm -rf /", False),
    ],
)
def test_sudo(run: str, flagged: bool) -> None:
    assert lines(f"FROM debian:12\nRUN {run}\n", "dockerfile.sudo") == ([2] if flagged else [])


def test_sudo_in_heredoc_and_onbuild_point_at_their_lines() -> None:
    text = 'FROM debian:12\nRUN <<EOF\necho "sudo"\nsudo ls\nEOF\nONBUILD RUN sudo make install\n'
    assert lines(text, "dockerfile.sudo") == [4, 6]


@pytest.mark.parametrize(
    ("run", "problems"),
    [
        ("chmod 777 /app", ["world-writable"]),
        ("chmod -R o+w /data", ["world-writable"]),
        ("chmod a=rwx /data", ["world-writable"]),
        ("chmod 1777 /tmp", []),
        ("chmod +t,o+w /shared", []),
        ("chmod u+s /usr/bin/tool", ["setuid"]),
        ("chmod 4755 /usr/bin/tool", ["setuid"]),
        ("chmod g+s /srv/shared", ["setgid"]),
        ("chmod 755 /app && chmod 644 /app/conf", []),
        ("chmod a-s /usr/bin/*", []),
    ],
)
def test_unsafe_file_permissions(run: str, problems: list[str]) -> None:
    _, found = scan(f"FROM alpine:3.20\nRUN {run}\n")
    got = [f.message for f in found if f.rule_id == "dockerfile.unsafe-file-permissions"]
    assert [m.rsplit(" ", 1)[1] for m in got] == problems


def test_copy_chmod_world_writable() -> None:
    text = "FROM alpine:3.20\nCOPY --chmod=777 a /a\nCOPY --chmod=0755 b /b\n"
    assert lines(text, "dockerfile.unsafe-file-permissions") == [2]


def test_insecure_build_steps() -> None:
    text = "FROM alpine:3.20\nRUN --security=insecure ls\nRUN --network=host ls\nRUN --network=none ls\n"
    assert hits(text, "dockerfile.insecure-build-step") == [(2, Severity.HIGH), (3, Severity.MEDIUM)]


# --- verification ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "flagged"),
    [
        ("RUN git -c http.sslVerify=false clone https://x", True),
        ("RUN git config --global http.https://x.sslverify 0", True),
        ("RUN echo insecure >> ~/.curlrc", True),
        ("RUN printf 'check_certificate = off\\n' > /etc/wgetrc", True),
        ("RUN echo 'strict-ssl=false' | tee -a /root/.npmrc", True),
        ("RUN pip config set global.trusted-host pypi.example.com", True),
        ("RUN npm install --strict-ssl=false", True),
        ("RUN apt-get -o Acquire::https::Verify-Peer=false update", True),
        ("ENV GIT_SSL_NO_VERIFY=", True),  # git tests whether it is set, not what it says
        ("ARG GIT_SSL_NO_VERIFY", False),  # declared, unset unless the build passes it
        ("ARG INSECURE=-k\nRUN curl $INSECURE https://x", True),  # through a build variable
        ("RUN curl -o k https://x", False),  # "k" is -o's value here
        ("RUN curl --cacert /etc/ssl/ca.pem https://x", False),
        ("ENV NODE_TLS_REJECT_UNAUTHORIZED=1", False),
    ],
)
def test_tls_verification_disabled(text: str, flagged: bool) -> None:
    found = lines(f"FROM alpine:3.20\n{text}\n", "dockerfile.tls-verification-disabled")
    assert found == ([1 + text.count("\n") + 1] if flagged else [])


@pytest.mark.parametrize(
    ("text", "flagged"),
    [
        ("RUN dnf --setopt=gpgcheck=0 install -y x", True),
        ("RUN microdnf install --nogpgcheck x", True),
        ("ENV GOSUMDB=off", True),
        ("RUN GOSUMDB=off go mod download", True),
        ('RUN echo "deb [trusted=yes] http://x stable main" > /etc/apt/sources.list.d/x.list', True),
        ("RUN zypper --no-gpg-checks in x", True),
        ("RUN apt-get -o APT::Get::AllowUnauthenticated=true install x", True),
        ("RUN rpm --import https://x/key && rpm -i x.rpm", False),
    ],
)
def test_unverified_packages(text: str, flagged: bool) -> None:
    assert lines(f"FROM alpine:3.20\n{text}\n", "dockerfile.unverified-packages") == ([2] if flagged else [])


# --- image metadata --------------------------------------------------------------------------------


def test_healthcheck_is_inherited_and_none_disables_it() -> None:
    base = "FROM alpine:3.20 AS base\nHEALTHCHECK CMD true\n"
    assert lines(base + "FROM base\n", "dockerfile.no-healthcheck") == []
    assert lines(base + "FROM alpine:3.20\n", "dockerfile.no-healthcheck") == [3]
    assert lines(base + "FROM base\nHEALTHCHECK NONE\n", "dockerfile.no-healthcheck") == [4]


@pytest.mark.parametrize(
    ("expose", "flagged"),
    [("22", True), ("22/tcp", True), ("8000-8100 20-25", True), ("22/udp", False), ("2222", False)],
)
def test_ssh_port(expose: str, flagged: bool) -> None:
    assert lines(f"FROM alpine:3.20\nEXPOSE {expose}\n", "dockerfile.ssh-port") == ([2] if flagged else [])


def test_ssh_port_counts_in_the_image_only() -> None:
    text = "FROM alpine:3.20 AS tools\nEXPOSE 22\nFROM alpine:3.20\nARG P=22\nEXPOSE ${P}\n"
    assert lines(text, "dockerfile.ssh-port") == [5]


def test_ssh_server() -> None:
    text = (
        "FROM debian:12\nRUN apt-get update && apt-get install -y openssh-server=1:9.2 curl\n"
        'CMD ["/usr/sbin/sshd", "-D"]\nRUN apt-get install -y openssh-client\n'
    )
    assert lines(text, "dockerfile.ssh-server") == [2, 3]


# --- package managers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("run", "flagged"),
    [
        ("apt-get install curl", True),
        ("apt-get -qq install curl", False),  # -qq implies --yes
        ("apt-get -q=2 install curl", False),
        ("apt-get install --yes curl", False),
        ("apt-get -o APT::Get::Assume-Yes=true install curl", False),
        ("apt-get update", False),
        ("dnf install curl", True),
        ("yum -y install curl", False),
        ("zypper in curl", True),
        ("zypper --non-interactive in curl", False),
    ],
)
def test_install_missing_yes(run: str, flagged: bool) -> None:
    assert lines(f"FROM debian:12\nRUN {run}\n", "dockerfile.install-missing-yes") == ([2] if flagged else [])


def test_apt_install_recommends() -> None:
    text = (
        "FROM debian:12\nRUN apt-get install -y curl\nRUN apt-get install -y --no-install-recommends curl\n"
        "RUN apt-get -o APT::Install-Recommends=false install -y curl\n"
    )
    assert lines(text, "dockerfile.apt-install-recommends") == [2]


def test_package_caches() -> None:
    text = (
        "FROM debian:12 AS build\nRUN apt-get update && apt-get install -y gcc\n"  # builder: not in the image
        "FROM debian:12\n"
        "RUN apt-get update \\\n && apt-get install -y --no-install-recommends curl \\\n"
        " && rm -rf /var/lib/apt/lists/*\n"
        "RUN --mount=type=cache,target=/var/lib/apt/lists apt-get update && apt-get install -y jq\n"
        "RUN apt-get update && apt-get install -y git\n"
        "RUN apk add --no-cache bash && apk add curl\n"
        "RUN pip install --no-cache-dir x && pip3 install y\n"
        "ENV PIP_NO_CACHE_DIR=1\nRUN pip install z\n"
        "RUN dnf install -y x && dnf clean all\nRUN microdnf install x\n"
    )
    _, found = scan(text)
    got = sorted(
        (f.location.line, f.message.split(" ", 2)[0])
        for f in found
        if f.rule_id == "dockerfile.package-cache-not-cleaned"
    )
    assert got == [(8, "apt-get"), (9, "apk"), (10, "pip"), (14, "microdnf")]


def test_package_upgrade() -> None:
    text = "FROM debian:12\nRUN apt-get update && apt-get -y upgrade\nRUN zypper -n dup\nRUN dnf -y upgrade\n"
    assert lines(text, "dockerfile.package-upgrade") == [2, 3]


def test_package_update_alone() -> None:
    text = (
        "FROM debian:12\nRUN apt-get update\n"
        "RUN apt-get install -y x && apt-get update\n"  # the install came first: the update is alone
        "RUN <<EOF\napt-get update\napt-get install -y y\nEOF\n"
        "RUN apk update && apk add --no-cache z\nRUN yum update -y\nRUN zypper refresh\n"
    )
    assert lines(text, "dockerfile.package-update-alone") == [2, 3, 10]


@pytest.mark.parametrize(
    ("run", "unpinned"),
    [
        ("apt-get install -y curl=8.5.0-2 git ./local.deb", "git"),
        ("apk add --no-cache --virtual .deps bash=5.2 curl", "curl"),
        ("pip install -r requirements.txt requests==2.32.3 'urllib3>=2' .", None),
        ("pip install --upgrade pip", "pip"),
        ("npm install", None),
        ("npm i -g npm@latest @scope/tool@1.2.3 @scope/other", "npm@latest, @scope/other"),
        ("go install golang.org/x/tools/gopls@v0.16.0", None),
        ("gem install bundler -v 2.5.0", None),
        ("dnf install -y httpd-2.4.62 mod_ssl", "mod_ssl"),
    ],
)
def test_unpinned_packages(run: str, unpinned: str | None) -> None:
    _, found = scan(f"FROM debian:12\nRUN {run}\n")
    got = [f.message.split(": ", 1)[1] for f in found if f.rule_id == "dockerfile.unpinned-packages"]
    assert got == ([unpinned] if unpinned else [])


# --- what BuildKit refuses -------------------------------------------------------------------------


def test_invalid_instructions_are_findings_and_the_rest_is_still_checked() -> None:
    text = "FROM alpine:3.20\nRUNN sudo ls\nRUN sudo ls\n~\n"
    assert lines(text, "dockerfile.invalid-instruction") == [2, 4]
    assert lines(text, "dockerfile.sudo") == [3]
