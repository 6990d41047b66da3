"""Signed state at the door: only verified state is enforced, stale state survives outages until it
expires, and approved exceptions waive exactly what they waive in CI."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from dutyguard.admission.decide import Decider, Outcome, response_for
from dutyguard.admission.review import parse_review
from dutyguard.admission.signed import FetchError, SignedStateProvider
from dutyguard.audit.signing import Signer
from dutyguard.exceptions.model import ExceptionGrant, ExceptionScope
from dutyguard.policy.parse import parse_bundle
from dutyguard.rules import default_registry
from dutyguard.trust.keys import Keyring, TrustedKey
from dutyguard.trust.state import (
    BUNDLE_FILE,
    SNAPSHOT_FILE,
    ExceptionSnapshot,
    PublishedBundle,
    sign_bundle,
    sign_snapshot,
)
from tests.admission.support import SwitchableProvider, Webhook, pod_request, review

REGISTRY = default_registry()
ISSUER = "cp.example.com"
NOW = datetime.now(UTC).replace(microsecond=0)


def bundle_doc(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "dutyguard.dev/v1",
        "kind": "PolicyBundle",
        "metadata": {"name": "prod"},
        "spec": spec,
    }


class ControlPlane:
    """Signs state the way the control plane does; tests hand its envelopes to the webhook."""

    def __init__(self) -> None:
        self.signer = Signer.generate()
        self.keyring = Keyring([TrustedKey(self.signer.verifier)])

    def bundle(
        self, version: int = 1, doc: dict[str, Any] | None = None, expires: timedelta = timedelta(days=1)
    ) -> bytes:
        b = parse_bundle(doc or bundle_doc(), "test bundle", REGISTRY)
        published = PublishedBundle(ISSUER, version, NOW - timedelta(hours=1), NOW + expires, b)
        return sign_bundle(self.signer, published).dumps()

    def snapshot(
        self,
        version: int = 1,
        exceptions: tuple[ExceptionGrant, ...] = (),
        expires: timedelta = timedelta(days=1),
    ) -> bytes:
        snap = ExceptionSnapshot(ISSUER, version, NOW - timedelta(hours=1), NOW + expires, exceptions)
        return sign_snapshot(self.signer, snap).dumps()


def grant(
    rule: str,
    scope: ExceptionScope,
    eid: str = "EXC-1",
    expires: datetime | None = None,
    approvers: tuple[str, ...] = ("sec1", "sec2"),
) -> ExceptionGrant:
    return ExceptionGrant(
        id=eid,
        rule_id=rule,
        scope=scope,
        requester="dev1",
        approvers=approvers,
        justification="vendor agent needs it until the rewrite",
        compensating_control="node isolation and Falco rules",
        approved_at=NOW - timedelta(hours=2),
        expires=expires or NOW + timedelta(days=5),
    )


PRIVILEGED = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "agent", "labels": {"app": "agent"}},
    "spec": {
        "containers": [
            {"name": "agent", "image": "registry.example/agent:1", "securityContext": {"privileged": True}}
        ]
    },
}


def provider(
    cp: ControlPlane,
    cache: Path,
    fetch: Callable[[], tuple[bytes, bytes]] | None = None,
    clock: Callable[[], datetime] = lambda: NOW,
    keyring: Keyring | None = None,
) -> SignedStateProvider:
    return SignedStateProvider(
        keyring or cp.keyring, REGISTRY, cache, cluster="prod-1", fetch=fetch, clock=clock
    )


def decide(
    p: SignedStateProvider, obj: dict[str, Any] = PRIVILEGED, namespace: str = "shop", at: datetime = NOW
) -> Any:
    return Decider(REGISTRY).decide(
        parse_review(review(pod_request(obj, namespace=namespace))), p.current(at)
    )


def write_state(cache: Path, bundle: bytes, snapshot: bytes) -> None:
    cache.mkdir(parents=True, exist_ok=True)
    (cache / BUNDLE_FILE).write_bytes(bundle)
    (cache / SNAPSHOT_FILE).write_bytes(snapshot)


# --- fail closed --------------------------------------------------------------------------------
def test_missing_state_denies_and_says_why(tmp_path: Path) -> None:
    p = provider(ControlPlane(), tmp_path / "cache")
    p.start()
    d = decide(p, {**PRIVILEGED, "spec": {"containers": [{"name": "ok", "image": "registry.example/a:1"}]}})
    assert d.outcome is Outcome.DENY
    assert "no verified policy state yet" in response_for("u", d).message


def test_tampered_cached_bundle_is_never_enforced(tmp_path: Path) -> None:
    cp = ControlPlane()
    bundle = json.loads(cp.bundle())
    import base64

    payload = json.loads(base64.b64decode(bundle["payload"]))
    payload["bundle"]["spec"] = {"actions": {"admission": {"rules": {"pss.privileged": "audit"}}}}
    bundle["payload"] = base64.b64encode(json.dumps(payload).encode()).decode()
    write_state(tmp_path, json.dumps(bundle).encode(), cp.snapshot())
    p = provider(cp, tmp_path)
    assert p.load_cache() is False
    assert "verification failed [signature]" in p.problem
    d = decide(p)
    assert d.outcome is Outcome.DENY
    assert d.denied == ()  # denied because nothing verified, not by the tampered policy
    assert "cached state refused" in d.reason


def test_state_signed_by_another_key_is_refused(tmp_path: Path) -> None:
    cp, impostor = ControlPlane(), ControlPlane()
    write_state(tmp_path, impostor.bundle(), impostor.snapshot())
    p = provider(cp, tmp_path)
    assert p.load_cache() is False
    assert "[signature]" in p.problem
    assert decide(p).outcome is Outcome.DENY


def test_expired_state_is_not_enforced_and_the_denial_says_so(tmp_path: Path) -> None:
    cp = ControlPlane()
    write_state(tmp_path, cp.bundle(), cp.snapshot(expires=timedelta(hours=2)))
    p = provider(cp, tmp_path)
    assert p.load_cache() is True
    ok = {**PRIVILEGED, "spec": {"containers": [{"name": "ok", "image": "registry.example/a:1"}]}}
    assert decide(p, ok).outcome is Outcome.ALLOW
    later = NOW + timedelta(hours=3)
    d = decide(p, ok, at=later)
    assert d.outcome is Outcome.DENY
    assert "expired at" in d.reason
    assert d.state is None


def test_unreachable_control_plane_keeps_the_last_verified_state_until_it_expires(tmp_path: Path) -> None:
    cp = ControlPlane()
    answers: list[Any] = [(cp.bundle(), cp.snapshot(expires=timedelta(hours=6)))]

    def fetch() -> tuple[bytes, bytes]:
        a = answers.pop(0) if answers else FetchError("connection refused")
        if isinstance(a, Exception):
            raise a
        return a

    p = provider(cp, tmp_path, fetch=fetch)
    assert p.refresh() is True
    assert p.refresh() is False  # control plane down now
    assert "control plane unreachable: connection refused" in p.problem
    d = decide(p, at=NOW + timedelta(hours=5))
    assert d.outcome is Outcome.DENY and {f.rule_id for f in d.denied} == {
        "pss.privileged"
    }  # still enforcing
    assert d.state is not None and d.state.signed
    d = decide(p, at=NOW + timedelta(hours=7))
    assert d.outcome is Outcome.DENY and d.denied == ()
    assert "expired at" in d.reason and "control plane unreachable" in d.reason


def test_rollback_to_an_older_bundle_is_refused(tmp_path: Path) -> None:
    cp = ControlPlane()
    v2 = (cp.bundle(version=2), cp.snapshot(version=2))
    v1 = (
        cp.bundle(version=1, doc=bundle_doc(actions={"admission": {"rules": {"pss.privileged": "audit"}}})),
        cp.snapshot(version=1),
    )
    answers = [v2, v1]
    p = provider(cp, tmp_path, fetch=lambda: answers.pop(0))
    assert p.refresh() is True
    assert p.refresh() is False
    assert "[rollback]" in p.problem
    st = p.current(NOW).state
    assert st is not None and st.bundle_version == 2
    assert decide(p).outcome is Outcome.DENY  # the older bundle's "audit" for privileged never applied


def test_restart_refuses_a_cache_older_than_what_it_enforced(tmp_path: Path) -> None:
    cp = ControlPlane()
    answers = [(cp.bundle(version=3), cp.snapshot(version=3))]
    p = provider(cp, tmp_path, fetch=lambda: answers.pop(0))
    assert p.refresh() is True
    # Someone replaces the cache with older (validly signed) state while the webhook restarts.
    write_state(tmp_path, cp.bundle(version=2), cp.snapshot(version=2))
    restarted = provider(cp, tmp_path)
    assert restarted.load_cache() is False
    assert "[rollback]" in restarted.problem


def test_restart_during_an_outage_keeps_enforcing_the_cached_state(tmp_path: Path) -> None:
    cp = ControlPlane()
    answers = [(cp.bundle(), cp.snapshot())]
    p = provider(cp, tmp_path, fetch=lambda: answers.pop(0))
    assert p.refresh() is True

    def down() -> tuple[bytes, bytes]:
        raise FetchError("no route to host")

    restarted = provider(cp, tmp_path, fetch=down)
    restarted.start()
    try:
        st = restarted.current(NOW).state
        assert st is not None and st.signed and st.bundle_version == 1
        assert "no route to host" in restarted.problem
    finally:
        restarted.stop()


# --- the bundle decides ------------------------------------------------------------------------
def test_bundle_actions_and_pod_security_levels_apply_at_admission(tmp_path: Path) -> None:
    cp = ControlPlane()
    doc = bundle_doc(
        actions={"admission": {"rules": {"pss.run-as-non-root": "deny"}}},
        podSecurity={"default": "restricted", "namespaces": [{"names": ["legacy"], "level": "baseline"}]},
    )
    write_state(tmp_path, cp.bundle(doc=doc), cp.snapshot())
    p = provider(cp, tmp_path)
    assert p.load_cache()
    root_pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "r"},
        "spec": {"containers": [{"name": "c", "image": "registry.example/a:1"}]},
    }
    d = decide(p, root_pod, namespace="shop")
    assert d.outcome is Outcome.DENY and {f.rule_id for f in d.denied} == {"pss.run-as-non-root"}
    assert "Pod Security restricted" in response_for("u", d).message
    d = decide(p, root_pod, namespace="legacy")  # baseline there: the restricted rule does not run
    assert d.outcome is Outcome.ALLOW
    assert "pss.run-as-non-root" not in {f.rule_id for f in (*d.warned, *d.audited)}


# --- exceptions --------------------------------------------------------------------------------
def _fingerprint(namespace: str = "shop") -> str:
    from dutyguard.admission.state import StateView, builtin_state

    d = Decider(REGISTRY).decide(
        parse_review(review(pod_request(PRIVILEGED, namespace=namespace))), StateView(builtin_state())
    )
    (f,) = d.denied
    return f.fingerprint


def test_approved_exception_waives_the_denial_and_is_recorded(
    tmp_path: Path, webhook: Webhook, default_state: SwitchableProvider
) -> None:
    cp = ControlPlane()
    exc = grant("pss.privileged", ExceptionScope(fingerprint=_fingerprint()))
    write_state(tmp_path, cp.bundle(version=4), cp.snapshot(version=9, exceptions=(exc,)))
    p = provider(cp, tmp_path)
    assert p.load_cache()
    default_state.set_state(p.current(NOW).state)

    out = webhook.post(review(pod_request(PRIVILEGED, namespace="shop"))).admission

    assert out["allowed"] is True
    ann = out["auditAnnotations"]
    assert ann["exceptions"] == "EXC-1"
    assert ann["policy"].startswith("bundle-v4,sha256:") and ann["policy"].endswith(",exceptions-v9")
    assert ann["policy-signed"] == "true"
    assert any(w.startswith("[pss.privileged] waived by exception EXC-1 until") for w in out["warnings"])
    # The same pod in another namespace has another fingerprint: still denied.
    other = webhook.post(review(pod_request(PRIVILEGED, namespace="other"))).admission
    assert other["allowed"] is False
    assert "exceptions" not in other["auditAnnotations"]


def test_namespace_scoped_exception_only_covers_its_namespace_and_cluster(tmp_path: Path) -> None:
    cp = ControlPlane()
    exc = grant("pss.privileged", ExceptionScope(namespace="monitoring", app="agent", cluster="prod-1"))
    wrong_cluster = grant(
        "pss.privileged", ExceptionScope(namespace="shop", app="agent", cluster="staging"), eid="EXC-2"
    )
    write_state(tmp_path, cp.bundle(), cp.snapshot(exceptions=(exc, wrong_cluster)))
    p = provider(cp, tmp_path)
    assert p.load_cache()
    d = decide(p, namespace="monitoring")
    assert d.outcome is Outcome.ALLOW and d.exception_ids == ("EXC-1",)
    assert decide(p, namespace="shop").outcome is Outcome.DENY
    unlabelled = {**PRIVILEGED, "metadata": {"name": "agent"}}
    assert decide(p, unlabelled, namespace="monitoring").outcome is Outcome.DENY  # app must match


def test_expired_exception_applies_nowhere_at_once(tmp_path: Path) -> None:
    cp = ControlPlane()
    # Valid when the state was loaded, expired a moment later (before this request).
    soon = datetime.now(UTC) + timedelta(milliseconds=300)
    exc = grant(
        "pss.privileged",
        ExceptionScope(fingerprint=_fingerprint()),
        expires=soon.replace(microsecond=0) + timedelta(seconds=1),
    )
    write_state(tmp_path, cp.bundle(), cp.snapshot(exceptions=(exc,)))
    p = provider(cp, tmp_path)
    assert p.load_cache()
    assert decide(p).outcome is Outcome.ALLOW
    import time

    time.sleep(max(0.0, (exc.expires - datetime.now(UTC)).total_seconds()) + 0.05)
    d = decide(p)
    assert d.outcome is Outcome.DENY
    assert d.waived == ()


def test_exception_approved_for_another_rule_does_not_apply(tmp_path: Path) -> None:
    cp = ControlPlane()
    exc = grant("pss.host-namespaces", ExceptionScope(fingerprint=_fingerprint()))
    write_state(tmp_path, cp.bundle(), cp.snapshot(exceptions=(exc,)))
    p = provider(cp, tmp_path)
    assert p.load_cache()
    assert decide(p).outcome is Outcome.DENY


def test_exception_without_the_quorum_the_bundle_requires_is_ignored(tmp_path: Path) -> None:
    # pss.privileged is critical: the default exception policy wants two approvers, as in CI.
    cp = ControlPlane()
    exc = grant("pss.privileged", ExceptionScope(fingerprint=_fingerprint()), approvers=("sec1",))
    write_state(tmp_path, cp.bundle(), cp.snapshot(exceptions=(exc,)))
    p = provider(cp, tmp_path)
    assert p.load_cache()
    d = decide(p)
    assert d.outcome is Outcome.DENY
    assert d.waived == ()


@pytest.mark.parametrize("seconds", [0])
def test_state_age_is_reported(tmp_path: Path, seconds: int) -> None:
    cp = ControlPlane()
    write_state(tmp_path, cp.bundle(), cp.snapshot())
    p = provider(cp, tmp_path)
    assert p.load_cache()
    view = p.current(NOW + timedelta(seconds=90))
    assert view.age_seconds == pytest.approx(90 + seconds)
