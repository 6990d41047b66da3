"""The one place dutyguard runs another program: no shell, bounded time and output."""

from __future__ import annotations

import shutil
import subprocess

from dutyguard.errors import InputError


def run(argv: list[str], *, timeout: float, max_output: int, what: str) -> bytes | InputError:
    exe = shutil.which(argv[0])
    if exe is None:
        return InputError(what, f"{argv[0]} is not on PATH (install it to scan this input)")
    try:
        proc = subprocess.run(  # noqa: S603 - fixed argv, no shell
            [exe, *argv[1:]],
            capture_output=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return InputError(what, f"took longer than {timeout:g} s; stopped")
    except OSError as e:
        return InputError(what, f"could not run: {e.strerror}")
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        return InputError(what, f"failed ({err[-1] if err else f'exit {proc.returncode}'})")
    if len(proc.stdout) > max_output:
        return InputError(what, f"output larger than {max_output} bytes")
    return proc.stdout
