"""The one wrapper around external programs: bounded output and time, clear errors, no shell."""

from __future__ import annotations

import time

from dutyguard._subprocess import run
from dutyguard.errors import InputError


def test_endless_output_is_cut_at_the_bound() -> None:
    start = time.monotonic()
    result = run(["yes", "x" * 100], timeout=10, max_output=1_000_000, what="flood")
    assert isinstance(result, InputError)
    assert "output larger than 1000000 bytes" in result.reason
    assert time.monotonic() - start < 5


def test_slow_program_is_stopped_at_the_deadline() -> None:
    start = time.monotonic()
    result = run(["sleep", "30"], timeout=0.5, max_output=100, what="slow")
    assert isinstance(result, InputError)
    assert "took longer than 0.5 s" in result.reason
    assert time.monotonic() - start < 5


def test_failure_reports_the_last_stderr_line_and_success_returns_stdout() -> None:
    failed = run(
        ["sh", "-c", "echo first >&2; echo the reason >&2; exit 3"], timeout=5, max_output=100, what="f"
    )
    assert isinstance(failed, InputError)
    assert failed.reason == "failed (the reason)"
    assert run(["printf", "a;b"], timeout=5, max_output=100, what="ok") == b"a;b"  # no shell: ';' is data


def test_missing_program_is_named() -> None:
    result = run(["dutyguard-no-such-tool"], timeout=5, max_output=100, what="x")
    assert isinstance(result, InputError)
    assert "dutyguard-no-such-tool is not on PATH" in result.reason
