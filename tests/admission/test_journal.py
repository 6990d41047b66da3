"""The audit spool on disk (``--spool-dir``): journal, saved batch, acknowledged sequence, replay.

A "crash" here is :meth:`AuditShipper.close`: the files and the lock are released and nothing is
flushed or written, which is what the kernel does for a killed process (the page cache keeps what
was written). The end-to-end test with a real SIGKILL is in test_journal_e2e.py. Deliveries go to a
real HTTP server on loopback that keeps the raw bodies, so "the same bytes" is checked byte for byte.
"""

from __future__ import annotations

import json
import os
import random
import stat
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from dutyguard.admission.audit import (
    EVENT_KEYS,
    AuditOptions,
    AuditShipper,
    decision_event,
)
from dutyguard.admission.certs import CertFiles
from dutyguard.admission.journal import ACKED, INFLIGHT, JOURNAL, OLD_JOURNAL, SpoolError, frame, parse_line
from dutyguard.admission.metrics import AdmissionMetrics
from dutyguard.admission.review import parse_review
from dutyguard.admission.state import StateView, builtin_state
from tests.admission.support import pod_request, review
from tests.admission.test_audit import DECIDER, NOW, Stub, pod
from tests.admission.test_audit import record as record_pod

DUTYGUARD = Path(sys.executable).parent / "dutyguard"


class Recorder(Stub):
    """The decisions route (raw bodies kept, answers scripted), answering 201 as the control plane does."""

    def __init__(self) -> None:
        super().__init__(default_status=201)

    def uids(self) -> list[list[str]]:
        """The decisions' uids, per stored batch."""
        return [[e["uid"] for e in json.loads(b)["decisions"]] for b in self.stored]


@pytest.fixture
def cp() -> Iterator[Recorder]:
    r = Recorder()
    yield r
    r.close()


def shipper(url: str, spool: Path, **kw: Any) -> AuditShipper:
    options = AuditOptions(
        url=url,
        cluster=kw.pop("cluster", "prod-1"),
        spool_dir=spool,
        allow_sample_rate=kw.pop("rate", 0.0),
        **kw,
    )
    return AuditShipper(options, lambda: "cluster-token", AdmissionMetrics(), rng=random.Random(7))


def deny(s: AuditShipper, uid: str) -> None:
    record_pod(s, True, uid)


def crash(s: AuditShipper) -> None:
    """What a killed process leaves: the files as written, nothing flushed, the lock released."""
    s.close()


def journal_uids(spool: Path, name: str = JOURNAL) -> list[tuple[int, str]]:
    out = []
    for line in (spool / name).read_bytes().splitlines():
        parsed = parse_line(line)
        assert not isinstance(parsed, str), parsed
        seq, payload = parsed
        out.append((seq, json.loads(payload)["uid"]))
    return out


def acked(spool: Path) -> int:
    return int(json.loads((spool / ACKED).read_bytes())["acked"])


def errors(s: AuditShipper) -> dict[tuple[str, ...], float]:
    return dict(s.metrics.audit_spool_errors._values)


