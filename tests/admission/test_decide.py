"""Which requests are evaluated, and what the user and the audit log are told."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest

from dutyguard.admission.decide import (
    MAX_WARNINGS,
    WARNING_CHARS,
    Decider,
    Outcome,
    response_for,
    workload_owner,
)
from dutyguard.admission.review import parse_review
from dutyguard.admission.state import FailMode, StateView, builtin_state
from dutyguard.rules import default_registry
from dutyguard.sources.kubernetes import K8sObject
from tests.admission.support import SwitchableProvider, Webhook, pod_request, review

DECIDER = Decider(default_registry())
SIGNED_OFF = StateView(builtin_state())


def pod(privileged: bool = False, image: str = "registry.example/app:1.0", **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web", **meta},
        "spec": {
            "containers": [{"name": "app", "image": image, "securityContext": {"privileged": privileged}}],
        },
    }


def decide(req: dict[str, Any], view: StateView = SIGNED_OFF, decider: Decider = DECIDER) -> Any:
    return decider.decide(parse_review(review(req)), view)


def test_privileged_pod_is_denied_naming_rule_field_and_fix() -> None:
    d = decide(pod_request(pod(privileged=True)))
    assert d.outcome is Outcome.DENY
    assert {f.rule_id for f in d.denied} == {"pss.privileged"}
    msg = response_for("u", d).to_json()["response"]["status"]["message"]
    assert (
        "dutyguard denied Pod shop/web under built-in default policy (unsigned) (Pod Security restricted)"
        in msg
    )
    assert "[pss.privileged] (critical) spec.containers[0].securityContext.privileged" in msg
    assert "Fix: " in msg


def test_namespace_comes_from_the_request_when_the_object_has_none() -> None:
    d = decide(pod_request(pod(), namespace="payments"))
    assert d.subject.namespace == "payments"
    assert all(f.location.namespace == "payments" for f in d.warned)
    # The object itself is not mutated.
    assert "namespace" not in pod()["metadata"]
    assert "k8s.default-namespace" not in {f.rule_id for f in d.warned}


def test_allowed_pod_gets_warnings_within_kubernetes_limits() -> None:
    d = decide(pod_request(pod()))
    assert d.outcome is Outcome.ALLOW
    out = response_for("u", d).to_json()["response"]
    warnings = out["warnings"]
    assert 1 <= len(warnings) <= MAX_WARNINGS
    assert all(len(w) <= WARNING_CHARS for w in warnings)
    assert any(w.startswith("[pss.run-as-non-root]") for w in warnings)
    assert warnings[-1].startswith("dutyguard: ") and "more warning(s)" in warnings[-1]


def test_audit_annotation_keys_are_qualified_names() -> None:
    d = decide(pod_request(pod(privileged=True)))
    ann = response_for("u", d).to_json()["response"]["auditAnnotations"]
    assert ann["decision"] == "deny"
    assert ann["policy"] == "builtin-unsigned"
    assert ann["policy-signed"] == "false"
    assert ann["denied-rules"] == "pss.privileged"
    for key in ann:
        assert re.fullmatch(r"[A-Za-z0-9][-A-Za-z0-9_.]*", key) and len(key) <= 63


def _update(old: dict[str, Any], new: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return pod_request(new, operation="UPDATE", oldObject=old, **extra)


def test_update_that_only_removes_finalizers_is_allowed_even_for_a_privileged_pod() -> None:
    # Otherwise a pod admitted before the policy could never finish deleting (fail-closed wedge).
    old = pod(privileged=True, finalizers=["example.com/cleanup"])
    new = copy.deepcopy(old)
    new["metadata"]["finalizers"] = []
    new["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    d = decide(_update(old, new))
    assert d.outcome is Outcome.SKIP
    assert d.allowed


def test_update_that_changes_the_image_is_evaluated() -> None:
    old = pod(privileged=True)
    new = pod(privileged=True, image="registry.example/app:2.0")
    assert decide(_update(old, new)).outcome is Outcome.DENY


def test_update_that_changes_an_apparmor_annotation_is_evaluated() -> None:
    old = pod()
    new = pod(annotations={"container.apparmor.security.beta.kubernetes.io/app": "unconfined"})
    d = decide(_update(old, new))
    assert d.outcome is Outcome.DENY
    assert {f.rule_id for f in d.denied} == {"pss.app-armor-profile"}


def test_scaling_a_deployment_does_not_reevaluate_its_template() -> None:
    dep = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {"replicas": 1, "template": {"metadata": {}, "spec": pod(privileged=True)["spec"]}},
    }
    scaled = copy.deepcopy(dep)
    scaled["spec"]["replicas"] = 5
    assert decide(_update(dep, scaled)).outcome is Outcome.SKIP
    assert decide(pod_request(dep)).outcome is Outcome.DENY


def test_ephemeral_container_subresource_is_evaluated() -> None:
    base = pod()
    debug = copy.deepcopy(base)
    debug["spec"]["ephemeralContainers"] = [
        {"name": "debugger", "image": "busybox:1.36", "securityContext": {"privileged": True}}
    ]
    req = pod_request(debug, operation="UPDATE", oldObject=base, subResource="ephemeralcontainers")
    d = decide(req)
    assert d.outcome is Outcome.DENY
    assert {(f.rule_id, f.location.field) for f in d.denied} >= {
        ("pss.privileged", "spec.ephemeralContainers[0].securityContext.privileged")
    }


@pytest.mark.parametrize(
    "sub", ["status", "binding", "eviction", "exec", "attach", "log", "portforward", "proxy"]
)
def test_pod_subresources_that_cannot_change_the_spec_are_not_evaluated(sub: str) -> None:
    d = decide(pod_request(pod(privileged=True), operation="UPDATE", subResource=sub))
    assert d.outcome is Outcome.SKIP


def test_an_unknown_pod_subresource_is_evaluated_fail_safe() -> None:
    d = decide(pod_request(pod(privileged=True), operation="UPDATE", subResource="somethingnew"))
    assert d.outcome is Outcome.DENY


def test_delete_is_not_evaluated() -> None:
    req = pod_request(pod(privileged=True), operation="DELETE")
    req["oldObject"] = req.pop("object")
    assert decide(req).outcome is Outcome.SKIP


def test_without_state_the_default_fail_mode_denies_and_says_why() -> None:
    d = decide(
        pod_request(pod()), StateView(None, "the last verified policy state expired at 2026-01-01T00:00:00Z")
    )
    assert d.outcome is Outcome.DENY
    msg = response_for("u", d).to_json()["response"]["status"]["message"]
    assert (
        "cannot verify the policy to enforce (the last verified policy state expired at 2026-01-01T00:00:00Z)"
        in msg
    )


def test_without_state_the_default_policy_mode_enforces_the_builtin_policy_loudly() -> None:
    decider = Decider(default_registry(), fail_mode=FailMode.DEFAULT_POLICY)
    view = StateView(None, "no verified policy state yet")
    denied = decide(pod_request(pod(privileged=True)), view, decider)
    assert {f.rule_id for f in denied.denied} == {"pss.privileged"}
    allowed = decide(pod_request(pod()), view, decider)
    warnings = response_for("u", allowed).to_json()["response"]["warnings"]
    assert warnings[0].startswith("dutyguard: enforcing the built-in default policy (unsigned) because")


def test_unsafe_allow_mode_admits_but_never_silently() -> None:
    decider = Decider(default_registry(), fail_mode=FailMode.UNSAFE_ALLOW)
    d = decide(pod_request(pod(privileged=True)), StateView(None, "no verified policy state yet"), decider)
    out = response_for("u", d).to_json()["response"]
    assert out["allowed"] is True
    assert out["warnings"][0].startswith("dutyguard: UNSAFE allow, nothing was checked")
    assert out["auditAnnotations"]["reason"].startswith("UNSAFE: allowed without evaluation")
    assert out["auditAnnotations"]["state-problem"] == "no verified policy state yet"


def test_pods_of_a_replicaset_resolve_to_their_deployment() -> None:
    obj = K8sObject(
        file="x",
        doc={
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "web-5d8f7c9b-abcde",
                "labels": {"pod-template-hash": "5d8f7c9b"},
                "ownerReferences": [{"kind": "ReplicaSet", "name": "web-5d8f7c9b", "controller": True}],
            },
        },
    )
    assert workload_owner(obj) == ("Deployment", "web")


def test_metrics_count_requests_decisions_and_latency(
    webhook: Webhook, default_state: SwitchableProvider
) -> None:
    before = webhook.app.metrics.latency.count
    webhook.post(review(pod_request(pod(privileged=True), uid="m1")))
    webhook.post(review(pod_request(pod(), uid="m2")))
    text = webhook.request("GET", "/metrics").body.decode()
    assert webhook.app.metrics.latency.count == before + 2
    assert 'dutyguard_admission_decisions_total{outcome="deny",state="unsigned"}' in text
    assert 'dutyguard_admission_findings_total{rule="pss.privileged",action="deny"}' in text
    assert 'dutyguard_admission_request_duration_seconds_bucket{le="0.005"}' in text
    assert 'dutyguard_admission_requests_total{path="/validate",code="200"}' in text


def test_readyz_reports_the_enforced_state(webhook: Webhook, default_state: SwitchableProvider) -> None:
    doc = webhook.request("GET", "/readyz").json
    assert doc == {
        "ready": True,
        "state": "built-in default policy (unsigned)",
        "signed": False,
        "problem": None,
        "failMode": "deny",
    }
    default_state.set_state(None, "no verified policy state yet")
    doc = webhook.request("GET", "/readyz").json
    assert doc["state"] is None
    assert doc["problem"] == "no verified policy state yet"
