"""Secret matching shared by the built-in patterns and gitleaks-format rule files.

One :class:`SecretRule` per pattern, all over :class:`~dutyguard.sources.text.TextFile`.
The per-match semantics are gitleaks v8's (``detect/detect.go``), because gitleaks rule files
are written for them:

1. a rule whose ``path`` does not match the file name is skipped; a rule with a ``path`` and
   no ``regex`` reports the file itself;
2. a rule with keywords runs only when one of them occurs in the lower-cased file (one RE2
   ``Set`` pass per file finds every keyword of the rule set at once);
3. each regex match is trimmed of newlines; the secret is the ``secretGroup`` capture, or
   else the first non-empty capture, or else the whole match (found by re-running the regex
   on the match, as gitleaks does);
4. a secret whose Shannon entropy is not above the rule's ``entropy`` is dropped;
5. global, then per-rule allowlists (regexes over the secret, the match or the line;
   stopwords; paths; ``condition = "AND"``) drop what they allow;
6. a rule marked *generic* drops a secret that another rule of its set found on the same
   line, inside that rule's secret (gitleaks keeps the specific finding, not both).

Where we deliberately differ from gitleaks:

- ``gitleaks:allow`` comments are *not* honoured: a developer cannot silence a finding. The
  comment is reported as a suppression request (``dutyguard.suppressions``).
- Encoded-content decoding (``--max-decode-depth``) is not done (gitleaks' default is off too).
- The "line" an allowlist sees is the match's own line(s) without the preceding newline
  (gitleaks includes it), cut to :data:`LINE_WINDOW` bytes either side of a match on a
  minified megabyte-long line. Line numbers are those of the *secret*, not of the match start.
- Keyword prefiltering folds ASCII case only.
- The same secret found twice on one line by one rule is one finding (same fingerprint).

Bounds: RE2 runs in linear time on any input; a rule that produces more than
:data:`MAX_CANDIDATES` matches in one file stops with an error naming the file (a per-file
scan error, never a silent partial pass). Built-in *generic* patterns (``max_line``) ignore
matches on very long lines, which are minified code, not configuration.
"""

from __future__ import annotations

import enum
import hashlib
import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import re2

from dutyguard.core.policy import Policy
from dutyguard.core.rule import Rule, RuleMeta, Violation
from dutyguard.errors import ConfigError, LimitExceeded
from dutyguard.sources.text import TextFile

Regex = Any
"""A compiled RE2 expression (``re2._Regexp``; the binding ships no type information)."""

MAX_CANDIDATES = 50_000
"""Regex matches one rule may produce in one file before the file is reported as an error."""

LINE_WINDOW = 4096
"""Bytes of line context on each side of a match that line-target allowlists examine."""

_DIGEST_SALT = b"dutyguard/secret-fingerprint/v1"
_DIGEST_ROUNDS = 1_000


def _options(max_mem: int = 8 << 20) -> Any:
    opts = re2.Options()
    opts.log_errors = False
    opts.max_mem = max_mem
    return opts


def compile_regex(pattern: str, what: str) -> Regex:
    """RE2 with Go-compatible syntax; an unusable pattern is a :class:`ConfigError` naming ``what``."""
    try:
        return re2.compile(pattern, _options())
    except re2.error as e:
        reason = e.args[0] if e.args else "invalid"
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise ConfigError(f"{what}: {pattern[:120]!r} is not a valid RE2 expression ({reason})") from None


def join_regexes(patterns: Iterable[str], what: str) -> Regex | None:
    """One expression matching where any of ``patterns`` does (each compiled alone first, for errors)."""
    pats = list(patterns)
    for p in pats:
        compile_regex(p, what)
    if not pats:
        return None
    return compile_regex("|".join(f"(?:{p})" for p in pats), what)


def shannon_entropy(text: str) -> float:
    """Bits per byte as gitleaks computes it: counts by character, length in UTF-8 bytes."""
    if not text:
        return 0.0
    size = len(text.encode("utf-8", "surrogatepass"))
    return -sum((n / size) * math.log2(n / size) for n in Counter(text).values())


