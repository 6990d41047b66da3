"""Dockerfile rules (pack ``dockerfile``): how an image is built, checked before it is built.

Every rule reads the parsed :class:`~dutyguard.sources.dockerfile.Dockerfile`: stages, instructions
with ARG/ENV substitution applied, and RUN text split into simple commands. Rules therefore match
*commands* (``sudo`` as a program, ``-k`` as an option of curl), never substrings of a line, and a
finding points at the physical line of the offending command, even inside a continued RUN or a heredoc.

Decisions that differ from peers (Checkov, Trivy, hadolint), each also asserted in the tests:

- Image-level rules (USER, HEALTHCHECK, EXPOSE, package caches) look at the final stage and the
  stages it is built ``FROM``: a builder stage whose files are only copied out does not shape the
  image's user, ports or leftover caches. ``USER`` set in a parent stage is inherited.
- ``ARG NAME value`` declares two build arguments without defaults (BuildKit's reading): it sets
  nothing, so it is not reported as setting ``NAME``. Checkov's regexes report it.
- A RUN whose quoting is broken (an unterminated quote) is a shell syntax error: nothing after the
  broken quote runs, so nothing there is reported.
- Secrets: names are matched by tokens (``DB_PASSWORD``, ``API_KEY``, ``GITHUB_TOKEN``, but not
  ``PASSWORD_FILE``, ``TOKEN_URL``, ``GPG_KEY``); an ARG without a default is still reported (its
  value lands in the image history and provenance) at a lower severity, like BuildKit's own check.
  Every stage is checked: a literal secret in a builder stage is still in the Dockerfile and the cache.
- ``sudo`` is reported where it is a command (also behind ``env``/``xargs`` and inside ``sh -c``),
  not where it is text (``echo "use sudo"``), as hadolint does and unlike Checkov's substring match.
- ``update`` left alone is reported for the package managers whose ``update`` refreshes an index
  (apt, apk) and for ``zypper refresh``; ``yum``/``dnf update`` upgrades packages and stands alone.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from dutyguard.core.model import JSONPath, Severity
from dutyguard.core.policy import Policy
from dutyguard.core.rule import AnyRule, Rule, RuleMeta, Violation
from dutyguard.errors import DutyguardError
from dutyguard.rules.workload.imageref import ImageRef, allowed_by, parse_allow_list, parse_image
from dutyguard.sources.dockerfile import (
    SHELLS,
    Dockerfile,
    Instruction,
    Invocation,
    KeyValue,
    ShellCommand,
)

PACK = "dockerfile"


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Framework references. NIST SP 800-190 §4.1 image countermeasures, §4.2 registry, §4.4 container;
# CIS Docker Benchmark §4 (container images and build file) and §5.6 (no sshd in containers).
NIST_IMAGE_VULNS = "nist-800-190:4.1.1"
NIST_IMAGE_CONFIG = "nist-800-190:4.1.2"
NIST_MALWARE = "nist-800-190:4.1.3"
NIST_SECRETS = "nist-800-190:4.1.4"
NIST_UNTRUSTED = "nist-800-190:4.1.5"
NIST_STALE = "nist-800-190:4.2.2"
NIST_RUNTIME_CONFIG = "nist-800-190:4.4.3"


def _meta(
    name: str,
    title: str,
    severity: Severity,
    description: str,
    remediation: str,
    controls: tuple[str, ...],
    *,
    hadolint: tuple[str, ...] = (),
    trivy: tuple[str, ...] = (),
    checkov: tuple[str, ...] = (),
    tags: tuple[str, ...] = (),
) -> RuleMeta:
    equivalents = {k: v for k, v in (("hadolint", hadolint), ("trivy", trivy), ("checkov", checkov)) if v}
    return RuleMeta(
        id=f"{PACK}.{name}",
        title=title,
        severity=severity,
        description=description,
        remediation=remediation,
        controls=controls,
        pack=PACK,
        tags=("dockerfile", *tags),
        equivalents=equivalents,
    )


# --------------------------------------------------------------------------------------------------
# Helpers: commands in context, options
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Run:
    """A command of a RUN (or of the RUN an ONBUILD registers), with where to report it."""

    top: Instruction
    ins: Instruction
    cmd: ShellCommand
    inv: Invocation
    index: int

    @property
    def path(self) -> JSONPath:
        return _cmd_path(self.top, self.cmd)

    def later(self) -> Iterator[_Run]:
        for k in range(self.index + 1, len(self.ins.commands)):
            c = self.ins.commands[k]
            yield _Run(self.top, self.ins, c, c.invocation, k)


def _cmd_path(top: Instruction, cmd: ShellCommand) -> JSONPath:
    if cmd.source >= 0:
        return (top.index, "heredoc", cmd.source, "at", cmd.offset)
    return (top.index, "at", cmd.offset)


def _runs(df: Dockerfile, stages: Iterable[int] | None = None, *, runtime: bool = False) -> Iterator[_Run]:
    """Commands of RUN instructions (and ONBUILD RUN); with ``runtime``, also CMD/ENTRYPOINT/HEALTHCHECK."""
    allowed = None if stages is None else frozenset(stages)
    kinds = ("RUN", "CMD", "ENTRYPOINT", "HEALTHCHECK") if runtime else ("RUN",)
    for top in df.instructions:
        if allowed is not None and top.stage not in allowed:
            continue
        ins = top.sub if top.keyword == "ONBUILD" and top.sub is not None else top
        if ins.keyword not in kinds:
            continue
        for k, c in enumerate(ins.commands):
            yield _Run(top, ins, c, c.invocation, k)


def _run_groups(df: Dockerfile, stages: Iterable[int] | None = None) -> Iterator[list[_Run]]:
    """The commands of each RUN, one list per instruction."""
    group: list[_Run] = []
    for r in _runs(df, stages):
        if group and group[0].top is not r.top:
            yield group
            group = []
        group.append(r)
    if group:
        yield group


@dataclass(frozen=True, slots=True)
class _Args:
    positionals: tuple[str, ...]
    shorts: frozenset[str]
    longs: Mapping[str, str | None]
    values: tuple[tuple[str, str], ...]
    """Every option that took a value: ``("-o", "file")``, ``("--setopt", "x=y")``."""

    def has(self, *options: str) -> bool:
        for o in options:
            if o.startswith("--"):
                if o[2:] in self.longs:
                    return True
            elif o.startswith("-") and len(o) == 2 and o[1] in self.shorts:
                return True
        return False

    def value_of(self, *options: str) -> list[str]:
        return [v for o, v in self.values if o in options]


def _args(argv: Sequence[str], short_values: str = "", long_values: frozenset[str] = frozenset()) -> _Args:
    """Options and positionals of a command line (getopt-style, clustered short options)."""
    positionals: list[str] = []
    shorts: set[str] = set()
    longs: dict[str, str | None] = {}
    values: list[tuple[str, str]] = []
    i, n = 0, len(argv)
    while i < n:
        a = argv[i]
        if a == "--":
            positionals.extend(argv[i + 1 :])
            break
        if a.startswith("--") and len(a) > 2:
            name, eq, val = a[2:].partition("=")
            if not eq and name in long_values and i + 1 < n:
                i += 1
                val, eq = argv[i], "="
            longs[name] = val if eq else None
            if eq:
                values.append(("--" + name, val))
        elif a.startswith("-") and len(a) > 1:
            for j in range(1, len(a)):
                ch = a[j]
                shorts.add(ch)
                if ch in short_values:
                    val = a[j + 1 :]
                    if not val and i + 1 < n:
                        i += 1
                        val = argv[i]
                    values.append(("-" + ch, val[1:] if val.startswith("=") else val))
                    break
        else:
            positionals.append(a)
        i += 1
    return _Args(tuple(positionals), frozenset(shorts), longs, tuple(values))


_APT = frozenset({"apt-get", "apt", "aptitude"})
_YUM = frozenset({"yum", "dnf", "tdnf", "microdnf"})
_APT_OPTS = ("otca", frozenset({"option", "target-release", "config-file", "host-architecture"}))
_YUM_OPTS = (
    "cdeRx",
    frozenset({"enablerepo", "disablerepo", "releasever", "installroot", "exclude", "repo", "setopt"}),
)
_ZYPPER_OPTS = ("rtR", frozenset({"repo", "type", "root", "from"}))
_APK_OPTS = ("tXp", frozenset({"virtual", "repository", "root", "repositories-file", "arch", "cache-dir"}))
_PIP_OPTS = (
    "rceift",
    _words(
        "requirement constraint editable index-url extra-index-url find-links trusted-host target prefix root "
        "platform python-version implementation abi cache-dir src upgrade-strategy no-binary only-binary "
        "config-settings global-option proxy cert client-cert timeout retries log report"
    ),
)
_CURL_VALUES = "AbcCdDeEFHKmoPQrtTuUwxXYyz"
_WGET_VALUES = "OoaPtTweiBUQlARDIX"
_PYTHON = re.compile(r"python[0-9.]*$")
_PIP = re.compile(r"pip[0-9.]*$")
_FALSY = frozenset({"0", "false", "no", "off"})


@functools.lru_cache(maxsize=1024)
def _family(program: str) -> str:
    """``pip3.11`` is ``pip``, ``python3`` is ``python``, ``nodejs`` is ``node``."""
    if _PIP.match(program):
        return "pip"
    if _PYTHON.match(program):
        return "python"
    return {"nodejs": "node", "yum-config-manager": "yum", "dnf-config-manager": "dnf"}.get(program, program)


def _manager_args(r: _Run) -> tuple[str, _Args] | None:
    """The package manager a command runs, with its parsed arguments."""
    fam = _family(r.inv.program)
    argv = r.inv.argv
    if fam in _APT:
        return fam, _args(argv, *_APT_OPTS)
    if fam in _YUM:
        return fam, _args(argv, *_YUM_OPTS)
    if fam == "zypper":
        return fam, _args(argv, *_ZYPPER_OPTS)
    if fam == "apk":
        return fam, _args(argv, *_APK_OPTS)
    if fam == "pip":
        return fam, _args(argv, *_PIP_OPTS)
    if fam in ("npm", "yarn", "pnpm", "gem", "go"):
        return fam, _args(argv, "vinsP" if fam == "gem" else "")
    return None


def _subcommand(a: _Args) -> str:
    return a.positionals[0] if a.positionals else ""


def _cache_mounts(ins: Instruction) -> tuple[str, ...]:
    """Targets of ``RUN --mount=type=cache`` (caches there never reach the image)."""
    out: list[str] = []
    for value in ins.flag_values("mount"):
        opts: dict[str, str] = {}
        for part in value.split(","):
            k, _, v = part.partition("=")
            opts[k.strip()] = v.strip()
        if opts.get("type") == "cache":
            out.append(opts.get("target") or opts.get("dst") or opts.get("destination") or "")
    return tuple(out)


def _removes(group: Sequence[_Run], prefix: str) -> bool:
    """Whether the RUN deletes something under ``prefix`` (``rm -rf /var/lib/apt/lists/*``)."""
    return any(r.inv.program == "rm" and any(a.startswith(prefix) for a in r.inv.argv) for r in group)


def _redirect_targets(r: _Run) -> tuple[str, ...]:
    """Files a command writes: its redirections and the arguments of ``| tee``."""
    out = list(r.cmd.outputs)
    for later in r.later():
        if later.cmd.pipeline != r.cmd.pipeline:
            break
        if later.inv.program == "tee":
            out.extend(a for a in later.inv.argv if not a.startswith("-"))
    return tuple(out)


def _summary(items: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


# --------------------------------------------------------------------------------------------------
# The user, the base image, the registry
# --------------------------------------------------------------------------------------------------

_ROOT_USERS = frozenset({"root", "containeradministrator"})


class RootUser(Rule[Dockerfile]):
    meta = _meta(
        "root-user",
        "Image runs as root",
        Severity.HIGH,
        "The final stage sets no USER, or its last USER is root (or UID 0): every process in the "
        "container runs as root, so a container escape lands as root on the node.",
        "Create an unprivileged user and end the final stage with 'USER <name or UID>' (not 0).",
        (NIST_IMAGE_CONFIG, "cis-docker:4.1"),
        hadolint=("DL3002",),
        trivy=("DS002",),
        checkov=("CKV_DOCKER_3", "CKV_DOCKER_8"),
    )
    target = Dockerfile

    def check(self, resource: Dockerfile, policy: Policy) -> Iterator[Violation]:
        final = resource.final_stage
        if final is None:
            return
        for stage in resource.lineage(final.index):
            for ins in reversed(resource.stage_instructions(stage)):
                if ins.keyword != "USER":
                    continue
                user = ins.expanded[0] if ins.expanded else ""
                name = user.split(":", 1)[0].strip()
                if not ins.resolved or "${" in name:
                    yield Violation(
                        f"the final USER ({ins.args}) depends on a build argument without a default: "
                        "the image runs as root unless every build passes it",
                        path=(ins.index,),
                        key="unresolved",
                        severity=Severity.MEDIUM,
                    )
                elif name.lower() in _ROOT_USERS or (name.isdigit() and int(name) == 0):
                    yield Violation(
                        f"the final USER is {user!r}: the container runs as root", (ins.index,), key="root"
                    )
                return
        yield Violation(
            f"the final stage (FROM {final.image_raw}) sets no USER: the container runs as root "
            "unless the base image chose another user",
            path=(final.from_index,),
            key="no-user",
        )


def _image_refs(df: Dockerfile) -> Iterator[tuple[Instruction, str, str, bool]]:
    """External images a build pulls: ``(instruction, expanded, as written, resolved)``.

    FROM lines that name an earlier stage, ``scratch``, and ``COPY --from`` of a stage are not pulls.
    """
    for st in df.stages:
        if st.parent is not None or st.image.lower() == "scratch":
            continue
        yield df.instructions[st.from_index], st.image, st.image_raw, st.resolved
    for ins in df.instructions:
        if ins.keyword not in ("COPY", "ADD"):
            continue
        f = ins.flag("from")
        if f is None or f.expanded is None or df.stage_by_name(f.expanded, before=ins.stage + 1) is not None:
            continue
        yield ins, f.expanded, f.value or "", f.resolved


class UnpinnedBaseImage(Rule[Dockerfile]):
    meta = _meta(
        "unpinned-base-image",
        "Base image without a version",
        Severity.MEDIUM,
        "FROM (or COPY --from) names an image by ':latest' or by no tag at all: every build may pull "
        "different content, so what was reviewed and scanned is not what ships.",
        "Use a release tag, better a digest: 'FROM alpine:3.20@sha256:<digest>'.",
        (NIST_STALE, "cis-docker:4.2"),
        hadolint=("DL3006", "DL3007"),
        trivy=("DS001",),
        checkov=("CKV_DOCKER_7",),
    )
    target = Dockerfile

    def check(self, resource: Dockerfile, policy: Policy) -> Iterator[Violation]:
        for ins, image, raw, resolved in _image_refs(resource):
            if not resolved or "${" in image:
                yield Violation(
                    f"image {raw!r} depends on a build argument without a default; its version cannot be "
                    "checked",
                    path=(ins.index,),
                    key=raw,
                    severity=Severity.LOW,
                )
                continue
            try:
                ref = parse_image(image)
            except DutyguardError as e:
                yield Violation(f"image {image!r} is not a valid reference ({e})", (ins.index,), key=image)
                continue
            if ref.digest is None and ref.tag in (None, "latest"):
                how = "the 'latest' tag" if ref.tag else "no tag (that is 'latest')"
                yield Violation(f"image {image!r} uses {how}", path=(ins.index,), key=image)


class UntrustedRegistry(Rule[Dockerfile]):
    meta = _meta(
        "untrusted-registry",
        "Image from a registry the policy does not allow",
        Severity.HIGH,
        "A base image (or COPY --from image) comes from outside the registries Security allows. "
        "Checked only when the policy lists allowed registries.",
        "Pull base images through an allowed registry (a mirror or your own build of the image).",
        (NIST_UNTRUSTED, "cis-docker:4.2"),
        hadolint=("DL3026",),
    )
    target = Dockerfile

    def check(self, resource: Dockerfile, policy: Policy) -> Iterator[Violation]:
        if not policy.allowed_registries:
            return
        patterns = parse_allow_list(policy.allowed_registries)
        for ins, image, raw, resolved in _image_refs(resource):
            if not resolved or "${" in image:
                yield Violation(
                    f"image {raw!r} depends on a build argument: its registry cannot be verified",
                    path=(ins.index,),
                    key=raw,
                )
                continue
            try:
                ref: ImageRef = parse_image(image)
            except DutyguardError as e:
                yield Violation(f"image {image!r} cannot be verified ({e})", (ins.index,), key=image)
                continue
            if allowed_by(ref, patterns) is None:
                yield Violation(
                    f"image {image!r} comes from {ref.registry}, which is not an allowed registry",
                    path=(ins.index,),
                    key=image,
                )


_OFFICIAL_FRONTENDS = frozenset({"docker/dockerfile", "docker/dockerfile-upstream"})


class UntrustedFrontend(Rule[Dockerfile]):
    meta = _meta(
        "untrusted-frontend",
        "Build interpreted by a third-party frontend",
        Severity.MEDIUM,
        "'# syntax=' names a frontend image other than Docker's: that image decides what the Dockerfile "
        "means and runs inside the builder with access to the build's secrets and context.",
        "Use 'docker/dockerfile:1' (pinned by digest) or remove the directive.",
        (NIST_UNTRUSTED,),
    )
    target = Dockerfile

    def check(self, resource: Dockerfile, policy: Policy) -> Iterator[Violation]:
        if resource.syntax is None:
            return
        try:
            ref = parse_image(resource.syntax)
        except DutyguardError:
            ref = None
        if ref is None or ref.registry != "docker.io" or ref.repository not in _OFFICIAL_FRONTENDS:
            yield Violation(
                f"'# syntax={resource.syntax}' makes a third-party image interpret this Dockerfile",
                path=("line", resource.syntax_line),
                key=resource.syntax,
            )


# --------------------------------------------------------------------------------------------------
# What gets into the image: ADD, secrets, files
# --------------------------------------------------------------------------------------------------

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://|^git@")
_GIT_PINNED = re.compile(r"#[0-9a-f]{40}(?::|$)")
_ARCHIVE = re.compile(r"\.(tar|tar\.(gz|bz2|xz|zst)|tgz|tbz2?|txz|tzst)$", re.IGNORECASE)
_HEREDOC_WORD = re.compile(r"^\d*<<-?")


def _copy_sources(ins: Instruction) -> tuple[str, ...]:
    """Sources of COPY/ADD (the last word is the destination; heredocs are not files)."""
    words = ins.expanded[:-1] if len(ins.expanded) > 1 else ()
    return tuple(w for w in words if not _HEREDOC_WORD.match(w))


class AddRemoteSource(Rule[Dockerfile]):
    meta = _meta(
        "add-remote-source",
        "ADD downloads without an integrity check",
        Severity.MEDIUM,
        "ADD fetches a URL or a git repository at build time and puts whatever it receives into the "
        "image; nothing checks that it is what was reviewed.",
        "Use 'ADD --checksum=sha256:<digest> <url>', pin git sources to a commit ('#<sha>'), or download "
        "in a RUN that verifies a checksum or signature.",
        (NIST_MALWARE, "cis-docker:4.9"),
        checkov=("CKV_DOCKER_4",),
    )
    target = Dockerfile

    def check(self, resource: Dockerfile, policy: Policy) -> Iterator[Violation]:
        for top in resource.instructions:
            ins = top.sub if top.keyword == "ONBUILD" and top.sub is not None else top
            if ins.keyword != "ADD":
                continue
            for src in _copy_sources(ins):
                if not _URL.match(src):
                    continue
                git = src.startswith("git@") or src.split("#", 1)[0].endswith(".git") or "#" in src
                if ins.flag("checksum") is not None or (git and _GIT_PINNED.search(src)):
                    continue
                yield Violation(f"ADD fetches {src} without verifying it", path=(top.index,), key=src)


class AddInsteadOfCopy(Rule[Dockerfile]):
    meta = _meta(
        "add-instead-of-copy",
        "ADD where COPY suffices",
        Severity.LOW,
        "ADD of local files does more than COPY (it unpacks archives, it can fetch URLs); where "
        "nothing needs that, COPY keeps the build predictable.",
        "Use COPY for local files and folders.",
        ("cis-docker:4.9",),
        hadolint=("DL3020",),
        trivy=("DS005",),
        checkov=("CKV_DOCKER_4",),
    )
    target = Dockerfile

    def check(self, resource: Dockerfile, policy: Policy) -> Iterator[Violation]:
        for top in resource.instructions:
            ins = top.sub if top.keyword == "ONBUILD" and top.sub is not None else top
            if ins.keyword != "ADD" or not ins.resolved:
                continue
            sources = _copy_sources(ins)
            if any(_URL.match(s) or _ARCHIVE.search(s) for s in sources):
                continue
            shown = _summary(sources) or "a heredoc"
            yield Violation(f"ADD of {shown}: COPY does the same", path=(top.index,), key=" ".join(sources))


_SECRET_WORDS = _words(
    "password passwd passphrase pass secret secrets token apikey credential credentials privatekey accesskey "
    "secretkey auth pwd pat"
)
_KEY_QUALIFIERS = _words(
    "api private secret access encryption signing master license client app service account ssh jwt session "
    "hmac auth consumer storage crypto"
)
_NOT_SECRET_SUFFIX = _words(
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


class SecretInEnvOrArg(Rule[Dockerfile]):
    meta = _meta(
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
    target = Dockerfile

    def check(self, resource: Dockerfile, policy: Policy) -> Iterator[Violation]:
        for ins in resource.instructions:
            if ins.keyword not in ("ENV", "ARG"):
                continue
            for kv in ins.pairs:
                if not secret_name(kv.key):
                    continue
                v = self._judge(ins.keyword, kv)
                if v is not None:
                    message, severity = v
                    yield Violation(message, path=(ins.index, "at", kv.offset), key=kv.key, severity=severity)

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


class SecretFileCopied(Rule[Dockerfile]):
    meta = _meta(
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
    target = Dockerfile

    def check(self, resource: Dockerfile, policy: Policy) -> Iterator[Violation]:
        final = set(resource.final_lineage())
        for ins in resource.instructions:
            if ins.keyword not in ("COPY", "ADD"):
                continue
            dest = ins.expanded[-1] if ins.expanded else ""
            for src in _copy_sources(ins):
                m = _SECRET_FILES.search(src.rstrip("/"))
                if _URL.match(src) or m is None:
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


class PasswordInImage(Rule[Dockerfile]):
    meta = _meta(
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
    target = Dockerfile

    def check(self, resource: Dockerfile, policy: Policy) -> Iterator[Violation]:
        for r in _runs(resource):
            prog, argv = r.inv.program, r.inv.argv
            if prog == "chpasswd":
                yield Violation("chpasswd sets account passwords in the image", r.path, key="chpasswd")
            elif prog in ("useradd", "usermod", "adduser") and _args(argv, "pcdgGsuek").value_of(
                "-p", "--password"
            ):
                yield Violation(f"{prog} -p sets a password hash in the image", r.path, key=prog)
            elif prog == "passwd" and "--stdin" in argv:
                yield Violation("passwd --stdin sets a password in the image", r.path, key="passwd")
            elif prog == "htpasswd" and _args(argv).has("-b"):
                yield Violation("htpasswd -b writes a password given on the command line", r.path, key=prog)


# --------------------------------------------------------------------------------------------------
# Shell: downloads piped into interpreters, sudo, permissions, privileged build steps
# --------------------------------------------------------------------------------------------------

_INTERPRETERS = SHELLS | _words("python perl ruby node php pwsh powershell fish lua")


def _download_to_stdout(inv: Invocation) -> str | None:
    """The URL when ``curl``/``wget`` writes what it downloads to stdout."""
    prog = inv.program
    if prog == "curl":
        a = _args(inv.argv, _CURL_VALUES, frozenset({"output", "url", "header", "user", "data"}))
        if a.value_of("-o", "--output") and "-" not in a.value_of("-o", "--output"):
            return None
        if a.has("-O", "--remote-name", "--remote-name-all"):
            return None
        return (a.value_of("--url") or list(a.positionals) or ["a URL"])[0]
    if prog == "wget":
        a = _args(inv.argv, _WGET_VALUES, frozenset({"output-document"}))
        if "-" not in a.value_of("-O", "--output-document"):
            return None
        return a.positionals[0] if a.positionals else "a URL"
    if prog == "fetch":
        a = _args(inv.argv, "o")
        return (a.positionals or ("a URL",))[0] if "-" in a.value_of("-o") else None
    return None


def _reads_script_from_stdin(inv: Invocation) -> bool:
    """An interpreter that takes its program from stdin: ``sh``, ``bash -s``, ``python3 -``."""
    fam = _family(inv.program)
    if fam not in _INTERPRETERS:
        return False
    reads_stdin = False
    for w in inv.argv:
        if w == "-":
            return True
        if w.startswith("--"):
            continue
        if w.startswith("-"):
            opts = w[1:]
            if "c" in opts or (
                fam in ("perl", "ruby", "node", "php", "lua") and ("e" in opts or "r" in opts)
            ):
                return False
            if fam == "python" and "m" in opts:
                return False
            reads_stdin = reads_stdin or (fam in SHELLS and "s" in opts)
            continue
        return reads_stdin  # a script file argument: the program comes from that file
    return True


class PipeToShell(Rule[Dockerfile]):
    meta = _meta(
        "pipe-to-shell",
        "Downloaded script executed without verification",
        Severity.HIGH,
        "A download is piped straight into a shell or interpreter ('curl ... | sh', 'wget -O- ... | "
        "bash', 'bash <(curl ...)', 'sh -c \"$(curl ...)\"'): whoever controls that URL, or the path "
        "to it, runs code in the build.",
        "Download to a file, verify a pinned checksum or signature, then run it; better, install from a "
        "signed package.",
        (NIST_MALWARE, "cis-docker:4.11"),
    )
    target = Dockerfile

    def check(self, resource: Dockerfile, policy: Policy) -> Iterator[Violation]:
        for top in resource.instructions:
            ins = top.sub if top.keyword == "ONBUILD" and top.sub is not None else top
            if ins.keyword not in ("RUN", "CMD", "ENTRYPOINT", "HEALTHCHECK"):
                continue
            cmds = ins.commands
            pipelines: dict[int, list[ShellCommand]] = {}
            for c in cmds:
                pipelines.setdefault(c.pipeline, []).append(c)
            for c in cmds:
                inv = c.invocation
                url = _download_to_stdout(inv)
                if url is None:
                    continue
                runner = self._runner(cmds, pipelines[c.pipeline], c)
                if runner is not None:
                    yield Violation(
                        f"{inv.program} downloads {url} and {runner} runs it unverified",
                        path=_cmd_path(top, c),
                        key=f"{inv.program}:{url}:{runner}",
                    )

    @staticmethod
    def _runner(
        cmds: Sequence[ShellCommand], pipeline: Sequence[ShellCommand], c: ShellCommand
    ) -> str | None:
        # 1) later in the same pipeline: curl ... | sudo bash -s
        for d in pipeline:
            if d.position > c.position and _reads_script_from_stdin(d.invocation):
                return d.invocation.program
        # 2) nested in an interpreter or eval: bash <(curl ...), sh -c "$(curl ...)", eval "$(...)"
        p = c.parent
        if p >= 0 and c.nesting in ("$(", "`", "<("):
            outer = cmds[p].invocation
            fam = _family(outer.program)
            if fam in _INTERPRETERS or outer.program in ("eval", "source", "."):
                return outer.program
        return None


class Sudo(Rule[Dockerfile]):
    meta = _meta(
        "sudo",
        "sudo in a build step",
        Severity.MEDIUM,
        "RUN uses sudo (or doas). Build steps already run as the current USER; sudo there means the "
        "image ships a privilege-escalation path and its TTY and signal handling makes builds brittle.",
        "Switch with 'USER root' for the steps that need it and back to an unprivileged USER after; at "
        "run time use gosu/su-exec if a process must drop privileges.",
        (NIST_IMAGE_CONFIG,),
        hadolint=("DL3004",),
        trivy=("DS010",),
        checkov=("CKV2_DOCKER_1",),
    )
    target = Dockerfile

    def check(self, resource: Dockerfile, policy: Policy) -> Iterator[Violation]:
        for r in _runs(resource):
            used = [w for w in ("sudo", "doas") if w in r.inv.wrappers or r.inv.program == w]
            if used:
                shown = " ".join(w.expanded for w in r.cmd.words[:6])
                yield Violation(f"RUN uses {used[0]}: {shown}", r.path, key=used[0])


def _mode_problems(mode: str) -> list[str]:
    """Why a chmod mode is unsafe: world-writable (without the sticky bit), setuid or setgid."""
    out: list[str] = []
    if re.fullmatch(r"[0-7]{1,4}", mode):
        bits = int(mode, 8)
        if bits & 0o002 and not bits & 0o1000:
            out.append("world-writable")
        if bits & 0o6000:
            out.append("setuid" if bits & 0o4000 else "setgid")
        return out
    sticky = False
    for clause in mode.split(","):
        m = re.fullmatch(r"([ugoa]*)([-+=])([rwxXst]*)", clause)
        if m is None:
            continue
        who, op, perms = m.groups()
        if op == "-":
            continue
        if "t" in perms:
            sticky = True
        if "w" in perms and ("o" in who or "a" in who) and not sticky:
            out.append("world-writable")
        if "s" in perms and (who == "" or "u" in who or "g" in who or "a" in who):
            out.append("setuid" if who == "" or "u" in who or "a" in who else "setgid")
    return out


class UnsafeFilePermissions(Rule[Dockerfile]):
    meta = _meta(
        "unsafe-file-permissions",
        "World-writable or setuid files",
        Severity.MEDIUM,
        "chmod (or COPY/ADD --chmod) makes files world-writable (777, o+w) or setuid/setgid: any user "
        "in the container can then change what others run, or gain the owner's privileges.",
        "Grant the least permissions the process needs (e.g. 755 or 644, owned by the app user); remove "
        "setuid/setgid bits ('chmod a-s').",
        (NIST_IMAGE_CONFIG, "cis-docker:4.8"),
    )
    target = Dockerfile

    def check(self, resource: Dockerfile, policy: Policy) -> Iterator[Violation]:
        for r in _runs(resource):
            if r.inv.program != "chmod":
                continue
            modes = [a for a in r.inv.argv if not a.startswith("-") or re.fullmatch(r"-[rwxXst,ugoa+=-]+", a)]
            if not modes:
                continue
            mode, targets = modes[0], modes[1:]
            for problem in dict.fromkeys(_mode_problems(mode)):
                yield Violation(
                    f"chmod {mode} makes {_summary(targets) or 'files'} {problem}",
                    r.path,
                    key=f"{problem}:{mode}:{' '.join(targets)}",
                )
        for ins in resource.instructions:
            if ins.keyword in ("COPY", "ADD"):
                for mode in ins.flag_values("chmod"):
                    for problem in dict.fromkeys(_mode_problems(mode)):
                        yield Violation(
                            f"{ins.keyword} --chmod={mode} makes files {problem}",
                            path=(ins.index,),
                            key=f"{problem}:{mode}",
                        )


class InsecureBuildStep(Rule[Dockerfile]):
    meta = _meta(
        "insecure-build-step",
        "Privileged or host-network build step",
        Severity.HIGH,
        "'RUN --security=insecure' runs the step with every capability, like a privileged container; "
        "'RUN --network=host' gives it the builder host's network. Whatever runs there can reach the "
        "builder and everything it can reach.",
        "Remove the flag; build what needs privileges outside the image build.",
        (NIST_RUNTIME_CONFIG, NIST_IMAGE_CONFIG),
    )
    target = Dockerfile

    def check(self, resource: Dockerfile, policy: Policy) -> Iterator[Violation]:
        for top in resource.instructions:
            ins = top.sub if top.keyword == "ONBUILD" and top.sub is not None else top
            if ins.keyword != "RUN":
                continue
            if "insecure" in ins.flag_values("security"):
                yield Violation(
                    "RUN --security=insecure runs the step privileged", (top.index,), key="security"
                )
            if "host" in ins.flag_values("network"):
                yield Violation(
                    "RUN --network=host uses the builder's network",
                    (top.index,),
                    key="network",
                    severity=Severity.MEDIUM,
                )


# --------------------------------------------------------------------------------------------------
# Certificate and signature verification
# --------------------------------------------------------------------------------------------------


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


def _assignments(r: _Run) -> Iterator[tuple[str, str]]:
    """``NAME=value`` a command sets: its prefix, ``env``, ``export``/``declare -x``/``readonly``."""
    words = list(r.inv.env)
    if r.inv.program in ("export", "declare", "typeset", "readonly", "local") or (
        not r.cmd.words and r.cmd.assignments
    ):
        words.extend(w for w in r.inv.args if "=" in w.value and not w.value.startswith("-"))
    for w in words:
        name, _, value = w.expanded.partition("=")
        yield name, value


_TLS_CONFIG_WRITES = (
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
_SIG_CONFIG_WRITES = (
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


def _config_write(r: _Run, table: Sequence[tuple[re.Pattern[str], re.Pattern[str], str]]) -> str | None:
    if r.inv.program not in ("echo", "printf", "cat"):
        return None
    content = "\n".join(r.inv.argv)
    for target in _redirect_targets(r):
        for file_re, content_re, why in table:
            if file_re.search(target) and content_re.search(content):
                return f"writes {target}: {why}"
    return None


def _tls_findings(r: _Run) -> Iterator[tuple[str, str]]:
    prog, argv = _family(r.inv.program), r.inv.argv
    for name, value in _assignments(r):
        why = _env_disables_tls(name, value)
        if why:
            yield f"env:{name}", f"{name}={value}: {why}"
    if prog == "curl":
        a = _args(argv, _CURL_VALUES)
        if a.has("-k", "--insecure", "--proxy-insecure", "--doh-insecure"):
            yield "curl", "curl -k/--insecure accepts any certificate"
    elif prog == "wget":
        if "--no-check-certificate" in argv:
            yield "wget", "wget --no-check-certificate accepts any certificate"
    elif prog == "pip":
        a = _args(argv, *_PIP_OPTS)
        if a.has("--trusted-host"):
            yield (
                "pip",
                f"pip --trusted-host {_summary(a.value_of('--trusted-host'))} skips certificate checks",
            )
        if (
            a.positionals[:2] == ("config", "set")
            and len(a.positionals) > 2
            and "trusted-host" in a.positionals[2]
        ):
            yield "pip-config", "pip config set ...trusted-host skips certificate checks"
    elif prog in ("npm", "yarn", "pnpm"):
        a = _args(argv)
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
        a = _args(argv, "cC")
        for setting in a.value_of("-c"):
            key, _, value = setting.partition("=")
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
    elif prog in _YUM or prog in ("yum-config-manager", "dnf-config-manager"):
        a = _args(argv, *_YUM_OPTS)
        for setting in a.value_of("--setopt"):
            key, _, value = setting.partition("=")
            if key.lower().split(".")[-1] == "sslverify" and value.strip("'\"").lower() in _FALSY:
                yield "setopt-sslverify", f"{r.inv.program} --setopt={setting} turns certificate checks off"
    elif prog in _APT:
        a = _args(argv, *_APT_OPTS)
        for setting in a.value_of("-o", "--option"):
            key, _, value = setting.partition("=")
            if re.search(r"verify-(peer|host)$", key, re.I) and value.lower() in _FALSY:
                yield "apt-option", f"{prog} -o {setting} accepts any certificate"
    why = _config_write(r, _TLS_CONFIG_WRITES)
    if why:
        yield "config-write", why


class TlsVerificationDisabled(Rule[Dockerfile]):
    meta = _meta(
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
    target = Dockerfile

    def check(self, resource: Dockerfile, policy: Policy) -> Iterator[Violation]:
        for ins in resource.instructions:
            if ins.keyword not in ("ENV", "ARG"):
                continue
            for kv in ins.pairs:
                value = kv.expanded
                if ins.keyword == "ENV" and kv.key == "GIT_SSL_NO_VERIFY" and value is not None:
                    value = value or "(empty)"
                why = _env_disables_tls(kv.key, value)
                if why:
                    yield Violation(
                        f"{ins.keyword} {kv.key}={kv.expanded}: {why}",
                        path=(ins.index, "at", kv.offset),
                        key=f"env:{kv.key}",
                    )
        for r in _runs(resource, runtime=True):
            for key, message in dict(_tls_findings(r)).items():
                yield Violation(message, r.path, key=key)


def _signature_findings(r: _Run) -> Iterator[tuple[str, str]]:
    prog, argv = _family(r.inv.program), r.inv.argv
    for name, value in _assignments(r):
        why = _env_disables_signatures(name, value)
        if why:
            yield f"env:{name}", f"{name}={value}: {why}"
    if prog == "apk" and "--allow-untrusted" in argv:
        yield "apk", "apk --allow-untrusted installs packages with bad or missing signatures"
    elif prog in _APT:
        a = _args(argv, *_APT_OPTS)
        for flag in ("allow-unauthenticated", "force-yes", "allow-insecure-repositories"):
            if flag in a.longs:
                yield f"apt:{flag}", f"{prog} --{flag} accepts unsigned or unverified packages"
        for setting in a.value_of("-o", "--option"):
            key, _, value = setting.partition("=")
            if re.search(
                r"AllowUnauthenticated$|AllowInsecureRepositories$", key, re.I
            ) and value.lower() in (
                "true",
                "1",
                "yes",
            ):
                yield "apt-option", f"{prog} -o {setting} accepts unsigned packages"
    elif prog in _YUM or prog in ("yum-config-manager", "dnf-config-manager"):
        a = _args(argv, *_YUM_OPTS)
        if "nogpgcheck" in a.longs:
            yield "nogpgcheck", f"{r.inv.program} --nogpgcheck installs packages without checking signatures"
        for setting in a.value_of("--setopt"):
            key, _, value = setting.partition("=")
            if key.lower().split(".")[-1] in ("gpgcheck", "repo_gpgcheck") and value.lower() in _FALSY:
                yield "setopt-gpgcheck", f"{r.inv.program} --setopt={setting} turns signature checks off"
    elif prog == "rpm":
        bad = [f for f in ("nodigest", "nosignature", "noverify", "nofiledigest") if f in _args(argv).longs]
        if bad:
            yield "rpm", f"rpm --{' --'.join(bad)} skips package signature or digest checks"
    elif prog == "zypper" and ("--no-gpg-checks" in argv or "--no-gpg-check" in argv):
        yield "zypper", "zypper --no-gpg-checks installs packages without checking signatures"
    why = _config_write(r, _SIG_CONFIG_WRITES)
    if why:
        yield "config-write", why


class UnverifiedPackages(Rule[Dockerfile]):
    meta = _meta(
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
    target = Dockerfile

    def check(self, resource: Dockerfile, policy: Policy) -> Iterator[Violation]:
        for ins in resource.instructions:
            if ins.keyword in ("ENV", "ARG"):
                for kv in ins.pairs:
                    why = _env_disables_signatures(kv.key, kv.expanded)
                    if why:
                        yield Violation(
                            f"{kv.key}={kv.expanded}: {why}", (ins.index, "at", kv.offset), key=kv.key
                        )
        for r in _runs(resource):
            for key, message in dict(_signature_findings(r)).items():
                yield Violation(message, r.path, key=key)


# --------------------------------------------------------------------------------------------------
# Image metadata: health check, ports, sshd
# --------------------------------------------------------------------------------------------------


class NoHealthcheck(Rule[Dockerfile]):
    meta = _meta(
        "no-healthcheck",
        "No HEALTHCHECK",
        Severity.LOW,
        "The final stage defines no HEALTHCHECK (or disables it with HEALTHCHECK NONE): the runtime "
        "cannot tell a hung container from a working one.",
        "Add 'HEALTHCHECK CMD <a cheap check>' (or rely on orchestrator probes and accept this).",
        ("cis-docker:4.6",),
        hadolint=("DL3057",),
        trivy=("DS026",),
        checkov=("CKV_DOCKER_2",),
    )
    target = Dockerfile

    def check(self, resource: Dockerfile, policy: Policy) -> Iterator[Violation]:
        final = resource.final_stage
        if final is None:
            return
        for stage in resource.lineage(final.index):
            for ins in reversed(resource.stage_instructions(stage)):
                if ins.keyword == "HEALTHCHECK":
                    if ins.words[:1] == ("NONE",):
                        yield Violation("HEALTHCHECK NONE disables health checking", (ins.index,), key="none")
                    return
        yield Violation("the final stage defines no HEALTHCHECK", path=(final.from_index,), key="missing")


def _port_range(spec: str) -> tuple[int, int, str] | None:
    port, _, proto = spec.partition("/")
    lo, _, hi = port.partition("-")
    if not lo.isdigit() or (hi and not hi.isdigit()):
        return None
    return int(lo), int(hi or lo), proto.lower() or "tcp"


class SshPort(Rule[Dockerfile]):
    meta = _meta(
        "ssh-port",
        "SSH port exposed",
        Severity.MEDIUM,
        "The image EXPOSEs port 22: containers are managed through the runtime, and an SSH daemon in "
        "one is an unmanaged way in.",
        "Remove 'EXPOSE 22' and the SSH server; use 'kubectl exec' / 'docker exec' for access.",
        (NIST_IMAGE_CONFIG, "cis-docker:5.6"),
        trivy=("DS004",),
        checkov=("CKV_DOCKER_1",),
    )
    target = Dockerfile

    def check(self, resource: Dockerfile, policy: Policy) -> Iterator[Violation]:
        for stage in resource.final_lineage():
            for ins in resource.stage_instructions(stage):
                if ins.keyword != "EXPOSE":
                    continue
                for spec in ins.expanded:
                    r = _port_range(spec)
                    if r is not None and r[0] <= 22 <= r[1] and r[2] == "tcp":
                        yield Violation(f"EXPOSE {spec} publishes the SSH port", (ins.index,), key=spec)


_SSH_SERVERS = frozenset({"openssh-server", "dropbear", "openssh-server-pam", "tinysshd"})


class SshServer(Rule[Dockerfile]):
    meta = _meta(
        "ssh-server",
        "SSH server in the image",
        Severity.MEDIUM,
        "The image installs or starts an SSH daemon: a second, unmanaged way into the container, with "
        "its own credentials to leak.",
        "Do not install openssh-server/dropbear; use the runtime's exec for debugging.",
        (NIST_IMAGE_CONFIG, "cis-docker:5.6"),
    )
    target = Dockerfile

    def check(self, resource: Dockerfile, policy: Policy) -> Iterator[Violation]:
        lineage = resource.final_lineage()
        for r in _runs(resource, lineage, runtime=True):
            if r.inv.program in ("sshd", "dropbear"):
                yield Violation(f"{r.top.keyword} starts {r.inv.program}", r.path, key=r.inv.program)
                continue
            parsed = _manager_args(r)
            if parsed is None or r.ins.keyword != "RUN":
                continue
            fam, a = parsed
            if _subcommand(a) in ("install", "add", "in"):
                found = [p for p in a.positionals[1:] if p.split("=")[0] in _SSH_SERVERS]
                if fam == "apk":
                    found += [p for p in a.positionals[1:] if p.split("=")[0] == "openssh"]
                if found:
                    yield Violation(f"{fam} installs {', '.join(found)}", r.path, key=" ".join(found))


# --------------------------------------------------------------------------------------------------
# Package managers
# --------------------------------------------------------------------------------------------------

_QUIET2 = re.compile(r"-[a-zA-Z]*q[a-zA-Z]*q[a-zA-Z]*|(-q|--quiet)=2")
_APT_MUTATING = _words("install upgrade dist-upgrade full-upgrade remove purge autoremove")
_YUM_MUTATING = _words("install groupinstall localinstall update upgrade remove erase")
_ZYPPER_MUTATING = _words("install in remove rm update up patch dist-upgrade dup")


class InstallMissingYes(Rule[Dockerfile]):
    meta = _meta(
        "install-missing-yes",
        "Package manager may prompt",
        Severity.LOW,
        "apt-get/yum/dnf/zypper changes packages without '-y' (or '--non-interactive'): the build "
        "depends on an answer nobody gives, and fails or behaves differently across versions.",
        "Add '-y' ('apt-get install -y', 'dnf install -y', 'zypper --non-interactive install').",
        (NIST_IMAGE_CONFIG,),
        hadolint=("DL3014", "DL3030", "DL3034", "DL3038"),
        trivy=("DS021",),
    )
    target = Dockerfile

    def check(self, resource: Dockerfile, policy: Policy) -> Iterator[Violation]:
        for r in _runs(resource):
            parsed = _manager_args(r)
            if parsed is None:
                continue
            fam, a = parsed
            sub = _subcommand(a)
            if fam in _APT and sub in _APT_MUTATING:
                # -qq (or -q=2) implies --yes in apt-get
                quiet = any(_QUIET2.fullmatch(x) for x in r.inv.argv)
                assume = any(
                    re.search(r"Assume-Yes=(true|1|yes)", v, re.I) for v in a.value_of("-o", "--option")
                )
                if not (a.has("-y", "--yes", "--assume-yes") or quiet or assume):
                    yield Violation(f"{fam} {sub} without -y", r.path, key=f"{fam}:{sub}")
            elif fam in ("yum", "dnf", "tdnf") and sub in _YUM_MUTATING and not a.has("-y", "--assumeyes"):
                yield Violation(f"{fam} {sub} without -y", r.path, key=f"{fam}:{sub}")
            elif (
                fam == "zypper"
                and sub in _ZYPPER_MUTATING
                and not a.has("-n", "--non-interactive", "-y", "--no-confirm")
            ):
                yield Violation(f"zypper {sub} without -n/-y", r.path, key=f"zypper:{sub}")


class AptInstallRecommends(Rule[Dockerfile]):
    meta = _meta(
        "apt-install-recommends",
        "apt-get installs recommended packages",
        Severity.LOW,
        "apt-get install without '--no-install-recommends' adds packages nobody asked for: more code "
        "in the image, more vulnerabilities to patch.",
        "Use 'apt-get install -y --no-install-recommends <packages>'.",
        ("cis-docker:4.3", NIST_IMAGE_VULNS),
        hadolint=("DL3015",),
        trivy=("DS029",),
    )
    target = Dockerfile

    def check(self, resource: Dockerfile, policy: Policy) -> Iterator[Violation]:
        for r in _runs(resource):
            parsed = _manager_args(r)
            if parsed is None or parsed[0] not in ("apt-get", "apt") or _subcommand(parsed[1]) != "install":
                continue
            a = parsed[1]
            off = any(
                re.search(r"Install-Recommends=(false|0|no)", v, re.I) for v in a.value_of("-o", "--option")
            )
            if not a.has("--no-install-recommends") and not off:
                yield Violation(f"{parsed[0]} install without --no-install-recommends", r.path, key=parsed[0])


@dataclass(frozen=True, slots=True)
class _CacheCheck:
    manager: str
    installs: Callable[[str, _Args], bool]
    cleans: Callable[[str, _Args], bool]
    cache_dirs: tuple[str, ...]
    message: str


def _is(fam: str, subs: Iterable[str]) -> Callable[[str, _Args], bool]:
    subset = frozenset(subs)
    return lambda f, a: f == fam and _subcommand(a) in subset


def _clean_all(fam: str) -> Callable[[str, _Args], bool]:
    return lambda f, a: f == fam and a.positionals[:2] == ("clean", "all")


_CACHE_CHECKS = (
    _CacheCheck(
        "apk",
        lambda f, a: f == "apk" and _subcommand(a) == "add" and not a.has("--no-cache"),
        lambda f, a: f == "apk" and _subcommand(a) == "cache" and a.positionals[1:2] == ("clean",),
        ("/var/cache/apk",),
        "apk add without --no-cache leaves the package index in the image",
    ),
    _CacheCheck(
        "yum",
        _is("yum", ("install", "groupinstall", "localinstall", "reinstall", "update", "upgrade")),
        _clean_all("yum"),
        ("/var/cache/yum",),
        "yum install without 'yum clean all' leaves its cache in the image",
    ),
    _CacheCheck(
        "dnf",
        _is("dnf", ("install", "groupinstall", "localinstall", "reinstall", "update", "upgrade")),
        _clean_all("dnf"),
        ("/var/cache/dnf",),
        "dnf install without 'dnf clean all' leaves its cache in the image",
    ),
    _CacheCheck(
        "tdnf",
        _is("tdnf", ("install", "update", "upgrade", "reinstall")),
        _clean_all("tdnf"),
        ("/var/cache/tdnf",),
        "tdnf install without 'tdnf clean all' leaves its cache in the image",
    ),
    _CacheCheck(
        "microdnf",
        _is("microdnf", ("install", "update", "upgrade", "reinstall")),
        _clean_all("microdnf"),
        ("/var/cache/yum", "/var/cache/dnf"),
        "microdnf install without 'microdnf clean all' leaves its cache in the image",
    ),
    _CacheCheck(
        "zypper",
        _is("zypper", ("install", "in", "update", "up", "patch", "dist-upgrade", "dup")),
        lambda f, a: f == "zypper" and _subcommand(a) in ("clean", "cc"),
        ("/var/cache/zypp",),
        "zypper install without 'zypper clean' leaves its cache in the image",
    ),
    _CacheCheck(
        "yarn",
        lambda f, a: f == "yarn" and _subcommand(a) in ("install", "add", ""),
        lambda f, a: f == "yarn" and a.positionals[:2] == ("cache", "clean"),
        ("/usr/local/share/.cache/yarn", "/root/.cache/yarn"),
        "yarn install without 'yarn cache clean' leaves its cache in the image",
    ),
)


class PackageCacheLeft(Rule[Dockerfile]):
    meta = _meta(
        "package-cache-not-cleaned",
        "Package manager cache left in the image",
        Severity.LOW,
        "A RUN installs packages and leaves the package index or download cache in the layer (apt "
        "lists, apk index, yum/dnf/zypper caches, pip and yarn caches): a bigger image with stale "
        "metadata. Only stages that end up in the final image are checked.",
        "Clean in the same RUN ('rm -rf /var/lib/apt/lists/*', 'apk add --no-cache', 'dnf clean all', "
        "'pip install --no-cache-dir'), or use 'RUN --mount=type=cache'.",
        ("cis-docker:4.3",),
        hadolint=("DL3009", "DL3019", "DL3032", "DL3036", "DL3040", "DL3042", "DL3060"),
        trivy=("DS015", "DS019", "DS020", "DS025", "DS027"),
    )
    target = Dockerfile

    def check(self, resource: Dockerfile, policy: Policy) -> Iterator[Violation]:
        for group in _run_groups(resource, resource.final_lineage()):
            ins = group[0].ins
            mounts = _cache_mounts(ins)
            parsed = [(_manager_args(r), r) for r in group]
            yield from self._apt(group, parsed, mounts)
            for check in _CACHE_CHECKS:
                if any(m.startswith(check.cache_dirs) for m in mounts if m):
                    continue
                cleaned = any(p is not None and check.cleans(*p) for p, _ in parsed) or any(
                    _removes(group, d) for d in check.cache_dirs
                )
                if cleaned:
                    continue
                for p, r in parsed:
                    if p is not None and check.installs(*p):
                        yield Violation(check.message, r.path, key=check.manager)
                        break
            yield from self._pip(group, parsed, mounts)

    @staticmethod
    def _apt(
        group: Sequence[_Run], parsed: Sequence[tuple[tuple[str, _Args] | None, _Run]], mounts: Sequence[str]
    ) -> Iterator[Violation]:
        if any(m.startswith("/var/lib/apt") for m in mounts if m):
            return
        for p, r in parsed:
            if p is not None and p[0] in ("apt-get", "apt") and _subcommand(p[1]) == "update":
                if not _removes(group, "/var/lib/apt/lists"):
                    yield Violation(
                        f"{p[0]} update without 'rm -rf /var/lib/apt/lists/*' in the same RUN",
                        r.path,
                        key="apt",
                    )
                return

    @staticmethod
    def _pip(
        group: Sequence[_Run], parsed: Sequence[tuple[tuple[str, _Args] | None, _Run]], mounts: Sequence[str]
    ) -> Iterator[Violation]:
        if any(".cache/pip" in m for m in mounts):
            return
        for p, r in parsed:
            if p is None or p[0] != "pip" or _subcommand(p[1]) != "install" or p[1].has("--no-cache-dir"):
                continue
            env = dict(_assignments(r))
            var = r.ins.scope.get("PIP_NO_CACHE_DIR")
            setting = env.get("PIP_NO_CACHE_DIR", var.value if var is not None else None)
            if setting is not None and setting.lower() not in ("", "0", "false", "no", "off"):
                continue
            yield Violation(
                "pip install without --no-cache-dir keeps its cache in the image", r.path, key="pip"
            )
            return


class PackageUpgrade(Rule[Dockerfile]):
    meta = _meta(
        "package-upgrade",
        "Distribution upgrade in the build",
        Severity.LOW,
        "'apt-get upgrade/dist-upgrade' (or 'zypper dist-upgrade') makes the image's contents depend "
        "on the day it was built and may move core packages to another major version.",
        "Rebuild from an updated base image (pinned by digest) instead of upgrading inside the build.",
        (NIST_IMAGE_VULNS, "cis-docker:4.4"),
        hadolint=("DL3035",),
        trivy=("DS024",),
    )
    target = Dockerfile

    def check(self, resource: Dockerfile, policy: Policy) -> Iterator[Violation]:
        for r in _runs(resource):
            parsed = _manager_args(r)
            if parsed is None:
                continue
            fam, a = parsed
            sub = _subcommand(a)
            if (fam in _APT and sub in ("upgrade", "dist-upgrade", "full-upgrade", "safe-upgrade")) or (
                fam == "zypper" and sub in ("dist-upgrade", "dup")
            ):
                yield Violation(f"{fam} {sub} in the build", r.path, key=f"{fam}:{sub}")


_INDEX_UPDATES = {
    "apt": frozenset({"update"}),
    "apk": frozenset({"update"}),
    "zypper": frozenset({"refresh", "ref"}),
}
_INSTALLS = {
    "apt": frozenset(
        {"install", "upgrade", "dist-upgrade", "full-upgrade", "reinstall", "build-dep", "source"}
    ),
    "apk": frozenset({"add", "upgrade", "fix"}),
    "zypper": frozenset({"install", "in", "update", "up", "patch", "dist-upgrade", "dup", "source-install"}),
}


def _family_group(fam: str) -> str:
    return "apt" if fam in _APT else fam


class PackageUpdateAlone(Rule[Dockerfile]):
    meta = _meta(
        "package-update-alone",
        "Package index updated in a RUN of its own",
        Severity.MEDIUM,
        "'apt-get update' (or 'apk update', 'zypper refresh') is not followed by an install in the same "
        "RUN: the index is cached in its own layer, so later builds install from a stale index and "
        "miss security fixes.",
        "Update and install in one RUN: 'apt-get update && apt-get install -y ...'.",
        ("cis-docker:4.7", NIST_IMAGE_VULNS),
        trivy=("DS017",),
        checkov=("CKV_DOCKER_5",),
    )
    target = Dockerfile

    def check(self, resource: Dockerfile, policy: Policy) -> Iterator[Violation]:
        for group in _run_groups(resource):
            parsed = [(_manager_args(r), r) for r in group]
            last_install: dict[str, int] = {}
            for k, (p, _) in enumerate(parsed):
                if p is not None and _subcommand(p[1]) in _INSTALLS.get(_family_group(p[0]), ()):
                    last_install[_family_group(p[0])] = k
            for k, (p, r) in enumerate(parsed):
                if p is None:
                    continue
                fam, a = p
                group_name = _family_group(fam)
                sub = _subcommand(a)
                if sub not in _INDEX_UPDATES.get(group_name, ()):
                    continue
                if last_install.get(group_name, -1) < k:
                    yield Violation(f"{fam} {sub} is not followed by an install in this RUN", r.path, key=fam)


def _unpinned(fam: str, a: _Args) -> list[str] | None:
    """Packages an install names without a version, or ``None`` when this is not an install."""
    sub = _subcommand(a)
    pos = list(a.positionals[1:])
    names = [p for p in pos if p and not p.startswith("$") and "${" not in p]
    if fam in ("apt-get", "apt") and sub == "install":
        return [p for p in names if "=" not in p and not p.endswith(".deb")]
    if fam == "apk" and sub == "add":
        return [p for p in names if not re.search(r"[=~<>]", p) and not p.endswith(".apk")]
    if fam == "pip" and sub == "install":
        return [
            p
            for p in names
            if not re.search(r"==|~=|>=|<=|!=|<|>|@", p)
            and not re.match(r"(\.|/|~|git\+|https?://|file:)", p)
            and not re.search(r"\.(whl|tar\.gz|zip)$", p)
        ]
    if (fam in ("npm", "pnpm") and sub in ("install", "i", "add")) or (fam == "yarn" and sub == "add"):
        out = []
        for p in names:
            if re.match(r"(\.|/|~|git\+|https?://|file:|github:)", p) or p.endswith((".tgz", ".tar.gz")):
                continue
            version = p[1:].rpartition("@")[2] if "@" in p[1:] else ""
            if not version or version == "latest":
                out.append(p)
        return out
    if fam == "gem" and sub == "install":
        if a.has("-v", "--version"):
            return []
        return [p for p in names if ":" not in p]
    if fam == "go" and sub == "install":
        return [p for p in names if "@" not in p or p.endswith("@latest")]
    if fam in ("yum", "dnf", "tdnf", "microdnf") and sub == "install":
        return [p for p in names if not re.search(r"-\d", p) and not p.endswith(".rpm") and "/" not in p]
    if fam == "zypper" and sub in ("install", "in"):
        return [p for p in names if not re.search(r"[=<>]|-\d", p) and not p.endswith(".rpm")]
    return None


class UnpinnedPackages(Rule[Dockerfile]):
    meta = _meta(
        "unpinned-packages",
        "Packages installed without a version",
        Severity.LOW,
        "apt/apk/yum/dnf/zypper/pip/npm/gem/go installs name packages without versions: the image "
        "silently changes from one build to the next, and a reviewed build cannot be reproduced.",
        "Pin versions ('apt-get install curl=8.5.0-2', 'pip install requests==2.32.3', 'npm i x@1.2.3'), "
        "or install from a lock or requirements file.",
        (NIST_IMAGE_VULNS,),
        hadolint=("DL3008", "DL3013", "DL3016", "DL3018", "DL3028", "DL3033", "DL3037", "DL3041", "DL3062"),
    )
    target = Dockerfile

    def check(self, resource: Dockerfile, policy: Policy) -> Iterator[Violation]:
        for r in _runs(resource):
            parsed = _manager_args(r)
            if parsed is None:
                continue
            names = _unpinned(*parsed)
            if names:
                yield Violation(
                    f"{parsed[0]} installs without a pinned version: {_summary(names)}",
                    r.path,
                    key=f"{parsed[0]}:{' '.join(sorted(names))}",
                )


# --------------------------------------------------------------------------------------------------
# What BuildKit would refuse
# --------------------------------------------------------------------------------------------------


class InvalidInstruction(Rule[Dockerfile]):
    meta = _meta(
        "invalid-instruction",
        "Dockerfile that BuildKit refuses",
        Severity.MEDIUM,
        "An unknown instruction, an instruction before FROM, a file without FROM, or a malformed "
        "ENV/ARG/JSON form: BuildKit refuses to build it, and tools may read the rest differently.",
        "Fix the instruction (this often hides a missing line continuation or a stray heredoc body).",
        (NIST_IMAGE_CONFIG,),
    )
    target = Dockerfile

    def check(self, resource: Dockerfile, policy: Policy) -> Iterator[Violation]:
        for p in resource.problems:
            path: JSONPath = (p.instruction,) if p.instruction >= 0 else ("line", p.line)
            yield Violation(p.message, path=path, key=p.message)


def rules() -> list[AnyRule]:
    return [
        RootUser(),
        UnpinnedBaseImage(),
        UntrustedRegistry(),
        UntrustedFrontend(),
        AddRemoteSource(),
        AddInsteadOfCopy(),
        SecretInEnvOrArg(),
        SecretFileCopied(),
        PasswordInImage(),
        PipeToShell(),
        Sudo(),
        UnsafeFilePermissions(),
        InsecureBuildStep(),
        TlsVerificationDisabled(),
        UnverifiedPackages(),
        NoHealthcheck(),
        SshPort(),
        SshServer(),
        InstallMissingYes(),
        AptInstallRecommends(),
        PackageCacheLeft(),
        PackageUpgrade(),
        PackageUpdateAlone(),
        UnpinnedPackages(),
        InvalidInstruction(),
    ]
