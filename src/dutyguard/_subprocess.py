"""The one place dutyguard runs another program: no shell, bounded time and output.

Output is read while the program runs and the program is killed as soon as it passes
``max_output`` bytes or ``timeout`` seconds, so a hostile input that makes a renderer print
without end cannot exhaust memory.
"""

from __future__ import annotations

import selectors
import shutil
import subprocess
import time

from dutyguard.errors import InputError

_STDERR_KEPT = 64 * 1024


def run(argv: list[str], *, timeout: float, max_output: int, what: str) -> bytes | InputError:
    exe = shutil.which(argv[0])
    if exe is None:
        return InputError(what, f"{argv[0]} is not on PATH (install it to scan this input)")
    try:
        proc = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            [exe, *argv[1:]], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
    except OSError as e:
        return InputError(what, f"could not run: {e.strerror}")
    assert proc.stdout is not None
    assert proc.stderr is not None
    out, err = bytearray(), bytearray()
    deadline = time.monotonic() + timeout
    problem: str | None = None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ, out)
        sel.register(proc.stderr, selectors.EVENT_READ, err)
        while sel.get_map() and problem is None:
            left = deadline - time.monotonic()
            if left <= 0:
                problem = f"took longer than {timeout:g} s; stopped"
                break
            for key, _ in sel.select(timeout=left):
                chunk = key.fileobj.read1(65536)  # type: ignore[union-attr]
                if not chunk:
                    sel.unregister(key.fileobj)
                    continue
                buf: bytearray = key.data
                buf += chunk
                if buf is out and len(out) > max_output:
                    problem = f"output larger than {max_output} bytes; stopped"
                    break
                if buf is err and len(err) > _STDERR_KEPT:
                    del err[: len(err) - _STDERR_KEPT]
    if problem is not None:
        proc.kill()
    try:
        rc = proc.wait(timeout=5)
    except subprocess.TimeoutExpired:  # pragma: no cover - killed processes exit
        return InputError(what, "did not exit after being stopped")
    finally:
        proc.stdout.close()
        proc.stderr.close()
    if problem is not None:
        return InputError(what, problem)
    if rc != 0:
        lines = err.decode("utf-8", "replace").strip().splitlines()
        return InputError(what, f"failed ({lines[-1] if lines else f'exit {rc}'})")
    return bytes(out)
