"""What a build fetches from elsewhere: ADD of URLs and git remotes, downloads piped into interpreters."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence

from dutyguard.core.model import Severity
from dutyguard.core.policy import Policy
from dutyguard.core.rule import Violation
from dutyguard.rules.dockerfile._base import NIST_MALWARE, DockerfileRule, dockerfile_meta, summary, words
from dutyguard.rules.dockerfile._commands import CURL_VALUES, WGET_VALUES, cmd_path, family, parse_args
from dutyguard.rules.dockerfile._instructions import URL, copy_sources, triggered
from dutyguard.sources.dockerfile import SHELLS, Dockerfile, Invocation, ShellCommand

_GIT_PINNED = re.compile(r"#[0-9a-f]{40}(?::|$)")
_ARCHIVE = re.compile(r"\.(tar|tar\.(gz|bz2|xz|zst)|tgz|tbz2?|txz|tzst)$", re.IGNORECASE)


class AddRemoteSource(DockerfileRule):
    meta = dockerfile_meta(
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

    def check(self, resource: Dockerfile, policy: Policy) -> Iterator[Violation]:
        for top, ins in triggered(resource, ("ADD",)):
            for src in copy_sources(ins):
                if not URL.match(src):
                    continue
                git = src.startswith("git@") or src.split("#", 1)[0].endswith(".git") or "#" in src
                if ins.flag("checksum") is not None or (git and _GIT_PINNED.search(src)):
                    continue
                yield Violation(f"ADD fetches {src} without verifying it", path=(top.index,), key=src)


class AddInsteadOfCopy(DockerfileRule):
    meta = dockerfile_meta(
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

    def check(self, resource: Dockerfile, policy: Policy) -> Iterator[Violation]:
        for top, ins in triggered(resource, ("ADD",)):
            if not ins.resolved:
                continue
            sources = copy_sources(ins)
            if any(URL.match(s) or _ARCHIVE.search(s) for s in sources):
                continue
            shown = summary(sources) or "a heredoc"
            yield Violation(f"ADD of {shown}: COPY does the same", path=(top.index,), key=" ".join(sources))


_INTERPRETERS = SHELLS | words("python perl ruby node php pwsh powershell fish lua")


def _download_to_stdout(inv: Invocation) -> str | None:
    """The URL when ``curl``/``wget`` writes what it downloads to stdout."""
    prog = inv.program
    if prog == "curl":
        a = parse_args(inv.argv, CURL_VALUES, frozenset({"output", "url", "header", "user", "data"}))
        if a.value_of("-o", "--output") and "-" not in a.value_of("-o", "--output"):
            return None
        if a.has("-O", "--remote-name", "--remote-name-all"):
            return None
        return (a.value_of("--url") or list(a.positionals) or ["a URL"])[0]
    if prog == "wget":
        a = parse_args(inv.argv, WGET_VALUES, frozenset({"output-document"}))
        if "-" not in a.value_of("-O", "--output-document"):
            return None
        return a.positionals[0] if a.positionals else "a URL"
    if prog == "fetch":
        a = parse_args(inv.argv, "o")
        return (a.positionals or ("a URL",))[0] if "-" in a.value_of("-o") else None
    return None


def _reads_script_from_stdin(inv: Invocation) -> bool:
    """An interpreter that takes its program from stdin: ``sh``, ``bash -s``, ``python3 -``."""
    fam = family(inv.program)
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


class PipeToShell(DockerfileRule):
    meta = dockerfile_meta(
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

    def check(self, resource: Dockerfile, policy: Policy) -> Iterator[Violation]:
        for top, ins in triggered(resource, ("RUN", "CMD", "ENTRYPOINT", "HEALTHCHECK")):
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
                        path=cmd_path(top, c),
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
            fam = family(outer.program)
            if fam in _INTERPRETERS or outer.program in ("eval", "source", "."):
                return outer.program
        return None
