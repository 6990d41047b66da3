"""The webhook enforces the signed bundle's scope: what the bundle does not govern is refused.

* ``clusters``: a verified bundle that excludes the webhook's own ``--cluster`` is not enforced:
  it is as if there were no state (the fail mode decides; default deny, saying so), reported on
  ``/readyz`` and in the metrics, and its versions still count against rollback;
* ``namespaces``, ``apps``, ``registries``: an object outside is denied with the reason, and is
  not evaluated (no finding, no exception) under a policy that was not meant for it.

Requests are kubewarden's own test AdmissionReviews where they fit (the kubewarden-controller Pod
with images from two registries, a Deployment of app ``api`` in ``customer-1``).
"""

from __future__ import annotations

import copy
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from dutyguard.admission.certs import CertFiles
from dutyguard.admission.decide import MESSAGE_CHARS, Decider, Outcome, audit_annotations, response_for
from dutyguard.admission.review import parse_review
from dutyguard.admission.serve import WebhookConfig, assemble
from dutyguard.admission.signed import SignedStateProvider
from dutyguard.admission.state import FailMode
from dutyguard.exceptions.model import ExceptionScope
from tests.admission.support import kubewarden_request, pod_request, review, running
from tests.admission.test_signed import (
    NOW,
    PRIVILEGED,
    REGISTRY,
    ControlPlane,
    bundle_doc,
    grant,
    write_state,
)

KUBEWARDEN = "kubewarden-policies/policies"
# A Pod of app kubewarden-controller, namespace only in the request (kubewarden), with images from
# gcr.io/kubebuilder and registry-testing.svc.lan.
CONTROLLER = f"{KUBEWARDEN}/capabilities-psp-policy/test_data/panic.json"
# A Deployment of app api in customer-1, image api:1.0.0 (Docker Hub: docker.io/library/api).
API_DEPLOYMENT = f"{KUBEWARDEN}/go-wasi-context-aware-test-policy/test_data/app_deployment.json"


def provider(cp: ControlPlane, cache: Path, cluster: str = "prod-1") -> SignedStateProvider:
    return SignedStateProvider(cp.keyring, REGISTRY, cache, cluster=cluster, clock=lambda: NOW)


def loaded(
    tmp_path: Path, scope: dict[str, Any], cluster: str = "prod-1", **spec: Any
) -> SignedStateProvider:
    cp = ControlPlane()
    write_state(tmp_path, cp.bundle(doc=bundle_doc(scope=scope, **spec)), cp.snapshot())
    p = provider(cp, tmp_path, cluster)
    assert p.load_cache() is True
    return p


def decide(p: SignedStateProvider, request: dict[str, Any], fail_mode: FailMode = FailMode.DENY) -> Any:
    return Decider(REGISTRY, fail_mode=fail_mode, cluster=p.cluster).decide(
        parse_review(review(request)), p.current(NOW)
    )


def fixture(shared_data: Path, path: str, **change: Any) -> dict[str, Any]:
    req = kubewarden_request(shared_data / path)
    req.update(change)
    return req


# --- clusters: the whole state ------------------------------------------------------------------
def test_bundle_for_other_cluster_is_not_enforced_at_admission(tmp_path: Path) -> None:
    p = loaded(tmp_path, {"clusters": ["prod-eu", "prod-us"]}, cluster="prod-1")
    view = p.current(NOW)
    assert view.state is None
    assert "the bundle's scope excludes cluster 'prod-1': signed policy bundle prod v1" in view.problem
    d = decide(p, pod_request(PRIVILEGED))
    assert d.outcome is Outcome.DENY
    assert d.denied == () and d.state is None  # refused for want of a governing policy, not evaluated
    message = response_for("u", d).message
    assert "cannot verify the policy to enforce" in message
    assert (
        "the bundle's scope excludes cluster 'prod-1'" in message
        and "governs clusters prod-eu, prod-us" in message
    )