def redact(secret: str) -> str:
    """What a report may show of a secret: at most its first 4 characters, and only of a long one."""
    body = secret.strip()
    shown = body[:4] if len(body) >= 16 and body[:4].isprintable() else ""
    return f"{shown}… ({len(secret)} characters)"


def secret_digest(secret: str) -> str:
    """Identity of a secret for fingerprints. Salted and stretched, so a fingerprint published in a
    report is not a cheap oracle for guessing a weak password."""
    return hashlib.pbkdf2_hmac(
        "sha256", secret.encode("utf-8", "surrogatepass"), _DIGEST_SALT, _DIGEST_ROUNDS
    ).hex()


class RegexTarget(enum.Enum):
    SECRET = "secret"  # noqa: S105 - a target name, not a password
    MATCH = "match"
    LINE = "line"


@dataclass(frozen=True, slots=True)
class Allowlist:
    """What a rule (or a whole rule set) must not report. ``require_all`` is gitleaks' ``condition = "AND"``."""

    description: str = ""
    require_all: bool = False
    commits: tuple[str, ...] = ()
    """Kept for fidelity; a file scan has no commit, so a commit never matches."""
    paths: Regex | None = None
    regexes: Regex | None = None
    regex_target: RegexTarget = RegexTarget.SECRET
    stopwords: tuple[str, ...] = ()
    """Lower-cased."""

    def _path_allowed(self, path: str) -> bool:
        return bool(path) and self.paths is not None and self.paths.search(path) is not None

    def _regex_allowed(self, text: str) -> bool:
        return bool(text) and self.regexes is not None and self.regexes.search(text) is not None

    def _stopword(self, secret: str) -> bool:
        if not secret or not self.stopwords:
            return False
        s = secret.lower()
        return any(w in s for w in self.stopwords)

    def skips_file(self, path: str) -> bool:
        """Whether the whole file is allowed (gitleaks ``checkCommitOrPathAllowed``)."""
        if not path:
            return False
        if not self.require_all:
            return self._path_allowed(path)
        if self.regexes is not None or self.stopwords:
            return False  # decided per finding
        checks = [False] * bool(self.commits) + [self._path_allowed(path)] * (self.paths is not None)
        return all(checks)

    def skips_finding(self, secret: str, match: str, line: Callable[[], str], path: str) -> bool:
        """Whether one finding is allowed (gitleaks ``checkFindingAllowed``)."""
        if self.regex_target is RegexTarget.LINE:
            target = line() if self.regexes is not None else ""
        elif self.regex_target is RegexTarget.MATCH:
            target = match
        else:
            target = secret
        regex_ok = self._regex_allowed(target)
        stop_ok = self._stopword(secret)
        if not self.require_all:
            return regex_ok or stop_ok
        checks: list[bool] = []
        if self.commits:
            checks.append(False)
        if self.paths is not None:
            checks.append(self._path_allowed(path))
        if self.regexes is not None:
            checks.append(regex_ok)
        if self.stopwords:
            checks.append(stop_ok)
        return all(checks)


class KeywordIndex:
    """Every keyword of a rule set, found in one linear pass over a file (an RE2 ``Set``).

    The set holds only literals, so its automaton is bounded by their total length; the
    self-check at construction proves every keyword is found.
    """

    __slots__ = ("_ids", "_set")

    def __init__(self, keywords: Iterable[str]) -> None:
        words = sorted({k.lower() for k in keywords if k})
        self._ids = {w: i for i, w in enumerate(words)}
        self._set: Any = None
        if not words:
            return
        s = re2.Set.SearchSet(_options(64 << 20))
        for w in words:
            s.Add(re2.escape(w))
        s.Compile()
        probe = "\n".join(words).encode()
        if set(s.Match(probe) or ()) != set(range(len(words))):
            raise ConfigError("secret rule keywords could not be indexed")
        self._set = s

    def ids(self, keywords: Iterable[str]) -> frozenset[int]:
        return frozenset(self._ids[k.lower()] for k in keywords if k)

    def present(self, res: TextFile) -> frozenset[int]:
        """Ids of the keywords that occur in ``res``."""
        if self._set is None:
            return frozenset()
        s = self._set
        return res.memo(self, lambda: frozenset(s.Match(res.lower) or ()))


