"""gitleaks-format rule files: the shipped configuration, its validation samples, strict loading
and the matching semantics (keywords, secret groups, entropy, allowlists, generic precedence)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dutyguard.core.model import Severity
from dutyguard.core.policy import Policy
from dutyguard.core.rule import AnyRule, RuleRegistry
from dutyguard.engine import Scanner
from dutyguard.errors import ConfigError
from dutyguard.limits import DEFAULT_LIMITS
from dutyguard.rules import default_registry
from dutyguard.rules.gitleaks import MAX_FILE_BYTES, MAX_RULES, load_rules, rules_from_bytes
from dutyguard.rules.secret_engine import SecretRule
from dutyguard.sources.registry import default_sources
from dutyguard.sources.text import TextFile, TextSource


def config(shared_data: Path) -> Path:
    return shared_data / "gitleaks" / "gitleaks.toml"


@pytest.fixture(scope="module")
def shipped(shared_data: Path) -> dict[str, SecretRule]:
    rules = load_rules(str(config(shared_data)))
    out: dict[str, SecretRule] = {}
    for r in rules:
        assert isinstance(r, SecretRule)
        out[r.meta.equivalents["gitleaks"][0]] = r
    return out


def load(text: str) -> dict[str, SecretRule]:
    out: dict[str, SecretRule] = {}
    for r in rules_from_bytes(text.encode(), "test.toml"):
        assert isinstance(r, SecretRule)
        out[r.meta.equivalents["gitleaks"][0]] = r
    return out


def hits(rule: AnyRule, text: str, name: str = "file.txt") -> list[tuple[int | None, str]]:
    res = TextFile(name, text.encode())
    return [(res.locate(v.path).line, v.message) for v in rule.check(res, Policy())]


# --- the shipped configuration -----------------------------------------------------------------
def test_shipped_config_loads_all_222_rules(shared_data: Path, shipped: dict[str, SecretRule]) -> None:
    assert len(shipped) == 222
    aws = shipped["aws-access-token"]
    assert aws.meta.id == "secrets.aws-access-token"
    assert aws.meta.pack == "secrets"
    assert aws.meta.severity is Severity.CRITICAL
    assert shipped["generic-api-key"].meta.severity is Severity.MEDIUM
    assert shipped["slack-bot-token"].meta.severity is Severity.HIGH
    assert shipped["1password-secret-key"].meta.id == "secrets.1password-secret-key"
    # generic rules give way to the specific ones, as gitleaks' filter does
    assert shipped["generic-api-key"].superseded_by
    assert not aws.superseded_by


# gitleaks validates rules with literal samples; these rule ids have samples but no rule in the
# shipped file (the generator declares them, the configuration does not carry them).
NOT_IN_SHIPPED_CONFIG = {
    "gcp-service-account": "not emitted into config/gitleaks.toml at this commit",
    "square-secret": "not emitted into config/gitleaks.toml at this commit (no samples either)",
    "trello-access-token": "not emitted into config/gitleaks.toml at this commit (no samples either)",
}
# Samples our RE2 port cannot reproduce, with the reason. Empty: every sample passes.
KNOWN_DIFFERENCES: dict[tuple[str, str, int], str] = {}


def test_gitleaks_validation_samples_pass(shared_data: Path, shipped: dict[str, SecretRule]) -> None:
    cases = json.loads((shared_data / "gitleaks" / "RULE_TEST_CASES.json").read_text())
    missing = {c["rule_id"] for c in cases if c["rule_id"] not in shipped}
    assert missing == set(NOT_IN_SHIPPED_CONFIG)
    passed = total = 0
    failures: list[str] = []
    for case in cases:
        rule = shipped.get(case["rule_id"])
        if rule is None:
            continue
        # gitleaks validates each rule alone (its generic filter never sees another rule)
        alone = SecretRule(rule.meta, rule.pattern, rule.ruleset)
        for kind, samples in (("tp", case["true_positives"]), ("fp", case["false_positives"])):
            for i, sample in enumerate(samples):
                if (case["rule_id"], kind, i) in KNOWN_DIFFERENCES:
                    continue
                # DetectString: no file path, so path allowlists and path rules do not apply
                found = list(alone.check(TextFile("", sample.encode()), Policy()))
                total += 1
                if bool(found) == (kind == "tp"):
                    passed += 1
                else:
                    failures.append(f"{case['rule_id']} {kind}#{i}: {sample[:100]!r}")
    assert not failures
    assert total == 89 + 291  # every literal sample of the rules present (1 TP belongs to a missing rule)
    print(f"gitleaks validation samples: {passed}/{total} pass")


def test_validation_samples_exercise_the_filters(shared_data: Path, shipped: dict[str, SecretRule]) -> None:
    # Without entropy and allowlists many false-positive samples match: the pass above is not vacuous.
    from dutyguard.rules.secret_engine import Pattern, SecretRuleSet

    cases = json.loads((shared_data / "gitleaks" / "RULE_TEST_CASES.json").read_text())
    regex_only = 0
    for case in cases:
        rule = shipped.get(case["rule_id"])
        if rule is None:
            continue
        p = rule.pattern
        bare = SecretRule(
            rule.meta,
            Pattern(regex=p.regex, secret_groups=p.secret_groups, keywords=p.keywords, path=p.path),
            SecretRuleSet((), p.keywords),
        )
        regex_only += sum(
            1 for s in case["false_positives"] if list(bare.check(TextFile("", s.encode()), Policy()))
        )
    assert regex_only > 100


def test_secret_rules_flag_replaces_builtin_set(shared_data: Path) -> None:
    registry = default_registry(str(config(shared_data)))
    secret_ids = {r.meta.id for r in registry if r.meta.pack == "secrets"}
    assert len(secret_ids) == 222
    assert "secrets.generic-password" not in secret_ids  # built-in rule gone
    scanner = Scanner(registry=registry, sources=default_sources(), policy=Policy(), limits=DEFAULT_LIMITS)
    report = scanner.scan([str(Path(__file__).resolve().parents[2] / "examples" / "shop-api" / "config")])
    # gitleaks has no AWS secret-key rule: its generic rule reports the secret access key
    assert [(Path(f.location.file).name, f.location.line, f.rule_id) for f in report.findings] == [
        ("settings.ini", 5, "secrets.aws-access-token"),
        ("settings.ini", 6, "secrets.generic-api-key"),
    ]


# --- strict loading -----------------------------------------------------------------------------
RULE = '[[rules]]\nid = "demo-token"\nregex = """demo_[a-z0-9]{8}"""\nkeywords = ["demo_"]\n'


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        (RULE + 'colour = "red"\n', "rule 'demo-token': unknown key 'colour'"),
        ('[[rules]]\nid = "bad-regex"\nregex = """(unclosed"""\n', "rule 'bad-regex': regex"),
        ('[[rules]]\nid = "lookahead"\nregex = """token(?=[0-9])"""\n', "rule 'lookahead': regex"),
        ('[[rules]]\nid = "backref"\nregex = """(a)\\\\1"""\n', "rule 'backref': regex"),
        (
            '[[rules]]\nid = "groups"\nregex = """(a)b"""\nsecretGroup = 2\n',
            "secretGroup 2 but the regex has 1",
        ),
        ('[[rules]]\nid = "nothing"\ndescription = "x"\n', "rule 'nothing': both regex and path are empty"),
        ('[[rules]]\nregex = "x"\n', "rule #1: id is missing"),
        (
            '[[rules]]\nid = "multi"\nregex = "x"\n[[rules.required]]\nid = "other"\n',
            "rule 'multi': multi-part",
        ),
        (
            RULE + "[[rules.allowlists]]\ndescription = 'empty'\n",
            "at least one of commits, paths, regexes, stopwords",
        ),
        (RULE + "[[rules.allowlists]]\ncondition = 'XOR'\nregexes = ['a']\n", "unknown condition 'XOR'"),
        (
            RULE + "[[rules.allowlists]]\nregexTarget = 'file'\nregexes = ['a']\n",
            "unknown regexTarget 'file'",
        ),
        (RULE + "[rules.allowlist]\nregexes = ['a']\n[[rules.allowlists]]\nregexes = ['b']\n", "legacy"),
        (RULE + RULE, "rule 'demo-token': duplicate rule id"),
        (RULE + '[[rules]]\nid = "Demo_Token"\nregex = "x"\n', "collides with rule 'demo-token'"),
        ("[extend]\nuseDefault = true\n" + RULE, "[extend]"),
        ('[extend]\npath = "/etc/gitleaks.toml"\n' + RULE, "[extend]"),
        (RULE + "[[allowlists]]\ntargetRules = ['nope']\nregexes = ['a']\n", "targetRules names rule 'nope'"),
        (RULE + "[allowlist]\nregexes = ['a']\n[[allowlists]]\nregexes = ['b']\n", "legacy [allowlist]"),
        ('title = "no rules"\n', "no rules"),
        ("[[rules]\n", "invalid TOML"),
        (RULE + "entropy = 'high'\n", "entropy must be a number"),
        (RULE.replace('["demo_"]', '"demo_"'), "keywords must be an array of strings"),
    ],
)
def test_invalid_rule_file_is_a_config_error_naming_the_rule(toml: str, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        rules_from_bytes(toml.encode(), "rules.toml")
    assert message in e.value.diagnostics()
    assert e.value.diagnostics().startswith("rules.toml")


def test_oversized_rule_file_is_refused() -> None:
    with pytest.raises(ConfigError, match="larger than"):
        rules_from_bytes(b"#" * (MAX_FILE_BYTES + 1), "huge.toml")


def test_too_many_rules_are_refused() -> None:
    text = "".join(f'[[rules]]\nid = "r{i}"\nregex = "r{i}x"\n' for i in range(MAX_RULES + 1))
    with pytest.raises(ConfigError, match=f"more than {MAX_RULES} rules"):
        rules_from_bytes(text.encode(), "many.toml")


def test_non_utf8_rule_file_is_refused() -> None:
    with pytest.raises(ConfigError, match="not valid UTF-8"):
        rules_from_bytes(b'title = "\xff"\n' + RULE.encode(), "latin1.toml")


def test_unreadable_rule_file_names_the_flag(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"--secret-rules .*missing\.toml"):
        load_rules(str(tmp_path / "missing.toml"))


def test_keys_are_case_insensitive_like_viper() -> None:
    rules = load('[[rules]]\nID = "t"\nRegex = """k_([a-z]{6})"""\nsecretgroup = 1\nKeywords = ["k_"]\n')
    assert hits(rules["t"], "x = k_abcdef\n") == [(1, "Secret (t): … (6 characters)")]


# --- semantics -----------------------------------------------------------------------------------
def test_keyword_prefilter_gates_the_regex() -> None:
    rules = load('[[rules]]\nid = "t"\nregex = """tok_[0-9]{6}"""\nkeywords = ["Deploy"]\n')
    assert hits(rules["t"], "tok_123456\n") == []  # keyword absent: the regex never runs
    assert [line for line, _ in hits(rules["t"], "# DEPLOY key\n\ntok_123456\n")] == [3]


def test_secret_group_and_first_non_empty_group() -> None:
    rules = load(
        '[[rules]]\nid = "grp"\nregex = """(a|(b))=([0-9]{6})"""\nsecretGroup = 3\n'
        '[[rules]]\nid = "first"\nregex = """(x)?y=([0-9]{6})"""\n'
    )
    assert hits(rules["grp"], "b=123456\n") == [(1, "Secret (grp): … (6 characters)")]
    assert hits(rules["first"], "y=654321\n") == [(1, "Secret (first): … (6 characters)")]


def test_entropy_threshold_is_exclusive() -> None:
    # "abcd" has exactly 2 bits of entropy: gitleaks drops secrets whose entropy is <= the threshold.
    rules = load(
        '[[rules]]\nid = "e"\nregex = """v=([a-z]{4})\\\\b"""\nentropy = 2.0\n'
        '[[rules]]\nid = "f"\nregex = """w=([a-z]{4})\\\\b"""\nentropy = 1.9\n'
    )
    assert hits(rules["e"], "v=abcd\n") == []
    assert len(hits(rules["f"], "w=abcd\n")) == 1


def test_path_only_rule_reports_the_file(tmp_path: Path) -> None:
    rules = load('[[rules]]\nid = "keystore"\npath = """\\\\.jks$"""\n')
    assert hits(rules["keystore"], "", "conf/app.jks") == [
        (None, "Secret (keystore): the file itself (conf/app.jks)")
    ]
    assert hits(rules["keystore"], "", "conf/app.txt") == []


def test_path_and_regex_rule_needs_both() -> None:
    rules = load('[[rules]]\nid = "php"\nregex = """sk_[a-z]{6}"""\npath = """\\\\.php$"""\n')
    assert len(hits(rules["php"], "sk_abcdef\n", "a.php")) == 1
    assert hits(rules["php"], "sk_abcdef\n", "a.py") == []


def test_allowlist_targets_secret_match_and_line() -> None:
    rules = load(
        '[[rules]]\nid = "s"\nregex = """key=([a-z0-9]{8})"""\n'
        "[[rules.allowlists]]\nregexes = ['^test']\n"
        '[[rules]]\nid = "m"\nregex = """key=([a-z0-9]{8})"""\n'
        "[[rules.allowlists]]\nregexTarget = 'match'\nregexes = ['^key=']\n"
        '[[rules]]\nid = "l"\nregex = """key=([a-z0-9]{8})"""\n'
        "[[rules.allowlists]]\nregexTarget = 'line'\nregexes = ['--mount=type=secret']\n"
    )
    assert hits(rules["s"], "key=test1234\n") == []
    assert len(hits(rules["s"], "key=prod1234\n")) == 1
    assert hits(rules["m"], "key=prod1234\n") == []  # the match starts with key=
    assert hits(rules["l"], "RUN --mount=type=secret,id=x key=prod1234\n") == []
    assert len(hits(rules["l"], "RUN key=prod1234\n")) == 1


def test_allowlist_and_condition_needs_every_check() -> None:
    rules = load(
        '[[rules]]\nid = "a"\nregex = """key=([a-z0-9]{8})"""\n'
        "[[rules.allowlists]]\ncondition = 'AND'\npaths = ['\\.bb$']\nregexTarget = 'line'\nregexes = ['^SRC']\n"
    )
    assert hits(rules["a"], "SRC key=prod1234\n", "recipe.bb") == []
    assert len(hits(rules["a"], "SRC key=prod1234\n", "recipe.txt")) == 1
    assert len(hits(rules["a"], "OTHER key=prod1234\n", "recipe.bb")) == 1


def test_stopwords_and_global_allowlist_paths() -> None:
    rules = load(
        "[allowlist]\npaths = ['(^|/)vendor/']\nstopwords = ['sample']\n"
        '[[rules]]\nid = "t"\nregex = """tok_([a-z0-9]{10})"""\n'
    )
    assert hits(rules["t"], "tok_sample1234\n") == []
    assert hits(rules["t"], "tok_prod123456\n", "vendor/lib.go") == []
    assert len(hits(rules["t"], "tok_prod123456\n", "src/lib.go")) == 1


def test_target_rules_allowlist_applies_to_named_rule_only() -> None:
    rules = load(
        RULE + '[[rules]]\nid = "other"\nregex = """demo_[a-z0-9]{8}"""\n'
        "[[allowlists]]\ntargetRules = ['demo-token']\nregexes = ['demo_00000000']\n"
    )
    assert hits(rules["demo-token"], "demo_00000000\n") == []
    assert len(hits(rules["other"], "demo_00000000\n")) == 1


def test_generic_rule_gives_way_to_specific_rule_on_same_line(shared_data: Path) -> None:
    registry = RuleRegistry(load_rules(str(config(shared_data))))
    scanner = Scanner(registry=registry, sources=(TextSource(),), policy=Policy(), limits=DEFAULT_LIMITS)
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "ci.sh"
        # a GitHub PAT assigned to a token-like name: both rules match, only github-pat is reported
        p.write_text("export GITHUB_TOKEN=ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8" + "\n")
        report = scanner.scan([str(p)])
    assert [f.rule_id for f in report.findings] == ["secrets.github-pat"]


def test_gitleaks_allow_comment_does_not_silence_finding(shared_data: Path, tmp_path: Path) -> None:
    registry = default_registry(str(config(shared_data)))
    scanner = Scanner(registry=registry, sources=default_sources(), policy=Policy(), limits=DEFAULT_LIMITS)
    p = tmp_path / "deploy.sh"
    p.write_text("GH=ghp_" + "Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0FeDcBa" + "  # gitleaks:allow\n")
    report = scanner.scan([str(p)])
    assert [(f.location.line, f.rule_id) for f in report.findings] == [(1, "secrets.github-pat")]
    assert [(s.line, s.syntax) for s in report.suppression_requests] == [(1, "gitleaks:allow")]
    assert report.exit_code == 1