def test_bundle_for_this_cluster_is_enforced(tmp_path: Path) -> None:
    p = loaded(tmp_path, {"clusters": ["prod-1", "prod-2"]}, cluster="prod-1")
    d = decide(p, pod_request(PRIVILEGED))
    assert d.state is not None and d.state.signed
    assert [f.rule_id for f in d.denied] == ["pss.privileged"]


def test_webhook_without_its_cluster_cannot_enforce_a_bundle_limited_to_clusters(tmp_path: Path) -> None:
    p = loaded(tmp_path, {"clusters": ["prod-eu"]}, cluster="")
    view = p.current(NOW)
    assert view.state is None
    assert view.problem.startswith("this webhook was not given its cluster (--cluster), and signed policy")


def test_other_clusters_bundle_follows_the_fail_mode(tmp_path: Path) -> None:
    p = loaded(tmp_path, {"clusters": ["prod-eu"]})
    ok = {**PRIVILEGED, "spec": {"containers": [{"name": "ok", "image": "registry.example/a:1"}]}}
    fallback = decide(p, pod_request(ok), FailMode.DEFAULT_POLICY)
    assert fallback.state is not None and not fallback.state.signed
    assert any("excludes cluster 'prod-1'" in w for w in fallback.extra_warnings)
    unsafe = decide(p, pod_request(PRIVILEGED), FailMode.UNSAFE_ALLOW)
    assert (
        unsafe.outcome is Outcome.ALLOW and "UNSAFE" in unsafe.reason and "excludes cluster" in unsafe.reason
    )


def test_out_of_scope_bundle_still_counts_against_rollback(tmp_path: Path) -> None:
    # An attacker replaying the older bundle (which governed this cluster) gets it refused: the
    # newer one verified, and its version was recorded though it is not enforced here.
    cp = ControlPlane()
    old = cp.bundle(version=1)
    newer = cp.bundle(version=2, doc=bundle_doc(scope={"clusters": ["prod-eu"]}))
    answers = [(newer, cp.snapshot(version=1)), (old, cp.snapshot(version=1))]
    p = SignedStateProvider(
        cp.keyring, REGISTRY, tmp_path, cluster="prod-1", fetch=lambda: answers.pop(0), clock=lambda: NOW
    )
    assert p.refresh() is True
    assert p.current(NOW).state is None
    assert p.refresh() is False
    assert "verification failed [rollback]: bundle v1 is older than v2" in p.problem
    assert p.current(NOW).state is None


def test_bundle_back_in_scope_is_enforced_on_the_next_pull(tmp_path: Path) -> None:
    cp = ControlPlane()
    answers = [
        (cp.bundle(version=1, doc=bundle_doc(scope={"clusters": ["prod-eu"]})), cp.snapshot(version=1)),
        (
            cp.bundle(version=2, doc=bundle_doc(scope={"clusters": ["prod-eu", "prod-1"]})),
            cp.snapshot(version=2),
        ),
    ]
    p = SignedStateProvider(
        cp.keyring, REGISTRY, tmp_path, cluster="prod-1", fetch=lambda: answers.pop(0), clock=lambda: NOW
    )
    assert p.refresh() is True and p.current(NOW).state is None
    assert p.refresh() is True
    state = p.current(NOW).state
    assert state is not None and state.bundle_version == 2


def test_other_clusters_bundle_is_reported_on_readyz_and_in_metrics(
    tmp_path: Path, certs: CertFiles, shared_data: Path
) -> None:
    cp = ControlPlane()
    state = tmp_path / "state"
    write_state(state, cp.bundle(doc=bundle_doc(scope={"clusters": ["prod-eu"]})), cp.snapshot())
    app = assemble(
        WebhookConfig(state_dir=state, trust=(cp.signer.verifier.public_text(),), cluster="staging")
    )
    with running(app, certs) as hook:
        out = hook.post(review(fixture(shared_data, API_DEPLOYMENT))).admission
        assert out["allowed"] is False
        assert "excludes cluster 'staging'" in out["status"]["message"]
        ready = hook.request("GET", "/readyz").json
        assert ready["state"] is None
        assert "excludes cluster 'staging': signed policy bundle prod v1" in ready["problem"]
        metrics = hook.request("GET", "/metrics").body.decode()
    assert 'dutyguard_admission_decisions_total{outcome="deny",state="none"} 1' in metrics
    assert "\ndutyguard_admission_state_expires_in_seconds " not in metrics  # no state in force


