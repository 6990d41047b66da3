"""Which image a container runs: a valid reference, immutable, from an allowed registry, pulled with authorization."""

from __future__ import annotations

from collections.abc import Iterator

from dutyguard.core.model import Severity
from dutyguard.core.policy import Policy
from dutyguard.core.rule import Rule, RuleMeta, Violation
from dutyguard.rules.workload._view import PACK
from dutyguard.rules.workload.imageref import (
    ImageRef,
    ImageReferenceError,
    allowed_by,
    parse_allow_list,
    parse_image,
)
from dutyguard.sources.kubernetes import ContainerRef, K8sObject

_PULL_POLICIES = frozenset({"Always", "IfNotPresent", "Never"})


def _images(resource: K8sObject) -> Iterator[tuple[ContainerRef, ImageRef | ImageReferenceError]]:
    for c in resource.containers():
        try:
            yield c, parse_image(c.spec.get("image"))
        except ImageReferenceError as e:
            yield c, e


class ImageReferenceInvalid(Rule[K8sObject]):
    meta = RuleMeta(
        id="k8s.image-reference-invalid",
        title="Image reference missing or invalid",
        severity=Severity.HIGH,
        description=(
            "The container's image is missing or is not a reference the runtime accepts unambiguously, "
            "so neither its registry nor its version can be verified."
        ),
        remediation="Set image to a valid reference: registry/repository:tag@sha256:<digest>.",
        controls=("nist-800-190:4.1.5", "cis-k8s:5.5.1", "nsa:secure-images"),
        pack=PACK,
    )
    target = K8sObject

    def check(self, resource: K8sObject, policy: Policy) -> Iterator[Violation]:
        for c, ref in _images(resource):
            if isinstance(ref, ImageReferenceError):
                yield Violation(f"container {c.name!r}: {ref}", path=(*c.path, "image"), container=c.name)


class ImageTagLatest(Rule[K8sObject]):
    meta = RuleMeta(
        id="k8s.image-tag-latest",
        title="Image uses the latest tag or no tag",
        severity=Severity.MEDIUM,
        description=(
            "Without a tag (or with 'latest') and without a digest, what runs is whatever was pushed last: "
            "it cannot be reviewed, reproduced or rolled back."
        ),
        remediation="Use an immutable version tag, ideally with the digest: app:1.4.2@sha256:<digest>.",
        controls=("nist-800-190:4.2.2", "nsa:secure-images"),
        pack=PACK,
        equivalents={
            "checkov": ("CKV_K8S_14",),
            "trivy": ("KSV013",),
            "kube-score": ("container-image-tag",),
        },
    )
    target = K8sObject

    def check(self, resource: K8sObject, policy: Policy) -> Iterator[Violation]:
        for c, ref in _images(resource):
            if isinstance(ref, ImageRef) and ref.effective_tag == "latest":
                how = "the tag 'latest'" if ref.tag else "no tag (so 'latest')"
                yield Violation(
                    f"container {c.name!r} runs {ref.name} with {how} and no digest",
                    path=(*c.path, "image"),
                    container=c.name,
                )


class ImageNotPinnedByDigest(Rule[K8sObject]):
    meta = RuleMeta(
        id="k8s.image-not-pinned-by-digest",
        title="Image not pinned by digest",
        severity=Severity.LOW,
        description=(
            "A tag can be moved to other content by anyone who can push to the repository; only a digest "
            "guarantees that what was scanned and approved is what runs."
        ),
        remediation="Append the image digest: registry/repository:tag@sha256:<digest>.",
        controls=("nist-800-190:4.1.5", "nist-800-190:4.2.2", "cis-k8s:5.5.1", "nsa:secure-images"),
        pack=PACK,
        equivalents={"checkov": ("CKV_K8S_43",)},
    )
    target = K8sObject

    def check(self, resource: K8sObject, policy: Policy) -> Iterator[Violation]:
        for c, ref in _images(resource):
            if isinstance(ref, ImageRef) and not ref.pinned:
                yield Violation(
                    f"container {c.name!r} image {ref} is not pinned by digest",
                    path=(*c.path, "image"),
                    container=c.name,
                )


class ImageRegistryNotAllowed(Rule[K8sObject]):
    meta = RuleMeta(
        id="k8s.image-registry-not-allowed",
        title="Image from a registry outside the allow-list",
        severity=Severity.HIGH,
        description=(
            "Images must come from the registries the policy allows (policy.allowed_registries). "
            "Nothing is reported while the allow-list is empty."
        ),
        remediation="Mirror the image into an allowed registry and reference it there.",
        controls=("nist-800-190:4.1.5", "cis-k8s:5.5.1", "nsa:secure-images"),
        pack=PACK,
        equivalents={"trivy": ("KSV032", "KSV033", "KSV034", "KSV035", "KSV0125")},
    )
    target = K8sObject

    def check(self, resource: K8sObject, policy: Policy) -> Iterator[Violation]:
        if not policy.allowed_registries:
            return
        patterns = parse_allow_list(policy.allowed_registries)
        for c, ref in _images(resource):
            path = (*c.path, "image")
            if isinstance(ref, ImageReferenceError):
                # Its registry cannot be known, so it cannot be allowed (fail closed).
                yield Violation(
                    f"container {c.name!r}: registry cannot be verified ({ref})", path=path, container=c.name
                )
            elif allowed_by(ref, patterns) is None:
                implied = "" if ref.explicit_registry else " (implied: no registry in the reference)"
                yield Violation(
                    f"container {c.name!r} image {ref.name} comes from {ref.registry}{implied}, "
                    "which is not an allowed registry",
                    path=path,
                    container=c.name,
                    key=ref.name,
                )


class ImagePullPolicyNotAlways(Rule[K8sObject]):
    meta = RuleMeta(
        id="k8s.image-pull-policy-not-always",
        title="Image pull policy is not Always",
        severity=Severity.LOW,
        description=(
            "With IfNotPresent or Never, a pod may start from an image already cached on the node without "
            "the registry checking its pull credentials, and a moved tag is not picked up. A digest-pinned "
            "image left at the default policy is accepted: its content cannot change."
        ),
        remediation="Set imagePullPolicy: Always (or pin the image by digest).",
        controls=("nist-800-190:4.2.3", "cis-k8s:1.2.11"),
        pack=PACK,
        equivalents={"checkov": ("CKV_K8S_15",), "kube-score": ("container-image-pull-policy",)},
    )
    target = K8sObject

    def check(self, resource: K8sObject, policy: Policy) -> Iterator[Violation]:
        for c, ref in _images(resource):
            if not isinstance(ref, ImageRef):
                continue
            path = (*c.path, "imagePullPolicy")
            value = c.spec.get("imagePullPolicy")
            if value is None:
                # The API server's default: Always for ':latest' (or no tag), IfNotPresent otherwise.
                if ref.effective_tag != "latest" and not ref.pinned:
                    yield Violation(
                        f"container {c.name!r} has no imagePullPolicy, so {ref} defaults to IfNotPresent",
                        path=path,
                        container=c.name,
                    )
            elif not isinstance(value, str) or value not in _PULL_POLICIES:
                yield Violation(
                    f"container {c.name!r} imagePullPolicy is not a known policy", path=path, container=c.name
                )
            elif value != "Always":
                yield Violation(
                    f"container {c.name!r} imagePullPolicy is {value}", path=path, container=c.name
                )
