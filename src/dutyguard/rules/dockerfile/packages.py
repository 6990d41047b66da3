"""Package managers: prompts, recommended packages, caches left behind, upgrades, stale indexes, pins."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from dutyguard.core.model import Severity
from dutyguard.core.policy import Policy
from dutyguard.core.rule import Violation
from dutyguard.rules.dockerfile._base import (
    NIST_IMAGE_CONFIG,
    NIST_IMAGE_VULNS,
    DockerfileRule,
    dockerfile_meta,
    summary,
    words,
)
from dutyguard.rules.dockerfile._commands import Args, Run, assignments, run_groups, runs
from dutyguard.rules.dockerfile._managers import APT, managed
from dutyguard.sources.dockerfile import Dockerfile, Instruction

_Managed = tuple[Run, str, Args]
"""A command that runs a package manager, with the manager and its arguments."""


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


def _removes(group: Sequence[Run], prefix: str) -> bool:
    """Whether the RUN deletes something under ``prefix`` (``rm -rf /var/lib/apt/lists/*``)."""
    return any(r.inv.program == "rm" and any(a.startswith(prefix) for a in r.inv.argv) for r in group)


_QUIET2 = re.compile(r"-[a-zA-Z]*q[a-zA-Z]*q[a-zA-Z]*|(-q|--quiet)=2")
_APT_MUTATING = words("install upgrade dist-upgrade full-upgrade remove purge autoremove")
_YUM_MUTATING = words("install groupinstall localinstall update upgrade remove erase")
_ZYPPER_MUTATING = words("install in remove rm update up patch dist-upgrade dup")


class InstallMissingYes(DockerfileRule):
    meta = dockerfile_meta(
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

    def check(self, resource: Dockerfile, policy: Policy) -> Iterator[Violation]:
        for r, fam, a in managed(runs(resource)):
            sub = a.subcommand
            if fam in APT and sub in _APT_MUTATING:
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


class AptInstallRecommends(DockerfileRule):
    meta = dockerfile_meta(
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

    def check(self, resource: Dockerfile, policy: Policy) -> Iterator[Violation]:
        for r, fam, a in managed(runs(resource)):
            if fam not in ("apt-get", "apt") or a.subcommand != "install":
                continue
            off = any(
                re.search(r"Install-Recommends=(false|0|no)", v, re.I) for v in a.value_of("-o", "--option")
            )
            if not a.has("--no-install-recommends") and not off:
                yield Violation(f"{fam} install without --no-install-recommends", r.path, key=fam)


@dataclass(frozen=True, slots=True)
class _CacheCheck:
    manager: str
    installs: Callable[[str, Args], bool]
    cleans: Callable[[str, Args], bool]
    cache_dirs: tuple[str, ...]
    message: str


def _is(fam: str, subs: Iterable[str]) -> Callable[[str, Args], bool]:
    subset = frozenset(subs)
    return lambda f, a: f == fam and a.subcommand in subset


def _clean_all(fam: str) -> Callable[[str, Args], bool]:
    return lambda f, a: f == fam and a.positionals[:2] == ("clean", "all")


_CACHE_CHECKS = (
    _CacheCheck(
        "apk",
        lambda f, a: f == "apk" and a.subcommand == "add" and not a.has("--no-cache"),
        lambda f, a: f == "apk" and a.subcommand == "cache" and a.positionals[1:2] == ("clean",),
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
        lambda f, a: f == "zypper" and a.subcommand in ("clean", "cc"),
        ("/var/cache/zypp",),
        "zypper install without 'zypper clean' leaves its cache in the image",
    ),
    _CacheCheck(
        "yarn",
        lambda f, a: f == "yarn" and a.subcommand in ("install", "add", ""),
        lambda f, a: f == "yarn" and a.positionals[:2] == ("cache", "clean"),
        ("/usr/local/share/.cache/yarn", "/root/.cache/yarn"),
        "yarn install without 'yarn cache clean' leaves its cache in the image",
    ),
)


class PackageCacheLeft(DockerfileRule):
    meta = dockerfile_meta(
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

    def check(self, resource: Dockerfile, policy: Policy) -> Iterator[Violation]:
        for group in run_groups(resource, resource.final_lineage()):
            mounts = _cache_mounts(group[0].ins)
            cmds = list(managed(group))
            yield from self._apt(group, cmds, mounts)
            for check in _CACHE_CHECKS:
                if any(m.startswith(check.cache_dirs) for m in mounts if m):
                    continue
                cleaned = any(check.cleans(fam, a) for _, fam, a in cmds) or any(
                    _removes(group, d) for d in check.cache_dirs
                )
                if cleaned:
                    continue
                for r, fam, a in cmds:
                    if check.installs(fam, a):
                        yield Violation(check.message, r.path, key=check.manager)
                        break
            yield from self._pip(cmds, mounts)

    @staticmethod
    def _apt(group: Sequence[Run], cmds: Sequence[_Managed], mounts: Sequence[str]) -> Iterator[Violation]:
        if any(m.startswith("/var/lib/apt") for m in mounts if m):
            return
        for r, fam, a in cmds:
            if fam in ("apt-get", "apt") and a.subcommand == "update":
                if not _removes(group, "/var/lib/apt/lists"):
                    yield Violation(
                        f"{fam} update without 'rm -rf /var/lib/apt/lists/*' in the same RUN",
                        r.path,
                        key="apt",
                    )
                return

    @staticmethod
    def _pip(cmds: Sequence[_Managed], mounts: Sequence[str]) -> Iterator[Violation]:
        if any(".cache/pip" in m for m in mounts):
            return
        for r, fam, a in cmds:
            if fam != "pip" or a.subcommand != "install" or a.has("--no-cache-dir"):
                continue
            env = dict(assignments(r))
            var = r.ins.scope.get("PIP_NO_CACHE_DIR")
            setting = env.get("PIP_NO_CACHE_DIR", var.value if var is not None else None)
            if setting is not None and setting.lower() not in ("", "0", "false", "no", "off"):
                continue
            yield Violation(
                "pip install without --no-cache-dir keeps its cache in the image", r.path, key="pip"
            )
            return


class PackageUpgrade(DockerfileRule):
    meta = dockerfile_meta(
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

    def check(self, resource: Dockerfile, policy: Policy) -> Iterator[Violation]:
        for r, fam, a in managed(runs(resource)):
            sub = a.subcommand
            if (fam in APT and sub in ("upgrade", "dist-upgrade", "full-upgrade", "safe-upgrade")) or (
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
    return "apt" if fam in APT else fam


class PackageUpdateAlone(DockerfileRule):
    meta = dockerfile_meta(
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

    def check(self, resource: Dockerfile, policy: Policy) -> Iterator[Violation]:
        for group in run_groups(resource):
            cmds = list(managed(group))
            last_install: dict[str, int] = {}
            for k, (_, fam, a) in enumerate(cmds):
                if a.subcommand in _INSTALLS.get(_family_group(fam), ()):
                    last_install[_family_group(fam)] = k
            for k, (r, fam, a) in enumerate(cmds):
                group_name = _family_group(fam)
                sub = a.subcommand
                if sub not in _INDEX_UPDATES.get(group_name, ()):
                    continue
                if last_install.get(group_name, -1) < k:
                    yield Violation(f"{fam} {sub} is not followed by an install in this RUN", r.path, key=fam)


def _unpinned(fam: str, a: Args) -> list[str] | None:
    """Packages an install names without a version, or ``None`` when this is not an install."""
    sub = a.subcommand
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


class UnpinnedPackages(DockerfileRule):
    meta = dockerfile_meta(
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

    def check(self, resource: Dockerfile, policy: Policy) -> Iterator[Violation]:
        for r, fam, a in managed(runs(resource)):
            names = _unpinned(fam, a)
            if names:
                yield Violation(
                    f"{fam} installs without a pinned version: {summary(names)}",
                    r.path,
                    key=f"{fam}:{' '.join(sorted(names))}",
                )
