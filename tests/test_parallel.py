"""Forked workers: the same report as one process, whatever happens to a worker."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import threading
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
    "rbac-real-world",  # scan-wide RBAC rules: facts gathered in every worker, judged once
)


_CHILD = """
import json, os, pickle, sys
from dutyguard import engine, parallel
from tests.conftest import make_scanner
engine.PARALLEL_MIN_FILES = engine.PARALLEL_MIN_BYTES = 0
forked = []
real_fork = os.fork
def counting_fork():
    pid = real_fork()
    if pid:
        forked.append(pid)
    return pid
os.fork = counting_fork
{setup}
paths, jobs = json.loads(sys.argv[1]), int(sys.argv[2])
assert parallel.can_fork()
report = make_scanner().scan(paths, jobs=jobs)
sys.stdout.buffer.write(pickle.dumps((report, len(forked))))
"""


def _forked_scan(paths: list[str], jobs: int, setup: str = "") -> tuple[ScanReport, int]:
    """A scan in a fresh interpreter: forking needs a process with one thread, and a test
    process may hold threads other tests left behind (then the scan quietly stays serial)."""
    code = _CHILD.format(setup=setup)
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run(
        [sys.executable, "-c", code, json.dumps(paths), str(jobs)], capture_output=True, cwd=root, check=False
    )
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    report, forks = pickle.loads(proc.stdout)
    assert isinstance(report, ScanReport)
    return report, forks


def _paths(shared_data: Path) -> list[str]:
    paths = [str(shared_data / t) for t in TREES if (shared_data / t).exists()]
    assert len(paths) >= 3, "expected the shared fixtures"
    return paths


def _scan(paths: list[str], jobs: int, policy: Policy | None = None) -> ScanReport:
    return make_scanner(policy).scan(paths, jobs=jobs)


linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork workers are Linux-only")


@linux_only
def test_forked_scan_equals_one_process(shared_data: Path) -> None:
    paths = _paths(shared_data)
    serial = _scan(paths, jobs=1)
    assert serial.findings and serial.errors and serial.suppression_requests  # every list exercised
    assert any(f.rule_id == "rbac.effective-permission" for f in serial.findings)
    for jobs in (2, 3):
        report, forks = _forked_scan(paths, jobs)
        assert forks == jobs - 1  # the workers beside the scanning process itself
        assert report == serial


@linux_only
def test_forked_scan_keeps_the_policy(shared_data: Path) -> None:
    paths = _paths(shared_data)
    setup = (
        "from dutyguard.core.policy import Policy, PSSLevel\n"
        "import tests.conftest as c\n"
        "_make = c.make_scanner\n"
        "make_scanner = lambda: _make(Policy(pss_level=PSSLevel.BASELINE, enabled_rules=frozenset({'pss.privileged'})))\n"
    )
    report, forks = _forked_scan(paths, 2, setup)
    assert forks == 1
    policy = Policy(pss_level=PSSLevel.BASELINE, enabled_rules=frozenset({"pss.privileged"}))
    assert report == _scan(paths, jobs=1, policy=policy)
    assert {f.rule_id for f in report.findings} == {"pss.privileged"}


@linux_only
def test_a_worker_that_dies_is_redone_not_dropped(shared_data: Path) -> None:
    paths = _paths(shared_data)
    setup = (
        "parent = os.getpid()\n"
        "def die(outcomes):\n"
        "    os.kill(os.getpid(), 9)  # what the OOM killer does\n"
        "engine._encode = die\n"
    )
    report, forks = _forked_scan(paths, 2, setup)
    assert forks == 1
    assert report == _scan(paths, jobs=1)


@linux_only
def test_a_truncated_worker_result_is_redone(shared_data: Path) -> None:
    """A child that exits 0 without its end marker (cut short) is not believed."""
    paths = _paths(shared_data)
    setup = (
        "def cut_short(fd, work, parent):\n"
        "    payload = work()\n"
        "    os.write(fd, payload[: len(payload) // 2])\n"
        "    os._exit(0)\n"
        "parallel._child = cut_short\n"
    )
    report, forks = _forked_scan(paths, 2, setup)
    assert forks == 1
    assert report == _scan(paths, jobs=1)


@linux_only
@pytest.mark.parametrize("garbage", ["b'\\x00not marshal'", "__import__('marshal').dumps([('only', 'one')])"])
def test_a_worker_result_that_does_not_read_back_is_redone(shared_data: Path, garbage: str) -> None:
    """Complete (end marker present) but unreadable or of the wrong shape: not believed either."""
    paths = _paths(shared_data)
    report, forks = _forked_scan(paths, 2, f"engine._encode = lambda outcomes: {garbage}\n")
    assert forks == 1
    assert report == _scan(paths, jobs=1)


def test_no_fork_while_another_thread_runs(shared_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "PARALLEL_MIN_FILES", 0)
    monkeypatch.setattr(engine, "PARALLEL_MIN_BYTES", 0)
    calls: list[int] = []
    monkeypatch.setattr(parallel, "fork_map", lambda *a: calls.append(1))
    paths = _paths(shared_data)
    stop = threading.Event()
    t = threading.Thread(target=stop.wait)
    t.start()
    try:
        assert not parallel.can_fork()
        report = _scan(paths, jobs=2)
    finally:
        stop.set()
        t.join()
    assert calls == []
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


@linux_only
def test_workers_die_with_a_killed_scan(shared_data: Path) -> None:
    """A cancelled CI job (SIGKILL) must not leave workers scanning on."""
    import signal
    import time

    setup = (
        "def slow(outcomes):\n"
        "    import time; time.sleep(60)\n"
        "engine._encode = slow\n"
        "_fork = os.fork\n"
        "def announce():\n"
        "    pid = _fork()\n"
        "    if pid:\n"
        "        print(pid, flush=True)\n"
        "    return pid\n"
        "os.fork = announce\n"
    )
    code = _CHILD.format(setup=setup)
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen(
        [sys.executable, "-c", code, json.dumps(_paths(shared_data)), "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        cwd=root,
    )
    assert proc.stdout is not None
    worker = int(proc.stdout.readline())
    os.kill(worker, 0)  # alive, sleeping in its share
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(worker, 0)
        except ProcessLookupError:
            return
        # Reap it if it became our child (it does not: it is re-parented to init).
        time.sleep(0.05)
    os.kill(worker, signal.SIGKILL)
    raise AssertionError(f"worker {worker} outlived its killed parent")


@linux_only
def test_progress_reports_every_worker_file_once_while_it_runs(shared_data: Path) -> None:
    """The progress display hears about the workers' files through shared counters while they
    run, each file once (when they arrive is timing, not asserted here)."""
    paths = _paths(shared_data)
    code = (
        "import json, sys\n"
        "from dutyguard import engine\n"
        "from tests.conftest import make_scanner\n"
        "engine.PARALLEL_MIN_FILES = engine.PARALLEL_MIN_BYTES = 0\n"
        "seen = []\n"
        "make_scanner().scan(json.loads(sys.argv[1]), jobs=2, progress=lambda name: seen.append(name))\n"
        "print(json.dumps(seen))\n"
    )
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run(
        [sys.executable, "-c", code, json.dumps(paths)], capture_output=True, text=True, cwd=root, check=True
    )
    seen = json.loads(proc.stdout)
    names = seen
    serial: list[str] = []
    make_scanner().scan(paths, jobs=1, progress=serial.append)
    assert len(names) == len(set(names))  # nobody twice
    assert set(serial) <= set(names)  # every file read is reported (a worker also reports unreadable ones)
