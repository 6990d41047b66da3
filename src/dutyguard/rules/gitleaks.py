"""Loading a gitleaks-format TOML rule file as dutyguard secret rules (``--secret-rules FILE``).

Strict: the file is parsed with ``tomllib`` and every table is checked against the gitleaks v8
configuration schema. Keys compare case-insensitively (gitleaks reads its configuration
through viper, which does), but an unknown key, a wrong type, a regex RE2 cannot compile, a
``secretGroup`` beyond the regex's groups or an empty allowlist is a :class:`ConfigError`
naming the rule. What we cannot honour is refused rather than ignored:

- ``[extend]`` (``useDefault``, ``path``, ``url``): a rule file must be complete; dutyguard
  never reads another configuration implicitly;
- multi-part rules (``[[rules.required]]``, ``skipReport``).

Severity: gitleaks rules have none. A ``severity:<level>`` tag sets it; otherwise generic
rules (``generic*``, ``curl-*``, ``jwt*``, ``kubernetes-secret*``) are medium, live cloud/VCS
credentials and private keys critical (:data:`_CRITICAL_PREFIXES`), everything else high.

Rule ids become ``secrets.<id>`` (lower case, runs of other characters turned into ``-``);
the original id is kept as the rule's ``gitleaks`` equivalent.

``path`` patterns (rules and allowlists) see the file name as the report shows it: the scan
argument joined with the path below it, ``/``-separated. gitleaks' own patterns are written
as ``(?:^|/)name``, which works with any prefix; a pattern anchored at ``^`` to the repository
root needs the scan to be run from that root (``dutyguard scan .``).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dutyguard.core.model import Severity
from dutyguard.core.rule import AnyRule, RuleMeta
from dutyguard.errors import ConfigError
from dutyguard.rules.secret_engine import (
    Allowlist,
    Pattern,
    RegexTarget,
    SecretRule,
    SecretRuleSet,
    compile_regex,
    join_regexes,
)
from dutyguard.rules.secret_patterns import CONTROLS, REMEDIATION

MAX_FILE_BYTES = 2 * 1024 * 1024
MAX_RULES = 2_000
MAX_LIST_ITEMS = 20_000
MAX_PATTERN_CHARS = 16 * 1024

_TOP_KEYS = frozenset({"title", "description", "minversion", "extend", "rules", "allowlist", "allowlists"})
_RULE_KEYS = frozenset(
    {
        "id",
        "description",
        "regex",
        "secretgroup",
        "entropy",
        "keywords",
        "path",
        "tags",
        "allowlist",
        "allowlists",
    }
)
_REFUSED_RULE_KEYS = {
    "required": "multi-part rules ([[rules.required]]) are not supported",
    "skipreport": "skipReport (multi-part rules) is not supported",
}
_ALLOWLIST_KEYS = frozenset(
    {"description", "condition", "commits", "paths", "regextarget", "regexes", "stopwords"}
)
_GLOBAL_ALLOWLIST_KEYS = _ALLOWLIST_KEYS | {"targetrules"}

_GENERIC_PREFIXES = ("generic", "curl-", "jwt", "kubernetes-secret")
_CRITICAL_PREFIXES = (
    "private-key",
    "age-secret-key",
    "aws-",
    "gcp-",
    "azure-",
    "alibaba-",
    "digitalocean-",
    "github-",
    "gitlab-",
    "vault-",
    "hashicorp-tf-api-token",
)
_SEVERITY_TAG = re.compile(r"^severity:(critical|high|medium|low|info)$", re.IGNORECASE)
_NON_ID = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True, slots=True)
class _RuleSpec:
    gitleaks_id: str
    rule_id: str
    description: str
    tags: tuple[str, ...]
    pattern: Pattern


def load_rules(path: str) -> list[AnyRule]:
    """Every rule of the gitleaks TOML file at ``path``."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_FILE_BYTES + 1)
    except OSError as e:
        raise ConfigError(f"--secret-rules {path}: cannot read ({e.strerror})") from None
    return rules_from_bytes(raw, path)


def rules_from_bytes(raw: bytes, source: str) -> list[AnyRule]:
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigError(f"{source}: larger than {MAX_FILE_BYTES} bytes, the limit for a secret rule file")
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError(f"{source}: not valid UTF-8 (byte {e.start})") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{source}: invalid TOML ({e})") from None
    return _Loader(source).load(doc)


