"""Who the image runs as and what it may do: the final USER, sudo, file modes, privileged build steps."""

from __future__ import annotations

import re
from collections.abc import Iterator

from dutyguard.core.model import Severity
from dutyguard.core.policy import Policy
from dutyguard.core.rule import Violation
from dutyguard.rules.dockerfile._base import (
    NIST_IMAGE_CONFIG,
    NIST_RUNTIME_CONFIG,
    DockerfileRule,
    dockerfile_meta,
    summary,
)
from dutyguard.rules.dockerfile._commands import runs
from dutyguard.rules.dockerfile._instructions import last_in_image, triggered
from dutyguard.sources.dockerfile import Dockerfile

_ROOT_USERS = frozenset({"root", "containeradministrator"})


class RootUser(DockerfileRule):
    meta = dockerfile_meta(
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

    def check(self, resource: Dockerfile, policy: Policy) -> Iterator[Violation]:
        final = resource.final_stage
        if final is None:
            return
        ins = last_in_image(resource, "USER")
        if ins is None:
            yield Violation(
                f"the final stage (FROM {final.image_raw}) sets no USER: the container runs as root "
                "unless the base image chose another user",
                path=(final.from_index,),
                key="no-user",
            )
            return
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


class Sudo(DockerfileRule):
    meta = dockerfile_meta(
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

    def check(self, resource: Dockerfile, policy: Policy) -> Iterator[Violation]:
        for r in runs(resource):
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


class UnsafeFilePermissions(DockerfileRule):
    meta = dockerfile_meta(
        "unsafe-file-permissions",
        "World-writable or setuid files",
        Severity.MEDIUM,
        "chmod (or COPY/ADD --chmod) makes files world-writable (777, o+w) or setuid/setgid: any user "
        "in the container can then change what others run, or gain the owner's privileges.",
        "Grant the least permissions the process needs (e.g. 755 or 644, owned by the app user); remove "
        "setuid/setgid bits ('chmod a-s').",
        (NIST_IMAGE_CONFIG, "cis-docker:4.8"),
    )

    def check(self, resource: Dockerfile, policy: Policy) -> Iterator[Violation]:
        for r in runs(resource):
            if r.inv.program != "chmod":
                continue
            modes = [a for a in r.inv.argv if not a.startswith("-") or re.fullmatch(r"-[rwxXst,ugoa+=-]+", a)]
            if not modes:
                continue
            mode, targets = modes[0], modes[1:]
            for problem in dict.fromkeys(_mode_problems(mode)):
                yield Violation(
                    f"chmod {mode} makes {summary(targets) or 'files'} {problem}",
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


class InsecureBuildStep(DockerfileRule):
    meta = dockerfile_meta(
        "insecure-build-step",
        "Privileged or host-network build step",
        Severity.HIGH,
        "'RUN --security=insecure' runs the step with every capability, like a privileged container; "
        "'RUN --network=host' gives it the builder host's network. Whatever runs there can reach the "
        "builder and everything it can reach.",
        "Remove the flag; build what needs privileges outside the image build.",
        (NIST_RUNTIME_CONFIG, NIST_IMAGE_CONFIG),
    )

    def check(self, resource: Dockerfile, policy: Policy) -> Iterator[Violation]:
        for top, ins in triggered(resource, ("RUN",)):
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