@dataclass(frozen=True, slots=True)
class Pattern:
    """How one rule finds secrets. Built-in patterns may also set the refinements below."""

    regex: Regex | None
    secret_groups: tuple[int, ...] = ()
    """Capture groups holding the secret, first non-empty wins; empty: any group (gitleaks default)."""
    entropy: float = 0.0
    keywords: tuple[str, ...] = ()
    path: Regex | None = None
    allowlists: tuple[Allowlist, ...] = ()
    # --- built-in refinements (gitleaks files never set these) ---
    validate: Callable[[str, str], bool] | None = None
    """Extra check ``(secret, match) -> keep?`` (base64 of ``user:pass``, a JWT header is JSON, ...)."""
    key_group: int = 0
    """Capture group holding the assigned key's name, for ``key_allowed``."""
    key_allowed: Callable[[str], bool] | None = None
    max_line: int = 0
    """Ignore matches on lines longer than this (0: no limit)."""

    def __post_init__(self) -> None:
        if self.regex is None and self.path is None:
            raise ConfigError("a secret pattern needs a regex or a path")


@dataclass(frozen=True, slots=True)
class Hit:
    """One secret a rule found: byte offsets in the file and the secret itself."""

    start: int
    end: int
    secret_start: int
    secret: str = field(repr=False)
    file_only: bool = False


class SecretRuleSet:
    """What every rule of one set shares: the global allowlists and the keyword index.

    Its rules join it when they are built (before any scan); per file it works out once which
    of them can match at all, so the others cost a set lookup.
    """

    __slots__ = ("_members", "allowlists", "index", "max_candidates")

    def __init__(
        self, allowlists: tuple[Allowlist, ...], keywords: Iterable[str], max_candidates: int = MAX_CANDIDATES
    ) -> None:
        self.allowlists = allowlists
        self.index = KeywordIndex(keywords)
        self.max_candidates = max_candidates
        self._members: list[tuple[SecretRule, frozenset[int], bool]] = []

    def join(self, rule: SecretRule, keyword_ids: frozenset[int]) -> None:
        self._members.append((rule, keyword_ids, rule.pattern.regex is None))

    def candidates(self, res: TextFile) -> frozenset[SecretRule]:
        """Rules that may find something in ``res``: not allowlisted away, keywords present."""
        return res.memo(self, lambda: self._candidates(res))

    def _candidates(self, res: TextFile) -> frozenset[SecretRule]:
        if any(a.skips_file(res.path) for a in self.allowlists):
            return frozenset()
        if res.binary:
            return frozenset(r for r, _, file_only in self._members if file_only)
        present = self.index.present(res)
        return frozenset(r for r, ids, _ in self._members if not ids or ids & present)


