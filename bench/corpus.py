"""Build the benchmark corpora from the third-party data in ../shared/data (deterministic).

- ``manifests/``: 1,000 real-world Kubernetes manifest files: the peers' own test fixtures (Checkov, kube-score,
  kubesec), real RBAC/operator installs (Argo CD, kube-prometheus, ingress-nginx), Falco's event generator,
  Trivy's good/bad check examples and the objects inside Kubewarden's AdmissionRequests — each file as upstream
  wrote it, or (for the last two) one object per file.
- ``mixed/``: 1,000 mixed text files for secret scanning (YAML, JSON, Dockerfiles, INI, source, scanner outputs),
  including detect-secrets' planted secrets.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SHARED = Path(os.environ.get("DUTYGUARD_SHARED_DATA", REPO.parent / "shared" / "data"))
OUT = HERE / "corpus-data"  # not a dot-directory: Checkov skips hidden paths
N = 1000
MANIFEST_SOURCES = ("checkov", "kube-score", "kubesec", "rbac-real-world", "falco-event-generator")


def _is_manifest(path: Path) -> bool:
    try:
        docs = list(yaml.load_all(path.read_text(encoding="utf-8"), Loader=yaml.CSafeLoader))
    except (yaml.YAMLError, UnicodeDecodeError, ValueError):
        return False
    return any(isinstance(d, dict) and "kind" in d and "apiVersion" in d for d in docs)


def _extracted() -> list[tuple[str, str]]:
    """(name, yaml text) for objects that upstream keeps inside other documents."""
    out: list[tuple[str, str]] = []
    for f in sorted((SHARED / "trivy-checks" / "checks" / "kubernetes").glob("*.yaml")):
        data = yaml.load(f.read_text(), Loader=yaml.CSafeLoader) or {}
        for verdict in ("good", "bad"):
            for i, doc in enumerate((data.get("kubernetes") or {}).get(verdict) or []):
                text = doc if isinstance(doc, str) else yaml.safe_dump(doc)
                out.append((f"trivy-{f.stem}-{verdict}-{i}.yaml", text))
    for f in sorted((SHARED / "kubewarden-policies").rglob("*.json")):
        try:
            req = json.loads(f.read_text())
        except (ValueError, UnicodeDecodeError):
            continue
        req = req.get("request", req) if isinstance(req, dict) else None
        obj = req.get("object") if isinstance(req, dict) else None
        if isinstance(obj, dict) and "kind" in obj and "apiVersion" in obj:
            out.append((f"kubewarden-{f.parent.parent.name}-{f.stem}.json", json.dumps(obj, indent=2)))
    return out


def build_manifests(dest: Path) -> int:
    files = [
        p
        for src in MANIFEST_SOURCES
        for p in sorted((SHARED / src).rglob("*"))
        if p.suffix in (".yaml", ".yml", ".json") and p.is_file() and _is_manifest(p)
    ]
    items: list[tuple[str, str]] = [
        (str(p.relative_to(SHARED)).replace("/", "__"), p.read_text(encoding="utf-8")) for p in files
    ]
    items += _extracted()
    items.sort(key=lambda kv: hashlib.sha256(kv[0].encode()).hexdigest())
    if len(items) < N:
        sys.exit(f"only {len(items)} manifests found in {SHARED}")
    for name, text in items[:N]:
        (dest / name).write_text(text, encoding="utf-8")
    return N


def build_mixed(dest: Path) -> int:
    candidates = []
    for p in sorted(SHARED.rglob("*")):
        if not p.is_file() or p.stat().st_size > 512 * 1024 or p.name.startswith("EXPECTED"):
            continue
        data = p.read_bytes()
        if b"\x00" in data[:8192]:
            continue
        candidates.append(p)
    planted = [p for p in candidates if "detect-secrets" in p.parts]
    rest = sorted(
        (p for p in candidates if p not in planted), key=lambda p: hashlib.sha256(str(p).encode()).hexdigest()
    )
    chosen = planted + rest[: N - len(planted)]
    for p in chosen:
        rel = str(p.relative_to(SHARED)).replace("/", "__")
        target = dest / rel
        if p.name in ("Dockerfile", "Containerfile") or p.name.endswith(".Dockerfile"):
            target = dest / f"{rel}.d" / p.name  # keep the name so Dockerfile rules apply
            target.parent.mkdir()
        shutil.copyfile(p, target)
    return len(chosen)


def build(force: bool = False) -> Path:
    stamp = OUT / ".complete"
    if stamp.exists() and not force:
        return OUT
    shutil.rmtree(OUT, ignore_errors=True)
    (OUT / "manifests").mkdir(parents=True)
    (OUT / "mixed").mkdir()
    m = build_manifests(OUT / "manifests")
    x = build_mixed(OUT / "mixed")
    stamp.write_text(json.dumps({"manifests": m, "mixed": x}))
    return OUT


if __name__ == "__main__":
    print(build(force="--force" in sys.argv))
