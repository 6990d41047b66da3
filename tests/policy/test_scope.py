"""BundleScope: the one place that decides whether a bundle governs a target.

Empty or absent fields govern everything; an attribute not known where the question is asked is
not compared unless it is required (then a restricted scope cannot be shown to cover it, and
that is a reason: fail closed); registries match exactly as ``allowedRegistries`` does. The CI
gate and the admission webhook reach the same verdict on the same object (parity test).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dutyguard.admission.decide import Decider
from dutyguard.admission.review import parse_review
from dutyguard.admission.signed import SignedStateProvider
from dutyguard.core.resource import Resource
from dutyguard.core.rule import RuleRegistry
from dutyguard.limits import DEFAULT_LIMITS
from dutyguard.policy.errors import PolicyBundleError
from dutyguard.policy.model import BundleScope
from dutyguard.policy.parse import parse_bundle, parse_bundle_text
from dutyguard.rules.workload.imageref import allowed_by, parse_allow_list, parse_image
from dutyguard.sources.interface import InputFile
from dutyguard.sources.kubernetes import K8sObject, KubernetesSource
from dutyguard.trust.gate import NamespaceScope
from tests.admission.support import pod_request, review
from tests.admission.test_signed import NOW, REGISTRY, ControlPlane, bundle_doc, write_state

CLOUDWATCH = (
    "checkov/tests/kubernetes/checks/example_DockerSocketVolume/cloudwatch-agent-1PASSED-1FAILED.yaml"
)


def test_empty_scope_governs_everything() -> None:
    s = BundleScope()
    assert (
        s.uncovered(
            team="t", app="a", namespace="n", cluster="c", images=("ghcr.io/x/y:1",), required=("team", "app")
        )
        == []
    )
    assert s.uncovered(required=("team", "app", "namespace", "cluster")) == []


def test_each_field_is_compared() -> None:
    s = BundleScope(
        teams=("payments",),
        apps=("shop",),
        namespaces=("prod",),
        clusters=("eu",),
        registries=("ghcr.io/acme",),
    )
    assert (
        s.uncovered(team="payments", app="shop", namespace="prod", cluster="eu", images=("ghcr.io/acme/a:1",))
        == []
    )
    assert s.uncovered(
        team="search", app="blog", namespace="dev", cluster="us", images=("quay.io/acme/a:1",)
    ) == [
        "team 'search' is not among payments",
        "app 'blog' is not among shop",
        "namespace 'dev' is not among prod",
        "cluster 'us' is not among eu",
        "image 'quay.io/acme/a:1' (registry quay.io) is not from ghcr.io/acme",
    ]


def test_unknown_attributes_are_not_compared_unless_required() -> None:
    s = BundleScope(teams=("payments",), namespaces=("prod",))
    assert s.uncovered() == []
    assert s.uncovered(namespace="") == []  # empty is unknown too
    assert s.uncovered(required=("team", "namespace")) == [
        "no team is known, and the bundle governs only teams payments",
        "no namespace is known, and the bundle governs only namespaces prod",
    ]
    # required, but the scope does not restrict it: nothing to prove
    assert s.uncovered(required=("app", "cluster")) == []


def test_unknown_required_attribute_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="tenant"):
        BundleScope().uncovered(required=("tenant",))


@pytest.mark.parametrize(
    ("entry", "image", "governed"),
    [
        ("ghcr.io/acme", "ghcr.io/acme/app:1", True),
        ("ghcr.io/acme", "ghcr.io/acme-evil/app:1", False),  # whole path components only
        ("ghcr.io/acme", "ghcr.io/acme", True),
        ("*.example.com", "registry.example.com/app:1", True),
        ("*.example.com", "example.com/app:1", False),  # a subdomain, not the domain itself
        ("*.example.com", "evilexample.com/app:1", False),
        ("registry.example.com", "REGISTRY.example.com/app:1", True),  # hosts compare case-insensitively
        ("registry.example.com", "registry.example.com:5000/app:1", False),  # a port is another registry
        ("docker.io/library", "nginx", True),  # Docker Hub official image, as the runtime reads it
        ("docker.io/library", "index.docker.io/library/nginx:1", True),
        ("docker.io/acme", "nginx", False),
        ("localhost:5000", "localhost:5000/app@sha256:" + "ab" * 32, True),
    ],
)
def test_registries_match_like_allowed_registries(entry: str, image: str, governed: bool) -> None:
    s = BundleScope(registries=(entry,))
    assert (s.registry_uncovered(image) is None) is governed
    # the same code decides allowedRegistries: the two can never disagree
    assert (allowed_by(parse_image(image), parse_allow_list((entry,))) is not None) is governed


def test_unreadable_image_is_outside_a_registry_scope() -> None:
    s = BundleScope(registries=("ghcr.io",))
    why = s.registry_uncovered("ghcr.io/Acme/App:1")
    assert why is not None and why.startswith("image 'ghcr.io/Acme/App:1' cannot be read")
    assert BundleScope().registry_uncovered("ghcr.io/Acme/App:1") is None  # no registry scope: not compared


def test_many_images_outside_are_listed_up_to_a_cap() -> None:
    s = BundleScope(registries=("ghcr.io",))
    images = [f"quay.io/x/i{i}:1" for i in range(25)] + ["quay.io/x/i0:1"]  # a repeat counts once
    out = s.uncovered(images=images)
    assert len(out) == 11
    assert out[-1] == "... and 15 more image(s) outside the scope"


def test_long_image_reference_is_shortened_in_the_reason() -> None:
    image = "ghcr.io/" + "a" * 500 + ":1"
    why = BundleScope(registries=("quay.io",)).registry_uncovered(image)
    assert why is not None and len(why) < 400


# --- lint stays strict ------------------------------------------------------------------------------
def _bundle(scope: str) -> str:
    return f"""\
