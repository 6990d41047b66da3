"""Which images a pod pulls: valid references, immutable, from an allowed registry, pulled with authorization.

Images are pulled for every container (init and ephemeral ones included) and, since Kubernetes 1.31,
for image volumes (``volumes[].image.reference``, with their own ``pullPolicy``): both are checked.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from dutyguard.core import jsonview as jv
from dutyguard.core.model import JSONPath, Severity
from dutyguard.core.policy import Policy
from dutyguard.core.rule import Rule, RuleMeta, Violation
from dutyguard.rules._podview import PodView
from dutyguard.rules.workload._view import PACK
from dutyguard.rules.workload.imageref import (
    ImageRef,
    ImageReferenceError,
    allowed_by,
    parse_allow_list,
    parse_image,
)
from dutyguard.sources.kubernetes import K8sObject

_PULL_POLICIES = frozenset({"Always", "IfNotPresent", "Never"})


@dataclass(frozen=True, slots=True)
class _Pull:
    """One image a pod pulls, with where it is written and where its pull policy is."""

    what: str
    """``container 'app'`` or ``image volume 'models'``."""
    container: str | None
    path: JSONPath
    policy_path: JSONPath
    policy: object
    ref: ImageRef | ImageReferenceError


def _parse(value: object) -> ImageRef | ImageReferenceError:
    try:
        return parse_image(value)
    except ImageReferenceError as e:
        return e


def _images(resource: K8sObject) -> Iterator[_Pull]:
    for c in resource.containers():
        yield _Pull(
            f"container {c.name!r}",
            c.name,
            (*c.path, "image"),
            (*c.path, "imagePullPolicy"),
            c.spec.get("imagePullPolicy"),
            _parse(c.spec.get("image")),
        )
    pod = PodView.of(resource)
    if pod is None:
        return
    volumes = pod.field("volumes")
    for i, volume in enumerate(jv.as_list(volumes.value) or ()):
        source = jv.get(volume, ("image",))
        if source is None:
            continue
        name = jv.as_str(jv.get(volume, ("name",))) or f"volumes[{i}]"
        base = (*volumes.path, i, "image")
        yield _Pull(
            f"image volume {name!r}",
            None,
            (*base, "reference"),
            (*base, "pullPolicy"),
            jv.get(source, ("pullPolicy",)),
            _parse(jv.get(source, ("reference",))),
        )


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
        for p in _images(resource):
            if isinstance(p.ref, ImageReferenceError):
                yield Violation(f"{p.what}: {p.ref}", path=p.path, container=p.container)


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
        for p in _images(resource):
            if isinstance(p.ref, ImageRef) and p.ref.effective_tag == "latest":
                how = "the tag 'latest'" if p.ref.tag else "no tag (so 'latest')"
                yield Violation(
                    f"{p.what} pulls {p.ref.name} with {how} and no digest",
                    path=p.path,
                    container=p.container,
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
        for p in _images(resource):
            if isinstance(p.ref, ImageRef) and not p.ref.pinned:
                yield Violation(
                    f"{p.what} image {p.ref} is not pinned by digest", path=p.path, container=p.container
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
        equivalents={"trivy": ("KSV032", "KSV033", "KSV034", "KSV035", "KSV0125", "KSV-0125")},
    )
    target = K8sObject

    def check(self, resource: K8sObject, policy: Policy) -> Iterator[Violation]:
        if not policy.allowed_registries:
            return
        patterns = parse_allow_list(policy.allowed_registries)
        for p in _images(resource):
            if isinstance(p.ref, ImageReferenceError):
                # Its registry cannot be known, so it cannot be allowed (fail closed).
                yield Violation(
                    f"{p.what}: registry cannot be verified ({p.ref})", path=p.path, container=p.container
                )
            elif allowed_by(p.ref, patterns) is None:
                implied = "" if p.ref.explicit_registry else " (implied)"
                yield Violation(
                    f"{p.what} image {p.ref.name} is from {p.ref.registry}{implied}, not an allowed registry",
                    path=p.path,
                    container=p.container,
                    key=p.ref.name,
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
        for p in _images(resource):
            ref = p.ref
            if not isinstance(ref, ImageRef):
                continue
            value = p.policy
            if value is None:
                # The API server's default: Always for ':latest' (or no tag), IfNotPresent otherwise.
                if ref.effective_tag != "latest" and not ref.pinned:
                    yield Violation(
                        f"{p.what} has no pull policy, so {ref} defaults to IfNotPresent",
                        path=p.policy_path,
                        container=p.container,
                    )
            elif not isinstance(value, str) or value not in _PULL_POLICIES:
                yield Violation(
                    f"{p.what} pull policy is not a known policy", path=p.policy_path, container=p.container
                )
            elif value != "Always":
                yield Violation(f"{p.what} pull policy is {value}", path=p.policy_path, container=p.container)
