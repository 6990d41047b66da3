"""The audit spool on disk (``--spool-dir``): decisions that must reach the trail survive a restart.

Files in the spool directory (0700, ours, not group- or world-writable; every file 0600 and opened
``O_NOFOLLOW`` relative to one directory descriptor, so a path swapped after the checks is never
followed):

``lock``
    ``flock(LOCK_EX)`` for the life of the process: one webhook per directory. The kernel releases
    it when the process dies, however it dies.
``journal`` (and ``journal.old``, the previous segment while it still holds pending decisions)
    one line per must-send decision, written by the request path with one ``os.write`` on an
    ``O_APPEND`` descriptor, no fsync: ``<seq> <crc32 of "<seq> "+event, 8 hex> <event JSON>\\n``.
    The event JSON is the exact text that goes into a batch (ASCII, no newline).
``inflight``
    the batch being delivered, byte for byte: ``dutyguard-inflight-1 <seq> <length> <crc32>\\n`` and
    the body; written tmp + fsync + rename + directory fsync before its first POST.
``acked``
    ``{"acked": seq, "cluster": …, "webhook": …}``, written the same way.

Invariants (the shipper keeps them; this module gives it the operations):

1. Sequence numbers only grow, across restarts too: the next one is above every number in
   ``acked``, ``inflight`` and the journal.
2. Every journaled decision with a sequence number up to ``acked`` needs no replay: it was
   delivered, it is in the saved ``inflight`` batch, or it was dropped and counted.
3. ``inflight`` is saved before ``acked`` moves past the decisions it carries, so a crash between
   the two resends the batch and replays nothing twice (replay starts above the larger of the two).

Reading is strict and bounded (files by size before a byte is read, lines by framing and checksum)
and never stops the webhook: a torn last line (a crash in the middle of a write), a bad checksum,
garbage, an oversized or unreadable file are logged with the file's name, counted in
``dutyguard_admission_audit_spool_errors_total{file,reason}``, and skipped. Only the directory
itself (a symlink, not ours, group/world-writable), a second process on the same directory and a
spool whose ``acked`` names another cluster or webhook are refused (:class:`SpoolError`): those are
configuration mistakes, and guessing would be worse (replaying another cluster's decisions would
report them as this one's).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import stat
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dutyguard.admission.metrics import AdmissionMetrics
from dutyguard.errors import ConfigError

logger = logging.getLogger("dutyguard.admission")

JOURNAL = "journal"
OLD_JOURNAL = "journal.old"
INFLIGHT = "inflight"
ACKED = "acked"
LOCK = "lock"

MAX_RECORD_BYTES = 1024 * 1024
"""A decision larger than this is kept in memory only (counted): real ones are a few KB."""
MAX_ACKED_BYTES = 4096
INFLIGHT_MAGIC = b"dutyguard-inflight-1"
_MAX_HEADER = 128

_OPEN_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # NONBLOCK: a FIFO must not hang us
_OPEN_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_HEX8 = re.compile(rb"[0-9a-f]{8}")


class SpoolError(ConfigError):
    """The spool directory cannot be used safely (refused before the webhook serves)."""


@dataclass(frozen=True, slots=True)
class SavedBatch:
    """The ``inflight`` file: a batch's exact bytes, and the journal position it covers."""

    seq: int
    body: bytes


@dataclass(frozen=True, slots=True)
class Recovered:
    """What a start found: the batch to resend first, then the decisions to queue again, in order."""

    inflight: SavedBatch | None
    records: tuple[tuple[int, bytes], ...]
    overflow: int = 0
    """Pending decisions beyond ``max_records`` (or the byte bound): the oldest, not replayed."""


def frame(seq: int, payload: bytes) -> bytes:
    """One journal line."""
    head = b"%d " % seq
    return b"%s%08x %s\n" % (head, zlib.crc32(payload, zlib.crc32(head)), payload)


def parse_line(line: bytes) -> tuple[int, bytes] | str:
    """``(seq, payload)`` or the reason the line is refused (``garbage``, ``checksum``)."""
    seq_b, sep1, rest = line.partition(b" ")
    crc_b, sep2, payload = rest.partition(b" ")
    if (
        not (sep1 and sep2 and payload)
        or not 0 < len(seq_b) <= 19
        or not seq_b.isdigit()
        or seq_b.startswith(b"0")
        or not _HEX8.fullmatch(crc_b)
    ):
        return "garbage"
    if zlib.crc32(payload, zlib.crc32(seq_b + b" ")) != int(crc_b, 16):
        return "checksum"
    return int(seq_b), payload


