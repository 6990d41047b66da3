"""Control plane API: read latency with 50 concurrent clients over real HTTP, and start-up time.

    .venv/bin/python bench/api_bench.py [--runs 3] [--clients 50] [--seconds 10] [--rates 2 5 10]
                                        [--workers 1 2] [--postgres postgresql+psycopg://…] [--no-postgres]

The server is the real thing: ``dutyguard up`` in a subprocess (uvicorn, httptools, uvloop when
installed) on a loopback port, with the demo organisation. The clients run in *another process*:
asyncio with one ``httpx.AsyncClient`` (one keep-alive connection) per client, so client and
server compete for the same two cores exactly as they would on this machine.

Read mix, rotating per request: ``GET /whoami`` (security), ``GET /teams/payments`` (devops,
team-scoped), ``GET /role-bindings?identity=dave`` (compliance), ``GET /assets?team=payments``
(devops). Every request authenticates a token (HMAC, one indexed join) and is authorized.

Scenarios (median over ``--runs``):

- ``paced@R``: each of the 50 clients sends R requests/s on a fixed schedule (50 x 2, 5, 10 =
  100, 250, 500 req/s offered). Latency is measured from the *scheduled* send time, so a stalled
  server cannot hide its queue (no coordinated omission). The p99 < 25 ms target is for these.
- ``saturated``: the 50 clients send back to back. This measures capacity (req/s); its latency
  is by construction ~ clients / throughput and is reported, not targeted.
- ``startup``: ``dutyguard up`` on an initialised data directory until ``/health`` answers 200;
  ``startup (first)``: the same on an empty directory (keys, migrations, bootstrap token).

Results go to bench/results/api.json and into docs/control-plane.md between markers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO))

RESULTS = HERE / "results" / "api.json"
DOC = REPO / "docs" / "control-plane.md"
MARK_START = "<!-- api-bench:start -->"
MARK_END = "<!-- api-bench:end -->"

MIX = (
    ("alice", "/api/v1/whoami"),
    ("dave", "/api/v1/teams/payments"),
    ("carol", "/api/v1/role-bindings?identity=dave"),
    ("dave", "/api/v1/assets?team=payments"),
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def up_cmd() -> list[str]:
    return [sys.executable, "-c", "from dutyguard.cli import entrypoint; entrypoint()", "up"]


def wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 30.0) -> float:
    import httpx

    start = time.monotonic()
    while True:
        try:
            if httpx.get(f"{url}/api/v1/health", timeout=0.5).status_code == 200:
                return time.monotonic() - start
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"dutyguard up exited with {proc.returncode}")
        if time.monotonic() - start > timeout_s:
            raise TimeoutError("server did not become healthy")
        time.sleep(0.005)


def tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of a process and its live descendants, from /proc (Linux)."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    stack = [pid]
    while stack:
        p = stack.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            for task in Path(f"/proc/{p}/task").iterdir():
                stack += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError, IndexError):
            continue
    return total


@contextlib.contextmanager
def server(
    data_dir: Path, database_url: str | None, extra: tuple[str, ...] = ()
) -> Iterator[tuple[str, float]]:
    """``dutyguard up``; yields (url, seconds from spawn to the first healthy answer)."""
    port = free_port()
    env = {**os.environ, "DUTYGUARD_DATA_DIR": str(data_dir), "DUTYGUARD_PORT": str(port)}
    env.pop("DUTYGUARD_DATABASE_URL", None)
    if database_url:
        env["DUTYGUARD_DATABASE_URL"] = database_url
    start = time.monotonic()
    proc = subprocess.Popen([*up_cmd(), *extra], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc)
        yield url, time.monotonic() - start, proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- the client process ------------------------------------------------------------------------------


async def _client(
    idx: int,
    clients: int,
    url: str,
    tokens: dict[str, str],
    mode: str,
    rate: float,
    seconds: float,
    out: list[float],
    errors: list[str],
) -> None:
    import httpx

    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30.0) as client:
        # warm the connection outside the measurement
        await client.get("/api/v1/health")
        start = time.perf_counter()
        k = 0
        # spread the paced clients over the first period instead of firing all at once
        offset = (idx / clients) / rate if mode == "paced" else 0.0
        while True:
            scheduled = start + offset + (k / rate if mode == "paced" else 0.0)
            now = time.perf_counter()
            if now - start >= seconds:
                return
            if mode == "paced" and scheduled > now:
                await asyncio.sleep(scheduled - now)
            sent_from = scheduled if mode == "paced" else time.perf_counter()
            who, path = MIX[(idx + k) % len(MIX)]
            r = await client.get(path, headers={"Authorization": f"Bearer {tokens[who]}"})
            out.append(time.perf_counter() - sent_from)
            if r.status_code != 200:
                errors.append(f"{path}: {r.status_code}")
            k += 1


async def _run_clients(
    url: str, tokens: dict[str, str], mode: str, clients: int, rate: float, seconds: float
) -> dict[str, Any]:
    latencies: list[float] = []
    errors: list[str] = []
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    await asyncio.gather(
        *(_client(i, clients, url, tokens, mode, rate, seconds, latencies, errors) for i in range(clients))
    )
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    latencies.sort()
    n = len(latencies)

    def pct(p: float) -> float:
        return latencies[min(n - 1, int(p * n))] * 1000 if n else float("nan")

    return {
        "mode": mode,
        "requests": n,
        "errors": len(errors),
        "first_errors": errors[:5],
        "throughput_rps": n / elapsed,
        "p50_ms": pct(0.50),
        "p90_ms": pct(0.90),
        "p99_ms": pct(0.99),
        "max_ms": latencies[-1] * 1000 if n else float("nan"),
        "client_cpu_ms_per_request": cpu / max(1, n) * 1000,
    }


def client_main(argv: list[str]) -> None:
    """Entry point of the separate client process: prints one JSON summary."""
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--tokens", required=True)
    p.add_argument("--mode", choices=("paced", "saturated"), required=True)
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--rate", type=float, default=10.0)
    p.add_argument("--seconds", type=float, default=10.0)
    a = p.parse_args(argv)
    tokens = json.loads(Path(a.tokens).read_text())
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    print(json.dumps(asyncio.run(_run_clients(a.url, tokens, a.mode, a.clients, a.rate, a.seconds))))


def run_clients(
    url: str, tokens_file: Path, mode: str, clients: int, rate: float, seconds: float
) -> dict[str, Any]:
    cmd = [
        sys.executable,
        __file__,
        "--client",
        "--url",
        url,
        "--tokens",
        str(tokens_file),
        "--mode",
        mode,
        "--clients",
        str(clients),
        "--rate",
        str(rate),
        "--seconds",
        str(seconds),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=seconds + 120)
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


# -- orchestration -----------------------------------------------------------------------------------------


def seed(data_dir: Path, database_url: str | None) -> Path:
    """Keys, schema, bootstrap admin and the demo organisation; returns the demo tokens file."""
    from dutyguard.server.bootstrap import bootstrap, seed_demo, write_demo_logins
    from dutyguard.server.runtime import open_runtime
    from dutyguard.server.settings import Settings

    rt = open_runtime(Settings(data_dir=data_dir, database_url=database_url))
    try:
        bootstrap(rt)
        logins = seed_demo(rt)
        assert logins is not None
        return write_demo_logins(rt, logins)
    finally:
        rt.close()


def measure(label: str, database_url: str | None, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    data = work / f"data-{label}"
    first: list[float] = []
    for i in range(args.runs):
        fresh = work / f"fresh-{label}-{i}"
        db_url = database_url
        if database_url:
            db_url = reset_pg(database_url)
        with server(fresh, db_url) as (_url, seconds, _pid):
            first.append(seconds)
        shutil.rmtree(fresh, ignore_errors=True)
    db_url = reset_pg(database_url) if database_url else None
    tokens = seed(data, db_url)
    startup: list[float] = []
    for _ in range(args.runs):
        with server(data, db_url) as (_url, seconds, _pid):
            startup.append(seconds)
    out: dict[str, Any] = {
        "database": label,
        "startup_first_s": statistics.median(first),
        "startup_s": statistics.median(startup),
        "startup_runs_s": startup,
        "load": {},
    }
    scenarios = [(f"paced@{rate:g}", "paced", rate) for rate in args.rates] + [
        ("saturated", "saturated", 0.0)
    ]
    keys = (
        "throughput_rps",
        "p50_ms",
        "p90_ms",
        "p99_ms",
        "max_ms",
        "requests",
        "errors",
        "server_cpu_ms_per_request",
        "client_cpu_ms_per_request",
        "loadavg_1m",
    )
    for workers in args.workers:
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _m, _r in scenarios}
        with server(data, db_url, ("--workers", str(workers))) as (url, _s, pid):
            # Warm-up (not measured): fill the connection pools and the thread pool.
            run_clients(url, tokens, "saturated", args.clients, 1.0, 3.0)
            for _ in range(args.runs):
                for name, mode, rate in scenarios:
                    cpu0 = tree_cpu_s(pid)
                    result = run_clients(url, tokens, mode, args.clients, rate or 1.0, args.seconds)
                    result["server_cpu_ms_per_request"] = (
                        (tree_cpu_s(pid) - cpu0) / max(1, result["requests"]) * 1000
                    )
                    # What else the machine was doing: the numbers mean little when this is high.
                    result["loadavg_1m"] = os.getloadavg()[0]
                    runs[name].append(result)
                    print(f"  {label} x{workers} {name}: {result}", file=sys.stderr)
        row: dict[str, Any] = {}
        for name, results in runs.items():
            row[name] = {key: statistics.median(r[key] for r in results) for key in keys}
            row[name]["runs_p99_ms"] = [r["p99_ms"] for r in results]
        out["load"][str(workers)] = row
    return out


def reset_pg(url: str) -> str:
    """A fresh database on the same server for each measurement."""
    import psycopg
    import sqlalchemy as sa

    u = sa.make_url(url)
    name = f"dg_api_bench_{int(time.time() * 1000) % 10_000_000}"
    with psycopg.connect(host=u.host, port=u.port, user=u.username, dbname="postgres", autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    return u.set(database=name).render_as_string(hide_password=False)


@contextlib.contextmanager
def postgres(args: argparse.Namespace) -> Iterator[str | None]:
    if args.no_postgres:
        yield None
        return
    if args.postgres:
        yield args.postgres
        return
    from tests.pgserver import PostgresUnavailable, running_postgres

    try:
        with running_postgres() as pg:
            yield pg.url("postgres")
    except PostgresUnavailable as e:
        print(f"PostgreSQL unavailable ({e}); SQLite only", file=sys.stderr)
        yield None


def render(results: dict[str, Any]) -> str:
    rates = results["rates_per_client"]
    clients = results["clients"]
    head = " | ".join(f"{clients} x {r:g}/s = {clients * r:g} req/s: p50 / p99" for r in rates)
    lines = [
        f"Measured {results['date']} on {results['machine']}, {clients} clients, {results['seconds']} s per run, "
        f"median of {results['runs']} runs; the last column is the 1-minute load average after the runs "
        "(other jobs on the machine).",
        "",
        f"| database | workers | {head} | saturated: req/s, p99 | CPU/request server / client | load |",
        "|---|---|" + "---|" * len(rates) + "---|---|---|",
    ]
    for r in results["results"]:
        for workers, row in r["load"].items():
            paced = " | ".join(
                f"{row[f'paced@{rate:g}']['p50_ms']:.1f} / **{row[f'paced@{rate:g}']['p99_ms']:.1f} ms**"
                for rate in rates
            )
            s = row["saturated"]
            lines.append(
                f"| {r['database']} | {workers} | {paced} | {s['throughput_rps']:.0f}, {s['p99_ms']:.0f} ms | "
                f"{s['server_cpu_ms_per_request']:.2f} / {s['client_cpu_ms_per_request']:.2f} ms | "
                f"{s['loadavg_1m']:.1f} |"
            )
    lines += [
        "",
        "| database | start-up of `dutyguard up` (initialised) | first start (keys, schema, bootstrap) |",
        "|---|---|---|",
    ]
    for r in results["results"]:
        lines.append(f"| {r['database']} | **{r['startup_s']:.2f} s** | {r['startup_first_s']:.2f} s |")
    return "\n".join(lines)


def write_doc(text: str) -> None:
    if not DOC.exists():
        return
    doc = DOC.read_text()
    if MARK_START not in doc or MARK_END not in doc:
        return
    head, rest = doc.split(MARK_START, 1)
    _, tail = rest.split(MARK_END, 1)
    DOC.write_text(f"{head}{MARK_START}\n{text}\n{MARK_END}{tail}")


def main() -> None:
    if "--client" in sys.argv:
        argv = [a for a in sys.argv[1:] if a != "--client"]
        client_main(argv)
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument(
        "--rates",
        type=float,
        nargs="+",
        default=[2.0, 5.0, 10.0],
        help="requests/s per client (paced scenarios)",
    )
    p.add_argument(
        "--workers",
        type=int,
        nargs="+",
        default=[1, 2],
        help="server processes to measure (dutyguard up --workers)",
    )
    p.add_argument("--postgres", help="an existing PostgreSQL (postgresql+psycopg://user@host:port/db)")
    p.add_argument("--no-postgres", action="store_true")
    p.add_argument("--no-sqlite", action="store_true")
    p.add_argument("--no-write", action="store_true", help="print only; do not update results and docs")
    args = p.parse_args()
    results: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "loadavg": " ".join(f"{x:.1f}" for x in os.getloadavg()),
        "clients": args.clients,
        "seconds": args.seconds,
        "runs": args.runs,
        "rates_per_client": args.rates,
        "results": [],
    }
    with tempfile.TemporaryDirectory(prefix="dg-api-bench-") as tmp:
        work = Path(tmp)
        if not args.no_sqlite:
            results["results"].append(measure("sqlite", None, args, work))
        with postgres(args) as pg_url:
            if pg_url:
                results["results"].append(measure("postgresql", pg_url, args, work))
    text = render(results)
    print(text)
    if not args.no_write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=2) + "\n")
        write_doc(text)


if __name__ == "__main__":
    main()
