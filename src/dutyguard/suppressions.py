"""Inline suppressions are never honoured: each is reported as a suppression request.

Whoever can write a file must not be able to silence the controls that constrain them. So a
suppression written in code or in a manifest changes no finding; it becomes a
:class:`~dutyguard.core.model.SuppressionRequest` (file, line, syntax, the rule ids it names,
the ids they translate to in dutyguard, the reason given) that Security can turn into a real,
approved exception. Recognised:

=============================  ===============================================================
``dutyguard:ignore[=ID,…]``     our own; text after the ids is the reason
``checkov:skip=ID[,ID]:why``    also ``bridgecrew:skip=`` and ``cortex:skip=``
``checkov.io/skipN: ID=why``    Kubernetes annotation (also ``bridgecrew.io/skipN``)
``trivy:ignore:ID``             also ``tfsec:ignore:``; ``[attr=value]`` and ``:exp:DATE`` kept
``.trivyignore``                one request per listed id (``exp:DATE`` kept as the reason)
``.trivyignore.yaml``           one request per entry of every section (``statement`` is the reason)
``kubescape.io/ignore``         annotation or label: everything
``hadolint ignore=DL…``         also ``hadolint global ignore=``
``kics-scan …``                 ``ignore``, ``ignore-line``, ``ignore-block``, ``disable=ID,…``
``gitleaks:allow``              secret scanners: everything on that line
``pragma: allowlist secret``    detect-secrets (also ``allowlist nextline secret``)
``trufflehog:ignore``           ``ggignore`` (ggshield) too
``nosec`` / ``noqa: S105…``     only for the hard-coded-credential checks (bandit B105-B107,
                                gosec G101, ruff S105-S107), or a bare ``nosec`` on a line that
                                assigns a password/secret/token/key: elsewhere these silence
                                checks dutyguard does not run, and would only flood the report
kube-linter, kube-score,        ``ignore-check.kube-linter.io/CHECK``, ``kube-score/ignore``,
Polaris, Gatekeeper, Kyverno    ``polaris.fairwinds.com/[CHECK-]exempt``,
                                ``admission.gatekeeper.sh/ignore``, ``kind: PolicyException``
=============================  ===============================================================

An empty ``targets`` means "everything" (in that scope). Nothing is executed, expanded or
followed: lines are matched textually (any file type, comment or not: reporting a harmless
lookalike is better than missing a bypass), each line is cut to :data:`MAX_LINE_CHARS`, the
stored ``text`` is the directive itself (never the rest of the line, which may hold the
secret), and a file yields at most :data:`MAX_REQUESTS` requests plus one saying more were cut.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from dutyguard.core.model import SuppressionRequest
from dutyguard.core.rule import RuleRegistry
from dutyguard.errors import InputError
from dutyguard.limits import DEFAULT_LIMITS
from dutyguard.sources.interface import InputFile

MAX_REQUESTS = 1_000
MAX_LINE_CHARS = 4_096
MAX_TEXT = 200
MAX_REASON = 500

_MARKER = (
    r"(?i)dutyguard:ignore|(?:checkov|bridgecrew|cortex):skip|(?:checkov|bridgecrew)\.io/skip|(?:trivy|tfsec):ignore"
    r"|kubescape\.io/ignore|hadolint|kics-scan|gitleaks:allow|pragma:\s?allowlist|trufflehog:ignore|ggignore"
    r"|nosec|noqa|kube-linter\.io|kube-score/ignore|polaris\.fairwinds\.com/|admission\.gatekeeper\.sh/ignore"
    r"|policyexception"
)
"""Any of these makes a line worth parsing. Searched with RE2 over the raw bytes: one linear pass."""


@dataclass(frozen=True, slots=True)
class _Found:
    syntax: str
    targets: tuple[str, ...]
    reason: str
    text: str


_IDS = re.compile(r"[A-Za-z0-9_.\-/*]+")


def _ids(text: str) -> tuple[str, ...]:
    return tuple(i for i in (p.strip() for p in re.split(r"[,\s]+", text)) if i and _IDS.fullmatch(i))


def _clip(text: str, n: int) -> str:
    text = text.strip()
    return text if len(text) <= n else text[: n - 1] + "…"


def _annotation(key: str, value: str) -> str:
    """An annotation as ``key: value``, whatever YAML/JSON quoting it was written with."""
    return f"{key}: {value}" if value else key


def _reason(text: str) -> str:
    """Free text after a directive, without comment leaders or the quoting/comma of YAML and JSON."""
    return _clip(text.strip().lstrip("-#:/ ").rstrip(",").strip().strip("\"'"), MAX_REASON)


# --- one parser per syntax: (line) -> findings ---------------------------------------------------
_DUTYGUARD = re.compile(r"dutyguard:ignore(?:[=:]([A-Za-z0-9_.,\-]+))?(.*)$", re.IGNORECASE)
_CHECKOV = re.compile(
    r"(checkov|bridgecrew|cortex):skip=[ \t]*([A-Za-z0-9_,\-]*)(?::([^\n]*))?", re.IGNORECASE
)
_CHECKOV_ANNOTATION = re.compile(
    r"((?:checkov|bridgecrew)\.io/skip\d*)[\"']?[ \t]*:[ \t]*[\"']?([A-Za-z0-9_\-]+)(?:[ \t]*=([^\n]*))?",
    re.IGNORECASE,
)
_TRIVY = re.compile(
    r"(trivy|tfsec):ignore:([A-Za-z0-9_.\-/*]+)(\[[^\]\n]{0,200}\])?(?::exp:(\d{4}-\d{2}-\d{2}))?",
    re.IGNORECASE,
)
_KUBESCAPE = re.compile(r"kubescape\.io/ignore[\"']?[ \t]*:?[ \t]*[\"']?([^\"'\s,}]*)", re.IGNORECASE)
_LIST = r"([A-Za-z0-9_\-]+(?:[ \t]*,[ \t]*[A-Za-z0-9_\-]+)*)"
"""Comma-separated ids (spaces allowed around commas only, so trailing prose is not an id)."""
_HADOLINT = re.compile(r"hadolint[ \t]+(global[ \t]+)?ignore[ \t]*=[ \t]*" + _LIST, re.IGNORECASE)
_KICS = re.compile(
    r"kics-scan[ \t]+(ignore-line|ignore-block|ignore|disable[ \t]*=[ \t]*" + _LIST + ")",
    re.IGNORECASE,
)
_GITLEAKS = re.compile(r"gitleaks:allow", re.IGNORECASE)
_DETECT_SECRETS = re.compile(r"pragma:[ \t]?allowlist(?:[ \t]+nextline)?[ \t]+secret", re.IGNORECASE)
_TRUFFLEHOG = re.compile(r"trufflehog:ignore|ggignore", re.IGNORECASE)
_NOSEC = re.compile(r"(?:#|//|/\*)[ \t]*nosec\b(?:[ \t]*:?[ \t]*([A-Z]\d{2,4}(?:[ \t,]+[A-Z]\d{2,4})*))?")
_NOQA = re.compile(r"noqa[ \t]*:[ \t]*([A-Z]+\d+(?:[ \t]*,[ \t]*[A-Z]+\d+)*)")
_CREDENTIAL_CHECKS = frozenset({"B105", "B106", "B107", "G101", "S105", "S106", "S107"})
_CREDENTIAL_LINE = re.compile(
    r"(?i)(?:pass(?:word|wd)?|pwd|secret|token|api[_-]?key|private[_-]?key|credential)\w*[\"']?\s*[:=]"
)
_KUBE_LINTER = re.compile(
    r"(ignore-check\.kube-linter\.io/([A-Za-z0-9\-]+)|kube-linter\.io/ignore-all)[\"']?[ \t]*:[ \t]*([^\n]*)",
    re.IGNORECASE,
)
_KUBE_SCORE = re.compile(r"kube-score/ignore[\"']?[ \t]*:[ \t]*[\"']?" + _LIST, re.IGNORECASE)
_POLARIS = re.compile(
    r"polaris\.fairwinds\.com/(?:([A-Za-z0-9]+)-)?exempt[\"']?[ \t]*:[ \t]*[\"']?([A-Za-z]+)", re.IGNORECASE
)
_GATEKEEPER = re.compile(r"admission\.gatekeeper\.sh/ignore", re.IGNORECASE)
_KYVERNO = re.compile(r"^\s*[\"']?kind[\"']?\s*:\s*[\"']?PolicyException\b")


def _p_dutyguard(line: str) -> Iterator[_Found]:
    for m in _DUTYGUARD.finditer(line):
        ids = tuple(i for i in (m.group(1) or "").split(",") if i)
        yield _Found("dutyguard:ignore", ids, _reason(m.group(2)), m.group(0))


def _p_checkov(line: str) -> Iterator[_Found]:
    for m in _CHECKOV.finditer(line):
        ids = tuple(i for i in m.group(2).split(",") if i)
        yield _Found(f"{m.group(1).lower()}:skip", ids, _reason(m.group(3) or ""), m.group(0))
    for m in _CHECKOV_ANNOTATION.finditer(line):
        syntax = f"{m.group(1).split('/')[0].lower()}/skip"
        reason = _reason(m.group(3) or "")
        value = f"{m.group(2)}={reason}" if reason else m.group(2)
        yield _Found(syntax, (m.group(2),), reason, _annotation(m.group(1), value))


def _p_trivy(line: str) -> Iterator[_Found]:
    for m in _TRIVY.finditer(line):
        rule = m.group(2)
        notes = " ".join(x for x in (m.group(3) or "", f"exp:{m.group(4)}" if m.group(4) else "") if x)
        yield _Found(f"{m.group(1).lower()}:ignore", () if rule == "*" else (rule,), notes, m.group(0))


def _p_kubescape(line: str) -> Iterator[_Found]:
    for m in _KUBESCAPE.finditer(line):
        value = _reason(m.group(1))
        yield _Found("kubescape.io/ignore", (), value, _annotation("kubescape.io/ignore", value))


def _p_hadolint(line: str) -> Iterator[_Found]:
    for m in _HADOLINT.finditer(line):
        syntax = "hadolint global ignore" if m.group(1) else "hadolint ignore"
        yield _Found(syntax, _ids(m.group(2)), "", m.group(0))


def _p_kics(line: str) -> Iterator[_Found]:
    for m in _KICS.finditer(line):
        ids = _ids(m.group(2)) if m.group(2) else ()
        yield _Found("kics-scan", ids, "", m.group(0))


def _p_secret_scanners(line: str) -> Iterator[_Found]:
    for rx, syntax in ((_GITLEAKS, "gitleaks:allow"), (_DETECT_SECRETS, "pragma: allowlist secret")):
        for m in rx.finditer(line):
            yield _Found(syntax, (), "", m.group(0))
    for m in _TRUFFLEHOG.finditer(line):
        yield _Found(m.group(0).lower(), (), "", m.group(0))


def _p_linters(line: str) -> Iterator[_Found]:
    for m in _NOSEC.finditer(line):
        ids = _ids(m.group(1) or "")
        if (ids and _CREDENTIAL_CHECKS.intersection(ids)) or (not ids and _CREDENTIAL_LINE.search(line)):
            yield _Found("nosec", ids, "", m.group(0))
    for m in _NOQA.finditer(line):
        ids = tuple(i for i in _ids(m.group(1)) if i in _CREDENTIAL_CHECKS)
        if ids:
            yield _Found("noqa", ids, "", m.group(0))


def _p_k8s_annotations(line: str) -> Iterator[_Found]:
    for m in _KUBE_LINTER.finditer(line):
        check = m.group(2)
        reason = _reason(m.group(3))
        yield _Found("kube-linter", (check,) if check else (), reason, _annotation(m.group(1), reason))
    for m in _KUBE_SCORE.finditer(line):
        ids = _ids(m.group(1))
        yield _Found("kube-score/ignore", ids, "", _annotation("kube-score/ignore", ",".join(ids)))
    for m in _POLARIS.finditer(line):
        if m.group(2).lower() == "true":
            key = m.group(0).split(":")[0].strip("\"' ")
            yield _Found("polaris exempt", (m.group(1),) if m.group(1) else (), "", _annotation(key, "true"))
    for m in _GATEKEEPER.finditer(line):
        yield _Found("admission.gatekeeper.sh/ignore", (), "", m.group(0))
    if _KYVERNO.search(line):
        yield _Found("kyverno PolicyException", (), "", line.strip())


_PARSERS: tuple[Callable[[str], Iterator[_Found]], ...] = (
    _p_dutyguard,
    _p_checkov,
    _p_trivy,
    _p_kubescape,
    _p_hadolint,
    _p_kics,
    _p_secret_scanners,
    _p_linters,
    _p_k8s_annotations,
)


# --- translation to our rule ids -------------------------------------------------------------------
_AVD = re.compile(r"^(?:AVD-)?([A-Z]+)-0*(\d{1,4})$", re.IGNORECASE)


def _aliases(peer_id: str) -> tuple[str, ...]:
    """Spellings of one peer id: Trivy's ``AVD-KSV-0017`` / ``KSV-0017`` are also ``KSV017``."""
    out = [peer_id]
    m = _AVD.match(peer_id)
    if m:
        out.append(f"{m.group(1).upper()}{int(m.group(2)):03d}")
        out.append(f"{m.group(1).upper()}-{int(m.group(2)):04d}")
    return tuple(dict.fromkeys(out))