def parse_inflight(data: bytes) -> SavedBatch | tuple[str, str]:
    """The saved batch, or (reason, why) it is refused."""
    header, sep, body = data.partition(b"\n")
    parts = header.split(b" ") if sep and len(header) <= _MAX_HEADER else []
    if len(parts) != 4 or parts[0] != INFLIGHT_MAGIC or not _HEX8.fullmatch(parts[3]):
        return "garbage", "not a saved batch"
    seq, length = _digits(parts[1]), _digits(parts[2])
    if seq is None or length is None:
        return "garbage", "not a saved batch"
    if len(body) != length:
        return "torn", f"{len(body)} of {length} bytes"
    if zlib.crc32(body) != int(parts[3], 16):
        return "checksum", "checksum mismatch"
    return SavedBatch(seq, body)


def _digits(b: bytes) -> int | None:
    if not 0 < len(b) <= 19 or not b.isdigit() or (len(b) > 1 and b.startswith(b"0")):
        return None
    return int(b)


def _open_dir(path: Path) -> int:
    """The spool directory, created 0700 if missing, checked on the descriptor we keep."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError as e:
        raise SpoolError(f"spool directory {path}: cannot create it ({e.strerror or e})") from None
    try:
        if stat.S_ISLNK(os.lstat(path).st_mode):
            raise SpoolError(f"spool directory {path} is a symbolic link: refused (give the real directory)")
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        raise SpoolError(f"spool directory {path}: cannot open it ({e.strerror or e})") from None
    try:
        st = os.fstat(fd)  # the directory we hold, not the path: nothing can swap it now
        uid = os.geteuid()
        if st.st_uid != uid:
            raise SpoolError(
                f"spool directory {path} belongs to uid {st.st_uid}, not to this process (uid {uid}): refused"
            )
        if st.st_mode & 0o022:
            raise SpoolError(
                f"spool directory {path} is group- or world-writable (mode {stat.S_IMODE(st.st_mode):04o}): "
                "refused; another user could replace what the webhook replays (chmod 700 it)"
            )
    except BaseException:
        os.close(fd)
        raise
    return fd


def _take_lock(dfd: int, path: Path) -> int:
    import fcntl

    try:
        fd = os.open(
            LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, 0o600, dir_fd=dfd
        )
    except OSError as e:
        raise SpoolError(f"spool lock {path / LOCK}: cannot open it ({e.strerror or e})") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise SpoolError(f"spool lock {path / LOCK} is not a regular file: refused")
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise SpoolError(
            f"spool directory {path} is in use by another webhook process (it holds {path / LOCK}): "
            "two processes must never share a spool; give each its own --spool-dir"
        ) from None
    except BaseException:
        os.close(fd)
        raise
    return fd


class Spool:
    """The files of one spool directory, owned by one :class:`~dutyguard.admission.audit.AuditShipper`.

    Not thread-safe by itself: :meth:`append` and :meth:`trim` run under the shipper's lock (the
    request path appends, the background thread trims); everything else runs on the background
    thread only.
    """

    def __init__(
        self,
        directory: Path,
        dfd: int,
        lock_fd: int,
        *,
        cluster: str,
        webhook: str,
        max_bytes: int,
        max_inflight_bytes: int,
        metrics: AdmissionMetrics,
    ) -> None:
        self.directory = directory
        self._dfd = dfd
        self._lock_fd = lock_fd
        self.cluster = cluster
        self.webhook = webhook
        self.max_bytes = max_bytes
        self.max_inflight_bytes = max_inflight_bytes
        self._record_limit = min(MAX_RECORD_BYTES, max_bytes)
        self._rotate_at = max(max_bytes // 4, 1)
        self.metrics = metrics
        self._fd = -1
        self._last = 0
        self._acked = 0
        self._bytes = 0
        self._old_last = 0
        self._old_bytes = 0
        self._inflight_bytes = 0
        self._skipped = 0

    # --- opening and recovery ------------------------------------------------------------------
    @classmethod
    def open(
        cls,
        directory: Path,
        *,
        cluster: str,
        webhook: str,
        max_bytes: int,
        max_inflight_bytes: int,
        max_records: int,
        metrics: AdmissionMetrics,
        accept: Callable[[bytes], bool],
    ) -> tuple[Spool, Recovered]:
        """Check and lock ``directory``, read what a previous process left, and start a fresh journal
        holding exactly the decisions still to send. Raises :class:`SpoolError` for the directory."""
        dfd = _open_dir(directory)
        try:
            lock_fd = _take_lock(dfd, directory)
        except BaseException:
            os.close(dfd)
            raise
        spool = cls(
            directory,
            dfd,
            lock_fd,
            cluster=cluster,
            webhook=webhook,
            max_bytes=max_bytes,
            max_inflight_bytes=max_inflight_bytes,
            metrics=metrics,
        )
        try:
            return spool, spool._recover(max_records, accept)
        except BaseException:
            spool.close()
            raise

    def _recover(self, max_records: int, accept: Callable[[bytes], bool]) -> Recovered:
        for leftover in (JOURNAL, INFLIGHT, ACKED):  # temporary files of a write a crash interrupted
            self._unlink(f".{leftover}.tmp")
        acked = self._read_acked()
        inflight = self._read_inflight()
        records: list[tuple[int, bytes]] = []
        last = 0
        for name in (OLD_JOURNAL, JOURNAL):
            last = self._read_journal(name, records, last, accept)
        start = max(acked, inflight.seq if inflight is not None else 0)
        pending = [(s, p) for s, p in records if s > start]
        # Keep the newest that fit (the running spool drops the oldest first, too).
        kept: list[tuple[int, bytes]] = []
        size = 0
        for seq, payload in reversed(pending):
            size += len(payload) + 30  # the line's framing: seq, checksum, spaces, newline
            if len(kept) >= max_records or size > self.max_bytes:
                break
            kept.append((seq, payload))
        kept.reverse()
        overflow = len(pending) - len(kept)
        self._last = max(last, start)
        self._acked = acked
        self._inflight_bytes = len(inflight.body) if inflight is not None else 0
        self._start_journal(kept)
        # Everything below the first decision kept is done (acknowledged, in ``inflight``, or
        # counted as overflow); saying so now also records whose spool this is.
        self.set_acked(kept[0][0] - 1 if kept else self._last)
        return Recovered(inflight, tuple(kept), overflow)

    def _read(self, name: str, limit: int) -> bytes | None:
        """A file's bytes, or None when it is absent or refused (counted and logged)."""
        try:
            fd = os.open(name, _OPEN_READ, dir_fd=self._dfd)
        except FileNotFoundError:
            return None
        except OSError as e:
            self._error(name, "unreadable", f"cannot open it ({e.strerror or e}); not replayed")
            return None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                self._error(name, "unreadable", "not a regular file; not replayed")
                return None
            if st.st_size > limit:
                self._error(
                    name, "oversized", f"{st.st_size} bytes, more than the {limit} it can hold; not read"
                )
                return None
            chunks: list[bytes] = []
            total = 0
            while total <= limit:
                chunk = os.read(fd, min(1 << 20, limit + 1 - total))
                if not chunk:
                    break
                chunks.append(chunk)
                total += len(chunk)
            if total > limit:
                self._error(name, "oversized", f"grew past {limit} bytes while read; not read")
                return None
            return b"".join(chunks)
        except OSError as e:
            self._error(name, "unreadable", f"cannot read it ({e.strerror or e}); not replayed")
            return None
        finally:
            os.close(fd)

    def _read_acked(self) -> int:
        data = self._read(ACKED, MAX_ACKED_BYTES)
        if data is None:
            return 0
        try:
            doc = json.loads(data)
        except (ValueError, RecursionError):
            doc = None
        if (
            not isinstance(doc, dict)
            or set(doc) != {"acked", "cluster", "webhook"}
            or type(doc["acked"]) is not int
            or doc["acked"] < 0
            or not isinstance(doc["cluster"], str)
            or not isinstance(doc["webhook"], str)
        ):
            self._error(ACKED, "garbage", "not an acknowledgement record; replaying the whole journal")
            return 0
        if (doc["cluster"], doc["webhook"]) != (self.cluster, self.webhook):
            raise SpoolError(
                f"spool directory {self.directory} holds the decisions of cluster {doc['cluster']!r} "
                f"(webhook {doc['webhook']!r}), not of {self.cluster!r} ({self.webhook!r}): refused, they "
                "would be reported as this cluster's; give this webhook its own --spool-dir"
            )
        return int(doc["acked"])

    def _read_inflight(self) -> SavedBatch | None:
        data = self._read(INFLIGHT, self.max_inflight_bytes + _MAX_HEADER)
        if data is None:  # absent, or refused (counted): nothing replaces it but the next batch
            self._unlink(INFLIGHT)
            return None
        parsed = parse_inflight(data)
        if isinstance(parsed, SavedBatch):
            return parsed
        self._bad_inflight(*parsed)
        return None

    def _bad_inflight(self, reason: str, why: str) -> None:
        self._error(INFLIGHT, reason, f"{why}; the batch it held is lost")
        self._unlink(INFLIGHT)

    def refuse_inflight(self, reason: str, why: str) -> None:
        """The shipper cannot resend the saved batch: count it and remove the file."""
        self._bad_inflight(reason, why)
        self._inflight_bytes = 0

    def _read_journal(
        self, name: str, out: list[tuple[int, bytes]], last: int, accept: Callable[[bytes], bool]
    ) -> int:
        data = self._read(name, self.max_bytes)
        if not data:
            return last
        lines = data.split(b"\n")
        refused: dict[str, int] = {}
        if lines[-1]:  # no newline at the end: the write a crash interrupted
            refused["torn"] = 1
        for line in lines[:-1]:
            parsed = parse_line(line) if len(line) < self._record_limit else "oversized"
            if isinstance(parsed, str):
                refused[parsed] = refused.get(parsed, 0) + 1
                continue
            seq, payload = parsed
            if seq <= last:
                refused["order"] = refused.get("order", 0) + 1
            elif not accept(payload):
                refused["garbage"] = refused.get("garbage", 0) + 1
            else:
                out.append((seq, payload))
                last = seq
        for reason, n in refused.items():
            self.metrics.audit_spool_errors.inc(name, reason, amount=n)
        if refused:
            logger.error(
                "audit spool %s: skipped %s record(s) (%s)",
                self.directory / name,
                sum(refused.values()),
                ", ".join(f"{n} {reason}" for reason, n in sorted(refused.items())),
            )
        return last

    def _start_journal(self, records: list[tuple[int, bytes]]) -> None:
        """A fresh journal holding exactly ``records``: no torn tail for the next line to merge with,
        no refused or acknowledged record left behind."""
        data = b"".join(frame(s, p) for s, p in records)
        if not self._write_atomic(JOURNAL, data):
            logger.error(
                "audit spool %s: no journal; decisions are kept in memory only until this is fixed",
                self.directory,
            )
            return
        self._unlink(OLD_JOURNAL)
        try:
            self._fd = os.open(
                JOURNAL, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=self._dfd
            )
        except OSError as e:
            self._error(
                JOURNAL, "write", f"cannot open it ({e.strerror or e}); decisions kept in memory only"
            )
            return
        self._bytes = len(data)

    # --- the request path (under the shipper's lock) -------------------------------------------
    def append(self, payload: bytes) -> int:
        """Journal one decision; its sequence number, or 0 when it could not be (counted, logged)."""
        if self._fd < 0:
            return self._skip("write", "no journal")
        seq = self._last + 1
        line = frame(seq, payload)
        n = len(line)
        if n > self._record_limit:
            return self._skip("too_large", f"a decision of {n} bytes")
        if self._old_bytes + self._bytes + n > self.max_bytes:
            return self._skip("full", f"{self._old_bytes + self._bytes} of {self.max_bytes} bytes used")
        try:
            written = os.write(self._fd, line)
        except OSError as e:
            self._cut()
            return self._skip("write", e.strerror or str(e))
        if written != n:  # a short write (disk full): cut it off, or the next line would merge with it
            self._cut()
            return self._skip("write", f"short write ({written} of {n} bytes)")
        self._last = seq
        self._bytes += n
        return seq

    def _cut(self) -> None:
        try:
            os.ftruncate(self._fd, self._bytes)
        except OSError as e:
            # The file's end is unknown now: stop journaling rather than write after a torn line.
            logger.error(
                "audit spool %s: cannot repair the journal (%s); journaling stopped", self.directory, e
            )
            os.close(self._fd)
            self._fd = -1

    def _skip(self, reason: str, why: str) -> int:
        self.metrics.audit_spool_errors.inc(JOURNAL, reason)
        self._skipped += 1
        if self._skipped & (self._skipped - 1) == 0:  # the 1st, 2nd, 4th, 8th…: a flood cannot flood the log
            logger.error(
                "audit spool %s: a must-send decision was not journaled (%s: %s), %d so far; it is "
                "delivered unless the webhook stops first",
                self.directory,
                reason,
                why,
                self._skipped,
            )
        return 0

    def trim(self) -> None:
        """Empty the journal once everything in it is acknowledged, or start a new segment when it
        is large and the previous one is gone. Under the shipper's lock."""
        if self._fd < 0:
            return
        try:
            if self._acked >= self._last:
                if self._bytes:
                    os.ftruncate(self._fd, 0)
                    self._bytes = 0
            elif not self._old_last and self._bytes >= self._rotate_at:
                os.rename(JOURNAL, OLD_JOURNAL, src_dir_fd=self._dfd, dst_dir_fd=self._dfd)
                self._old_last, self._old_bytes = self._last, self._bytes
                old, self._fd, self._bytes = self._fd, -1, 0
                os.close(old)
                self._fd = os.open(JOURNAL, _OPEN_NEW | os.O_APPEND, 0o600, dir_fd=self._dfd)
        except OSError as e:
            self._error(JOURNAL, "write", f"cannot trim or rotate it ({e.strerror or e})")
            if self._fd < 0:
                logger.error("audit spool %s: no journal; decisions kept in memory only", self.directory)

    # --- the background thread -----------------------------------------------------------------
    def save_inflight(self, seq: int, body: bytes) -> bool:
        """Save a batch before its first POST; False (counted, logged) when it could not be."""
        if len(body) > self.max_inflight_bytes:
            self._error(INFLIGHT, "too_large", f"a batch of {len(body)} bytes is not saved")
            return False
        header = b"%s %d %d %08x\n" % (INFLIGHT_MAGIC, seq, len(body), zlib.crc32(body))
        if not self._write_atomic(INFLIGHT, header, body):
            return False
        self._inflight_bytes = len(header) + len(body)
        return True

    def drop_inflight(self) -> None:
        """The batch was answered for good. No fsync: if the removal is lost, the batch is resent
        and the control plane, which stores a batch id once, answers 200."""
        self._unlink(INFLIGHT)
        self._inflight_bytes = 0

    def set_acked(self, seq: int) -> None:
        doc = {"acked": seq, "cluster": self.cluster, "webhook": self.webhook}
        if self._write_atomic(ACKED, json.dumps(doc, separators=(",", ":")).encode() + b"\n"):
            self._acked = seq

    def release(self, done: int) -> None:
        """Record that every journaled decision up to ``done`` needs no replay, and delete the old
        segment once all of it is behind that point."""
        if done > self._acked:
            self.set_acked(done)
        if self._old_last and self._acked >= self._old_last:
            self._unlink(OLD_JOURNAL)
            self._old_last = self._old_bytes = 0

    # --- state ---------------------------------------------------------------------------------
    @property
    def journaling(self) -> bool:
        return self._fd >= 0

    @property
    def last(self) -> int:
        return self._last

    @property
    def acked(self) -> int:
        return self._acked

    @property
    def pending(self) -> int:
        """Journaled decisions a restart would replay now."""
        return self._last - self._acked

    @property
    def size(self) -> int:
        """Bytes on disk: journal segments and the saved batch."""
        return self._bytes + self._old_bytes + self._inflight_bytes

    def close(self) -> None:
        """Release the files and the lock (a crash does the same, minus nothing: no flush is needed)."""
        for fd in (self._fd, self._lock_fd, self._dfd):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._fd = self._lock_fd = self._dfd = -1

    # --- helpers -------------------------------------------------------------------------------
    def _write_atomic(self, name: str, *parts: bytes) -> bool:
        tmp = f".{name}.tmp"
        try:
            self._unlink(tmp)
            fd = os.open(tmp, _OPEN_NEW, 0o600, dir_fd=self._dfd)
            try:
                for part in parts:
                    view = memoryview(part)
                    while view:
                        view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, name, src_dir_fd=self._dfd, dst_dir_fd=self._dfd)
            os.fsync(self._dfd)
            return True
        except OSError as e:
            self._unlink(tmp)
            self._error(name, "write", f"cannot write it ({e.strerror or e})")
            return False

    def _unlink(self, name: str) -> None:
        try:
            os.unlink(name, dir_fd=self._dfd)
        except FileNotFoundError:
            pass
        except OSError as e:
            self._error(name, "write", f"cannot remove it ({e.strerror or e})")

    def _error(self, name: str, reason: str, why: str) -> None:
        self.metrics.audit_spool_errors.inc(name, reason)
        logger.error("audit spool %s: %s", self.directory / name, why)
