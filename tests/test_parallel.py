"""Forked workers: the same report as one process, whatever happens to a worker."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dutyguard import engine, parallel
from dutyguard.core.model import ScanReport
from dutyguard.core.policy import Policy, PSSLevel
from tests.conftest import make_scanner

# Real third-party inputs of every kind the scanner reads: manifests (with findings of every
# pack and malformed ones that are errors), Dockerfiles, planted secrets.
TREES = (
    "checkov/tests/kubernetes/checks/example_PrivilegedContainers",
    "checkov/tests/kubernetes/checks/example_RootContainers",
    "checkov/tests/dockerfile/checks",
    "detect-secrets/test_data",
    "kubesec",
)


@pytest.fixture
def always_fork(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Any scan with jobs > 1 forks; returns the pids of the workers forked."""
    monkeypatch.setattr(engine, "PARALLEL_MIN_FILES", 0)
    monkeypatch.setattr(engine, "PARALLEL_MIN_BYTES", 0)
    forked: list[int] = []
    real_fork = os.fork

    def fork() -> int:
        pid = real_fork()
        if pid:
            forked.append(pid)
        return pid

    monkeypatch.setattr(os, "fork", fork)
    return forked


def _paths(shared_data: Path) -> list[str]:
    paths = [str(shared_data / t) for t in TREES if (shared_data / t).exists()]
    assert len(paths) >= 3, "expected the shared fixtures"
    return paths


def _scan(paths: list[str], jobs: int, policy: Policy | None = None) -> ScanReport:
    return make_scanner(policy).scan(paths, jobs=jobs)


@pytest.mark.skipif(not parallel.can_fork(), reason="fork workers are Linux-only")
def test_forked_scan_equals_one_process(shared_data: Path, always_fork: list[int]) -> None:
    paths = _paths(shared_data)
    serial = _scan(paths, jobs=1)
    assert not always_fork
    assert serial.findings and serial.errors and serial.suppression_requests  # every list exercised
    for jobs in (2, 3):
        assert _scan(paths, jobs=jobs) == serial
    assert len(always_fork) == 1 + 2  # one worker beside this process, then two


@pytest.mark.skipif(not parallel.can_fork(), reason="fork workers are Linux-only")
def test_forked_scan_keeps_the_policy(shared_data: Path, always_fork: list[int]) -> None:
    paths = _paths(shared_data)
    policy = Policy(pss_level=PSSLevel.BASELINE, enabled_rules=frozenset({"pss.privileged"}))
    report = _scan(paths, jobs=2, policy=policy)
    assert report == _scan(paths, jobs=1, policy=policy)
    assert {f.rule_id for f in report.findings} == {"pss.privileged"}


@pytest.mark.skipif(not parallel.can_fork(), reason="fork workers are Linux-only")
def test_a_worker_that_dies_is_redone_not_dropped(
    shared_data: Path, always_fork: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = _paths(shared_data)
    serial = _scan(paths, jobs=1)
    parent = os.getpid()

    def die(outcomes: list[object]) -> bytes:
        if os.getpid() != parent:
            os.kill(os.getpid(), 9)  # what the OOM killer does
        raise AssertionError("the parent never encodes")

    monkeypatch.setattr(engine, "_encode", die)
    assert _scan(paths, jobs=2) == serial


@pytest.mark.skipif(not parallel.can_fork(), reason="fork workers are Linux-only")
def test_a_truncated_worker_result_is_redone(
    shared_data: Path, always_fork: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A child that exits 0 without its end marker (cut short) is not believed."""
    paths = _paths(shared_data)
    serial = _scan(paths, jobs=1)

    def cut_short(fd: int, share: object, work: Callable[[object], bytes]) -> None:
        payload = work(share)
        os.write(fd, payload[: len(payload) // 2])
        os._exit(0)

    monkeypatch.setattr(parallel, "_child", cut_short)
    assert _scan(paths, jobs=2) == serial


def test_no_fork_while_another_thread_runs(shared_data: Path, always_fork: list[int]) -> None:
    paths = _paths(shared_data)
    stop = threading.Event()
    t = threading.Thread(target=stop.wait)
    t.start()
    try:
        assert not parallel.can_fork()
        report = _scan(paths, jobs=2)
        assert always_fork == []
    finally:
        stop.set()
        t.join()
    assert report == _scan(paths, jobs=1)


def test_small_scans_stay_in_one_process(shared_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(parallel, "fork_map", lambda *a: calls.append(1))
    one = shared_data / TREES[0]
    first = sorted(one.iterdir())[0]
    _scan([str(first)], jobs=8)
    assert calls == []


@given(st.lists(st.integers(0, 10_000_000), max_size=200), st.integers(1, 8))
def test_shares_cover_every_input_once_and_balance(sizes: list[int], n: int) -> None:
    shares = parallel.share_out(sizes, n)
    assert len(shares) == n
    flat = sorted(i for s in shares for i in s)
    assert flat == list(range(len(sizes)))
    assert all(s == sorted(s) for s in shares)
    loads = [sum(max(sizes[i], 1) for i in s) for s in shares]
    # Largest first into the lightest share: none exceeds the average by more than one input.
    assert max(loads) <= sum(loads) / n + max([*sizes, 1])
