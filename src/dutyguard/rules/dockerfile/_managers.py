"""Package managers: which program is one, and how its command line is read."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from dutyguard.rules.dockerfile._base import words
from dutyguard.rules.dockerfile._commands import Args, Run, family, parse_args

APT = frozenset({"apt-get", "apt", "aptitude"})
YUM = frozenset({"yum", "dnf", "tdnf", "microdnf"})
APT_OPTS = ("otca", frozenset({"option", "target-release", "config-file", "host-architecture"}))
YUM_OPTS = (
    "cdeRx",
    frozenset({"enablerepo", "disablerepo", "releasever", "installroot", "exclude", "repo", "setopt"}),
)
_ZYPPER_OPTS = ("rtR", frozenset({"repo", "type", "root", "from"}))
_APK_OPTS = ("tXp", frozenset({"virtual", "repository", "root", "repositories-file", "arch", "cache-dir"}))
PIP_OPTS = (
    "rceift",
    words(
        "requirement constraint editable index-url extra-index-url find-links trusted-host target prefix root "
        "platform python-version implementation abi cache-dir src upgrade-strategy no-binary only-binary "
        "config-settings global-option proxy cert client-cert timeout retries log report"
    ),
)


def manager_args(r: Run) -> tuple[str, Args] | None:
    """The package manager a command runs, with its parsed arguments."""
    fam = family(r.inv.program)
    argv = r.inv.argv
    if fam in APT:
        return fam, parse_args(argv, *APT_OPTS)
    if fam in YUM:
        return fam, parse_args(argv, *YUM_OPTS)
    if fam == "zypper":
        return fam, parse_args(argv, *_ZYPPER_OPTS)
    if fam == "apk":
        return fam, parse_args(argv, *_APK_OPTS)
    if fam == "pip":
        return fam, parse_args(argv, *PIP_OPTS)
    if fam in ("npm", "yarn", "pnpm", "gem", "go"):
        return fam, parse_args(argv, "vinsP" if fam == "gem" else "")
    return None


def managed(commands: Iterable[Run]) -> Iterator[tuple[Run, str, Args]]:
    """``(command, manager, arguments)`` for each of ``commands`` that runs a package manager."""
    for r in commands:
        parsed = manager_args(r)
        if parsed is not None:
            fam, a = parsed
            yield r, fam, a
