"""Credentials written into workload objects instead of Secrets, and Secrets exposed as environment.

Whoever can read a Deployment or a ConfigMap (``get`` is often granted broadly; the objects sit in Git)
can read a literal password in them; Secrets have their own RBAC, encryption at rest and audit.

A *credential name* is decided on the words of the name (``DB_PASSWORD``, ``dbPassword``,
``spring.datasource.password``, ``API_KEY``...), not on substrings, and a name whose last word says the
value is only *about* a credential (``PASSWORD_FILE``, ``TOKEN_URL``, ``SECRET_NAME``) is not one. A
*literal value* is one that is not empty, not a boolean, not a reference resolved later (``$(VAR)``,
``${VAR}``, ``{{ template }}``, ``vault:…``, a secret manager ARN) and not a file path. Messages name
the variable or key, never the value.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator

from dutyguard.core import jsonview as jv
from dutyguard.core.model import JSONPath, Severity
from dutyguard.core.policy import Policy
from dutyguard.core.rule import Rule, RuleMeta, Violation
from dutyguard.rules.workload._view import PACK
from dutyguard.sources.kubernetes import ContainerRef, K8sObject

_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
_SEPARATORS = re.compile(r"[^A-Za-z0-9]+")

CREDENTIAL_WORDS = frozenset(
    {"password", "passwd", "pwd", "pass", "passphrase", "secret", "token", "apikey", "credential",
     "credentials", "creds", "privatekey", "secretkey", "accesskey", "clientsecret"}
)  # fmt: skip
CREDENTIAL_PAIRS = frozenset(
    {("api", "key"), ("private", "key"), ("access", "key"), ("signing", "key"), ("encryption", "key"),
     ("auth", "key"), ("master", "key"), ("session", "key"), ("account", "key"), ("license", "key"),
     ("client", "secret"), ("connection", "string")}
)  # fmt: skip
_COMPOUNDS = ("password", "passwd", "passphrase", "apikey", "secretkey", "accesskey", "privatekey",
              "authtoken", "accesstoken", "apitoken", "clientsecret")  # fmt: skip
NOT_THE_VALUE = frozenset(
    {"file", "files", "path", "dir", "directory", "url", "uri", "endpoint", "host", "hostname", "port",
     "name", "names", "ref", "id", "ids", "arn", "length", "len", "ttl", "expiry", "expires",
     "expiration", "timeout", "interval", "period", "duration", "age", "rotation", "header", "type",
     "mode", "enabled", "enable", "disabled", "required", "policy", "min", "max", "count", "size",
     "version", "format", "location", "namespace", "source", "provider", "store", "backend", "mount",
     "volume", "field", "prefix", "suffix", "regex", "pattern", "algorithm", "alg", "user", "username"}
)  # fmt: skip
"""A last word saying the value describes a credential (where it is, how long it lives), not holds it."""

_REFERENCE_PREFIXES = ("$(", "${", "{{", "%(", "<%", "vault:", "ref+", "arn:aws:secretsmanager:",
                       "arn:aws:ssm:", "sm://", "secretmanager:", "gcp:secretmanager:", "akv:",
                       "azurekeyvault:", "op://")  # fmt: skip
_NOT_SECRETS = frozenset({"true", "false", "yes", "no", "on", "off", "null", "none", "nil", "~"})
_FLAG = re.compile(r"--?([A-Za-z][A-Za-z0-9_.-]*)=(.*)", re.DOTALL)
_ASSIGNMENT = re.compile(r"\s*(?:export\s+)?[\"']?([A-Za-z_][A-Za-z0-9_.-]*)[\"']?\s*[:=]\s*(.*)")
MAX_LINES = 20_000
"""Lines of one ConfigMap value searched for assignments (a ConfigMap is at most 1 MiB)."""


def name_words(name: str) -> list[str]:
    """``dbPassword`` / ``DB_PASSWORD`` / ``db.password`` -> ``['db', 'password']``."""
    words: list[str] = []
    for part in _SEPARATORS.split(name):
        words.extend(w.lower() for w in _WORDS.findall(part))
    return words


def is_credential_name(name: object) -> bool:
    if not isinstance(name, str):
        return False
    words = name_words(name)
    if not words or words[-1] in NOT_THE_VALUE:
        return False
    if any(w in CREDENTIAL_WORDS for w in words):
        return True
    if any(pair in CREDENTIAL_PAIRS for pair in itertools.pairwise(words)):
        return True
    return any(c in w for w in words for c in _COMPOUNDS)


def is_literal_value(value: object) -> bool:
    """A value that is the secret itself (numbers count: a PIN is a secret)."""
    if type(value) is int or type(value) is float:
        return True
    if not isinstance(value, str):
        return False
    text = value.strip().strip(",").strip().strip("\"'").strip()
    if not text or text.lower() in _NOT_SECRETS:
        return False
    if text.lower().startswith(_REFERENCE_PREFIXES):
        return False
    return not (text.startswith("/") and not any(ch.isspace() for ch in text))


def _env_literals(c: ContainerRef) -> Iterator[tuple[JSONPath, str]]:
    for i, item in enumerate(jv.as_list(c.spec.get("env")) or ()):
        name = jv.get(item, ("name",))
        if is_credential_name(name) and is_literal_value(jv.get(item, ("value",))):
            yield (*c.path, "env", i, "value"), str(name)
    for field in ("command", "args"):
        for j, arg in enumerate(jv.as_list(c.spec.get(field)) or ()):
            m = _FLAG.fullmatch(arg) if isinstance(arg, str) else None
            if m is not None and is_credential_name(m[1]) and is_literal_value(m[2]):
                yield (*c.path, field, j), f"--{m[1]}"


class SecretInEnv(Rule[K8sObject]):
    meta = RuleMeta(
        id="k8s.secret-in-env",
        title="Credential written in the pod spec",
        severity=Severity.HIGH,
        description=(
            "An environment variable or command-line flag named like a credential has a literal value. "
            "Everyone who can read the workload, its Git history or the pod (kubectl describe, "
            "/proc/<pid>/environ, crash dumps) can read it."
        ),
        remediation="Move the value into a Secret (ideally from an external secret store) and mount it as a file.",
        controls=("nist-800-190:4.1.4", "cis-k8s:5.4.2", "nsa:secrets"),
        pack=PACK,
    )
    target = K8sObject

    def check(self, resource: K8sObject, policy: Policy) -> Iterator[Violation]:
        for c in resource.containers():
            for path, name in _env_literals(c):
                yield Violation(
                    f"container {c.name!r} sets {name} to a literal value",
                    path=path,
                    container=c.name,
                    key=name,
                )


class SecretExposedAsEnv(Rule[K8sObject]):
    meta = RuleMeta(
        id="k8s.secret-ref-in-env",
        title="Secret exposed as environment variables",
        severity=Severity.LOW,
        description=(
            "Secrets read into environment variables are inherited by every child process, appear in "
            "/proc/<pid>/environ and are often logged by crash reporters; files can be scoped and rotated."
        ),
        remediation="Mount the Secret as a volume and read the file instead of secretKeyRef / envFrom.secretRef.",
        controls=("cis-k8s:5.4.1", "nsa:secrets"),
        pack=PACK,
        equivalents={"checkov": ("CKV_K8S_35",)},
    )
    target = K8sObject

    def check(self, resource: K8sObject, policy: Policy) -> Iterator[Violation]:
        for c in resource.containers():
            for i, item in enumerate(jv.as_list(c.spec.get("env")) or ()):
                ref = jv.as_map(jv.get(item, ("valueFrom", "secretKeyRef")))
                if ref is not None:
                    var = jv.as_str(jv.get(item, ("name",))) or f"env[{i}]"
                    yield Violation(
                        f"container {c.name!r} reads Secret {jv.as_str(ref.get('name'))!r} into {var}",
                        path=(*c.path, "env", i, "valueFrom", "secretKeyRef"),
                        container=c.name,
                        key=var,
                    )
            for j, item in enumerate(jv.as_list(c.spec.get("envFrom")) or ()):
                ref = jv.as_map(jv.get(item, ("secretRef",)))
                if ref is not None:
                    yield Violation(
                        f"container {c.name!r} imports every key of Secret {jv.as_str(ref.get('name'))!r} as environment",
                        path=(*c.path, "envFrom", j, "secretRef"),
                        container=c.name,
                    )


class SecretInConfigMap(Rule[K8sObject]):
    meta = RuleMeta(
        id="k8s.secret-in-configmap",
        title="Credential stored in a ConfigMap",
        severity=Severity.HIGH,
        description=(
            "A ConfigMap key named like a credential, or a line in a ConfigMap value assigning one "
            "(password=…, token: …), holds a literal value. ConfigMaps are not Secrets: no separate RBAC, "
            "no encryption at rest, often readable by whole teams."
        ),
        remediation="Move the value into a Secret (ideally from an external secret store).",
        controls=("nist-800-190:4.1.4", "cis-k8s:5.4.2", "nsa:secrets"),
        pack=PACK,
        equivalents={"trivy": ("KSV-0109",)},
    )
    target = K8sObject

    def check(self, resource: K8sObject, policy: Policy) -> Iterator[Violation]:
        if resource.kind != "ConfigMap":
            return
        data = jv.as_map(resource.doc.get("data")) or {}
        for key, value in data.items():
            if not isinstance(value, str):
                continue
            if is_credential_name(key) and is_literal_value(value):
                yield Violation(
                    f"ConfigMap key {key!r} holds a literal credential", path=("data", key), key=key
                )
                continue
            for n, line in enumerate(value.splitlines()[:MAX_LINES], start=1):
                m = _ASSIGNMENT.fullmatch(line)
                if m is not None and is_credential_name(m[1]) and is_literal_value(m[2]):
                    yield Violation(
                        f"ConfigMap key {key!r} line {n} assigns a literal value to {m[1]}",
                        path=("data", key),
                        key=f"{key}\x00{m[1]}",
                    )
