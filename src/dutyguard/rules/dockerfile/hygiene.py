"""What the image declares and ships besides code: health check, SSH, and what BuildKit would refuse."""

from __future__ import annotations

from collections.abc import Iterator

from dutyguard.core.model import JSONPath, Severity
from dutyguard.core.policy import Policy
from dutyguard.core.rule import Violation
from dutyguard.rules.dockerfile._base import NIST_IMAGE_CONFIG, DockerfileRule, dockerfile_meta
from dutyguard.rules.dockerfile._commands import runs
from dutyguard.rules.dockerfile._instructions import last_in_image
from dutyguard.rules.dockerfile._managers import manager_args
from dutyguard.sources.dockerfile import Dockerfile


class NoHealthcheck(DockerfileRule):
    meta = dockerfile_meta(
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

    def check(self, resource: Dockerfile, policy: Policy) -> Iterator[Violation]:
        final = resource.final_stage
        if final is None:
            return
        ins = last_in_image(resource, "HEALTHCHECK")
        if ins is None:
            yield Violation("the final stage defines no HEALTHCHECK", path=(final.from_index,), key="missing")
        elif ins.words[:1] == ("NONE",):
            yield Violation("HEALTHCHECK NONE disables health checking", (ins.index,), key="none")


def _port_range(spec: str) -> tuple[int, int, str] | None:
    port, _, proto = spec.partition("/")
    lo, _, hi = port.partition("-")
    if not lo.isdigit() or (hi and not hi.isdigit()):
        return None
    return int(lo), int(hi or lo), proto.lower() or "tcp"


class SshPort(DockerfileRule):
    meta = dockerfile_meta(
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


class SshServer(DockerfileRule):
    meta = dockerfile_meta(
        "ssh-server",
        "SSH server in the image",
        Severity.MEDIUM,
        "The image installs or starts an SSH daemon: a second, unmanaged way into the container, with "
        "its own credentials to leak.",
        "Do not install openssh-server/dropbear; use the runtime's exec for debugging.",
        (NIST_IMAGE_CONFIG, "cis-docker:5.6"),
    )

    def check(self, resource: Dockerfile, policy: Policy) -> Iterator[Violation]:
        lineage = resource.final_lineage()
        for r in runs(resource, lineage, runtime=True):
            if r.inv.program in ("sshd", "dropbear"):
                yield Violation(f"{r.top.keyword} starts {r.inv.program}", r.path, key=r.inv.program)
                continue
            parsed = manager_args(r)
            if parsed is None or r.ins.keyword != "RUN":
                continue
            fam, a = parsed
            if a.subcommand in ("install", "add", "in"):
                found = [p for p in a.positionals[1:] if p.split("=")[0] in _SSH_SERVERS]
                if fam == "apk":
                    found += [p for p in a.positionals[1:] if p.split("=")[0] == "openssh"]
                if found:
                    yield Violation(f"{fam} installs {', '.join(found)}", r.path, key=" ".join(found))


class InvalidInstruction(DockerfileRule):
    meta = dockerfile_meta(
        "invalid-instruction",
        "Dockerfile that BuildKit refuses",
        Severity.MEDIUM,
        "An unknown instruction, an instruction before FROM, a file without FROM, or a malformed "
        "ENV/ARG/JSON form: BuildKit refuses to build it, and tools may read the rest differently.",
        "Fix the instruction (this often hides a missing line continuation or a stray heredoc body).",
        (NIST_IMAGE_CONFIG,),
    )

    def check(self, resource: Dockerfile, policy: Policy) -> Iterator[Violation]:
        for p in resource.problems:
            path: JSONPath = (p.instruction,) if p.instruction >= 0 else ("line", p.line)
            yield Violation(p.message, path=path, key=p.message)