# --- namespaces, apps, registries: each object ---------------------------------------------------
def test_request_in_namespace_outside_scope_is_denied(tmp_path: Path, shared_data: Path) -> None:
    p = loaded(tmp_path, {"namespaces": ["kubewarden"]})
    # the object names no namespace: the request's (kubewarden) is compared
    inside = decide(p, fixture(shared_data, CONTROLLER))
    assert inside.subject.namespace == "kubewarden"
    assert "does not govern" not in inside.reason
    assert inside.policy is not None  # evaluated
    outside = decide(p, fixture(shared_data, CONTROLLER, namespace="default"))
    assert outside.outcome is Outcome.DENY
    assert "namespace 'default' is not among kubewarden" in outside.reason
    assert outside.policy is None and outside.denied == ()
    message = response_for("u", outside).message
    assert message.startswith("dutyguard denied Pod default/")
    assert "the policy in force (signed policy bundle prod v1" in message and "does not govern it" in message


def test_object_naming_a_namespace_outside_scope_is_denied(tmp_path: Path, shared_data: Path) -> None:
    p = loaded(tmp_path, {"namespaces": ["customer-2"]})
    d = decide(p, fixture(shared_data, API_DEPLOYMENT))
    assert d.outcome is Outcome.DENY
    assert "namespace 'customer-1' is not among customer-2" in d.reason


def test_image_from_registry_outside_scope_is_denied(tmp_path: Path, shared_data: Path) -> None:
    p = loaded(tmp_path, {"registries": ["registry-testing.svc.lan"]})
    d = decide(p, fixture(shared_data, CONTROLLER))
    assert d.outcome is Outcome.DENY
    assert (
        "image 'gcr.io/kubebuilder/kube-rbac-proxy:v0.8.0' (registry gcr.io) is not from registry-testing.svc.lan"
        in d.reason
    )
    assert "kubewarden-controller:v0.2.0" not in d.reason  # the governed image is not named
    assert d.policy is None
    assert audit_annotations(d)["reason"].startswith("the policy in force")


def test_images_from_every_scope_registry_are_evaluated(tmp_path: Path, shared_data: Path) -> None:
    # path prefixes match whole components, as in allowedRegistries
    p = loaded(tmp_path, {"registries": ["registry-testing.svc.lan", "gcr.io/kubebuilder"]})
    d = decide(p, fixture(shared_data, CONTROLLER))
    assert "does not govern" not in d.reason and d.policy is not None
    p = loaded(tmp_path / "2", {"registries": ["registry-testing.svc.lan", "gcr.io/kube"]})
    assert "(registry gcr.io) is not from" in decide(p, fixture(shared_data, CONTROLLER)).reason


def test_docker_hub_short_name_is_read_as_the_runtime_reads_it(tmp_path: Path, shared_data: Path) -> None:
    # api:1.0.0 is docker.io/library/api: a scope of docker.io/library governs it, docker.io/acme does not
    p = loaded(tmp_path, {"registries": ["docker.io/library"]})
    assert "does not govern" not in decide(p, fixture(shared_data, API_DEPLOYMENT)).reason
    p = loaded(tmp_path / "2", {"registries": ["docker.io/acme"]})
    assert (
        "image 'api:1.0.0' (registry docker.io) is not from docker.io/acme"
        in decide(p, fixture(shared_data, API_DEPLOYMENT)).reason
    )


def test_unreadable_image_reference_is_outside_a_registry_scope(tmp_path: Path) -> None:
    p = loaded(tmp_path, {"registries": ["registry.example"]})
    bad: dict[str, Any] = copy.deepcopy(PRIVILEGED)
    bad["spec"]["containers"][0]["image"] = "registry.example/Agent:1"  # upper case: not a reference
    d = decide(p, pod_request(bad))
    assert d.outcome is Outcome.DENY
    assert "image 'registry.example/Agent:1' cannot be read" in d.reason