class SecretRule(Rule[TextFile]):
    """A data-driven secret rule: its ``meta`` and :class:`Pattern` are per instance."""

    target = TextFile

    def __init__(
        self,
        meta: RuleMeta,
        pattern: Pattern,
        ruleset: SecretRuleSet,
        superseded_by: tuple[SecretRule, ...] = (),
    ) -> None:
        self.meta = meta
        self.pattern = pattern
        self.ruleset = ruleset
        self.superseded_by = superseded_by
        self.screen = ruleset.candidates
        ruleset.join(self, ruleset.index.ids(pattern.keywords))

    def check(self, resource: TextFile, policy: Policy) -> Iterator[Violation]:
        if self not in self.ruleset.candidates(resource):
            return
        seen: set[tuple[str, int]] = set()
        for hit in self.hits(resource):
            if self._superseded(resource, hit):
                continue
            once = (hit.secret, resource.line_of(hit.secret_start) if hit.secret else hit.start)
            if once in seen:
                continue  # the same secret repeated on one line is one problem
            seen.add(once)
            if hit.file_only:
                yield Violation(f"{self.meta.title}: the file itself ({resource.file})", key="file")
                continue
            secret = hit.secret or resource.data[hit.start : hit.end].decode("utf-8", "replace")
            yield Violation(
                f"{self.meta.title}: {redact(secret)}",
                path=(hit.secret_start,),
                key=secret_digest(secret),
            )

    def hits(self, res: TextFile) -> tuple[Hit, ...]:
        """Everything this rule finds in ``res`` before supersession (computed once per file)."""
        if self not in self.ruleset.candidates(res):
            return ()
        return res.memo(self, lambda: tuple(self._scan(res)))

    def _superseded(self, res: TextFile, hit: Hit) -> bool:
        if not self.superseded_by or hit.file_only:
            return False
        line = res.line_of(hit.secret_start)
        for other in self.superseded_by:
            for h in other.hits(res):
                if not h.file_only and hit.secret in h.secret and res.line_of(h.secret_start) == line:
                    return True
        return False

    def _scan(self, res: TextFile) -> Iterator[Hit]:
        p = self.pattern
        path = res.path
        if any(a.skips_file(path) for a in p.allowlists):
            return
        if p.path is not None:
            if not path or p.path.search(path) is None:
                return
            if p.regex is None:
                yield Hit(0, 0, 0, "", file_only=True)
                return
        if p.regex is None or res.binary:
            return
        regex = p.regex
        data = res.data
        limit = self.ruleset.max_candidates
        pos, n = 0, 0
        while pos <= len(data):
            m = regex.search(data, pos)
            if m is None:
                return
            start, end = m.span()
            n += 1
            if n > limit:
                raise LimitExceeded(
                    res.file, f"more than {limit} matches of secret rule {self.meta.id}; not examined further"
                )
            pos = end if end > start else end + 1
            if p.max_line:
                ls, le = res.line_span(start, end)
                if le - ls > p.max_line:
                    pos = max(pos, le + 1)  # minified: skip the rest of this line in one step
                    continue
            hit = self._examine(res, regex, start, end)
            if hit is not None:
                yield hit

    def _examine(self, res: TextFile, regex: Regex, start: int, end: int) -> Hit | None:
        p = self.pattern
        data = res.data
        raw = data[start:end]
        trimmed = raw.strip(b"\n")
        if not trimmed:
            return None
        start += len(raw) - len(raw.lstrip(b"\n"))
        end = start + len(trimmed)
        secret_b, offset = trimmed, 0
        groups: Any = regex.search(trimmed)
        if groups is not None and groups.re.groups >= 1:
            candidates = p.secret_groups or tuple(range(1, groups.re.groups + 1))
            for g in candidates:
                value = groups.group(g)
                if value:
                    secret_b, offset = value, groups.start(g)
                    break
            else:
                if p.secret_groups:
                    secret_b, offset = b"", 0
        secret = secret_b.decode("utf-8", "replace")
        if p.entropy and shannon_entropy(secret) <= p.entropy:
            return None
        if p.key_allowed is not None and groups is not None and p.key_group:
            key = groups.group(p.key_group)
            if key is not None and not p.key_allowed(key.decode("utf-8", "replace")):
                return None
        match = trimmed.decode("utf-8", "replace")
        if p.validate is not None and not p.validate(secret, match):
            return None

        def line() -> str:
            ls, le = res.line_span(start, end)
            return data[max(ls, start - LINE_WINDOW) : min(le, end + LINE_WINDOW)].decode("utf-8", "replace")

        path = res.path
        for a in (*self.ruleset.allowlists, *p.allowlists):
            if a.skips_finding(secret, match, line, path):
                return None
        return Hit(start, end, start + offset, secret)
