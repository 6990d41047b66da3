"""Secrets that a build writes into the image: in ENV/ARG, as copied files, as account passwords."""

from __future__ import annotations

import re
from collections.abc import Iterator

from dutyguard.core.model import Severity
from dutyguard.core.policy import Policy
from dutyguard.core.rule import Violation
from dutyguard.rules.dockerfile._base import NIST_SECRETS, DockerfileRule, dockerfile_meta, words
from dutyguard.rules.dockerfile._commands import parse_args, runs
from dutyguard.rules.dockerfile._instructions import URL, copy_sources, pair_path, variables
from dutyguard.sources.dockerfile import Dockerfile, KeyValue

_SECRET_WORDS = words(
    "password passwd passphrase pass secret secrets token apikey credential credentials privatekey accesskey "
    "secretkey auth pwd pat"
)
_KEY_QUALIFIERS = words(
    "api private secret access encryption signing master license client app service account ssh jwt session "
    "hmac auth consumer storage crypto"
)
_NOT_SECRET_SUFFIX = words(
    "file path dir directory url uri endpoint host hostname port name type method mode enabled enable disabled "
    "length size ttl expiry expiration timeout version header format algorithm provider issuer region user "
    "username policy scope scopes location prefix suffix mount arn env"
)
_PUBLIC_WORDS = frozenset({"public", "pub", "gpg", "pgp", "fingerprint"})
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def secret_name(name: str) -> bool:
    """Whether a variable name says it holds a secret (``DB_PASSWORD``, ``apiKey``, ``AWS_ACCESS_KEY_ID``)."""
    tokens = [t.lower() for t in re.split(r"[_\-.]+", _CAMEL.sub("_", name)) if t]
    if not tokens or tokens == ["pwd"] or tokens[-1] in _NOT_SECRET_SUFFIX:
        return False
    if any(t in _PUBLIC_WORDS for t in tokens):
        return False
    if any(t in _SECRET_WORDS for t in tokens if t != "pat" or len(tokens) > 1):
        return True
    return any(t == "key" and k > 0 and tokens[k - 1] in _KEY_QUALIFIERS for k, t in enumerate(tokens))


class SecretInEnvOrArg(DockerfileRule):
    meta = dockerfile_meta(
        "secret-in-env-or-arg",
        "Secret in ENV or ARG",
        Severity.HIGH,
        "ENV values are stored in the image configuration, readable by anyone who can pull the image; "
        "ARG values are recorded in the image history and build provenance. A variable named like a "
        "secret (password, token, API key...) must not travel that way.",
        "Pass secrets with 'RUN --mount=type=secret,id=<id>' (or inject them at run time from a secret "
        "store); never as ENV or ARG.",
        (NIST_SECRETS, "cis-docker:4.10"),
        trivy=("DS031",),
    )

    def check(self, resource: Dockerfile, policy: Policy) -> Iterator[Violation]:
        for ins, kv in variables(resource):
            if not secret_name(kv.key):
                continue
            v = self._judge(ins.keyword, kv)
            if v is not None:
                message, severity = v
                yield Violation(message, path=pair_path(ins, kv), key=kv.key, severity=severity)

    @staticmethod
    def _judge(keyword: str, kv: KeyValue) -> tuple[str, Severity | None] | None:
        value = kv.expanded
        if keyword == "ARG":
            if value is None:
                return (
                    f"build argument {kv.key} will carry a secret: build arguments are recorded in the "
                    "image history and provenance",
                    Severity.MEDIUM,
                )
            if value == "":
                return None
            return f"ARG {kv.key} has a literal default: a secret written in the Dockerfile", None
        if value is None or value == "":
            return None
        if value.startswith(("/run/secrets/", "/var/run/secrets/")):
            return None
        if kv.key.lower().endswith("credentials") and value.startswith(("/", "./", "~")):
            return f"ENV {kv.key} points at a credentials file inside the image ({value})", None
        if not kv.resolved or "$" in (kv.value or ""):
            return f"ENV {kv.key} copies a build argument into the image configuration", None
        return f"ENV {kv.key} stores a secret in the image configuration", None


