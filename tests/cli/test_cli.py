"""The CLI contract: exit codes 0/1/2, --output, stdin, --fail-on, rules list/show, lazy rich, progress.

Rules for Kubernetes, Dockerfiles and secrets grow in parallel, so assertions rest on
``pss.privileged`` or on rule-agnostic facts (the exit code must agree with the JSON report).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dutyguard.cli import main, scan_cmd
from dutyguard.core.model import Severity

DUTYGUARD = Path(sys.executable).parent / "dutyguard"
SEVERITIES = [s.value for s in Severity]

PRIVILEGED_POD = """\
apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: prod
spec:
  containers:
    - name: app
      image: registry.example.com/web:1.0
      securityContext:
        privileged: true
"""
CONFIG_MAP = (
    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: prod\ndata:\n  mode: calm\n"
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NO_COLOR", "DUTYGUARD_FAIL_ON", "DUTYGUARD_ALLOWED_REGISTRIES", "FORCE_COLOR"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def privileged(tmp_path: Path) -> Path:
    path = tmp_path / "pod.yaml"
    path.write_text(PRIVILEGED_POD, encoding="utf-8")
    return path


@pytest.fixture
def clean(tmp_path: Path) -> Path:
    path = tmp_path / "settings.yaml"
    path.write_text(CONFIG_MAP, encoding="utf-8")
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def subprocess_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "DUTYGUARD_FAIL_ON", "FORCE_COLOR")}
    env["COLUMNS"] = "120"
    return env


def cli(*argv: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [str(DUTYGUARD), *argv],
        input=stdin,
        capture_output=True,
        timeout=60,
        env=subprocess_env(),
        check=False,
    )


# --- exit codes ------------------------------------------------------------------------------


def test_privileged_pod_fails_the_gate(capsys, privileged: Path) -> None:
    code, out, _ = run(capsys, "scan", "--format", "json", str(privileged))
    assert code == 1
    doc = json.loads(out)
    (f,) = [f for f in doc["findings"] if f["rule_id"] == "pss.privileged"]
    assert f["blocking"] is True
    assert f["location"]["line"] == 11
    assert doc["summary"]["exit_code"] == 1


def test_clean_manifest_passes(capsys, clean: Path) -> None:
    code, out, err = run(capsys, "scan", "-f", "json", str(clean))
    doc = json.loads(out)
    assert doc["summary"]["blocking"] == 0
    assert code == 0, err


@pytest.mark.parametrize("threshold", SEVERITIES)
def test_fail_on_threshold_decides_the_exit_code(capsys, privileged: Path, threshold: str) -> None:
    code, out, _ = run(capsys, "scan", "-f", "json", "--fail-on", threshold.upper(), str(privileged))
    doc = json.loads(out)
    assert doc["policy"]["fail_on"] == threshold
    floor = Severity(threshold).rank
    expected = 1 if any(Severity(f["severity"]).rank >= floor for f in doc["findings"]) else 0
    assert code == expected
    # pss.privileged is critical: it blocks at every threshold.
    assert expected == 1


def test_fail_on_comes_from_the_environment(
    capsys, privileged: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DUTYGUARD_FAIL_ON", "critical")
    code, out, _ = run(capsys, "scan", "-f", "json", str(privileged))
    assert json.loads(out)["policy"]["fail_on"] == "critical"
    assert code == 1


def test_unreadable_input_exits_2_and_still_reports(capsys, privileged: Path, tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    code, out, err = run(capsys, "scan", "-f", "json", str(privileged), str(missing))
    assert code == 2
    doc = json.loads(out)
    assert doc["summary"]["decision"] == "error"
    assert any(f["rule_id"] == "pss.privileged" for f in doc["findings"])  # the rest was still scanned
    assert f"dutyguard: error: {missing}: no such file or directory" in err


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["scan", "--format", "xml", "x.yaml"], "--format"),
        (["scan", "--fail-on", "severe", "x.yaml"], "is not a severity"),
        (["scan"], "Missing argument"),
        (["scan", "-", "-"], "stdin"),
        (["scan", "--max-file-size", "0", "x.yaml"], "--max-file-size"),
        (["scan", "--jobs", "9", "x.yaml"], "--jobs"),
        (["scan", "--jobs", "-1", "x.yaml"], "--jobs"),
        (["scan", "--pss-level", "privileged", "x.yaml"], "--pss-level"),
        (["frobnicate"], "No such command"),
        (["rules", "list", "--format", "yaml"], "--format"),
    ],
)
def test_usage_errors_exit_2_with_a_message(capsys, argv: list[str], needle: str) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert needle in err
    assert "Traceback" not in err
    assert out == ""


def test_invalid_fail_on_in_the_environment_is_a_usage_error(capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DUTYGUARD_FAIL_ON", "urgent")
    code, _, err = run(capsys, "scan", "x.yaml")
    assert code == 2
    assert "DUTYGUARD_FAIL_ON" in err


def test_jobs_from_the_environment_reach_the_scanner(
    capsys, monkeypatch: pytest.MonkeyPatch, privileged: Path
) -> None:
    from dutyguard import engine

    seen: list[int] = []
    real = engine.Scanner.scan

    def spy(self, paths, stdin=None, progress=None, jobs=1):  # type: ignore[no-untyped-def]
        seen.append(jobs)
        return real(self, paths, stdin, progress, jobs)

    monkeypatch.setattr(engine.Scanner, "scan", spy)
    monkeypatch.setenv("DUTYGUARD_JOBS", "3")
    assert run(capsys, "scan", str(privileged))[0] == 1
    monkeypatch.delenv("DUTYGUARD_JOBS")
    assert run(capsys, "scan", str(privileged))[0] == 1
    from dutyguard.parallel import default_jobs

    assert seen == [3, default_jobs()]


# --- output ----------------------------------------------------------------------------------


def test_output_file_gets_the_report_and_stderr_a_summary(capsys, privileged: Path, tmp_path: Path) -> None:
    target = tmp_path / "report.sarif"
    code, out, err = run(capsys, "scan", "-f", "sarif", "-o", str(target), str(privileged))
    assert code == 1
    assert out == ""
    doc = json.loads(target.read_text(encoding="utf-8"))
    assert any(r["ruleId"] == "pss.privileged" for r in doc["runs"][0]["results"])
    assert "dutyguard: FAIL:" in err
    assert f"report written to {target}" in err


def test_unwritable_output_exits_2_without_a_traceback(capsys, privileged: Path, tmp_path: Path) -> None:
    code, _, err = run(capsys, "scan", "-o", str(tmp_path / "no" / "such" / "dir.json"), str(privileged))
    assert code == 2
    assert "--output: cannot write" in err
    assert "Traceback" not in err


def test_an_os_error_no_command_named_is_still_a_message(
    capsys, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The last line of defence of the one handler: a path error a command did not translate.
    def refuse(*_args: object, **_kwargs: object) -> None:
        raise PermissionError(13, "Permission denied", str(tmp_path / "bundle.yaml"))

    monkeypatch.setattr("dutyguard.policy.parse.load_bundle", refuse)
    code, out, err = run(capsys, "policy", "lint", str(tmp_path / "bundle.yaml"))
    assert (code, out) == (2, "")
    assert err == f"dutyguard: error: {tmp_path / 'bundle.yaml'}: Permission denied\n"


def test_stdin_is_scanned_as_a_manifest(capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    class FakeStdin(io.StringIO):
        buffer = io.BytesIO(PRIVILEGED_POD.encode())

    monkeypatch.setattr(sys, "stdin", FakeStdin())
    code, out, _ = run(capsys, "scan", "-f", "json", "-")
    assert code == 1
    (f,) = [f for f in json.loads(out)["findings"] if f["rule_id"] == "pss.privileged"]
    assert f["location"]["file"] == "-"


def test_table_is_the_default_and_uncoloured_off_a_terminal(capsys, privileged: Path) -> None:
    code, out, err = run(capsys, "scan", str(privileged))
    assert code == 1
    assert "\x1b" not in out
    assert str(privileged) in out
    assert "pss.privileged" in out
    assert "built-in default policy (unsigned)" in out
    assert err == ""  # errors are in the table; nothing to repeat


@pytest.mark.parametrize("fmt", ["junit", "markdown"])
def test_every_format_renders_a_real_scan(capsys, privileged: Path, fmt: str) -> None:
    code, out, _ = run(capsys, "scan", "-f", fmt, str(privileged))
    assert code == 1
    assert "pss.privileged" in out


def test_hostile_path_cannot_reach_the_terminal_through_stderr(capsys, tmp_path: Path) -> None:
    evil = tmp_path / "x\x1b]0;pwned\x07\x1b[2J.yaml"
    code, _, err = run(capsys, "scan", "-f", "json", str(evil))
    assert code == 2
    assert "\x1b" not in err
    assert "\x07" not in err
    assert "no such file or directory" in err


# --- rules -----------------------------------------------------------------------------------


def test_rules_list_json_parses(capsys) -> None:
    code, out, _ = run(capsys, "rules", "list", "--format", "json")
    assert code == 0
    rules = json.loads(out)
    ids = [r["id"] for r in rules]
    assert len(ids) == len(set(ids))
    (priv,) = [r for r in rules if r["id"] == "pss.privileged"]
    assert priv["severity"] == "critical"
    assert "pss:privileged" in priv["controls"]
    assert "CKV_K8S_16" in priv["equivalents"]["checkov"]


def test_rules_list_table_and_pack_filter(capsys) -> None:
    code, out, _ = run(capsys, "rules", "list", "--pack", "pss-baseline")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["RULE", "SEVERITY", "PACK", "TITLE"]
    body = [line for line in lines[1:] if line and not line.endswith("(peer ids work too).")]
    assert any(line.startswith("pss.privileged ") for line in body)
    assert all(line.split()[2] == "pss-baseline" for line in body)
    code, _, err = run(capsys, "rules", "list", "--pack", "no-such-pack")
    assert code == 2
    assert "no rule is in pack" in err


def test_rules_show_finds_a_peer_id(capsys) -> None:
    code, out, _ = run(capsys, "rules", "show", "CKV_K8S_16")
    assert code == 0
    assert "pss.privileged: Privileged container" in out
    assert "(CKV_K8S_16 is a peer's id for pss.privileged)" in out
    assert "remediation:" in out
    assert "pss:privileged" in out
    assert "checkov:" in out


def test_rules_show_own_id_as_json(capsys) -> None:
    code, out, _ = run(capsys, "rules", "show", "pss.privileged", "--format", "json")
    assert code == 0
    (rule,) = json.loads(out)
    assert rule["id"] == "pss.privileged"
    assert rule["remediation"]


def test_rules_show_unknown_exits_2(capsys) -> None:
    code, out, err = run(capsys, "rules", "show", "CKV_NOPE_\x1b[2J")
    assert code == 2
    assert out == ""
    assert "no rule matches" in err
    assert "\x1b" not in err


# --- the installed command, as CI runs it ------------------------------------------------------


def test_installed_command_exit_codes(privileged: Path, clean: Path, tmp_path: Path) -> None:
    assert cli("scan", str(clean)).returncode == 0
    assert cli("scan", str(privileged)).returncode == 1
    missing = cli("scan", str(tmp_path / "missing.yaml"))
    assert missing.returncode == 2
    assert b"no such file or directory" in missing.stderr
    usage = cli("scan", "--format", "yaml", str(privileged))
    assert usage.returncode == 2
    assert b"Traceback" not in usage.stderr


def test_installed_command_reads_stdin_and_writes_output(tmp_path: Path) -> None:
    target = tmp_path / "out" / "report.json"
    target.parent.mkdir()
    proc = cli("scan", "-f", "json", "-o", str(target), "-", stdin=PRIVILEGED_POD.encode())
    assert proc.returncode == 1
    assert proc.stdout == b""
    doc = json.loads(target.read_bytes())
    assert any(f["rule_id"] == "pss.privileged" and f["location"]["file"] == "-" for f in doc["findings"])


def test_installed_command_rules_show() -> None:
    proc = cli("rules", "show", "CKV_K8S_16")
    assert proc.returncode == 0
    assert b"pss.privileged" in proc.stdout


def test_help_documents_exit_codes_and_severities() -> None:
    proc = cli("scan", "--help")
    assert proc.returncode == 0
    text = b" ".join(proc.stdout.split()).decode()
    assert "Exit codes: 0" in text
    assert "critical, high, medium, low, info" in text


def test_rich_is_imported_only_for_the_table(privileged: Path) -> None:
    probe = (
        "import sys\n"
        "from dutyguard.cli import main\n"
        "fmt = sys.argv[1]\n"
        "main(['scan', '-f', fmt, '-o', sys.argv[3], sys.argv[2]])\n"
        "print('rich' in sys.modules)\n"
    )
    for fmt, expected in (("json", b"False"), ("sarif", b"False"), ("junit", b"False"), ("table", b"True")):
        proc = subprocess.run(
            [sys.executable, "-c", probe, fmt, str(privileged), str(privileged.parent / f"out.{fmt}")],
            capture_output=True,
            timeout=60,
            env=subprocess_env(),
            check=False,
        )
        assert proc.stdout.strip() == expected, (fmt, proc.stderr)


# --- terminal behaviour ----------------------------------------------------------------------


class _FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_no_color_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    assert scan_cmd._wants_color(_FakeTTY()) is True
    assert scan_cmd._wants_color(io.StringIO()) is False
    monkeypatch.setenv("NO_COLOR", "1")
    assert scan_cmd._wants_color(_FakeTTY()) is False
    monkeypatch.setenv("NO_COLOR", "")  # no-color.org: an empty value does not count
    assert scan_cmd._wants_color(_FakeTTY()) is True


def test_progress_appears_on_a_terminal_with_sanitised_names(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _FakeTTY()
    monkeypatch.setattr(sys, "stderr", fake)
    monkeypatch.setattr(scan_cmd, "PROGRESS_AFTER_SECONDS", 0.0)
    with scan_cmd._ProgressDisplay() as progress:
        progress("first.yaml")
        progress("evil\x1b]0;pwned\x07name.yaml")
    shown = fake.getvalue()
    assert "scanning" in shown
    assert "2 files" in shown
    assert "evilname.yaml" in shown
    assert "pwned" not in shown


def test_progress_stays_silent_off_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    plain = io.StringIO()
    monkeypatch.setattr(sys, "stderr", plain)
    monkeypatch.setattr(scan_cmd, "PROGRESS_AFTER_SECONDS", 0.0)
    with scan_cmd._ProgressDisplay() as progress:
        progress("a.yaml")
    assert plain.getvalue() == ""


def test_command_table_is_the_whole_tree_and_a_scan_builds_only_itself() -> None:
    """A run registers only its own command's module; the table that says which module builds
    which command must therefore list every command of the full tree, or that command vanishes."""
    import subprocess
    import sys

    code = (
        "import sys, typer.main\n"
        "from dutyguard import cli\n"
        "cli.main(['scan', '--help'])\n"
        "partial = sorted(m for m in sys.modules if m.startswith('dutyguard.cli.'))\n"
        "cli._register()\n"
        "full = sorted(typer.main.get_command(cli.app).commands)\n"
        "print(partial); print(full); print(sorted(cli.COMMANDS))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    partial, full, table = out.splitlines()[-3:]
    assert partial == "['dutyguard.cli.scan_cmd']"
    assert full == table
