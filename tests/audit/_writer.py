"""A writer process for the concurrency and crash tests.

    python -m tests.audit._writer URL KEYFILE COUNT TAG [--batch K] [--every N] [--go FILE]

Appends COUNT entries (K per transaction) whose actor is ``writer:TAG``, signs a checkpoint every
N entries, and prints ``ack <seq>`` for each entry only after its transaction committed — the
acknowledgement a client of the API would get. With ``--go`` it waits for FILE to exist first,
so several writers start at the same moment (it prints ``ready`` once connected, then waits), and
it prints ``start <t>`` / ``done <t>`` (CLOCK_MONOTONIC, shared by all processes) around its work.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from dutyguard.audit import log
from dutyguard.audit.entry import AuditEvent, Outcome
from dutyguard.audit.signing import load_or_create_key


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("key", type=Path)
    ap.add_argument("count", type=int)
    ap.add_argument("tag")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--every", type=int, default=25)
    ap.add_argument("--go", type=Path)
    args = ap.parse_args()
    signer = load_or_create_key(args.key)
    engine = sa.create_engine(args.url)
    with log.transaction(engine) as conn:  # connected and imported: ready to race
        log.head(conn)
    if args.go is not None:
        print("ready", flush=True)
        deadline = time.monotonic() + 60
        while not args.go.exists() and time.monotonic() < deadline:
            time.sleep(0.001)
    print(f"start {time.monotonic()}", flush=True)
    done = 0
    while done < args.count:
        acked = []
        with log.transaction(engine) as conn:
            for _ in range(min(args.batch, args.count - done)):
                now = datetime.now(UTC)
                entry = log.append(
                    conn,
                    AuditEvent(
                        f"writer:{args.tag}",
                        ("ci",),
                        "scan.submit",
                        f"n:{done}",
                        Outcome.SUCCESS,
                        None,
                        {"n": done},
                    ),
                    now,
                )
                log.maybe_checkpoint(conn, signer, args.every, now)
                acked.append(entry.seq)
                done += 1
        sys.stdout.write("".join(f"ack {s}\n" for s in acked))
        sys.stdout.flush()
    print(f"done {time.monotonic()}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