class _Loader:
    def __init__(self, source: str) -> None:
        self.source = source

    def err(self, where: str, msg: str) -> ConfigError:
        return ConfigError(f"{self.source}: {where}: {msg}")

    # --- document -----------------------------------------------------------------------------
    def load(self, doc: Mapping[str, Any]) -> list[AnyRule]:
        top = self.keys(doc, _TOP_KEYS, "top level")
        for k in ("title", "description", "minversion"):
            if k in top:
                self.string(top[k], "top level", k)
        if "extend" in top:
            ext = self.table(top["extend"], "[extend]")
            if ext:
                raise self.err(
                    "[extend]",
                    "extending another configuration (useDefault/path/url/disabledRules) is not supported; "
                    "write a complete rule file",
                )
        rules_raw = top.get("rules", [])
        if not isinstance(rules_raw, list) or not all(isinstance(r, dict) for r in rules_raw):
            raise self.err("rules", "must be an array of tables ([[rules]])")
        if not rules_raw:
            raise self.err("rules", "no rules: an empty secret rule set would pass everything")
        if len(rules_raw) > MAX_RULES:
            raise self.err("rules", f"more than {MAX_RULES} rules")
        specs = [self.rule(r, i) for i, r in enumerate(rules_raw)]
        self.check_ids(specs)

        global_lists: list[Allowlist] = []
        targeted: dict[str, list[Allowlist]] = {}
        if "allowlist" in top and "allowlists" in top:
            raise self.err("[allowlist]", "the legacy [allowlist] cannot be used alongside [[allowlists]]")
        if "allowlist" in top:
            entries = [self.table(top["allowlist"], "[allowlist]")]
        else:
            entries = self.tables(top.get("allowlists", []), "[[allowlists]]")
        for n, entry in enumerate(entries):
            where = f"[[allowlists]] #{n + 1}"
            a = self.allowlist(entry, where, _GLOBAL_ALLOWLIST_KEYS)
            targets = self.strings(self.keys(entry, _GLOBAL_ALLOWLIST_KEYS, where), "targetrules", where)
            if not targets:
                global_lists.append(a)
            for t in targets:
                targeted.setdefault(t, []).append(a)
        known = {s.gitleaks_id for s in specs}
        for t in targeted:
            if t not in known:
                raise self.err("[[allowlists]]", f"targetRules names rule {t!r}, which does not exist")

        ruleset = SecretRuleSet(tuple(global_lists), (k for s in specs for k in s.pattern.keywords))
        specific: list[SecretRule] = []
        generic: list[tuple[_RuleSpec, Pattern]] = []
        for s in specs:
            extra = tuple(targeted.get(s.gitleaks_id, ()))
            pattern = s.pattern
            if extra:
                pattern = Pattern(
                    regex=pattern.regex,
                    secret_groups=pattern.secret_groups,
                    entropy=pattern.entropy,
                    keywords=pattern.keywords,
                    path=pattern.path,
                    allowlists=(*pattern.allowlists, *extra),
                )
            if "generic" in s.gitleaks_id.lower():
                generic.append((s, pattern))
            else:
                specific.append(SecretRule(self.meta(s), pattern, ruleset))
        out: list[AnyRule] = list(specific)
        for s, pattern in generic:
            out.append(SecretRule(self.meta(s), pattern, ruleset, superseded_by=tuple(specific)))
        order = {s.rule_id: i for i, s in enumerate(specs)}
        out.sort(key=lambda r: order[r.meta.id])
        return out

    def check_ids(self, specs: Sequence[_RuleSpec]) -> None:
        seen: dict[str, str] = {}
        for s in specs:
            if s.gitleaks_id in seen.values():
                raise self.err(f"rule {s.gitleaks_id!r}", "duplicate rule id")
            other = seen.get(s.rule_id)
            if other is not None:
                raise self.err(
                    f"rule {s.gitleaks_id!r}", f"its id collides with rule {other!r} as {s.rule_id}"
                )
            seen[s.rule_id] = s.gitleaks_id

    def meta(self, s: _RuleSpec) -> RuleMeta:
        return RuleMeta(
            id=s.rule_id,
            title=f"Secret ({s.gitleaks_id})",
            severity=_severity(s.gitleaks_id, s.tags),
            description=s.description or f"gitleaks rule {s.gitleaks_id}",
            remediation=REMEDIATION,
            controls=CONTROLS,
            pack="secrets",
            tags=("secrets", "gitleaks", *s.tags),
            equivalents={"gitleaks": (s.gitleaks_id,)},
        )

    # --- one rule -----------------------------------------------------------------------------
    def rule(self, raw: Mapping[str, Any], index: int) -> _RuleSpec:
        ids = [v for k, v in raw.items() if k.lower() == "id" and isinstance(v, str)]
        rid = ids[0] if len(ids) == 1 else None
        where = f"rule {rid!r}" if rid else f"rule #{index + 1}"
        for k in raw:
            refused = _REFUSED_RULE_KEYS.get(k.lower())
            if refused:
                raise self.err(where, refused)
        r = self.keys(raw, _RULE_KEYS, where)
        if not rid or not rid.strip():
            raise self.err(where, "id is missing or empty")
        rule_id = "secrets." + _NON_ID.sub("-", rid.lower()).strip("-")
        if rule_id == "secrets.":
            raise self.err(where, "id has no letters or digits")
        description = self.string(r["description"], where, "description") if "description" in r else ""
        regex = self.pattern(r["regex"], where, "regex") if "regex" in r else None
        path = self.pattern(r["path"], where, "path") if "path" in r else None
        if regex is None and path is None:
            raise self.err(where, "both regex and path are empty: the rule would have no effect")
        group = 0
        if "secretgroup" in r:
            group = r["secretgroup"]
            if not isinstance(group, int) or isinstance(group, bool) or group < 0:
                raise self.err(where, "secretGroup must be a non-negative integer")
            ngroups = regex.groups if regex is not None else 0
            if group > ngroups:
                raise self.err(where, f"secretGroup {group} but the regex has {ngroups} capture group(s)")
        entropy = 0.0
        if "entropy" in r:
            e = r["entropy"]
            if isinstance(e, bool) or not isinstance(e, int | float) or not 0 <= e <= 64:
                raise self.err(where, "entropy must be a number between 0 and 64")
            entropy = float(e)
        keywords = tuple(k.lower() for k in self.strings(r, "keywords", where))
        if any(not k for k in keywords):
            raise self.err(where, "a keyword is empty")
        tags = tuple(self.strings(r, "tags", where))
        if "allowlist" in r and "allowlists" in r:
            raise self.err(
                where, "the legacy [rules.allowlist] cannot be used alongside [[rules.allowlists]]"
            )
        if "allowlist" in r:
            entries = [self.table(r["allowlist"], f"{where} [rules.allowlist]")]
        else:
            entries = self.tables(r.get("allowlists", []), f"{where} [[rules.allowlists]]")
        allowlists = tuple(
            self.allowlist(a, f"{where} [[rules.allowlists]] #{n + 1}", _ALLOWLIST_KEYS)
            for n, a in enumerate(entries)
        )
        pattern = Pattern(
            regex=regex,
            secret_groups=(group,) if group else (),
            entropy=entropy,
            keywords=keywords,
            path=path,
            allowlists=allowlists,
        )
        return _RuleSpec(rid, rule_id, description, tags, pattern)

    def allowlist(self, raw: Mapping[str, Any], where: str, allowed: frozenset[str]) -> Allowlist:
        a = self.keys(raw, allowed, where)
        condition = self.string(a.get("condition", ""), where, "condition").strip().upper()
        if condition not in ("", "OR", "||", "AND", "&&"):
            raise self.err(where, f"unknown condition {condition!r} (expected AND or OR)")
        target_text = self.string(a.get("regextarget", "secret"), where, "regexTarget") or "secret"
        try:
            target = RegexTarget(target_text)
        except ValueError:
            raise self.err(
                where, f"unknown regexTarget {target_text!r} (expected secret, match or line)"
            ) from None
        commits = tuple(c.strip().lower() for c in self.strings(a, "commits", where))
        paths = self.strings(a, "paths", where)
        regexes = self.strings(a, "regexes", where)
        stopwords = tuple(sorted({w.lower() for w in self.strings(a, "stopwords", where)}))
        if not (commits or paths or regexes or stopwords):
            raise self.err(
                where, "an allowlist must contain at least one of commits, paths, regexes, stopwords"
            )
        for p in (*paths, *regexes):
            self.check_length(p, where)
        if "description" in a:
            self.string(a["description"], where, "description")
        return Allowlist(
            description=a.get("description", ""),
            require_all=condition in ("AND", "&&"),
            commits=commits,
            paths=join_regexes(paths, f"{self.source}: {where}: paths"),
            regexes=join_regexes(regexes, f"{self.source}: {where}: regexes"),
            regex_target=target,
            stopwords=stopwords,
        )

    # --- typed accessors ----------------------------------------------------------------------
    def keys(self, raw: Mapping[str, Any], allowed: frozenset[str], where: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in raw.items():
            lk = k.lower()
            if lk not in allowed:
                raise self.err(where, f"unknown key {k!r}")
            if lk in out:
                raise self.err(where, f"key {k!r} given twice (keys are case-insensitive)")
            out[lk] = v
        return out

    def table(self, value: object, where: str) -> Mapping[str, Any]:
        if not isinstance(value, dict):
            raise self.err(where, "must be a table")
        return value

    def tables(self, value: object, where: str) -> list[Mapping[str, Any]]:
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise self.err(where, "must be an array of tables")
        return value

    def string(self, value: object, where: str, key: str) -> str:
        if not isinstance(value, str):
            raise self.err(where, f"{key} must be a string")
        return value

    def strings(self, raw: Mapping[str, Any], key: str, where: str) -> list[str]:
        value = raw.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.err(where, f"{key} must be an array of strings")
        if len(value) > MAX_LIST_ITEMS:
            raise self.err(where, f"{key} has more than {MAX_LIST_ITEMS} entries")
        return value

    def check_length(self, pattern: str, where: str) -> None:
        if len(pattern) > MAX_PATTERN_CHARS:
            raise self.err(where, f"a pattern is longer than {MAX_PATTERN_CHARS} characters")

    def pattern(self, value: object, where: str, key: str) -> Any:
        text = self.string(value, where, key)
        if not text:
            return None
        self.check_length(text, where)
        return compile_regex(text, f"{self.source}: {where}: {key}")


def _severity(gitleaks_id: str, tags: Sequence[str]) -> Severity:
    for t in tags:
        m = _SEVERITY_TAG.match(t)
        if m:
            return Severity.parse(m.group(1))
    rid = gitleaks_id.lower()
    if rid.startswith(_GENERIC_PREFIXES):
        return Severity.MEDIUM
    if rid.startswith(_CRITICAL_PREFIXES):
        return Severity.CRITICAL
    return Severity.HIGH