apiVersion: dutyguard.dev/v1
kind: PolicyBundle
metadata: {{name: scoped}}
spec:
  scope: {scope}
"""


@pytest.mark.parametrize(
    ("scope", "expected"),
    [
        ("{registries: ['https://ghcr.io']}", "write the registry host without a scheme"),
        ("{registries: [ghcr.io/acme/app@sha256:abc]}", "a registry or repository prefix, not an image"),
        ("{registries: [acme]}", "is not a registry host"),
        ("{registries: [ghcr.io, ghcr.io]}", "'ghcr.io' is listed twice"),
        ("{namespaces: [Prod]}", "spec.scope.namespaces"),
        ("{clusters: [prod_eu]}", "spec.scope.clusters"),
        ("{apps: [shop, shop]}", "spec.scope.apps"),
        ("{teams: payments}", "spec.scope.teams: expected a list, got a string"),
    ],
)
def test_lint_refuses_a_scope_it_could_not_enforce(registry: RuleRegistry, scope: str, expected: str) -> None:
    with pytest.raises(PolicyBundleError) as e:
        parse_bundle_text(_bundle(scope), "bundle.yaml", registry)
    assert any(expected in p.render() for p in e.value.problems), [p.render() for p in e.value.problems]


# --- parity: the gate and the webhook decide the same -------------------------------------------
@pytest.mark.parametrize(
    ("namespaces", "outside"),
    [
        ([], False),
        (["amazon-cloudwatch"], False),
        (["monitoring"], True),
        (["monitoring", "amazon-cloudwatch"], False),
    ],
)
def test_gate_and_webhook_agree_on_namespace_scope(
    shared_data: Path, tmp_path: Path, namespaces: list[str], outside: bool
) -> None:
    cp = ControlPlane()
    write_state(tmp_path, cp.bundle(doc=bundle_doc(scope={"namespaces": namespaces})), cp.snapshot())
    provider = SignedStateProvider(cp.keyring, REGISTRY, tmp_path, cluster="prod-1", clock=lambda: NOW)
    assert provider.load_cache() is True
    state = provider.current(NOW).state
    assert state is not None
    bundle = parse_bundle(bundle_doc(scope={"namespaces": namespaces}), "bundle", REGISTRY)
    assert bundle.digest == state.bundle_digest  # the same bundle on both sides

    path = shared_data / CLOUDWATCH
    data = path.read_bytes()
    objects: list[Resource] = [
        r
        for r in KubernetesSource().load(InputFile(str(path), data, len(data), "file"), DEFAULT_LIMITS)
        if isinstance(r, K8sObject)
    ]
    namespaced = [o for o in objects if o.namespace]
    assert len(namespaced) == 7 and len(objects) > len(namespaced)
    # the gate: what it keeps, and whether it refuses the file
    kept, error = NamespaceScope(bundle.name, bundle.scope).split(str(path), objects)
    assert (error is not None) is outside
    assert len(kept) == len(objects) - (len(namespaced) if outside else 0)
    # the webhook, on each workload of the file as the API server would send it
    workloads = [o for o in namespaced if isinstance(o, K8sObject) and o.pod_spec_path is not None]
    assert [o.kind for o in workloads] == ["DaemonSet", "DaemonSet"]
    for obj in workloads:
        request = pod_request(json.loads(json.dumps(obj.doc)), namespace=obj.namespace or "")
        d = Decider(REGISTRY, cluster="prod-1").decide(parse_review(review(request)), provider.current(NOW))
        assert ("does not govern it" in d.reason) is outside, d.reason
