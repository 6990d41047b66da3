"""The images a build starts from: versions, registries, and the frontend that reads the file."""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

from dutyguard.core.model import Severity
from dutyguard.core.policy import Policy
from dutyguard.core.rule import Violation
from dutyguard.errors import DutyguardError
from dutyguard.rules.dockerfile._base import NIST_STALE, NIST_UNTRUSTED, DockerfileRule, dockerfile_meta
from dutyguard.rules.workload.imageref import ImageRef, allowed_by, parse_allow_list, parse_image
from dutyguard.sources.dockerfile import Dockerfile, Instruction


class _Pull(NamedTuple):
    """An external image the build pulls, read as a reference where it can be."""

    ins: Instruction
    image: str
    """After substitution."""
    raw: str
    """As written."""
    unresolved: bool
    """It depends on a build argument without a default: nothing about it can be checked."""
    ref: ImageRef | None = None
    error: DutyguardError | None = None
    """Why it is not a valid reference (``ref`` is then ``None``)."""


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


def _pulls(df: Dockerfile) -> Iterator[_Pull]:
    for ins, image, raw, resolved in _image_refs(df):
        if not resolved or "${" in image:
            yield _Pull(ins, image, raw, unresolved=True)
            continue
        try:
            ref = parse_image(image)
        except DutyguardError as e:
            yield _Pull(ins, image, raw, unresolved=False, error=e)
            continue
        yield _Pull(ins, image, raw, unresolved=False, ref=ref)


class UnpinnedBaseImage(DockerfileRule):
    meta = dockerfile_meta(
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

    def check(self, resource: Dockerfile, policy: Policy) -> Iterator[Violation]:
        for p in _pulls(resource):
            if p.unresolved:
                yield Violation(
                    f"image {p.raw!r} depends on a build argument without a default; its version cannot be "
                    "checked",
                    path=(p.ins.index,),
                    key=p.raw,
                    severity=Severity.LOW,
                )
            elif p.ref is None:
                yield Violation(
                    f"image {p.image!r} is not a valid reference ({p.error})", (p.ins.index,), key=p.image
                )
            elif p.ref.digest is None and p.ref.tag in (None, "latest"):
                how = "the 'latest' tag" if p.ref.tag else "no tag (that is 'latest')"
                yield Violation(f"image {p.image!r} uses {how}", path=(p.ins.index,), key=p.image)


class UntrustedRegistry(DockerfileRule):
    meta = dockerfile_meta(
        "untrusted-registry",
        "Image from a registry the policy does not allow",
        Severity.HIGH,
        "A base image (or COPY --from image) comes from outside the registries Security allows. "
        "Checked only when the policy lists allowed registries.",
        "Pull base images through an allowed registry (a mirror or your own build of the image).",
        (NIST_UNTRUSTED, "cis-docker:4.2"),
        hadolint=("DL3026",),
    )

    def check(self, resource: Dockerfile, policy: Policy) -> Iterator[Violation]:
        if not policy.allowed_registries:
            return
        patterns = parse_allow_list(policy.allowed_registries)
        for p in _pulls(resource):
            if p.unresolved:
                yield Violation(
                    f"image {p.raw!r} depends on a build argument: its registry cannot be verified",
                    path=(p.ins.index,),
                    key=p.raw,
                )
            elif p.ref is None:
                yield Violation(
                    f"image {p.image!r} cannot be verified ({p.error})", (p.ins.index,), key=p.image
                )
            elif allowed_by(p.ref, patterns) is None:
                yield Violation(
                    f"image {p.image!r} comes from {p.ref.registry}, which is not an allowed registry",
                    path=(p.ins.index,),
                    key=p.image,
                )


_OFFICIAL_FRONTENDS = frozenset({"docker/dockerfile", "docker/dockerfile-upstream"})


class UntrustedFrontend(DockerfileRule):
    meta = dockerfile_meta(
        "untrusted-frontend",
        "Build interpreted by a third-party frontend",
        Severity.MEDIUM,
        "'# syntax=' names a frontend image other than Docker's: that image decides what the Dockerfile "
        "means and runs inside the builder with access to the build's secrets and context.",
        "Use 'docker/dockerfile:1' (pinned by digest) or remove the directive.",
        (NIST_UNTRUSTED,),
    )

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
