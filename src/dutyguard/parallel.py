"""Sharing a scan's inputs out to forked worker processes.

Python runs one thread of rules at a time, so a big scan uses the other cores through ``fork``:
children inherit the loaded rules and the verified policy for free (nothing is pickled or
re-imported), scan their share, write a compact result into an anonymous memory file and
exit; this process scans the first share itself meanwhile. A child that fails for any reason
(killed, out of memory, a bug) yields ``None`` and the caller scans that share itself: a
failed worker can cost time, never a dropped input.

Forking is only safe while this process has a single thread (another thread could hold a lock
the child then waits on forever), and only used where ``fork`` is the platform's own model.
"""

from __future__ import annotations

import contextlib
import functools
import mmap
import os
import signal
import struct
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

MAX_JOBS = 8
_DONE = b"dutyguard-share-complete"
"""Written after a child's payload: a result without it was cut short."""


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def default_jobs() -> int:
    """One worker per CPU this process may use, at most :data:`MAX_JOBS`."""
    return min(available_cpus(), MAX_JOBS)


def can_fork() -> bool:
    return (
        sys.platform.startswith("linux")
        and hasattr(os, "fork")
        and hasattr(os, "memfd_create")
        and threading.active_count() == 1
    )


def share_out(sizes: Sequence[int], n: int) -> list[list[int]]:
    """Indexes of ``sizes`` split into ``n`` shares of about equal total size (largest first
    into the lightest share), each share in ascending index order."""
    loads = [0] * n
    shares: list[list[int]] = [[] for _ in range(n)]
    for i in sorted(range(len(sizes)), key=lambda i: -sizes[i]):
        k = loads.index(min(loads))
        shares[k].append(i)
        loads[k] += max(sizes[i], 1)
    for share in shares:
        share.sort()
    return shares


class Tally:
    """How many inputs each worker has done, in memory shared with the forked workers (each
    writes only its own slot), so this process can show their progress while they run."""

    def __init__(self, slots: int) -> None:
        self._mm = mmap.mmap(-1, 8 * max(slots, 1))

    def add(self, slot: int) -> None:
        struct.pack_into("q", self._mm, 8 * slot, self.get(slot) + 1)

    def get(self, slot: int) -> int:
        value: int = struct.unpack_from("q", self._mm, 8 * slot)[0]
        return value


def fork_map(
    shares: Sequence[T],
    in_child: Callable[[int, T], bytes],
    here: Callable[[T], R],
    while_waiting: Callable[[], None] | None = None,
) -> tuple[R, list[bytes | None]]:
    """``here(shares[0])`` in this process while forked children run ``in_child(k, shares[k])``
    on the others.

    Returns this process's result and each other share's bytes (``None`` when its child failed).
    ``while_waiting`` is called about 20 times a second while a child is still running.
    """
    children: list[tuple[int, int]] = []
    parent = os.getpid()
    try:
        for slot, share in enumerate(shares[1:], start=1):
            fd = os.memfd_create("dutyguard-share", os.MFD_CLOEXEC)
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:  # pragma: no cover - runs in the child, which never returns
                _child(fd, functools.partial(in_child, slot, share), parent)
            children.append((pid, fd))
        mine = here(shares[0])
        return mine, [_collect(pid, fd, while_waiting) for pid, fd in children]
    except BaseException:
        for pid, _ in children:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        raise
    finally:
        for pid, fd in children:
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, 0)
            os.close(fd)


def _die_with(parent: int) -> None:  # pragma: no cover - child only
    """A CI job cancelled with SIGKILL/SIGTERM must not leave workers scanning on (Linux:
    ``PR_SET_PDEATHSIG``); a parent already gone by now means nobody waits for this share."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:
        os._exit(1)


def _child(fd: int, work: Callable[[], bytes], parent: int) -> None:  # pragma: no cover - child only
    code = 1
    try:
        # The parent decides about interruptions; a child just dies with it.
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        _die_with(parent)
        payload = work()
        view = memoryview(payload + _DONE)
        while view:
            view = view[os.write(fd, view) :]
        code = 0
    except BaseException:  # noqa: S110 - the parent sees the missing marker and redoes the share
        pass
    finally:
        os._exit(code)


def _collect(pid: int, fd: int, while_waiting: Callable[[], None] | None) -> bytes | None:
    if while_waiting is None:
        _, status = os.waitpid(pid, 0)
    else:
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            while_waiting()
            time.sleep(0.05)
    if not os.WIFEXITED(status) or os.WEXITSTATUS(status) != 0:
        return None
    size = os.lseek(fd, 0, os.SEEK_END)
    os.lseek(fd, 0, os.SEEK_SET)
    chunks: list[bytes] = []
    while size > 0:
        chunk = os.read(fd, min(size, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        size -= len(chunk)
    data = b"".join(chunks)
    if not data.endswith(_DONE):
        return None
    return data[: -len(_DONE)]
