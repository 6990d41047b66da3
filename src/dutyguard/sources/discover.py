"""Finding the inputs of a scan: files, directories (recursive), stdin and kustomizations.

Rules of the walk, all deliberate:
- ``.git/`` is never entered; symlinks are never followed out of the scanned tree (a link
  inside the tree to a file inside the tree is read once, under its own name);
- only regular files are read (a FIFO named ``Dockerfile`` must not hang the scan);
- every read is bounded; a larger file is reported, never half-scanned silently;
- a directory holding a ``kustomization.yaml`` is rendered with ``kubectl kustomize`` (no
  plugins, no remote bases) and a Helm chart (``Chart.yaml``) with ``helm template`` (local
  files only); their YAML files are then not read as manifests one by one (templates are not
  YAML until rendered), but are still searched for secrets.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO

from dutyguard import _subprocess
from dutyguard.errors import InputError
from dutyguard.limits import Limits
from dutyguard.sources.interface import InputFile

KUSTOMIZATION_NAMES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
_SKIP_DIRS = frozenset({".git", ".hg", ".svn"})


@dataclass(frozen=True, slots=True)
class Skipped:
    name: str
    reason: str


@dataclass(frozen=True, slots=True)
class Pending:
    """A regular file found by a lazy walk, read later (by whichever worker scans it).

    The read re-checks everything the walk saw (no symlink on the last component, a regular
    file, bounded size), so a file swapped in between is refused, not followed.
    """

    path: str
    name: str
    origin: str
    size: int
    """Size at walk time: only used to share work out evenly."""

    def read(self, limits: Limits) -> InputFile | InputError:
        return _read_file(self.path, self.name, limits, self.origin)


Discovered = InputFile | InputError | Skipped
Planned = InputFile | InputError | Skipped | Pending


def _read_bounded(fh: BinaryIO, limit: int) -> tuple[bytes, int]:
    """At most ``limit`` bytes, plus the true size (or ``limit + 1`` when it is larger)."""
    data = fh.read(limit + 1)
    return data[:limit], len(data)


def read_limit(limits: Limits) -> int:
    return max(limits.max_file_bytes, limits.max_secret_scan_bytes)


def _read_file(path: str, display: str, limits: Limits, origin: str) -> InputFile | InputError:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError as e:
        return InputError(display, f"cannot open: {e.strerror}")
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return InputError(display, "not a regular file")
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data, size = _read_bounded(fh, read_limit(limits))
    except OSError as e:
        return InputError(display, f"cannot read: {e.strerror}")
    finally:
        os.close(fd)
    return InputFile(name=display, data=data, size=max(size, st.st_size), origin=origin)


def _kustomize(path: str, display: str, limits: Limits) -> InputFile | InputError:
    remote = _remote_reference(path, limits)
    if remote:
        return InputError(
            display, f"kustomization refers to a remote resource ({remote}); refused: scans never fetch"
        )
    result = _subprocess.run(
        ["kubectl", "kustomize", "--load-restrictor", "LoadRestrictionsRootOnly", path],
        timeout=limits.subprocess_seconds,
        max_output=limits.max_file_bytes,
        what=f"{display}: kubectl kustomize",
    )
    if isinstance(result, InputError):
        return result
    return InputFile(name=f"{display} (kustomize)", data=result, size=len(result), origin="kustomize")


def _helm(path: str, display: str, limits: Limits) -> InputFile | InputError:
    result = _subprocess.run(
        ["helm", "template", "dutyguard-scan", path],
        timeout=limits.subprocess_seconds,
        max_output=limits.max_file_bytes,
        what=f"{display}: helm template",
    )
    if isinstance(result, InputError):
        return result
    return InputFile(name=f"{display} (helm template)", data=result, size=len(result), origin="kustomize")


def _render_kind(path: str) -> str | None:
    if any(os.path.isfile(os.path.join(path, n)) for n in KUSTOMIZATION_NAMES):
        return "kustomize"
    if os.path.isfile(os.path.join(path, "Chart.yaml")):
        return "helm"
    return None


def _read_regular(path: str, limit: int) -> tuple[bytes, int]:
    """Bounded read of a regular file (a FIFO or device yields nothing rather than blocking)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return b"", 0
        with os.fdopen(fd, "rb", closefd=False) as fh:
            return _read_bounded(fh, limit)
    finally:
        os.close(fd)