def test_object_with_app_outside_scope_is_denied(tmp_path: Path, shared_data: Path) -> None:
    p = loaded(tmp_path, {"apps": ["payments"]})
    d = decide(p, fixture(shared_data, API_DEPLOYMENT))
    assert d.outcome is Outcome.DENY
    assert "app 'api' is not among payments" in d.reason
    p = loaded(tmp_path / "2", {"apps": ["payments", "api"]})
    assert "does not govern" not in decide(p, fixture(shared_data, API_DEPLOYMENT)).reason


def test_object_without_an_app_label_is_denied_when_scope_names_apps(tmp_path: Path) -> None:
    p = loaded(tmp_path, {"apps": ["agent"]})
    unlabelled: dict[str, Any] = copy.deepcopy(PRIVILEGED)
    del unlabelled["metadata"]["labels"]
    d = decide(p, pod_request(unlabelled))
    assert d.outcome is Outcome.DENY
    assert "no app is known, and the bundle governs only apps agent" in d.reason


def test_exception_does_not_admit_an_object_outside_scope(tmp_path: Path) -> None:
    # An approved exception waives a finding; it cannot make the bundle govern a namespace.
    cp = ControlPlane()
    exceptions = (grant("pss.privileged", ExceptionScope(app="agent", namespace="dev")),)
    write_state(
        tmp_path,
        cp.bundle(doc=bundle_doc(scope={"namespaces": ["shop"]})),
        cp.snapshot(exceptions=exceptions),
    )
    p = provider(cp, tmp_path)
    assert p.load_cache() is True
    d = decide(p, pod_request(PRIVILEGED, namespace="dev"))
    assert d.outcome is Outcome.DENY and d.waived == ()
    assert "namespace 'dev' is not among shop" in d.reason


def test_scope_denial_does_not_depend_on_the_fail_mode(tmp_path: Path) -> None:
    p = loaded(tmp_path, {"namespaces": ["shop"]})
    for mode in FailMode:
        assert decide(p, pod_request(PRIVILEGED, namespace="dev"), mode).outcome is Outcome.DENY


def test_teams_are_not_compared_at_admission(tmp_path: Path) -> None:
    # The webhook has no ownership registry; the control plane compares teams when it attests.
    p = loaded(tmp_path, {"teams": ["payments"]})
    d = decide(p, pod_request(PRIVILEGED))
    assert [f.rule_id for f in d.denied] == ["pss.privileged"]


@pytest.mark.parametrize("field", ["apps", "namespaces", "registries"])
def test_empty_scope_field_governs_everything(tmp_path: Path, field: str) -> None:
    p = loaded(tmp_path, {field: []})
    state = p.current(NOW).state
    assert state is not None and state.out_of_scope is None
    assert [f.rule_id for f in decide(p, pod_request(PRIVILEGED)).denied] == ["pss.privileged"]


def test_scope_reason_is_bounded_for_many_images(tmp_path: Path) -> None:
    p = loaded(tmp_path, {"registries": ["registry.example"]})
    many: dict[str, Any] = copy.deepcopy(PRIVILEGED)
    many["spec"]["containers"] = [{"name": f"c{i}", "image": f"ghcr.io/x/c{i}:1"} for i in range(40)]
    d = decide(p, pod_request(many))
    assert d.reason.count("(registry ghcr.io)") == 10
    assert "and 30 more image(s) outside the scope" in d.reason
    message = response_for("u", d).message
    assert message.count("(registry ghcr.io)") == 10 and len(message) <= MESSAGE_CHARS


def test_state_after_expiry_is_not_resurrected_by_scope(tmp_path: Path) -> None:
    cp = ControlPlane()
    write_state(
        tmp_path,
        cp.bundle(doc=bundle_doc(scope={"clusters": ["prod-eu"]})),
        cp.snapshot(expires=timedelta(hours=1)),
    )
    p = provider(cp, tmp_path)
    assert p.load_cache() is True
    view = p.current(NOW + timedelta(hours=2))
    assert view.state is None and "expired at" in view.problem
