"""Verification switched off: certificates (TLS) and package signatures, by flag, variable or config file."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence

from dutyguard.core.model import Severity
from dutyguard.core.policy import Policy
from dutyguard.core.rule import Violation
from dutyguard.rules.dockerfile._base import NIST_UNTRUSTED, DockerfileRule, dockerfile_meta, summary
from dutyguard.rules.dockerfile._commands import CURL_VALUES, Run, assignments, family, parse_args, runs
from dutyguard.rules.dockerfile._instructions import pair_path, variables
from dutyguard.rules.dockerfile._managers import APT, APT_OPTS, PIP_OPTS, YUM, YUM_OPTS
from dutyguard.sources.dockerfile import Dockerfile

_FALSY = frozenset({"0", "false", "no", "off"})

_Finding = tuple[str, str]
"""``(key, message)`` of one problem in a command."""
_EnvCheck = Callable[[str, str | None], str | None]
"""Why setting a variable to a value turns verification off, or ``None``."""


def _env_disables_tls(name: str, value: str | None) -> str | None:
    """Why setting ``name`` to ``value`` turns certificate verification off (``None``: it does not)."""
    if value is None:
        return None
    v = value.strip().lower()
    if name == "NODE_TLS_REJECT_UNAUTHORIZED" and v == "0":
        return "Node.js accepts any certificate"
    if name == "PYTHONHTTPSVERIFY" and v == "0":
        return "Python's urllib accepts any certificate"
    if name == "GIT_SSL_NO_VERIFY":
        return "git does not verify certificates (any value, even empty, turns verification off)"
    if name.lower() == "npm_config_strict_ssl" and v == "false":
        return "npm accepts any certificate"
    if name in ("YARN_STRICT_SSL", "YARN_ENABLE_STRICT_SSL") and v == "false":
        return "yarn accepts any certificate"
    if name == "PIP_TRUSTED_HOST" and v:
        return f"pip skips certificate checks for {value}"
    if name == "GOINSECURE" and v:
        return f"go fetches {value} without TLS verification"
    if name == "GOFLAGS" and "-insecure" in v:
        return "go fetches modules without TLS verification"
    return None


def _env_disables_signatures(name: str, value: str | None) -> str | None:
    if value is not None and name == "GOSUMDB" and value.strip().lower() == "off":
        return "go does not check module checksums against the checksum database"
    return None


_ConfigWrites = Sequence[tuple[re.Pattern[str], re.Pattern[str], str]]
"""``(file name, content, why)``: writing such content to such a file turns verification off."""

_TLS_CONFIG_WRITES: _ConfigWrites = (
    (
        re.compile(r"\.curlrc$"),
        re.compile(r"^\s*(-k|--insecure|insecure)\b", re.M),
        "curl's config disables TLS checks",
    ),
    (
        re.compile(r"\.wgetrc$|/wgetrc$"),
        re.compile(r"check_certificate\s*=\s*(off|no|0)", re.I),
        "wget's config",
    ),
    (re.compile(r"pip\.conf$|pip\.ini$"), re.compile(r"trusted-host", re.I), "pip's config trusts a host"),
    (re.compile(r"\.npmrc$|\.yarnrc$"), re.compile(r"strict-ssl\s*[= ]\s*false", re.I), "npm's config"),
    (
        re.compile(r"\.gitconfig$|/gitconfig$"),
        re.compile(r"sslverify\s*=\s*(false|0|no|off)", re.I),
        "git's config",
    ),
    (
        re.compile(r"(yum|dnf)\.conf$|\.repo$"),
        re.compile(r"sslverify\s*=\s*(0|false|no)", re.I),
        "the yum/dnf config turns sslverify off",
    ),
)
_SIG_CONFIG_WRITES: _ConfigWrites = (
    (
        re.compile(r"(yum|dnf)\.conf$|\.repo$"),
        re.compile(r"gpgcheck\s*=\s*(0|false|no)", re.I),
        "gpgcheck off",
    ),
    (
        re.compile(r"sources\.list(\.d/.*)?$|\.sources$"),
        re.compile(r"\[[^\]]*(trusted|allow-insecure)=yes", re.I),
        "an apt source marked trusted",
    ),
    (
        re.compile(r"apt\.conf(\.d/.*)?$"),
        re.compile(r"AllowUnauthenticated\s+\"?(true|1|yes)", re.I),
        "apt config",
    ),
)


def _redirect_targets(r: Run) -> tuple[str, ...]:
    """Files a command writes: its redirections and the arguments of ``| tee``."""
    out = list(r.cmd.outputs)
    for later in r.later():
        if later.cmd.pipeline != r.cmd.pipeline:
            break
        if later.inv.program == "tee":
            out.extend(a for a in later.inv.argv if not a.startswith("-"))
    return tuple(out)


def _env_findings(r: Run, env: _EnvCheck) -> Iterator[_Finding]:
    """Variables the command sets that turn verification off."""
    for name, value in assignments(r):
        why = env(name, value)
        if why:
            yield f"env:{name}", f"{name}={value}: {why}"


def _config_findings(r: Run, table: _ConfigWrites) -> Iterator[_Finding]:
    """A config file written (``echo ... > ~/.curlrc``) with content that turns verification off."""
    if r.inv.program not in ("echo", "printf", "cat"):
        return
    content = "\n".join(r.inv.argv)
    for target in _redirect_targets(r):
        for file_re, content_re, why in table:
            if file_re.search(target) and content_re.search(content):
                yield "config-write", f"writes {target}: {why}"
                return


def _command_violations(
    df: Dockerfile, findings: Callable[[Run], Iterator[_Finding]], *, runtime: bool
) -> Iterator[Violation]:
    """One violation per command and key (the last message for a key wins)."""
    for r in runs(df, runtime=runtime):
        for key, message in dict(findings(r)).items():
            yield Violation(message, r.path, key=key)


def _tls_findings(r: Run) -> Iterator[_Finding]:
    yield from _env_findings(r, _env_disables_tls)
    yield from _tls_tool_findings(r)
    yield from _config_findings(r, _TLS_CONFIG_WRITES)


def _tls_tool_findings(r: Run) -> Iterator[_Finding]:
    prog, argv = family(r.inv.program), r.inv.argv
    if prog == "curl":
        a = parse_args(argv, CURL_VALUES)
        if a.has("-k", "--insecure", "--proxy-insecure", "--doh-insecure"):
            yield "curl", "curl -k/--insecure accepts any certificate"
    elif prog == "wget":
        if "--no-check-certificate" in argv:
            yield "wget", "wget --no-check-certificate accepts any certificate"
    elif prog == "pip":
        a = parse_args(argv, *PIP_OPTS)
        if a.has("--trusted-host"):
            yield (
                "pip",
                f"pip --trusted-host {summary(a.value_of('--trusted-host'))} skips certificate checks",
            )
        if (
            a.positionals[:2] == ("config", "set")
            and len(a.positionals) > 2
            and "trusted-host" in a.positionals[2]
        ):
            yield "pip-config", "pip config set ...trusted-host skips certificate checks"
    elif prog in ("npm", "yarn", "pnpm"):
        a = parse_args(argv)
        pos = list(a.positionals)
        if pos[:1] in (["config"], ["c"]):
            pos = pos[1:]
        if pos[:1] == ["set"] and len(pos) > 1:
            key, _, value = pos[1].partition("=")
            value = value or (pos[2] if len(pos) > 2 else "")
            if key.lower() in ("strict-ssl", "enablestrictssl") and value.lower() == "false":
                yield f"{prog}-config", f"{prog} config set strict-ssl false accepts any certificate"
        if a.longs.get("strict-ssl") == "false" or "no-strict-ssl" in a.longs:
            yield f"{prog}-flag", f"{prog} --strict-ssl=false accepts any certificate"
    elif prog == "git":
        a = parse_args(argv, "cC")
        for setting, key, value in a.settings("-c"):
            if key.lower().endswith("sslverify") and value.lower() in _FALSY:
                yield "git-c", f"git -c {setting} does not verify certificates"
        pos = list(a.positionals)
        if (
            pos[:1] == ["config"]
            and len(pos) >= 3
            and pos[1].lower().endswith("sslverify")
            and pos[2].lower() in _FALSY
        ):
            yield "git-config", f"git config {pos[1]} {pos[2]} turns certificate checks off"
    elif prog in YUM:
        a = parse_args(argv, *YUM_OPTS)
        for setting, key, value in a.settings("--setopt"):
            if key.lower().split(".")[-1] == "sslverify" and value.strip("'\"").lower() in _FALSY:
                yield "setopt-sslverify", f"{r.inv.program} --setopt={setting} turns certificate checks off"
    elif prog in APT:
        a = parse_args(argv, *APT_OPTS)
        for setting, key, value in a.settings("-o", "--option"):
            if re.search(r"verify-(peer|host)$", key, re.I) and value.lower() in _FALSY:
                yield "apt-option", f"{prog} -o {setting} accepts any certificate"


class TlsVerificationDisabled(DockerfileRule):
    meta = dockerfile_meta(
        "tls-verification-disabled",
        "Certificate verification disabled",
        Severity.HIGH,
        "A download tool or package manager is told to accept any certificate (curl -k, wget "
        "--no-check-certificate, pip --trusted-host, npm strict-ssl false, git sslVerify false, "
        "NODE_TLS_REJECT_UNAUTHORIZED=0, PYTHONHTTPSVERIFY=0, GIT_SSL_NO_VERIFY, sslverify=0...): "
        "anyone on the network path can substitute what the build installs.",
        "Keep verification on; add the needed CA certificate to the image's trust store instead.",
        (NIST_UNTRUSTED, "cis-docker:4.11"),
        checkov=tuple(f"CKV2_DOCKER_{n}" for n in (2, 3, 4, 5, 6, 12, 13, 14, 15, 16)),
    )

    def check(self, resource: Dockerfile, policy: Policy) -> Iterator[Violation]:
        for ins, kv in variables(resource):
            value = kv.expanded
            if ins.keyword == "ENV" and kv.key == "GIT_SSL_NO_VERIFY" and value is not None:
                value = value or "(empty)"
            why = _env_disables_tls(kv.key, value)
            if why:
                yield Violation(
                    f"{ins.keyword} {kv.key}={kv.expanded}: {why}",
                    path=pair_path(ins, kv),
                    key=f"env:{kv.key}",
                )
        yield from _command_violations(resource, _tls_findings, runtime=True)


def _signature_findings(r: Run) -> Iterator[_Finding]:
    yield from _env_findings(r, _env_disables_signatures)
    yield from _signature_tool_findings(r)
    yield from _config_findings(r, _SIG_CONFIG_WRITES)


def _signature_tool_findings(r: Run) -> Iterator[_Finding]:
    prog, argv = family(r.inv.program), r.inv.argv
    if prog == "apk" and "--allow-untrusted" in argv:
        yield "apk", "apk --allow-untrusted installs packages with bad or missing signatures"
    elif prog in APT:
        a = parse_args(argv, *APT_OPTS)
        for flag in ("allow-unauthenticated", "force-yes", "allow-insecure-repositories"):
            if flag in a.longs:
                yield f"apt:{flag}", f"{prog} --{flag} accepts unsigned or unverified packages"
        for setting, key, value in a.settings("-o", "--option"):
            if re.search(
                r"AllowUnauthenticated$|AllowInsecureRepositories$", key, re.I
            ) and value.lower() in ("true", "1", "yes"):
                yield "apt-option", f"{prog} -o {setting} accepts unsigned packages"
    elif prog in YUM:
        a = parse_args(argv, *YUM_OPTS)
        if "nogpgcheck" in a.longs:
            yield "nogpgcheck", f"{r.inv.program} --nogpgcheck installs packages without checking signatures"
        for setting, key, value in a.settings("--setopt"):
            if key.lower().split(".")[-1] in ("gpgcheck", "repo_gpgcheck") and value.lower() in _FALSY:
                yield "setopt-gpgcheck", f"{r.inv.program} --setopt={setting} turns signature checks off"
    elif prog == "rpm":
        bad = [
            f for f in ("nodigest", "nosignature", "noverify", "nofiledigest") if f in parse_args(argv).longs
        ]
        if bad:
            yield "rpm", f"rpm --{' --'.join(bad)} skips package signature or digest checks"
    elif prog == "zypper" and ("--no-gpg-checks" in argv or "--no-gpg-check" in argv):
        yield "zypper", "zypper --no-gpg-checks installs packages without checking signatures"


class UnverifiedPackages(DockerfileRule):
    meta = dockerfile_meta(
        "unverified-packages",
        "Package signature checks disabled",
        Severity.HIGH,
        "A package manager installs packages without checking their signatures (apk "
        "--allow-untrusted, apt-get --allow-unauthenticated/--force-yes, yum/dnf --nogpgcheck, rpm "
        "--nosignature/--nodigest, GOSUMDB=off...): a tampered package is installed silently.",
        "Import the repository's signing key and keep signature checks on.",
        (NIST_UNTRUSTED, "cis-docker:4.11"),
        checkov=("CKV2_DOCKER_7", "CKV2_DOCKER_8", "CKV2_DOCKER_9", "CKV2_DOCKER_10", "CKV2_DOCKER_11"),
    )

    def check(self, resource: Dockerfile, policy: Policy) -> Iterator[Violation]:
        for ins, kv in variables(resource):
            why = _env_disables_signatures(kv.key, kv.expanded)
            if why:
                yield Violation(f"{kv.key}={kv.expanded}: {why}", pair_path(ins, kv), key=kv.key)
        yield from _command_violations(resource, _signature_findings, runtime=False)
