"""The built-in secret patterns: one rule per credential format, plus three generic rules.

Severity: critical for live cloud and VCS/CI credentials and private keys, high for other
service tokens, medium for the generic rules (a keyword, an assignment and a random-looking
value). Patterns are written for RE2 (linear time on hostile input) and each carries its
keywords, so files that cannot hold the secret are never searched by it.

False positives are kept down by entropy thresholds, validators that decode what a format
promises (a JWT header is JSON with ``alg``, Docker ``auth`` is base64 of ``user:password``),
a shared placeholder list (``EXAMPLE``, ``xxxx``, ``changeme``, ``${VAR}``, ``<token>``,
``{{ .Values.x }}``, sequences like ``0123456789``) and, for the generic rules, key names
that are not secrets (``public_key``, ``hashed_secret``, ``csrf_token``, ...). Generic rules
also skip lock files, minified bundles and lines longer than :data:`MINIFIED_LINE` bytes,
and defer to a specific rule that found the same secret on the same line.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable
from dataclasses import dataclass

from dutyguard.core.model import Severity
from dutyguard.core.rule import RuleMeta
from dutyguard.rules.secret_engine import (
    Allowlist,
    Pattern,
    SecretRule,
    SecretRuleSet,
    compile_regex,
    join_regexes,
)

CONTROLS = ("nist-800-190:4.1.4", "nist-800-53:IA-5(7)", "pci-dss:8.6.2")
"""Embedded clear-text secrets (800-190 §4.1.4), no embedded static authenticators (IA-5(7)),
no hard-coded passwords for application/system accounts (PCI DSS v4 8.6.2)."""

KEY_CONTROLS = (*CONTROLS, "pci-dss:3.6.1")
"""Private keys add PCI DSS key-management (3.6.1: keys stored securely, in the fewest places)."""

REMEDIATION = (
    "Treat the secret as compromised: revoke or rotate it at its issuer first (everyone who can read "
    "this file or its history has it), then remove it from the file and the VCS history, and inject "
    "it at run time from a secret manager (a mounted Secret, not the image or the repository)."
)

MINIFIED_LINE = 4096
"""Lines longer than this are minified code or data; generic rules do not read them."""

Validator = Callable[[str, str], bool]
"""``(secret, match) -> keep?``"""

# --- placeholders, for every built-in rule --------------------------------------------------
_PLACEHOLDER_REGEXES = (
    r"(?i)example|sample|dummy|placeholder|changeme|change[_.-]me|replace[_.-]?me|redacted|fake|notreal",
    r"(?i)(?:insert|put|enter|add)[_.-]?(?:your|here)|your[_.-]?(?:own[_.-]?)?(?:api[_.-]?)?(?:key|token|secret|pass)",
    r"(?i)x{5,}|\*{3,}|#{5,}|\.{4,}",
    r"(?i)^(?:true|false|null|nil|none|undefined|empty|string|required|optional)$",
    r"\$\{[^}]*\}|\{\{[^}]*\}\}|\$\([^)]*\)|%\([^)]*\)s|<%[^%]*%>|#\{[^}]*\}",
    r"^\$[A-Za-z_][A-Za-z0-9_]*$|^%[A-Za-z_][A-Za-z0-9_]*%$|^@[A-Za-z_]+@$",
    r"^<[^>]*>$|<[A-Za-z_ -]+>",
    r"^/(?:bin|etc|home|opt|tmp|usr|var|dev|proc|run)/",
)
_PLACEHOLDER_STOPWORDS = (
    "abcdefghijklmnopqrstuvwxyz",
    "abcdefghij",
    "0123456789",
    "1234567890",
    "qwertyuiop",
    "asdfghjkl",
)

# --- generic rules ----------------------------------------------------------------------------
_GENERIC_SKIP_PATHS = (
    r"(?:^|/)(?:package-lock\.json|npm-shrinkwrap\.json|yarn\.lock|pnpm-lock\.yaml|Pipfile\.lock|poetry\.lock"
    r"|Cargo\.lock|Gemfile\.lock|composer\.lock|go\.sum|go\.mod|gradle\.lockfile|packages\.lock\.json|uv\.lock)$",
    r"\.(?:min\.js|min\.css|js\.map|css\.map|map|svg|lock)$",
    r"(?:^|/)(?:node_modules|bower_components|vendor|\.venv|venv|site-packages|dist-packages)/",
)

_KEY_NOT_SECRET = re.compile(
    r"(?i)hash(?!icorp)|digest|checksum|fingerprint|salt|public|pubkey|pub[_.-]|publishable|csrf|xsrf|"
    r"(?:^|[_.-])(?:next|page|continuation|pagination|sync|resume|cursor)[_.-]?token|"
    r"(?:primary|foreign|partition|sort|cache|bucket|schema|sequence|lookup|object|route|row|idempotency|"
    r"map|hot|mon|don|tur|jockey|license|registry|ssh|gpg|pgp|kms|host|sign[_.-]?in|i18n|translation)[_.-]?key"
)
"""Key names that hold something other than a secret, wherever the keyword sits in them."""

_KEY_KEYWORD = re.compile(
    r"(?i)secret|token|api[_.-]?key|apikey|access[_.-]?key|private[_.-]?key|client[_.-]?secret|auth[_.-]?key"
    r"|signing[_.-]?key|encryption[_.-]?key|credentials?|key|password|passwd|passphrase|pwd|pass"
)
_WORDS = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")
_NOT_SECRET_SUFFIX = frozenset(
    """id ids name names url urls uri path paths file files dir directory type types length len size count ttl
    expiry expires expiration expire timeout version format prefix suffix header headers field fields param
    params parameter ref reference arn alias region endpoint endpoints enabled enable disabled required mode
    policy rotation store manager provider kind label description desc hint placeholder help title regex
    pattern validator schema template env var variable source location generator algorithm algo method scope
    scopes created updated at date time age max min limit index idx number num visible hidden input output
    button text message error status state flag config settings option options property prop class selector
    ring pair press pressed code word board frame mesh up down left right stone vault tab location""".split()  # noqa: SIM905
)
"""Words that, following the keyword in a key name (``secret_name``, ``tokenUrl``, ``api_key_id``),
say the value is about the secret, not the secret."""


def _key_ok(key: str) -> bool:
    """``key`` names a secret: the keyword is not followed by a word such as ``id`` or ``url``,
    nor glued to one (``tokenizer``, ``passport``, ``keyboard``)."""
    if _KEY_NOT_SECRET.search(key):
        return False
    last = None
    for m in _KEY_KEYWORD.finditer(key):
        last = m
    if last is None:
        return False
    suffix = key[last.end() :]
    if not suffix or suffix.lower() == "s":
        return True
    glued = suffix[0].isalnum() and not (suffix[0].isupper() and key[last.end() - 1].islower())
    if glued and not (key.isupper() or suffix[0].isdigit()):
        return False
    return not any(w.lower() in _NOT_SECRET_SUFFIX for w in _WORDS.findall(suffix))


_IDENTIFIER_LIKE = re.compile(
    r"^[A-Za-z_][A-Za-z0-9_]*(?:[.:][A-Za-z_][A-Za-z0-9_]*)+$|^[A-Z0-9_]*_[A-Z0-9_]*$"
)
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_SPECIAL = frozenset("!@#$%^&*+=?~|")


def _mostly_one_char(secret: str) -> bool:
    return len(secret) >= 4 and len(set(secret)) <= 2


_SNAKE_IDENTIFIER = re.compile(r"^[A-Za-z][A-Za-z0-9]*(?:_[A-Za-z0-9]+){2,}$")
_ALPHA_WORD = re.compile(r"^[A-Za-z]{2,}$")


def _name_like(value: str) -> bool:
    """An identifier or resource name (``chain_Anvil2_Key``, ``cmp2-qat-1208358310``,
    ``jjwt-jackson-0.11.2``): words joined by separators, which random tokens rarely are."""
    if _SNAKE_IDENTIFIER.match(value):
        return True
    segments = value.split("-")
    if len(segments) < 3:
        return False
    if all(s.isalpha() or s.isdigit() for s in segments):
        return True  # CVE-2019-5436, release-2024-06
    words = [s for s in segments if _ALPHA_WORD.match(s)]
    return len(words) >= 2 or (value == value.lower() and any(len(w) >= 3 for w in words))


def _generic_value_ok(secret: str, match: str) -> bool:
    """A generic secret value: letters and digits mixed, not an id, a name or a constant."""
    has_digit = any(c.isdigit() for c in secret)
    has_alpha = any(c.isalpha() for c in secret)
    if not (has_digit and has_alpha):
        return False
    return not (_UUID.match(secret) or _IDENTIFIER_LIKE.match(secret) or _name_like(secret))


_PASSWORD_PLACEHOLDERS = frozenset(
    {"password", "passwd", "pass", "pwd", "secret", "changeit", "admin", "root", "test", "testing", "default"}
)


def _password_ok(secret: str, match: str) -> bool:
    """A literal password: a letter plus a digit or symbol, not a reference, tag or template."""
    if len(secret) < 6 or secret[0] in "$%{<@!&*#\\":
        return False
    low = secret.lower()
    if low in _PASSWORD_PLACEHOLDERS or low.rstrip("0123456789") in ("password", "passwd", "secret", "pass"):
        return False
    if "(" in secret or "[" in secret or secret.startswith(("os.", "self.", "this.", "process.", "env.")):
        return False
    if _IDENTIFIER_LIKE.match(secret):
        return False
    has_alpha = any(c.isalpha() for c in secret)
    has_other = any(c.isdigit() or c in _SPECIAL for c in secret)
    return has_alpha and has_other


# --- validators for specific formats ----------------------------------------------------------
def _b64decode(text: str) -> bytes | None:
    t = text.strip().replace("\\n", "").replace("\n", "").replace(" ", "")
    t = t.replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(t + "=" * (-len(t) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


def _json_object(raw: bytes | None) -> dict[str, object] | None:
    if raw is None:
        return None
    try:
        value = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _jwt_ok(secret: str, match: str) -> bool:
    parts = secret.split(".")
    if len(parts) < 2:
        return False
    header = _json_object(_b64decode(parts[0]))
    payload = _json_object(_b64decode(parts[1]))
    return header is not None and isinstance(header.get("alg"), str) and payload is not None


def _vault_ok(secret: str, match: str) -> bool:
    """Legacy ``s.`` tokens are only 24 characters after a very common prefix: require all three
    character classes so that ``s.makeKubeConfigController`` and friends are not tokens."""
    if not secret.startswith("s."):
        return True
    body = secret[2:]
    return (
        any(c.isdigit() for c in body) and any(c.islower() for c in body) and any(c.isupper() for c in body)
    )


def _user_password_ok(decoded: str) -> bool:
    user, sep, password = decoded.partition(":")
    return bool(sep and user and password) and password.lower() not in _PASSWORD_PLACEHOLDERS


def _docker_auth_ok(secret: str, match: str) -> bool:
    raw = _b64decode(secret)
    if raw is None:
        return False
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return text.isprintable() and _user_password_ok(text)


def _docker_config_ok(secret: str, match: str) -> bool:
    doc = _json_object(_b64decode(secret))
    if doc is None:
        return False
    auths = doc.get("auths", doc)
    if not isinstance(auths, dict):
        return False
    for entry in auths.values():
        if isinstance(entry, dict) and (
            entry.get("auth") or entry.get("password") or entry.get("identitytoken")
        ):
            return True
    return False


_PEM_HEADER_LINE = re.compile(r"^[A-Za-z-]+:.*$", re.MULTILINE)


def _pem_body_ok(secret: str, match: str) -> bool:
    """A key block holds at least 32 base64 characters of varied content (not ``...`` or ``anything``)."""
    body = _PEM_HEADER_LINE.sub("", secret.replace("\\n", "\n").replace("\\r", ""))
    b64 = "".join(c for c in body if c.isalnum() or c in "+/=")
    return len(b64) >= 32 and len(set(b64)) >= 12


_URL_PLACEHOLDER_HOSTS = re.compile(
    r"(?i)^(?:[\w-]+\.)*(?:example\.(?:com|org|net)|[\w-]+\.(?:example|invalid|test|localdomain))$|^(?:host|hostname|server|domain)$"
)


def _basic_auth_ok(secret: str, match: str) -> bool:
    creds = match.split("://", 1)[-1]
    user, _, rest = creds.partition(":")
    host = rest.rpartition("@")[2]
    if _URL_PLACEHOLDER_HOSTS.match(host):
        return False
    low = secret.lower()
    return low != user.lower() and low not in _PASSWORD_PLACEHOLDERS and low not in ("user", "username", "pw")


# --- the table ---------------------------------------------------------------------------------
_END = r"(?:[\x60'\"\s;,)\]}<>|&]|\\[nrt]|$)"
_ASSIGN = r"[\"'\x60]?[ \t]{0,5}(?::=|=>|\?=|=|:|,)[ \t]{0,5}"
_ASSIGN_STRICT = r"[\"'\x60]?[ \t]{0,5}(?::=|=>|\?=|=|:)[ \t]{0,5}"
"""Without ``,``: ``def login(user, password, remember)`` assigns nothing."""


@dataclass(frozen=True, slots=True)
class Spec:
    name: str
    title: str
    severity: Severity
    regex: str
    keywords: tuple[str, ...]
    description: str
    groups: tuple[int, ...] = (1,)
    entropy: float = 0.0
    gitleaks: tuple[str, ...] = ()
    trivy: tuple[str, ...] = ()
    checkov: tuple[str, ...] = ()
    validate: Validator | None = None
    path: str | None = None
    generic: bool = False
    key_group: int = 0
    controls: tuple[str, ...] = CONTROLS
    superseded_by: tuple[str, ...] = ()
    """Names of specific rules whose finding replaces this one on the same line."""
    allow_paths: tuple[str, ...] = ()
    """Files this rule does not read (templates of the files it is meant for)."""


C, H, M = Severity.CRITICAL, Severity.HIGH, Severity.MEDIUM

# fmt: off
SPECS: tuple[Spec, ...] = (
    # --- cloud -------------------------------------------------------------------------------
    Spec(
        "aws-access-key-id", "AWS access key ID", C,
        r"\b((?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16})\b",
        ("akia", "asia", "abia", "acca", "a3t"),
        "An AWS access key ID; its secret access key is usually next to it.",
        entropy=3.0, gitleaks=("aws-access-token",), trivy=("aws-access-key-id",),
        checkov=("CKV_SECRET_2",),
    ),
    Spec(
        "aws-secret-access-key", "AWS secret access key", C,
        r"(?im)(?:^|[^\w.-])([\w.-]{0,20}?(?:(?:aws[_.-]?)?secret[_.-]?access[_.-]?key|aws[_.-]?secret(?:[_.-]?key)?))" + _ASSIGN
        + r"[\"'\x60]?([A-Za-z0-9/+=]{40})(?:[^A-Za-z0-9/+=]|$)",
        ("secret",),
        "An AWS secret access key assigned to an aws_secret_access_key-like name.",
        groups=(2,), entropy=3.5, trivy=("aws-secret-access-key",),
        checkov=("CKV_SECRET_2",),
    ),
    Spec(
        "gcp-service-account-key", "GCP service account key", C,
        r"\"type\"\s*:\s*\"service_account\"[^{}]*?\"private_key\"\s*:\s*\"(-----BEGIN[^\"]{64,}?)\""
        r"|\"private_key\"\s*:\s*\"(-----BEGIN[^\"]{64,}?)\"[^{}]*?\"type\"\s*:\s*\"service_account\"",
        ("service_account",),
        "A Google Cloud service account key file (JSON with its private key).",
        groups=(1, 2), gitleaks=("gcp-service-account",), trivy=("gcp-service-account",), controls=KEY_CONTROLS,
    ),
    Spec(
        "gcp-api-key", "Google Cloud API key", H,
        r"\b(AIza[0-9A-Za-z_-]{35})(?:[^0-9A-Za-z_-]|$)",
        ("aiza",),
        "A Google API key. Browser keys are often public by design, hence high rather than critical: "
        "check its API and referrer restrictions.",
        entropy=4.0, gitleaks=("gcp-api-key",),
    ),
    Spec(
        "azure-storage-account-key", "Azure storage account key", C,
        r"(?i)(?:AccountKey|account[_.-]?key|storage[_.-]?key)[\"']?\s*[=:]\s*[\"']?([A-Za-z0-9+/]{86}==)",
        ("accountkey", "account_key", "account-key", "account.key", "storage_key", "storage-key", "storagekey"),
        "An Azure storage account key (full access to the account's blobs, queues and tables).",
        entropy=4.0,
        checkov=("CKV_SECRET_3",),
    ),
    Spec(
        "azure-ad-client-secret", "Azure AD (Entra ID) client secret", C,
        r"(?:^|[\\'\"\x60\s>=:(,)])([a-zA-Z0-9_~.]{3}\dQ~[a-zA-Z0-9_~.-]{31,34})(?:$|[\\'\"\x60\s<),])",
        ("q~",),
        "An Entra ID application client secret.",
        entropy=3.0, gitleaks=("azure-ad-client-secret",),
    ),
    Spec(
        "alibaba-access-key-id", "Alibaba Cloud AccessKey ID", C,
        r"\b(LTAI[A-Za-z0-9]{20})\b", ("ltai",),
        "An Alibaba Cloud AccessKey ID.",
        entropy=2.0, gitleaks=("alibaba-access-key-id",), trivy=("alibaba-access-key-id",),
    ),
    Spec(
        "digitalocean-token", "DigitalOcean token", C,
        r"\b(do[opr]_v1_[a-f0-9]{64})\b", ("dop_v1_", "doo_v1_", "dor_v1_"),
        "A DigitalOcean personal, OAuth or refresh token.",
        entropy=3.0, gitleaks=("digitalocean-pat", "digitalocean-access-token", "digitalocean-refresh-token"),
    ),
    Spec(
        "vault-token", "HashiCorp Vault token", C,
        r"\b(hvs\.[0-9A-Za-z_-]{90,120}|hvb\.[0-9A-Za-z_-]{138,300}|s\.[A-Za-z0-9]{24})(?:[^0-9A-Za-z_.-]|$)",
        ("hvs.", "hvb.", "s."),
        "A HashiCorp Vault service or batch token: access to the secrets it is allowed to read.",
        entropy=3.5, validate=_vault_ok, gitleaks=("vault-service-token", "vault-batch-token"),
    ),
    Spec(
        "terraform-cloud-token", "Terraform Cloud / Enterprise API token", C,
        r"\b([A-Za-z0-9]{14}\.atlasv1\.[A-Za-z0-9_=-]{60,70})\b", ("atlasv1",),
        "A Terraform Cloud user, team or organisation token (it can change infrastructure).",
        entropy=3.5, gitleaks=("hashicorp-tf-api-token",), trivy=("hashicorp-tf-api-token",),
    ),
    # --- private keys --------------------------------------------------------------------------
    Spec(
        "private-key", "Private key", C,
        r"-----BEGIN[ A-Z0-9_-]{0,100}PRIVATE KEY(?: BLOCK)?-----([\s\S]*?)-----END[ A-Z0-9_-]{0,100}PRIVATE KEY(?: BLOCK)?-----",
        ("-----begin",),
        "A PEM, OpenSSH or PGP private key block.",
        validate=_pem_body_ok, gitleaks=("private-key",), trivy=("private-key",), controls=KEY_CONTROLS,
        superseded_by=("gcp-service-account-key",),
        checkov=("CKV_SECRET_13",),
    ),
    Spec(
        "age-secret-key", "age secret key", C,
        r"(AGE-SECRET-KEY-1[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58})", ("age-secret-key-1",),
        "An age encryption identity (private key).",
        gitleaks=("age-secret-key",), trivy=("age-secret-key",), controls=KEY_CONTROLS,
    ),
    Spec(
        "key-store-file", "Key store file (PKCS#12)", H,
        "", (),
        "A PKCS#12 (.p12/.pfx) file, which normally bundles a private key with its certificate.",
        path=r"(?i)(?:^|/)[^/]+\.(?:p12|pfx)$", gitleaks=("pkcs12-file",), controls=KEY_CONTROLS,
    ),
    # --- VCS and CI ------------------------------------------------------------------------------
    Spec(
        "github-pat", "GitHub personal access token", C,
        r"\b(ghp_[0-9A-Za-z]{36})\b", ("ghp_",), "A classic GitHub personal access token.",
        entropy=3.0, gitleaks=("github-pat",), trivy=("github-pat",),
    ),
    Spec(
        "github-fine-grained-pat", "GitHub fine-grained personal access token", C,
        r"\b(github_pat_[0-9A-Za-z_]{82})\b", ("github_pat_",), "A fine-grained GitHub personal access token.",
        entropy=3.0, gitleaks=("github-fine-grained-pat",), trivy=("github-fine-grained-pat",),
    ),
    Spec(
        "github-oauth-token", "GitHub OAuth access token", C,
        r"\b(gho_[0-9A-Za-z]{36})\b", ("gho_",), "A GitHub OAuth access token.",
        entropy=3.0, gitleaks=("github-oauth",), trivy=("github-oauth",),
    ),
    Spec(
        "github-app-token", "GitHub App token", C,
        r"\b((?:ghu|ghs)_[0-9A-Za-z]{36})\b", ("ghu_", "ghs_"), "A GitHub App user-to-server or installation token.",
        entropy=3.0, gitleaks=("github-app-token",), trivy=("github-app-token",),
    ),
    Spec(
        "github-refresh-token", "GitHub refresh token", C,
        r"\b(ghr_[0-9A-Za-z]{36,76})\b", ("ghr_",), "A GitHub App refresh token.",
        entropy=3.0, gitleaks=("github-refresh-token",), trivy=("github-refresh-token",),
    ),
    Spec(
        "gitlab-pat", "GitLab personal access token", C,
        r"\b(glpat-[0-9A-Za-z_-]{20})(?:[^0-9A-Za-z_-]|$)|\b(glpat-[0-9A-Za-z_-]{27,300}\.[0-9a-z]{2}[0-9a-z]{7})\b",
        ("glpat-",), "A GitLab personal, project or group access token.",
        groups=(1, 2), entropy=3.0, gitleaks=("gitlab-pat", "gitlab-pat-routable"), trivy=("gitlab-pat",),
    ),
    Spec(
        "gitlab-runner-token", "GitLab runner token", C,
        r"\b(GR1348941[0-9A-Za-z_-]{20})|\b(glrt-(?:t\d_)?[0-9A-Za-z_-]{20,300}(?:\.[0-9a-z]{2}[0-9a-z]{7})?)",
        ("gr1348941", "glrt-"), "A GitLab runner registration or authentication token.",
        groups=(1, 2), entropy=3.0,
        gitleaks=("gitlab-rrt", "gitlab-runner-authentication-token", "gitlab-runner-authentication-token-routable"),
    ),
    Spec(
        "gitlab-ci-token", "GitLab CI/CD job or pipeline trigger token", C,
        r"\b(glcbt-[0-9a-zA-Z]{1,5}_[0-9a-zA-Z_-]{20}|glptt-[0-9a-f]{40})", ("glcbt-", "glptt-"),
        "A GitLab CI/CD job token or pipeline trigger token.",
        entropy=3.0, gitleaks=("gitlab-cicd-job-token", "gitlab-ptt"),
    ),
    Spec(
        "gitlab-deploy-token", "GitLab deploy token", C,
        r"\b(gldt-[0-9A-Za-z_-]{20})", ("gldt-",), "A GitLab deploy token (registry and repository access).",
        entropy=3.0, gitleaks=("gitlab-deploy-token",),
    ),
    Spec(
        "gitlab-token", "GitLab token", C,
        r"\b((?:glffct|glft|glsoat)-[0-9A-Za-z_-]{20}|glimt-[0-9A-Za-z_-]{25}|glagent-[0-9A-Za-z_-]{50}"
        r"|gloas-[0-9A-Za-z_-]{64})",
        ("glffct-", "glft-", "glsoat-", "glimt-", "glagent-", "gloas-"),
        "A GitLab feed, SCIM, incoming-mail, Kubernetes agent, feature-flag or OAuth application token.",
        entropy=3.0,
        gitleaks=(
            "gitlab-feature-flag-client-token", "gitlab-feed-token", "gitlab-scim-token", "gitlab-incoming-mail-token",
            "gitlab-kubernetes-agent-token", "gitlab-oauth-app-secret",
        ),
    ),
    Spec(
        "circleci-token", "CircleCI personal API token", C,
        r"\b(CCIPAT_[A-Za-z0-9]{22}_[a-f0-9]{40})\b", ("ccipat_",), "A CircleCI personal API token.",
        entropy=3.0,
    ),
    Spec(
        "buildkite-token", "Buildkite API token", C,
        r"\b(bkua_[a-f0-9]{40})\b", ("bkua_",), "A Buildkite user API token.", entropy=3.0,
    ),
    # --- package registries -------------------------------------------------------------------
    Spec(
        "npm-access-token", "npm access token", H,
        r"\b(npm_[A-Za-z0-9]{36})\b", ("npm_",), "An npm access token (it may publish packages).",
        entropy=2.0, gitleaks=("npm-access-token",), trivy=("npm-access-token",),
        checkov=("CKV_SECRET_12",),
    ),
    Spec(
        "npmrc-auth", "Registry credential in .npmrc", H,
        r"(?i)(?:^|[\s:/])(_authToken|_auth|_password)[ \t]*=[ \t]*[\"']?([^\s\"'$]{16,})", ("_auth", "_password"),
        "An npm registry token or password written into .npmrc.",
        groups=(2,), path=r"(?:^|/)\.npmrc$",
    ),
    Spec(
        "pypi-upload-token", "PyPI upload token", H,
        r"(pypi-AgEIcHlwaS5vcmc[0-9A-Za-z_-]{50,}|pypi-AgENdGVzdC5weXBpLm9yZw[0-9A-Za-z_-]{50,})",
        ("pypi-ageichlwas5vcmc", "pypi-agendgvzdc5wexbplm9yzw"), "A PyPI (or TestPyPI) upload token.",
        entropy=3.0, gitleaks=("pypi-upload-token",), trivy=("pypi-upload-token",),
    ),
    Spec(
        "rubygems-api-key", "RubyGems API key", H,
        r"\b(rubygems_[a-f0-9]{48})\b", ("rubygems_",), "A RubyGems API key.",
        entropy=2.0, gitleaks=("rubygems-api-token",), trivy=("rubygems-api-token",),
    ),
    Spec(
        "artifactory-token", "JFrog Artifactory token", H,
        r"\b(AKCp[A-Za-z0-9]{69}|cmVmd[A-Za-z0-9]{59})\b", ("akcp", "cmvmd"),
        "A JFrog Artifactory API key or reference token.",
        entropy=4.5, gitleaks=("artifactory-api-key", "artifactory-reference-token"),
        checkov=("CKV_SECRET_1",),
    ),
    Spec(
        "docker-config-auth", "Docker registry credential (config.json auth)", H,
        r"\"auth\"\s*:\s*\"([A-Za-z0-9+/]{8,}={0,2})\"", ("\"auth\"",),
        "A registry user:password pair, base64-encoded as Docker's config.json stores it.",
        validate=_docker_auth_ok,
    ),
    Spec(
        "docker-config-json", "Docker registry credentials in a Kubernetes Secret", H,
        r"(?i)\.(?:dockerconfigjson|dockercfg)[\"']?\s*:\s*(?:[|>][-+]?\s*)?[\"']?((?:ey|ew)[A-Za-z0-9+/=]{20,})",
        ("dockerconfigjson", "dockercfg"),
        "A .dockerconfigjson / .dockercfg value holding registry credentials.",
        validate=_docker_config_ok, trivy=("dockerconfig-secret",), controls=(*CONTROLS, "cis-k8s:5.4.2"),
    ),
    # --- chat ----------------------------------------------------------------------------------
    Spec(
        "slack-bot-token", "Slack bot token", H,
        r"(xoxb-[0-9]{10,13}-[0-9]{10,13}[a-zA-Z0-9-]*|xoxb-[0-9]{8,14}-[a-zA-Z0-9]{18,26})", ("xoxb-",),
        "A Slack bot token.", entropy=3.0, gitleaks=("slack-bot-token", "slack-legacy-bot-token"),
        trivy=("slack-access-token",),
        checkov=("CKV_SECRET_14",),
    ),
    Spec(
        "slack-user-token", "Slack user token", H,
        r"(xox[pe](?:-[0-9]{10,13}){3}-[a-zA-Z0-9-]{28,34})", ("xoxp-", "xoxe-"),
        "A Slack user token.", entropy=2.0, gitleaks=("slack-user-token",), trivy=("slack-access-token",),
        checkov=("CKV_SECRET_14",),
    ),
    Spec(
        "slack-app-token", "Slack app-level token", H,
        r"(?i)(xapp-\d-[A-Z0-9]+-\d+-[a-z0-9]+)", ("xapp-",),
        "A Slack app-level token.", entropy=2.0, gitleaks=("slack-app-token",),
        checkov=("CKV_SECRET_14",),
    ),
    Spec(
        "slack-config-token", "Slack configuration token", H,
        r"(?i)(xoxe\.xox[bp]-\d-[A-Z0-9]{163,166}|xoxe-\d-[A-Z0-9]{146})", ("xoxe.xoxb-", "xoxe.xoxp-", "xoxe-"),
        "A Slack app configuration access or refresh token.",
        entropy=2.0, gitleaks=("slack-config-access-token", "slack-config-refresh-token"),
        checkov=("CKV_SECRET_14",),
    ),
    Spec(
        "slack-legacy-token", "Slack legacy token", H,
        r"(xox[os]-\d+-\d+-\d+-[a-fA-F\d]+|xox[ar]-(?:\d-)?[0-9a-zA-Z]{8,48})", ("xoxo-", "xoxs-", "xoxa-", "xoxr-"),
        "A Slack legacy or workspace token.",
        entropy=2.5, gitleaks=("slack-legacy-token", "slack-legacy-workspace-token"), trivy=("slack-access-token",),
        checkov=("CKV_SECRET_14",),
    ),
    Spec(
        "slack-webhook-url", "Slack incoming webhook URL", H,
        r"((?:https?://)?hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9+/]{43,56})",
        ("hooks.slack.com",), "A Slack webhook URL (anyone holding it can post to the channel).",
        gitleaks=("slack-webhook-url",), trivy=("slack-web-hook",),
    ),
    Spec(
        "discord-webhook-url", "Discord webhook URL", H,
        r"(https://(?:ptb\.|canary\.)?discord(?:app)?\.com/api/webhooks/[0-9]{17,20}/[A-Za-z0-9_-]{60,68})",
        ("discord",), "A Discord webhook URL.",
    ),
    Spec(
        "teams-webhook-url", "Microsoft Teams webhook URL", H,
        r"(https://[a-z0-9]+\.webhook\.office\.com/webhookb2/[a-z0-9]{8}-(?:[a-z0-9]{4}-){3}[a-z0-9]{12}@"
        r"[a-z0-9]{8}-(?:[a-z0-9]{4}-){3}[a-z0-9]{12}/IncomingWebhook/[a-z0-9]{32}/[a-z0-9]{8}-(?:[a-z0-9]{4}-){3}[a-z0-9]{12})",
        ("webhook.office.com",), "A Microsoft Teams incoming webhook URL.",
        gitleaks=("microsoft-teams-webhook",),
    ),
    # --- payment and messaging ----------------------------------------------------------------
    Spec(
        "stripe-secret-key", "Stripe secret or restricted key", H,
        r"\b((?:sk|rk)_(?:test|live|prod)_[A-Za-z0-9]{10,99})\b",
        ("sk_test", "sk_live", "sk_prod", "rk_test", "rk_live", "rk_prod"),
        "A Stripe secret or restricted API key (live keys move money).",
        entropy=2.0, gitleaks=("stripe-access-token",), trivy=("stripe-secret-token",),
        checkov=("CKV_SECRET_17",),
    ),
    Spec(
        "square-token", "Square access token or OAuth secret", H,
        r"\b((?:EAAA|sq0atp-)[0-9A-Za-z_-]{22,60}|sq0csp-[0-9A-Za-z_-]{43})", ("eaaa", "sq0atp-", "sq0csp-"),
        "A Square access token or OAuth application secret.",
        entropy=3.0, gitleaks=("square-access-token",),
        checkov=("CKV_SECRET_16",),
    ),
    Spec(
        "braintree-token", "Braintree / PayPal access token", H,
        r"(access_token\$production\$[0-9a-z]{16}\$[0-9a-f]{32})", ("access_token$production$",),
        "A Braintree (PayPal) production access token.",
    ),
    Spec(
        "twilio-api-key", "Twilio API key", H,
        r"\b(SK[0-9a-fA-F]{32})\b", ("sk",), "A Twilio API key SID with its secret nearby.",
        entropy=3.0, gitleaks=("twilio-api-key",), trivy=("twilio-api-key",),
        checkov=("CKV_SECRET_18",),
    ),
    Spec(
        "sendgrid-api-key", "SendGrid API key", H,
        r"\b(SG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43})(?:[^A-Za-z0-9_-]|$)", ("sg.",), "A SendGrid API key.",
        entropy=3.0, gitleaks=("sendgrid-api-token",), trivy=("sendgrid-api-token",),
    ),
    Spec(
        "mailchimp-api-key", "Mailchimp API key", H,
        r"\b([0-9a-f]{32}-us[0-9]{1,2})\b", ("-us",), "A Mailchimp API key.",
        entropy=3.0, gitleaks=("mailchimp-api-key",), trivy=("mailchimp-api-key",),
        checkov=("CKV_SECRET_11",),
    ),
    # --- other SaaS ---------------------------------------------------------------------------
    Spec(
        "openai-api-key", "OpenAI API key", H,
        r"\b(sk-(?:proj|svcacct|admin)-(?:[A-Za-z0-9_-]{74}|[A-Za-z0-9_-]{58})T3BlbkFJ(?:[A-Za-z0-9_-]{74}|[A-Za-z0-9_-]{58})"
        r"|sk-[a-zA-Z0-9]{20}T3BlbkFJ[a-zA-Z0-9]{20})(?:[^A-Za-z0-9_-]|$)",
        ("t3blbkfj",), "An OpenAI API key.", entropy=3.0, gitleaks=("openai-api-key",),
    ),
    Spec(
        "anthropic-api-key", "Anthropic API key", H,
        r"\b(sk-ant-(?:api03|admin01)-[A-Za-z0-9_-]{93}AA)(?:[^A-Za-z0-9_-]|$)", ("sk-ant-",),
        "An Anthropic API or admin key.", gitleaks=("anthropic-api-key", "anthropic-admin-api-key"),
    ),
    Spec(
        "huggingface-token", "Hugging Face token", H,
        r"\b(hf_[A-Za-z]{34}|api_org_[A-Za-z]{34})\b", ("hf_", "api_org_"),
        "A Hugging Face user or organisation access token.",
        entropy=3.0, gitleaks=("huggingface-access-token", "huggingface-organization-api-token"),
        trivy=("hugging-face-access-token",),
    ),
    Spec(
        "shopify-token", "Shopify token", H,
        r"\b(shp(?:at|ca|pa|ss)_[a-fA-F0-9]{32})\b", ("shpat_", "shpca_", "shppa_", "shpss_"),
        "A Shopify access token or shared secret.", entropy=2.0,
        gitleaks=("shopify-access-token", "shopify-custom-access-token", "shopify-private-app-access-token",
                  "shopify-shared-secret"),
        trivy=("shopify-token",),
    ),
    Spec(
        "databricks-token", "Databricks API token", H,
        r"\b(dapi[a-f0-9]{32}(?:-\d)?)\b", ("dapi",), "A Databricks personal access token.",
        entropy=3.0, gitleaks=("databricks-api-token",), trivy=("databricks-api-token",),
    ),
    Spec(
        "grafana-token", "Grafana token", H,
        r"\b(glsa_[A-Za-z0-9]{32}_[A-Fa-f0-9]{8}|glc_[A-Za-z0-9+/]{32,400}={0,3}|eyJrIjoi[A-Za-z0-9]{70,400}={0,3})"
        r"(?:[^A-Za-z0-9+/=_]|$)",
        ("glsa_", "glc_", "eyjrijoi"), "A Grafana service account, Cloud or legacy API token.",
        entropy=3.0, gitleaks=("grafana-service-account-token", "grafana-cloud-api-token", "grafana-api-key"),
        trivy=("grafana-api-token",),
    ),
    Spec(
        "atlassian-api-token", "Atlassian API token", H,
        r"\b(ATATT3[A-Za-z0-9_=-]{186})(?:[^A-Za-z0-9_=-]|$)", ("atatt3",), "An Atlassian (Jira, Confluence) API token.",
        entropy=3.5, gitleaks=("atlassian-api-token",), trivy=("atlassian-api-token",),
    ),
    Spec(
        "doppler-token", "Doppler token", H,
        r"\b(dp\.pt\.[A-Za-z0-9]{43})\b", ("dp.pt.",), "A Doppler personal token (a secret manager).",
        entropy=2.0, gitleaks=("doppler-api-token",), trivy=("doppler-api-token",),
    ),
    Spec(
        "postman-api-key", "Postman API key", H,
        r"\b(PMAK-[a-fA-F0-9]{24}-[a-fA-F0-9]{34})\b", ("pmak-",), "A Postman API key.",
        entropy=3.0, gitleaks=("postman-api-token",), trivy=("postman-api-token",),
    ),
    Spec(
        "pulumi-token", "Pulumi access token", H,
        r"\b(pul-[a-f0-9]{40})\b", ("pul-",), "A Pulumi Cloud access token.",
        entropy=2.0, gitleaks=("pulumi-api-token",), trivy=("pulumi-api-token",),
    ),
    Spec(
        "new-relic-api-key", "New Relic user API key", H,
        r"\b(NRAK-[A-Z0-9]{27})\b", ("nrak-",), "A New Relic user API key.",
        gitleaks=("new-relic-user-api-key",), trivy=("new-relic-user-api-key",),
    ),
    Spec(
        "heroku-api-key", "Heroku API key", H,
        r"\b(HRKU-AA[0-9a-zA-Z_-]{58})(?:[^0-9a-zA-Z_-]|$)", ("hrku-aa",), "A Heroku platform API key.",
        entropy=4.0, gitleaks=("heroku-api-key-v2",),
    ),
    # --- tokens and URLs -------------------------------------------------------------------------
    Spec(
        "jwt", "JSON Web Token", H,
        r"\b(ey[a-zA-Z0-9]{17,}\.ey[a-zA-Z0-9/\\_-]{17,}\.(?:[a-zA-Z0-9/\\_-]{10,}={0,2})?)" + _END,
        (".eyj",), "A JSON Web Token (its header decodes to JSON with an algorithm).",
        entropy=3.0, validate=_jwt_ok, gitleaks=("jwt",), trivy=("jwt-token",),
        checkov=("CKV_SECRET_9",),
    ),
    Spec(
        "basic-auth-url", "Credentials in a URL", H,
        r"(?i)\b[a-z][a-z0-9+.-]{1,20}://([^\s:@/'\"\x60<>{}$]{1,100}):([^\s:@/'\"\x60<>{}$]{3,100})@([a-z0-9][a-z0-9.-]{0,252})",
        ("://",), "A user:password pair embedded in a URL (database DSNs, git remotes, registry URLs).",
        groups=(2,), validate=_basic_auth_ok, gitleaks=("sidekiq-sensitive-url",),
        checkov=("CKV_SECRET_4",),
    ),
    # --- generic -------------------------------------------------------------------------------
    Spec(
        "generic-password", "Hard-coded password", M,
        r"(?im)(?:^|[^\w.-])([\w.-]{0,40}?(?:password|passwd|passphrase|pwd)[\w.-]{0,24}|pass)" + _ASSIGN_STRICT
        + r"(?:\"([^\"\s]{6,128})\"|'([^'\s]{6,128})'|\x60([^\x60\s]{6,128})\x60|([^\s\"'\x60,;]{6,128}))",
        ("pass", "pwd"),
        "A literal password assigned to a password-like name.",
        groups=(2, 3, 4, 5), entropy=2.0, validate=_password_ok, generic=True, key_group=1,
        checkov=("CKV_SECRET_6", "CKV_SECRET_10", "CKV_SECRET_19"),
    ),
    Spec(
        "generic-secret", "Hard-coded secret, token or API key", M,
        r"(?im)(?:^|[^\w.-])([\w.-]{0,40}?(?:secret|token|api[_.-]?key|apikey|access[_.-]?key|private[_.-]?key"
        r"|client[_.-]?secret|auth[_.-]?key|signing[_.-]?key|encryption[_.-]?key|credentials?|key)[\w.-]{0,24})"
        + _ASSIGN + r"[\"'\x60]?([A-Za-z0-9+/=_.~-]{12,200})" + _END,
        ("secret", "token", "key", "credential"),
        "A random-looking value (letters and digits, high entropy) assigned to a secret-like name.",
        groups=(2,), entropy=3.5, validate=_generic_value_ok, generic=True, key_group=1,
        gitleaks=("generic-api-key",),
        checkov=("CKV_SECRET_6", "CKV_SECRET_10", "CKV_SECRET_19"),
    ),
    Spec(
        "dotenv-secret", "High-entropy value in a .env file", M,
        r"(?m)^[ \t]*(?:export[ \t]+)?([A-Za-z_][A-Za-z0-9_.]*)[ \t]*=[ \t]*[\"']?([A-Za-z0-9+/=_.~-]{16,200})[\"']?[ \t]*(?:#.*)?\r?$",
        (), "A random-looking value in a dotenv file, whose purpose is to hold secrets.",
        groups=(2,), entropy=3.5, validate=_generic_value_ok, generic=True, key_group=1,
        superseded_by=("generic-password", "generic-secret"),
        path=r"(?i)(?:^|/)(?:[^/]*\.env|\.env\.[\w.-]+)$",
        allow_paths=(r"(?i)\.env\.(?:example|sample|template|dist|defaults?)$|(?:example|sample|template)\.env$",),
        checkov=("CKV_SECRET_6", "CKV_SECRET_10", "CKV_SECRET_19"),
    ),
)
# fmt: on

_DOTENV_KEY_NOT_SECRET = re.compile(
    r"(?i)(?:_|^)(?:ID|NAME|URL|URI|HOST|PATH|DIR|FILE|VERSION|REGION|USER|USERNAME|EMAIL|PORT|ENV|MODE|LEVEL"
    r"|SHA|HASH|COMMIT|REVISION|CHECKSUM|DIGEST|TAG|IMAGE|BRANCH)$"
)


def _dotenv_key_ok(key: str) -> bool:
    return _DOTENV_KEY_NOT_SECRET.search(key) is None and _KEY_NOT_SECRET.search(key) is None


def _with_placeholders(validate: Validator | None) -> Validator:
    def check(secret: str, match: str) -> bool:
        if _mostly_one_char(secret):
            return False
        return validate is None or validate(secret, match)

    return check


def _allowlists(spec: Spec, generic_skip: Allowlist) -> tuple[Allowlist, ...]:
    out = [generic_skip] if spec.generic else []
    if spec.allow_paths:
        out.append(Allowlist(description="templates", paths=join_regexes(spec.allow_paths, spec.name)))
    return tuple(out)


def builtin_rules() -> list[SecretRule]:
    """The built-in set, in table order. Each call builds fresh rule objects (they are cheap)."""
    placeholders = Allowlist(
        description="placeholders",
        regexes=join_regexes(_PLACEHOLDER_REGEXES, "built-in placeholder allowlist"),
        stopwords=_PLACEHOLDER_STOPWORDS,
    )
    generic_skip = Allowlist(
        description="lock files, bundles, vendored code",
        paths=join_regexes(_GENERIC_SKIP_PATHS, "built-in paths"),
    )
    ruleset = SecretRuleSet((placeholders,), (k for s in SPECS for k in s.keywords))
    built: dict[str, SecretRule] = {}
    specific = [s for s in SPECS if not s.generic]
    generic = [s for s in SPECS if s.generic]
    for spec in (*specific, *generic):
        superseded = tuple(built[n] for n in spec.superseded_by)
        if spec.generic:
            superseded = (*(built[s.name] for s in specific), *superseded)
        key_allowed = (
            (_dotenv_key_ok if spec.name == "dotenv-secret" else _key_ok) if spec.key_group else None
        )
        pattern = Pattern(
            regex=compile_regex(spec.regex, f"built-in secret rule {spec.name}") if spec.regex else None,
            secret_groups=spec.groups,
            entropy=spec.entropy,
            keywords=spec.keywords,
            path=compile_regex(spec.path, f"built-in secret rule {spec.name}") if spec.path else None,
            allowlists=_allowlists(spec, generic_skip),
            validate=_with_placeholders(spec.validate),
            key_group=spec.key_group,
            key_allowed=key_allowed,
            max_line=MINIFIED_LINE if spec.generic else 0,
        )
        peers = (("gitleaks", spec.gitleaks), ("trivy", spec.trivy), ("checkov", spec.checkov))
        equivalents = {k: v for k, v in peers if v}
        meta = RuleMeta(
            id=f"secrets.{spec.name}",
            title=spec.title,
            severity=spec.severity,
            description=spec.description,
            remediation=REMEDIATION,
            controls=spec.controls,
            pack="secrets",
            tags=("secrets", "generic") if spec.generic else ("secrets",),
            equivalents=equivalents,
        )
        built[spec.name] = SecretRule(meta, pattern, ruleset, superseded_by=superseded)
    return [built[s.name] for s in SPECS]