_PUBLIC_KEY_HINTS = re.compile(r"gpg|pgp|pub|apt|repo|release|signing|keyring", re.IGNORECASE)
_KEYRING_DIRS = ("/etc/apt/", "/usr/share/keyrings", "/etc/pki/rpm-gpg", "/etc/apk/keys")
_SECRET_FILES = re.compile(
    r"(^|/)(id_(rsa|dsa|ecdsa|ed25519)|\.netrc|\.git-credentials|\.npmrc|\.pypirc|\.dockercfg|"
    r"\.docker/config\.json|\.aws/credentials|\.kube/config|kubeconfig|[^/]*\.kubeconfig|"
    r"\.env(\.(?!example$|sample$|template$|dist$)[^/]+)?|[^/]+\.(key|p12|pfx|jks|keystore))$",
    re.IGNORECASE,
)


class SecretFileCopied(DockerfileRule):
    meta = dockerfile_meta(
        "secret-file-copied",
        "Credential file copied into the image",
        Severity.HIGH,
        "COPY/ADD puts a private key or credentials file (id_rsa, *.key, .npmrc, .netrc, .env, "
        "kubeconfig...) into a layer: deleting it later does not remove it from the image.",
        "Mount it for the one step that needs it: 'RUN --mount=type=secret,id=<id>' or "
        "'--mount=type=ssh'; keep it out of the build context with .dockerignore.",
        (NIST_SECRETS, "cis-docker:4.10"),
        trivy=("DS031",),
    )

    def check(self, resource: Dockerfile, policy: Policy) -> Iterator[Violation]:
        final = set(resource.final_lineage())
        for ins in resource.instructions:
            if ins.keyword not in ("COPY", "ADD"):
                continue
            dest = ins.expanded[-1] if ins.expanded else ""
            for src in copy_sources(ins):
                m = _SECRET_FILES.search(src.rstrip("/"))
                if URL.match(src) or m is None:
                    continue
                # "repo.key" copied into a keyring is a repository's public signing key
                if m.group(0).lower().endswith(".key") and (
                    _PUBLIC_KEY_HINTS.search(m.group(0)) or dest.startswith(_KEYRING_DIRS)
                ):
                    continue
                in_image = ins.stage in final
                where = "into the image" if in_image else "into a build stage (and its cache)"
                yield Violation(
                    f"{ins.keyword} copies {src} {where}",
                    path=(ins.index,),
                    key=src,
                    severity=None if in_image else Severity.MEDIUM,
                )


class PasswordInImage(DockerfileRule):
    meta = dockerfile_meta(
        "password-in-image",
        "Password set during the build",
        Severity.MEDIUM,
        "chpasswd, 'useradd/usermod -p' and 'passwd --stdin' write a password (or a known hash) into "
        "the image: every container from it shares that credential, and the build history may show it.",
        "Do not give accounts passwords in images; use key-based or external authentication, and "
        "lock the accounts ('usermod -L').",
        (NIST_SECRETS, "cis-docker:4.10"),
        checkov=("CKV2_DOCKER_17",),
    )

    def check(self, resource: Dockerfile, policy: Policy) -> Iterator[Violation]:
        for r in runs(resource):
            prog, argv = r.inv.program, r.inv.argv
            if prog == "chpasswd":
                yield Violation("chpasswd sets account passwords in the image", r.path, key="chpasswd")
            elif prog in ("useradd", "usermod", "adduser") and parse_args(argv, "pcdgGsuek").value_of(
                "-p", "--password"
            ):
                yield Violation(f"{prog} -p sets a password hash in the image", r.path, key=prog)
            elif prog == "passwd" and "--stdin" in argv:
                yield Violation("passwd --stdin sets a password in the image", r.path, key="passwd")
            elif prog == "htpasswd" and parse_args(argv).has("-b"):
                yield Violation("htpasswd -b writes a password given on the command line", r.path, key=prog)