# --- journaling on the request path ------------------------------------------------------------
def test_must_send_decisions_are_journaled_when_record_returns(cp: Recorder, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    s = shipper(cp.url, spool, rate=1.0)
    deny(s, "d1")
    record_pod(s, False, "a1")  # an allow, sampled in full: in memory only
    deny(s, "d2")
    assert journal_uids(spool) == [(1, "d1"), (2, "d2")]
    # The journal holds the exact event the batch will carry.
    assert s.flush_once() == "sent"
    (batch,) = cp.stored
    assert (spool / JOURNAL).read_bytes() == b""  # everything acknowledged: emptied
    events = json.loads(batch)["decisions"]
    assert [e["uid"] for e in events] == ["d1", "a1", "d2"]
    assert stat.S_IMODE(spool.stat().st_mode) == 0o700
    for name in (JOURNAL, ACKED, "lock"):
        assert stat.S_IMODE((spool / name).stat().st_mode) == 0o600, name


def test_sampled_allows_and_counts_are_not_journaled_nor_saved(cp: Recorder, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    s = shipper(cp.url, spool, rate=1.0)
    for i in range(5):
        record_pod(s, False, f"a{i}")
    assert (spool / JOURNAL).read_bytes() == b""
    cp.statuses = [503]
    assert s.flush_once() == "retry"
    assert not (spool / INFLIGHT).exists()  # samples and counts only: nothing a restart must resend
    crash(s)
    s2 = shipper(cp.url, spool)
    assert s2.depth == 0 and s2.inflight is None


def test_event_keys_are_those_of_decision_event() -> None:
    req = parse_review(review(pod_request(pod(True), uid="k")))
    view = StateView(builtin_state())
    event = decision_event(req, DECIDER.decide(req, view), view, NOW, sampled=False)
    assert event.keys() == EVENT_KEYS


# --- replay ----------------------------------------------------------------------------------------
def test_acknowledged_prefix_is_not_replayed(cp: Recorder, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    s = shipper(cp.url, spool)
    deny(s, "d1")
    deny(s, "d2")
    assert s.flush_once() == "sent"
    assert acked(spool) == 2
    deny(s, "d3")
    deny(s, "d4")
    crash(s)
    s2 = shipper(cp.url, spool)
    assert s2.depth == 2
    assert s2.metrics.audit_spool_replayed.value("journal") == 2
    assert s2.flush_once() == "sent"
    assert cp.uids() == [["d1", "d2"], ["d3", "d4"]]  # each once, in order
    deny(s2, "d5")  # numbering goes on after the replayed ones
    assert journal_uids(spool) == [(5, "d5")]


def test_inflight_is_resent_first_with_its_batch_id_and_bytes(cp: Recorder, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    s = shipper(cp.url, spool)
    deny(s, "d1")
    deny(s, "d2")
    cp.statuses = [503]
    assert s.flush_once() == "retry"
    held = s.inflight
    assert held is not None
    assert (spool / INFLIGHT).exists()
    assert acked(spool) == 2  # moved past the saved batch's decisions
    deny(s, "d3")  # arrives while the batch is retried: journaled, for a later batch
    crash(s)

    s2 = shipper(cp.url, spool)
    again = s2.inflight
    assert again is not None
    assert (again.batch_id, again.body, again.decisions) == (held.batch_id, held.body, 2)
    assert s2.metrics.audit_spool_replayed.value("inflight") == 2
    assert s2.metrics.audit_spool_replayed.value("journal") == 1
    assert s2.flush_once() == "sent"
    assert cp.attempts[-1] == held.body  # byte for byte: the control plane sees a repeat
    assert not (spool / INFLIGHT).exists()
    assert s2.flush_once() == "sent"
    assert cp.uids() == [["d1", "d2"], ["d3"]]
    assert json.loads(cp.stored[1])["batchId"] != held.batch_id


def test_decisions_behind_a_full_batch_stay_unacknowledged(cp: Recorder, tmp_path: Path) -> None:
    # The acknowledged sequence stops below the first decision still queued, not at the last one
    # written: d3 did not fit in the saved batch, so a crash must replay it.
    spool = tmp_path / "spool"
    s = shipper(cp.url, spool, batch_size=2)
    for uid in ("d1", "d2", "d3"):
        deny(s, uid)
    cp.statuses = [503]
    assert s.flush_once() == "retry"
    assert acked(spool) == 2
    assert s.on_disk == 3
    crash(s)
    s2 = shipper(cp.url, spool, batch_size=2)
    while s2.flush_once() == "sent":
        pass
    assert cp.uids() == [["d1", "d2"], ["d3"]]


def test_a_crash_between_saving_a_batch_and_acknowledging_it_replays_nothing_twice(
    cp: Recorder, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    s = shipper(cp.url, spool, batch_size=2)
    for uid in ("d1", "d2", "d3"):  # d3 keeps d1 and d2 in the journal (emptied only when all is done)
        deny(s, uid)
    cp.statuses = [503]
    assert s.flush_once() == "retry"
    crash(s)
    assert [uid for _seq, uid in journal_uids(spool)] == ["d1", "d2", "d3"]
    # As if the process died after writing inflight and before writing acked.
    (spool / ACKED).write_text(
        json.dumps({"acked": 0, "cluster": "prod-1", "webhook": "dutyguard-admission"})
    )
    s2 = shipper(cp.url, spool, batch_size=2)
    assert s2.depth == 3  # the saved batch, and only d3 from the journal
    while s2.flush_once() == "sent":
        pass
    assert cp.uids() == [["d1", "d2"], ["d3"]]


def test_a_malformed_batch_leaves_nothing_to_replay(cp: Recorder, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    s = shipper(cp.url, spool)
    deny(s, "d1")
    cp.statuses = [422]
    assert s.flush_once() == "malformed"
    assert not (spool / INFLIGHT).exists()
    crash(s)
    s2 = shipper(cp.url, spool)
    assert s2.depth == 0 and s2.inflight is None


def test_graceful_stop_keeps_undelivered_decisions_for_the_next_start(
    tmp_path: Path, cp: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    spool = tmp_path / "spool"
    s = shipper("http://127.0.0.1:9", spool, timeout_seconds=1, flush_seconds=0.05)
    deny(s, "d1")
    deny(s, "d2")
    s.start()
    s.stop(timeout=5)
    assert s.metrics.audit_dropped.value("shutdown") == 0  # kept, not lost
    assert any("kept in" in r.getMessage() for r in caplog.records)
    s2 = shipper(cp.url, spool)
    while s2.flush_once() == "sent":
        pass
    assert [u for b in cp.uids() for u in b] == ["d1", "d2"]


def test_replay_is_bounded_like_the_running_queue(cp: Recorder, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    s = shipper(cp.url, spool, max_queue=3)
    for i in range(5):
        deny(s, f"d{i}")  # the queue keeps d2-d4 and counts two drops; the journal has all five
    crash(s)
    s2 = shipper(cp.url, spool, max_queue=3)
    assert s2.metrics.audit_dropped.value("queue_full") == 2
    assert s2.flush_once() == "sent"
    assert cp.uids() == [["d2", "d3", "d4"]]  # the newest, as the running spool would have kept
    assert json.loads(cp.stored[0])["dropped"] == {"queue_full": 2}


# --- bounded disk use ------------------------------------------------------------------------------
def test_journal_is_bounded_and_what_does_not_fit_is_counted(cp: Recorder, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    s = shipper(cp.url, spool, spool_max_bytes=64 * 1024)
    for i in range(150):
        deny(s, f"d{i}")
    size = (spool / JOURNAL).stat().st_size
    assert size <= 64 * 1024
    full = s.metrics.audit_spool_errors.value(JOURNAL, "full")
    assert full > 0
    assert len(journal_uids(spool)) == 150 - full
    # Not journaled is not lost: the queue still delivers every one.
    assert s.flush_once() == "sent"
    assert cp.uids() == [[f"d{i}" for i in range(150)]]
    assert (spool / JOURNAL).stat().st_size == 0
    deny(s, "after")
    assert journal_uids(spool) == [(151 - full, "after")]


def test_journal_rotates_under_constant_load(cp: Recorder, tmp_path: Path) -> None:
    # Never everything acknowledged at once (one decision always waits): only rotation keeps the
    # journal inside its bound.
    spool = tmp_path / "spool"
    bound = 64 * 1024
    s = shipper(cp.url, spool, spool_max_bytes=bound, batch_size=1)
    deny(s, "d0")
    rotated = 0
    for i in range(1, 300):
        deny(s, f"d{i}")
        assert s.flush_once() == "sent"
        old = spool / OLD_JOURNAL
        rotated += old.exists()
        on_disk = (spool / JOURNAL).stat().st_size + (old.stat().st_size if old.exists() else 0)
        assert on_disk <= bound
    assert rotated > 0
    assert s.metrics.audit_spool_errors.value(JOURNAL, "full") == 0
    assert s.flush_once() == "sent"
    assert [u for b in cp.uids() for u in b] == [f"d{i}" for i in range(300)]


def test_journal_write_errors_never_fail_the_request_path(cp: Recorder, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    s = shipper(cp.url, spool)
    spool_files = s.spool
    assert spool_files is not None
    full = os.open("/dev/full", os.O_WRONLY)  # every write: ENOSPC
    os.close(spool_files._fd)
    spool_files._fd = full
    deny(s, "d1")  # must not raise
    deny(s, "d2")
    assert s.metrics.audit_spool_errors.value(JOURNAL, "write") == 2
    assert not spool_files.journaling  # the file's end is unknown: journaling stopped, not guessed
    assert s.flush_once() == "sent"
    assert cp.uids() == [["d1", "d2"]]


# --- hostile and broken files: counted, logged with the name, never a crash ------------------------
def test_torn_tail_is_ignored_and_counted(cp: Recorder, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    s = shipper(cp.url, spool)
    for uid in ("d1", "d2", "d3"):
        deny(s, uid)
    crash(s)
    data = (spool / JOURNAL).read_bytes()
    (spool / JOURNAL).write_bytes(data[:-40])  # the last write cut short
    s2 = shipper(cp.url, spool)
    assert s2.metrics.audit_spool_errors.value(JOURNAL, "torn") == 1
    assert [seq for seq, _ in journal_uids(spool)] == [1, 2]
    deny(s2, "d4")  # appended after a clean end, not glued to the torn bytes
    crash(s2)
    s3 = shipper(cp.url, spool)
    assert errors(s3) == {}
    assert s3.flush_once() == "sent"
    assert cp.uids() == [["d1", "d2", "d4"]]


def test_bad_checksum_record_is_skipped_and_counted(
    cp: Recorder, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = tmp_path / "spool"
    s = shipper(cp.url, spool)
    for uid in ("d1", "d2", "d3"):
        deny(s, uid)
    crash(s)
    lines = (spool / JOURNAL).read_bytes().splitlines(keepends=True)
    lines[1] = lines[1].replace(b'"uid":"d2"', b'"uid":"d9"')  # still valid JSON, still framed
    (spool / JOURNAL).write_bytes(b"".join(lines))
    s2 = shipper(cp.url, spool)
    assert errors(s2) == {(JOURNAL, "checksum"): 1}
    assert any(
        str(spool / JOURNAL) in r.getMessage() and "checksum" in r.getMessage() for r in caplog.records
    )
    assert s2.flush_once() == "sent"
    assert cp.uids() == [["d1", "d3"]]


def test_a_framed_line_that_is_not_our_event_is_not_replayed(cp: Recorder, tmp_path: Path) -> None:
    # Right checksum, wrong content: a sampled allow, NaN, another shape. It would get a whole
    # batch refused by the control plane.
    spool = tmp_path / "spool"
    s = shipper(cp.url, spool)
    deny(s, "d1")
    crash(s)
    good = json.loads(parse_line((spool / JOURNAL).read_bytes().rstrip(b"\n"))[1])  # type: ignore[index]
    forged = [
        json.dumps({**good, "uid": "x1", "sampled": True}).encode(),
        json.dumps({**good, "uid": "x2"}).encode().replace(b"false", b"NaN", 1),
        json.dumps({"uid": "x3"}).encode(),
        b"[1, 2, 3]",
    ]
    with (spool / JOURNAL).open("ab") as f:
        for i, payload in enumerate(forged, start=2):
            f.write(frame(i, payload))
    s2 = shipper(cp.url, spool)
    assert errors(s2) == {(JOURNAL, "garbage"): 4}
    assert s2.flush_once() == "sent"
    assert cp.uids() == [["d1"]]


def test_replayed_sequence_numbers_must_increase(cp: Recorder, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    s = shipper(cp.url, spool)
    deny(s, "d1")
    deny(s, "d2")
    crash(s)
    first = (spool / JOURNAL).read_bytes().splitlines(keepends=True)[0]
    with (spool / JOURNAL).open("ab") as f:
        f.write(first)  # a valid line again: replaying it would send d1 twice
    s2 = shipper(cp.url, spool)
    assert errors(s2) == {(JOURNAL, "order"): 1}
    assert s2.flush_once() == "sent"
    assert cp.uids() == [["d1", "d2"]]


@pytest.mark.parametrize("name", [JOURNAL, INFLIGHT, ACKED])
def test_garbage_files_do_not_stop_the_webhook(
    cp: Recorder, tmp_path: Path, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    spool = tmp_path / "spool"
    spool.mkdir(mode=0o700)
    (spool / name).write_bytes(random.Random(5).randbytes(20_000))
    s = shipper(cp.url, spool)
    counted = errors(s)
    assert counted and all(file == name for file, _reason in counted)
    assert any(str(spool / name) in r.getMessage() for r in caplog.records if r.levelname == "ERROR")
    assert s.depth == 0
    deny(s, "d1")  # the spool works after it
    assert journal_uids(spool) == [(1, "d1")]
    assert s.flush_once() == "sent"
    assert cp.uids() == [["d1"]]


def test_oversized_files_are_refused_unread(cp: Recorder, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir(mode=0o700)
    bound = 64 * 1024
    for name in (JOURNAL, INFLIGHT, ACKED):
        with (spool / name).open("wb") as f:
            f.truncate(64 * 1024 * 1024)  # sparse: nothing to read, and nothing is read
    s = shipper(cp.url, spool, spool_max_bytes=bound)
    assert errors(s) == {(JOURNAL, "oversized"): 1, (INFLIGHT, "oversized"): 1, (ACKED, "oversized"): 1}
    assert (spool / JOURNAL).stat().st_size == 0  # replaced by a fresh journal
    assert not (spool / INFLIGHT).exists()
    deny(s, "d1")
    assert journal_uids(spool) == [(1, "d1")]


def test_symlink_or_fifo_in_place_of_a_spool_file_is_not_followed(cp: Recorder, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir(mode=0o700)
    outside = tmp_path / "outside"
    planted = frame(1, b"{}")
    outside.write_bytes(planted)
    (spool / JOURNAL).symlink_to(outside)
    os.mkfifo(spool / INFLIGHT)  # opening it for reading must not hang the start
    s = shipper(cp.url, spool)
    assert errors(s) == {(JOURNAL, "unreadable"): 1, (INFLIGHT, "unreadable"): 1}
    deny(s, "d1")
    assert outside.read_bytes() == planted  # written to the spool's own file, not through the link
    assert not (spool / JOURNAL).is_symlink()
    assert journal_uids(spool) == [(1, "d1")]


# --- the directory: private, ours, one process -----------------------------------------------------
def test_spool_dir_is_created_private(cp: Recorder, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    old = os.umask(0)  # even with a permissive umask, the directory is 0700
    try:
        shipper(cp.url, spool)
    finally:
        os.umask(old)
    assert stat.S_IMODE(spool.stat().st_mode) == 0o700


def test_symlinked_spool_dir_is_refused(cp: Recorder, tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    link = tmp_path / "spool"
    link.symlink_to(real)
    with pytest.raises(SpoolError, match=f"{link} is a symbolic link"):
        shipper(cp.url, link)
    assert list(real.iterdir()) == []


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o703])
def test_group_or_world_writable_spool_dir_is_refused(cp: Recorder, tmp_path: Path, mode: int) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    spool.chmod(mode)
    with pytest.raises(SpoolError, match=f"{spool} is group- or world-writable") as e:
        shipper(cp.url, spool)
    assert f"{mode:04o}" in str(e.value)


def test_spool_dir_of_another_user_is_refused(
    cp: Recorder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = tmp_path / "spool"
    spool.mkdir(mode=0o700)
    if os.geteuid() == 0:
        os.chown(spool, 65534, 65534)  # nobody's
    else:
        uid = os.geteuid()
        monkeypatch.setattr(os, "geteuid", lambda: uid + 1)
    with pytest.raises(SpoolError, match=f"{spool} belongs to uid"):
        shipper(cp.url, spool)


def test_a_spool_of_another_cluster_is_refused(cp: Recorder, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    s = shipper(cp.url, spool, cluster="prod-1")
    deny(s, "d1")
    crash(s)
    with pytest.raises(SpoolError, match="holds the decisions of cluster 'prod-1'"):
        shipper(cp.url, spool, cluster="prod-2")
    # Refused before anything was rewritten: the owner still finds its decision.
    s2 = shipper(cp.url, spool, cluster="prod-1")
    assert s2.depth == 1


def test_a_saved_batch_of_another_cluster_is_not_resent(cp: Recorder, tmp_path: Path) -> None:
    # Well framed, right checksum, but another cluster's: resent under this cluster's token it would
    # be refused for ever (403), holding every later batch behind it.
    import zlib

    from dutyguard.admission.journal import INFLIGHT_MAGIC, SavedBatch, parse_inflight

    spool = tmp_path / "spool"
    s = shipper(cp.url, spool)
    deny(s, "d1")
    cp.statuses = [503]
    assert s.flush_once() == "retry"
    crash(s)
    saved = parse_inflight((spool / INFLIGHT).read_bytes())
    assert isinstance(saved, SavedBatch)
    body = saved.body.replace(b'"cluster":"prod-1"', b'"cluster":"prod-9"')
    header = b"%s %d %d %08x\n" % (INFLIGHT_MAGIC, saved.seq, len(body), zlib.crc32(body))
    (spool / INFLIGHT).write_bytes(header + body)
    s2 = shipper(cp.url, spool)
    assert errors(s2) == {(INFLIGHT, "foreign"): 1}
    assert s2.inflight is None and not (spool / INFLIGHT).exists()
    deny(s2, "d2")
    assert s2.flush_once() == "sent"
    assert cp.uids() == [["d2"]]


def test_second_shipper_on_the_same_spool_is_refused(cp: Recorder, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    first = shipper(cp.url, spool)
    with pytest.raises(SpoolError, match="in use by another webhook process"):
        shipper(cp.url, spool)
    crash(first)
    shipper(cp.url, spool)  # free again once the holder is gone


def _serve_cmd(certs: CertFiles, tmp_path: Path, spool: Path) -> list[str]:
    from tests.admission.test_signed import ControlPlane

    token = tmp_path / "token"
    token.write_text("t\n")
    return [
        str(DUTYGUARD),
        "admission",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        "1",
        "--cert",
        str(certs.cert),
        "--key",
        str(certs.key),
        "--control-plane",
        "https://127.0.0.1:9",
        "--cluster",
        "prod-1",
        "--trust",
        ControlPlane().signer.verifier.public_text(),
        "--token-file",
        str(token),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--spool-dir",
        str(spool),
    ]


def test_second_process_cannot_share_a_spool_dir(cp: Recorder, certs: CertFiles, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    holder = shipper(cp.url, spool)  # this process holds the lock
    try:
        proc = subprocess.run(_serve_cmd(certs, tmp_path, spool), capture_output=True, timeout=60)
    finally:
        crash(holder)
    assert proc.returncode == 2
    err = proc.stderr.decode()
    assert f"spool directory {spool} is in use by another webhook process" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("problem", ["symlink", "world-writable"])
def test_serve_refuses_an_unsafe_spool_dir_with_exit_2(
    certs: CertFiles, tmp_path: Path, problem: str
) -> None:
    spool = tmp_path / "spool"
    if problem == "symlink":
        (tmp_path / "real").mkdir(mode=0o700)
        spool.symlink_to(tmp_path / "real")
    else:
        spool.mkdir()
        spool.chmod(0o777)
    proc = subprocess.run(_serve_cmd(certs, tmp_path, spool), capture_output=True, timeout=60)
    assert proc.returncode == 2
    err = proc.stderr.decode()
    assert f"dutyguard: error: spool directory {spool}" in err
    assert "Traceback" not in err


def test_spool_dir_needs_a_control_plane(certs: CertFiles, tmp_path: Path) -> None:
    cmd = [str(DUTYGUARD), "admission", "serve", "--cert", str(certs.cert), "--key", str(certs.key)]
    proc = subprocess.run([*cmd, "--spool-dir", str(tmp_path / "s")], capture_output=True, timeout=60)
    assert proc.returncode == 2
    assert b"--spool-dir needs --control-plane" in proc.stderr
    assert not (tmp_path / "s").exists()


def test_recorded_time_is_kept_through_the_journal(cp: Recorder, tmp_path: Path) -> None:
    # The replayed event is the one recorded, not rebuilt: its time is the decision's.
    spool = tmp_path / "spool"
    s = shipper(cp.url, spool)
    req = parse_review(review(pod_request(pod(True), uid="t1")))
    view = StateView(builtin_state())
    s.record(req, DECIDER.decide(req, view), view, datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    crash(s)
    s2 = shipper(cp.url, spool)
    assert s2.flush_once() == "sent"
    assert json.loads(cp.stored[0])["decisions"][0]["time"] == "2026-01-02T03:04:05.000000Z"


# --- the manifest: an emptyDir for the spool ---------------------------------------------------------
def _control_plane_docs() -> list[dict[str, Any]]:
    from dutyguard.admission.manifest import ManifestOptions, manifests

    return manifests(
        ManifestOptions(
            image="registry.example.com/dutyguard/dutyguard@sha256:" + "ab" * 32,
            ca_bundle=b"-",
            control_plane="https://cp.example",
            cluster="prod-1",
            trust_key=b"ed25519:AAAA",
        )
    )


def test_manifest_mounts_an_emptydir_spool_in_control_plane_mode(tmp_path: Path) -> None:
    import kubernetes_validate

    from dutyguard.admission.manifest import ManifestOptions, manifests, render
    from tests.conftest import make_scanner

    docs = _control_plane_docs()
    dep = next(d for d in docs if d["kind"] == "Deployment")
    pod_spec = dep["spec"]["template"]["spec"]
    (container,) = pod_spec["containers"]
    volume = next(v for v in pod_spec["volumes"] if v["name"] == "spool")
    mount = next(m for m in container["volumeMounts"] if m["name"] == "spool")
    args = container["args"]
    spool_dir = args[args.index("--spool-dir") + 1]
    # Inside the emptyDir, not its root: the kubelet makes that 0777, which the webhook refuses.
    assert Path(spool_dir).parent == Path(mount["mountPath"])
    assert not mount.get("readOnly", False)
    # Bounded: twice the default journal (rewritten on start) plus a saved batch fit under it.
    limit = volume["emptyDir"]["sizeLimit"]
    assert limit.endswith("Mi")
    options = AuditOptions(url="https://cp.example", cluster="prod-1")
    assert 2 * options.journal_bytes + options.max_batch_bytes + 1024 * 1024 < int(limit[:-2]) * 1024 * 1024
    for version in (kubernetes_validate.latest_version(), "1.30.0"):
        for doc in docs:
            kubernetes_validate.validate(json.loads(json.dumps(doc)), version, strict=True)
    path = tmp_path / "webhook.yaml"
    path.write_text(render(docs))
    report = make_scanner().scan([str(path)])
    assert report.errors == ()
    assert [(f.rule_id, f.location.kind, f.location.field) for f in report.findings] == []
    # Without a control plane there is no audit trail to spool for (and --spool-dir is refused).
    plain = manifests(ManifestOptions(ca_bundle=b"-"))
    plain_dep = next(d for d in plain if d["kind"] == "Deployment")["spec"]["template"]["spec"]
    assert all(v["name"] != "spool" for v in plain_dep["volumes"])
    assert "--spool-dir" not in plain_dep["containers"][0]["args"]


def test_a_spool_inside_a_world_writable_emptydir_root_is_accepted(cp: Recorder, tmp_path: Path) -> None:
    # What the manifest does: the emptyDir root is 0777, the spool directory inside it is ours.
    root = tmp_path / "emptydir"
    root.mkdir()
    root.chmod(0o777)
    s = shipper(cp.url, root / "spool")
    deny(s, "d1")
    assert stat.S_IMODE((root / "spool").stat().st_mode) == 0o700
    assert journal_uids(root / "spool") == [(1, "d1")]