def _outside(path: str, real_root: str) -> bool:
    target = os.path.realpath(path)
    return os.path.commonpath([real_root, target]) != real_root


def _escaping_render_file(path: str, real_root: str) -> str | None:
    """A kustomization or Chart.yaml that is a symlink out of the scanned tree (never followed)."""
    for n in (*KUSTOMIZATION_NAMES, "Chart.yaml"):
        p = os.path.join(path, n)
        if os.path.islink(p) and _outside(p, real_root):
            return n
    return None


def _remote_reference(path: str, limits: Limits) -> str | None:
    for n in KUSTOMIZATION_NAMES:
        p = os.path.join(path, n)
        if os.path.isfile(p):
            data, _ = _read_regular(p, limits.max_file_bytes)
            text = data.decode("utf-8", "replace")
            for token in ("://", "github.com/", "git@", "gitlab.com/"):
                if token in text:
                    return token
    return None


def _pending(path: str, display: str, origin: str) -> Pending:
    try:
        size = os.stat(path).st_size
    except OSError:
        size = 0  # the read reports why
    return Pending(path, display, origin, size)


def _walk(root: str, display_root: str, limits: Limits, counter: list[int], lazy: bool) -> Iterator[Planned]:
    real_root = os.path.realpath(root)
    kustomize_roots: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        rel_dir = os.path.relpath(dirpath, root)
        shown_dir = display_root if rel_dir == "." else os.path.join(display_root, rel_dir)
        nested = any(dirpath.startswith(k + os.sep) for k in kustomize_roots)
        render = None if nested else _render_kind(dirpath)
        if render is not None:
            kustomize_roots.append(dirpath)
            escaping = _escaping_render_file(dirpath, real_root)
            if escaping is not None:
                yield InputError(
                    shown_dir, f"{escaping} is a symlink leading outside the scanned tree; refused"
                )
            elif render == "kustomize":
                yield _kustomize(dirpath, shown_dir, limits)
            else:
                yield _helm(dirpath, shown_dir, limits)
        in_kustomization = any(dirpath == k or dirpath.startswith(k + os.sep) for k in kustomize_roots)
        for fname in sorted(filenames):
            counter[0] += 1
            if counter[0] > limits.max_files:
                yield InputError(display_root, f"more than {limits.max_files} files; stopped")
                return
            full = os.path.join(dirpath, fname)
            shown = os.path.join(shown_dir, fname)
            if os.path.islink(full):
                target = os.path.realpath(full)
                if os.path.commonpath([real_root, target]) != real_root:
                    yield Skipped(shown, "symlink leads outside the scanned tree")
                    continue
                if not os.path.isfile(target):
                    yield Skipped(shown, "symlink to something that is not a file")
                    continue
                full = target
            origin = "kustomize-member" if in_kustomization else "file"
            yield _pending(full, shown, origin) if lazy else _read_file(full, shown, limits, origin)


def discover(paths: Sequence[str], limits: Limits, stdin: BinaryIO | None = None) -> Iterator[Discovered]:
    """Every input, read (bounded), in a stable order."""
    for item in plan(paths, limits, stdin, lazy=False):
        assert not isinstance(item, Pending)
        yield item


def plan(
    paths: Sequence[str], limits: Limits, stdin: BinaryIO | None = None, lazy: bool = True
) -> Iterator[Planned]:
    """Like :func:`discover`, but regular files are only found (``Pending``), not read yet.

    Stdin and rendered kustomizations / charts are read here: they exist only once.
    """
    counter = [0]
    for p in paths:
        if p == "-":
            stream = stdin if stdin is not None else sys.stdin.buffer
            data, size = _read_bounded(stream, read_limit(limits))
            yield InputFile(name="-", data=data, size=size, origin="stdin")
        elif os.path.isdir(p):
            yield from _walk(p, p, limits, counter, lazy)
        elif os.path.lexists(p):
            yield _pending(p, p, "file") if lazy else _read_file(p, p, limits, "file")
        else:
            yield InputError(p, "no such file or directory")