def _matched(registry: RuleRegistry, targets: tuple[str, ...]) -> tuple[str, ...]:
    out: dict[str, None] = {}
    for t in targets:
        for alias in _aliases(t):
            for rid in registry.translate(alias):
                out[rid] = None
    return tuple(out)


def _request(f: InputFile, line: int, found: _Found, registry: RuleRegistry) -> SuppressionRequest:
    targets = tuple(dict.fromkeys(found.targets))
    return SuppressionRequest(
        file=f.name,
        line=line,
        syntax=found.syntax,
        targets=targets,
        matched_rules=_matched(registry, targets),
        reason=found.reason,
        text=_clip(found.text, MAX_TEXT),
    )


# --- files ------------------------------------------------------------------------------------------
@functools.cache
def _marker() -> Any:
    import re2

    return re2.compile(_MARKER)


def _inline(f: InputFile, registry: RuleRegistry) -> Iterator[SuppressionRequest]:
    data = f.data
    done_line = -1
    line_no, pos = 1, 0
    for m in _marker().finditer(data):
        at = m.start()
        line_no += data.count(b"\n", pos, at)
        pos = at
        if line_no == done_line:
            continue
        done_line = line_no
        start = data.rfind(b"\n", 0, at) + 1
        end = data.find(b"\n", at)
        end = len(data) if end < 0 else end
        lo = max(start, at - MAX_LINE_CHARS // 2)
        line = data[lo : min(end, lo + MAX_LINE_CHARS)].decode("utf-8", "replace")
        for parse in _PARSERS:
            for found in parse(line):
                yield _request(f, line_no, found, registry)


_TRIVYIGNORE_LINE = re.compile(r"^([^\s#]+)(?:\s+exp:(\S+))?")


def _trivyignore(f: InputFile, text: str, registry: RuleRegistry) -> Iterator[SuppressionRequest]:
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()[:MAX_LINE_CHARS]
        if not line or line.startswith("#"):
            continue
        m = _TRIVYIGNORE_LINE.match(line)
        if m is None:  # pragma: no cover - the pattern matches any non-blank, non-comment line
            continue
        reason = f"exp:{m.group(2)}" if m.group(2) else ""
        yield _request(f, n, _Found(".trivyignore", (m.group(1),), reason, line), registry)


_TRIVYIGNORE_SECTIONS = ("vulnerabilities", "misconfigurations", "secrets", "licenses")


def _trivyignore_yaml(f: InputFile, text: str, registry: RuleRegistry) -> Iterator[SuppressionRequest]:
    from dutyguard.sources.yamldoc import load_documents

    try:
        docs = load_documents(text, f.name, DEFAULT_LIMITS)
    except InputError as e:
        # Unreadable is not "no suppressions": report the whole file as one request for everything.
        yield _request(
            f, 1, _Found(".trivyignore.yaml", (), _clip(e.reason, MAX_REASON), "(unparseable)"), registry
        )
        return
    for doc in docs:
        if not isinstance(doc.value, dict):
            continue
        for section, entries in doc.value.items():
            if section not in _TRIVYIGNORE_SECTIONS or not isinstance(entries, list):
                continue
            for i, entry in enumerate(entries):
                if not isinstance(entry, dict):
                    continue
                rid = entry.get("id")
                targets = (str(rid),) if isinstance(rid, str | int) and str(rid) else ()
                statement = entry.get("statement")
                reason = _clip(statement, MAX_REASON) if isinstance(statement, str) else ""
                line = doc.lines.get((section, i), doc.line)
                found = _Found(".trivyignore.yaml", targets, reason, f"{section}: id: {rid}")
                yield _request(f, line, found, registry)


def detect_suppressions(f: InputFile, registry: RuleRegistry) -> list[SuppressionRequest]:
    """Every suppression written in ``f``, as requests. Never affects a finding."""
    if f.origin == "kustomize":
        return []  # rendered output: its member files are read (and reported) themselves
    base = os.path.basename(f.name)
    if base == ".trivyignore":
        found = _trivyignore(f, f.data.decode("utf-8", "replace"), registry)
    elif base in (".trivyignore.yaml", ".trivyignore.yml"):
        found = _trivyignore_yaml(f, f.data.decode("utf-8", "replace"), registry)
    else:
        found = _inline(f, registry)
    out: list[SuppressionRequest] = []
    for req in found:
        if len(out) == MAX_REQUESTS:
            out.append(
                SuppressionRequest(
                    file=f.name,
                    line=req.line,
                    syntax="(limit)",
                    targets=(),
                    text=f"more than {MAX_REQUESTS} suppressions in this file; the rest are not listed",
                )
            )
            break
        out.append(req)
    return out
