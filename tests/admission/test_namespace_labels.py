"""``admission serve --namespace-labels``: label-selected Pod Security levels from the API server's labels.

Every decision here goes over HTTPS to the real webhook (signed state from ``--state``, the
assembled decider), and the namespace labels come over HTTPS from :class:`FakeKubeApi`, a small
API server with real list/watch semantics (tests/admission/kube_api.py), reached through a
kubeconfig file as an operator would. The pods are kubewarden's recorded AdmissionRequests:

* ``NO_SECURITY_CONTEXT`` passes Pod Security baseline and fails restricted (run as root,
  privilege escalation, capabilities, seccomp): allowed at baseline, denied at restricted;
* ``PRIVILEGED`` fails baseline: denied at every level.

The bundle gives ``team: platform`` namespaces baseline, everything else restricted.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dutyguard.admission.app import AdmissionApp
from dutyguard.admission.certs import CertFiles
from dutyguard.admission.decide import Decider
from dutyguard.admission.namespaces import (
    NamespaceCache,
    NamespaceLimits,
    NamespaceWatcher,
    kube_client,
)
from dutyguard.admission.serve import WebhookConfig, assemble
from dutyguard.cli import main as cli_main
from dutyguard.core.policy import PSSLevel
from dutyguard.errors import ConfigError
from dutyguard.policy.model import Stage
from dutyguard.policy.parse import parse_bundle
from dutyguard.rules import default_registry
from tests.admission.kube_api import FakeKubeApi, free_port, wait_for
from tests.admission.support import KW, Webhook, kubewarden_request, review, running
from tests.admission.test_signed import ControlPlane, bundle_doc, write_state

RESTRICTED_RULES = (
    "pss.allow-privilege-escalation",
    "pss.capabilities-restricted",
    "pss.run-as-non-root",
    "pss.seccomp-profile-restricted",
)
PLATFORM = {"podSecurity": {"default": "restricted", "namespaces": [
    {"selector": {"matchLabels": {"team": "platform"}}, "level": "baseline"},
]}}  # fmt: skip
# Restricted findings are medium; this bundle denies them at admission so the level shows in allow/deny.
DENY_RESTRICTED = {"admission": {"rules": dict.fromkeys(RESTRICTED_RULES, "deny")}}


def bundle(**spec: Any) -> dict[str, Any]:
    return bundle_doc(**{**PLATFORM, "actions": DENY_RESTRICTED, **spec})


@pytest.fixture(scope="module")
def no_security_context(shared_data: Path) -> dict[str, Any]:
    return kubewarden_request(
        shared_data
        / KW
        / "allow-privilege-escalation-psp-policy/test_data"
        / "req_pod_without_security_context.json"
    )


@pytest.fixture(scope="module")
def privileged(shared_data: Path) -> dict[str, Any]:
    return kubewarden_request(shared_data / KW / "pod-privileged-policy/test_data/privileged_container.json")


def in_namespace(request: dict[str, Any], namespace: str) -> dict[str, Any]:
    req = copy.deepcopy(request)
    req["namespace"] = namespace
    req["object"].setdefault("metadata", {})["namespace"] = namespace
    return review(req)


@pytest.fixture
def kube(certs: CertFiles) -> Iterator[FakeKubeApi]:
    api = FakeKubeApi(certs)
    api.apply("platform-tools", {"team": "platform"})
    api.apply("shop", {"team": "web"})
    api.start()
    yield api
    api.stop()


@pytest.fixture
def signed_state(tmp_path: Path) -> tuple[Path, str]:
    cp = ControlPlane()
    write_state(tmp_path / "state", cp.bundle(doc=bundle()), cp.snapshot())
    return tmp_path / "state", cp.signer.verifier.public_text()


@contextlib.contextmanager
def labelled(
    certs: CertFiles,
    kube: FakeKubeApi,
    state: tuple[Path, str],
    tmp: Path,
    *,
    limits: NamespaceLimits | None = None,
    cache: NamespaceCache | None = None,
) -> Iterator[Webhook]:
    """The webhook as ``serve --state DIR --trust KEY --namespace-labels --kubeconfig FILE`` builds
    it, or with the given limits / cache (the rest assembled the same way)."""
    config = WebhookConfig(
        state_dir=state[0], trust=(state[1],), namespace_labels=True, kubeconfig=kube.kubeconfig(tmp)
    )
    app = assemble(config)
    if limits is not None or cache is not None:
        assert app.namespaces is not None
        app.namespaces.stop()  # never started; replaced by one with the test's limits
        watcher = NamespaceWatcher(kube_client(config.kubeconfig), cache, limits=limits)
        app = AdmissionApp(
            Decider(app.decider.registry, namespaces=watcher), app.provider, namespaces=watcher
        )
    with running(app, certs) as hook:
        yield hook


def decide(hook: Webhook, request: dict[str, Any], namespace: str) -> dict[str, Any]:
    resp = hook.post(in_namespace(request, namespace))
    assert resp.status == 200
    return resp.admission


def labels_status(hook: Webhook) -> dict[str, Any]:
    out: dict[str, Any] = hook.request("GET", "/readyz").json["namespaceLabels"]
    return out


def synced(hook: Webhook) -> bool:
    return bool(labels_status(hook)["synced"])


def api_requests(hook: Webhook, verb: str, result: str) -> float:
    return metric(
        hook, f'dutyguard_admission_namespace_api_requests_total{{verb="{verb}",result="{result}"}}'
    )


def refusals(hook: Webhook, reason: str) -> float:
    return metric(hook, f'dutyguard_admission_namespace_labels_refused_total{{reason="{reason}"}}')


def metric(hook: Webhook, line_prefix: str) -> float:
    text = hook.request("GET", "/metrics").body.decode()
    for line in text.splitlines():
        if line.startswith(line_prefix + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


# --- the exact level, once synced ---------------------------------------------------------------


def test_label_selected_namespace_gets_its_looser_level_once_synced(
    certs: CertFiles,
    kube: FakeKubeApi,
    signed_state: tuple[Path, str],
    tmp_path: Path,
    no_security_context: dict[str, Any],
    privileged: dict[str, Any],
) -> None:
    with labelled(certs, kube, signed_state, tmp_path) as hook:
        wait_for("the namespace list", lambda: synced(hook))

        out = decide(hook, no_security_context, "platform-tools")
        assert out["allowed"] is True, out
        assert out["auditAnnotations"]["namespace-labels"] == "known"
        assert not any("strictest" in w for w in out.get("warnings", []))

        # Baseline is still enforced there.
        out = decide(hook, privileged, "platform-tools")
        assert out["allowed"] is False
        assert "Pod Security baseline" in out["status"]["message"]
        assert "pss.privileged" in out["auditAnnotations"]["denied-rules"]

        # A namespace whose labels do not match keeps restricted.
        out = decide(hook, no_security_context, "shop")
        assert out["allowed"] is False
        assert "Pod Security restricted" in out["status"]["message"]
        assert set(out["auditAnnotations"]["denied-rules"].split(",")) == set(RESTRICTED_RULES)
        wait_for("the watch", lambda: len(kube.requests(watch=True)) >= 1)

    # The API server saw the token from the kubeconfig, a list, then a watch from its resourceVersion.
    lists, watches = kube.requests(watch=False), kube.requests(watch=True)
    assert {s.authorization for s in lists + watches} == {"Bearer kube-test-token"}
    assert watches[0].params["resourceVersion"] == str(kube.rv)
    assert watches[0].params["allowWatchBookmarks"] == "true"


def test_unknown_namespace_gets_the_strictest_level(
    certs: CertFiles,
    kube: FakeKubeApi,
    signed_state: tuple[Path, str],
    tmp_path: Path,
    no_security_context: dict[str, Any],
) -> None:
    with labelled(certs, kube, signed_state, tmp_path) as hook:
        wait_for("the namespace list", lambda: synced(hook))
        # Created a moment ago with the looser label: its event has not been seen yet.
        out = decide(hook, no_security_context, "new-platform")
        assert out["allowed"] is False
        message = out["status"]["message"]
        assert "Pod Security restricted" in message
        assert "the strictest that could apply" in message
        assert "'new-platform' not seen from the API server yet" in message
        assert out["auditAnnotations"]["namespace-labels"].startswith("unknown: namespace 'new-platform'")

        kube.apply("new-platform", {"team": "platform"})
        wait_for("the ADDED event", lambda: decide(hook, no_security_context, "new-platform")["allowed"])
        assert metric(hook, 'dutyguard_admission_namespace_label_lookups_total{result="not_seen"}') >= 1


def test_allowed_request_with_unknown_labels_warns_the_user(
    certs: CertFiles,
    kube: FakeKubeApi,
    signed_state: tuple[Path, str],
    tmp_path: Path,
    shared_data: Path,
) -> None:
    # A pod that passes restricted too: allowed either way, but the user learns the level was a guess.
    compliant = kubewarden_request(
        shared_data
        / KW
        / "allow-privilege-escalation-psp-policy/test_data"
        / "req_pod_with_allowPrivilegeEscalation_disabled.json"
    )
    compliant["object"]["spec"]["securityContext"] = {
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    spec = compliant["object"]["spec"]
    for c in (*spec["containers"], *spec["initContainers"]):
        c.setdefault("securityContext", {})["capabilities"] = {"drop": ["ALL"]}
    with labelled(certs, kube, signed_state, tmp_path) as hook:
        wait_for("the namespace list", lambda: synced(hook))
        out = decide(hook, compliant, "not-yet-seen")
        assert out["allowed"] is True, out
        (warning,) = [w for w in out["warnings"] if "strictest" in w]
        assert warning.startswith("dutyguard: Pod Security restricted, the strictest that could apply")
        assert len(warning) <= 120


def test_relabel_changes_the_decision(
    certs: CertFiles,
    kube: FakeKubeApi,
    signed_state: tuple[Path, str],
    tmp_path: Path,
    no_security_context: dict[str, Any],
) -> None:
    with labelled(certs, kube, signed_state, tmp_path) as hook:
        wait_for("the namespace list", lambda: synced(hook))
        assert decide(hook, no_security_context, "platform-tools")["allowed"] is True

        kube.apply("platform-tools", {"team": "web"})  # MODIFIED: tighter
        wait_for("the relabel", lambda: not decide(hook, no_security_context, "platform-tools")["allowed"])

        kube.apply("shop", {"team": "platform"})  # MODIFIED: looser
        wait_for("the relabel", lambda: decide(hook, no_security_context, "shop")["allowed"])

        kube.delete("shop")  # DELETED: unknown again, strictest
        wait_for("the deletion", lambda: not decide(hook, no_security_context, "shop")["allowed"])
        out = decide(hook, no_security_context, "shop")
        assert "'shop' not seen" in out["auditAnnotations"]["namespace-labels"]
        watcher = hook.app.namespaces
        assert watcher is not None and watcher.running
    # Stopping the webhook ends the watch it was blocked reading.
    assert not watcher.running


def test_named_namespace_behind_a_label_entry_gets_its_exact_level(
    certs: CertFiles, kube: FakeKubeApi, tmp_path: Path, no_security_context: dict[str, Any]
) -> None:
    # The first matching entry wins. Without labels, `legacy` might match the first (restricted)
    # entry, so both the gate and a webhook without labels hold it to restricted; with its labels
    # known it is baseline. The per-namespace level the evaluator was built with must not win.
    doc = bundle(
        podSecurity={
            "default": "restricted",
            "namespaces": [
                {"selector": {"matchLabels": {"tier": "payments"}}, "level": "restricted"},
                {"names": ["legacy"], "level": "baseline"},
            ],
        }
    )
    cp = ControlPlane()
    write_state(tmp_path / "state", cp.bundle(doc=doc), cp.snapshot())
    state = (tmp_path / "state", cp.signer.verifier.public_text())
    parsed = parse_bundle(doc, "b", default_registry())
    assert parsed.to_policy(Stage.CI, "ci").namespace_pss_levels == {}  # legacy: restricted, as the fallback
    kube.apply("legacy", {})
    with labelled(certs, kube, state, tmp_path) as hook:
        wait_for("the namespace list", lambda: synced(hook))
        assert decide(hook, no_security_context, "legacy")["allowed"] is True
        kube.apply("legacy", {"tier": "payments"})
        wait_for("the relabel", lambda: not decide(hook, no_security_context, "legacy")["allowed"])


def test_gate_policy_ignores_labels_and_admission_policy_resolves_them() -> None:
    parsed = parse_bundle(bundle(), "b", default_registry())
    ci, adm = parsed.to_policy(Stage.CI, "ci"), parsed.to_policy(Stage.ADMISSION, "adm")
    assert ci.label_levels is None  # CI cannot know the cluster's labels
    assert ci.for_namespace("anything").pss_level is PSSLevel.RESTRICTED
    assert adm.for_namespace("anything").pss_level is PSSLevel.RESTRICTED
    assert adm.for_namespace_labels("anything", {"team": "platform"}).pss_level is PSSLevel.BASELINE
    assert adm.for_namespace_labels("anything", {"team": "web"}).pss_level is PSSLevel.RESTRICTED
    # Name-only bundles: labels cannot change a level, so the webhook does not even look them up.
    names_only = parse_bundle(
        bundle(podSecurity={"namespaces": [{"names": ["ops"], "level": "baseline"}]}), "b", default_registry()
    )
    assert names_only.to_policy(Stage.ADMISSION, "adm").label_levels is None


def test_without_the_flag_labels_are_not_read(
    certs: CertFiles, signed_state: tuple[Path, str], no_security_context: dict[str, Any]
) -> None:
    app = assemble(WebhookConfig(state_dir=signed_state[0], trust=(signed_state[1],)))
    assert app.namespaces is None
    with running(app, certs) as hook:
        out = decide(hook, no_security_context, "platform-tools")
        assert out["allowed"] is False  # the strictest that could apply, as before
        assert "namespace-labels" not in out["auditAnnotations"]
        assert "namespaceLabels" not in hook.request("GET", "/readyz").json


# --- the watch's own failures -------------------------------------------------------------------


def test_watch_expiry_410_relists(
    certs: CertFiles,
    kube: FakeKubeApi,
    signed_state: tuple[Path, str],
    tmp_path: Path,
    no_security_context: dict[str, Any],
) -> None:
    with labelled(certs, kube, signed_state, tmp_path) as hook:
        wait_for("the namespace list", lambda: synced(hook))
        assert decide(hook, no_security_context, "shop")["allowed"] is False
        # The relabel is compacted away before the watch sees it: only a new list can show it.
        kube.apply("shop", {"team": "platform"}, deliver=False)
        kube.compact()
        wait_for("the relist", lambda: decide(hook, no_security_context, "shop")["allowed"])
        assert len(kube.requests(watch=False)) == 2
        assert api_requests(hook, "watch", "gone") >= 1
        # The new watch starts from the new list's resourceVersion, not the compacted one.
        wait_for("the new watch", lambda: len(kube.requests(watch=True)) == 2)
        assert kube.requests(watch=True)[-1].params["resourceVersion"] == str(kube.rv)


def test_api_server_unreachable_at_start_is_strictest_and_reported(
    certs: CertFiles,
    signed_state: tuple[Path, str],
    tmp_path: Path,
    no_security_context: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    kube = FakeKubeApi(certs, port=free_port())  # nothing listens there yet
    kube.apply("platform-tools", {"team": "platform"})
    fast = NamespaceLimits(backoff_min_seconds=0.05, backoff_max_seconds=0.2)
    caplog.set_level(logging.ERROR, logger="dutyguard.admission")
    with labelled(certs, kube, signed_state, tmp_path, limits=fast) as hook:
        # The webhook serves at once; the labels it cannot read are unknown.
        out = decide(hook, no_security_context, "platform-tools")
        assert out["allowed"] is False
        assert "not synced with the API server" in out["auditAnnotations"]["namespace-labels"]
        wait_for(
            "a failed list",
            lambda: api_requests(hook, "list", "unreachable") >= 1,
        )
        assert metric(hook, "dutyguard_admission_namespace_labels_synced") == 0
        status = labels_status(hook)
        assert status["synced"] is False and "API server unreachable" in status["problem"]
        assert any("API server unreachable" in r.getMessage() for r in caplog.records)
        assert decide(hook, no_security_context, "platform-tools")["allowed"] is False

        kube.start()  # the API server comes back: the watcher reconnects by itself
        try:
            wait_for("the namespace list", lambda: synced(hook))
            assert decide(hook, no_security_context, "platform-tools")["allowed"] is True
            assert metric(hook, "dutyguard_admission_namespace_labels_synced") == 1
        finally:
            kube.stop()


def test_a_hanging_api_server_never_delays_a_decision(
    certs: CertFiles, signed_state: tuple[Path, str], tmp_path: Path, no_security_context: dict[str, Any]
) -> None:
    # Accepts TCP connections and never says a word: the watcher waits (up to its connect
    # timeout); the request path must not.
    import socket

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    kube = FakeKubeApi(certs, port=silent.getsockname()[1])
    quick = NamespaceLimits(connect_seconds=1.0)  # so that stopping does not wait on the handshake
    try:
        with labelled(certs, kube, signed_state, tmp_path, limits=quick) as hook:
            for _ in range(3):
                out = decide(hook, no_security_context, "platform-tools")
                assert out["allowed"] is False
                assert "not synced" in out["auditAnnotations"]["namespace-labels"]
            assert labels_status(hook)["synced"] is False
    finally:
        silent.close()


def test_stale_labels_are_unknown(
    certs: CertFiles,
    kube: FakeKubeApi,
    signed_state: tuple[Path, str],
    tmp_path: Path,
    no_security_context: dict[str, Any],
) -> None:
    now = [1000.0]

    class Counting(NamespaceCache):
        contacts = 0

        def touch(self) -> None:
            self.contacts += 1
            super().touch()

    cache = Counting(NamespaceLimits(max_age_seconds=60), clock=lambda: now[0])
    with labelled(certs, kube, signed_state, tmp_path, cache=cache) as hook:
        # The list, then the watch's answer: from here on, only an event is a contact.
        wait_for("the list and the watch", lambda: cache.contacts >= 2)
        assert decide(hook, no_security_context, "platform-tools")["allowed"] is True
        now[0] += 61  # a minute without a word from the API server
        out = decide(hook, no_security_context, "platform-tools")
        assert out["allowed"] is False
        assert "stale" in out["auditAnnotations"]["namespace-labels"]
        assert labels_status(hook)["fresh"] is False
        kube.apply("other", {})  # any event is a contact: fresh again
        wait_for("a contact", lambda: decide(hook, no_security_context, "platform-tools")["allowed"])


def test_unauthorized_watcher_is_strictest_and_says_why(
    certs: CertFiles, signed_state: tuple[Path, str], tmp_path: Path, no_security_context: dict[str, Any]
) -> None:
    kube = FakeKubeApi(certs).start()
    kube.apply("platform-tools", {"team": "platform"})
    kube.status_override = 403  # no ClusterRole bound
    try:
        with labelled(certs, kube, signed_state, tmp_path) as hook:
            wait_for(
                "a refused list",
                lambda: api_requests(hook, "list", "unauthorized") >= 1,
            )
            out = decide(hook, no_security_context, "platform-tools")
            assert out["allowed"] is False
            assert "ClusterRole" in out["auditAnnotations"]["namespace-labels"]
    finally:
        kube.stop()


# --- hostile answers ----------------------------------------------------------------------------


def test_too_many_labels_make_that_namespace_unknown(
    certs: CertFiles,
    kube: FakeKubeApi,
    signed_state: tuple[Path, str],
    tmp_path: Path,
    no_security_context: dict[str, Any],
) -> None:
    kube.apply("crowded", {"team": "platform", **{f"l{i}": "v" for i in range(300)}})
    with labelled(certs, kube, signed_state, tmp_path) as hook:
        wait_for("the namespace list", lambda: synced(hook))
        out = decide(hook, no_security_context, "crowded")
        assert out["allowed"] is False  # its labels would give baseline: refused, so restricted
        assert "more than 256" in out["auditAnnotations"]["namespace-labels"]
        assert decide(hook, no_security_context, "platform-tools")["allowed"] is True  # others unaffected

        # A namespace known as baseline that is relabelled with refused labels loses its old labels.
        assert decide(hook, no_security_context, "platform-tools")["allowed"] is True
        kube.apply("platform-tools", {"team": "platform", **{f"l{i}": "v" for i in range(300)}})
        wait_for(
            "the refused relabel", lambda: not decide(hook, no_security_context, "platform-tools")["allowed"]
        )
        assert refusals(hook, "labels") >= 2


@pytest.mark.parametrize(
    "labels",
    [
        {"team": ["platform"]},  # not a string
        {"team": "platform", "bad key!": "x"},
        {"team": "platform", "x": "v" * 64},  # values stop at 63
        {"team": "platform", "Example.COM/x": "y"},  # prefixes are lower-case DNS names
        ["team", "platform"],  # not a mapping
    ],
    ids=["value-not-string", "key-syntax", "value-too-long", "prefix-case", "not-a-mapping"],
)
def test_malformed_labels_make_that_namespace_unknown(
    certs: CertFiles,
    kube: FakeKubeApi,
    signed_state: tuple[Path, str],
    tmp_path: Path,
    no_security_context: dict[str, Any],
    labels: Any,
) -> None:
    kube.apply("odd", labels)
    with labelled(certs, kube, signed_state, tmp_path) as hook:
        wait_for("the namespace list", lambda: synced(hook))
        out = decide(hook, no_security_context, "odd")
        assert out["allowed"] is False
        assert "labels of namespace 'odd' refused" in out["auditAnnotations"]["namespace-labels"]
        assert decide(hook, no_security_context, "platform-tools")["allowed"] is True


@pytest.mark.parametrize(
    "line",
    [
        b"{not json}\n",
        b'{"type": "MODIFIED", "type": "MODIFIED", "object": {}}\n',  # duplicate keys
        b'{"type": "MODIFIED", "object": {"metadata": {"name": "platform-tools"}}}\n',  # no resourceVersion
        b'{"type": "SURPRISE", "object": {}}\n',
        b'{"type": "MODIFIED", "object": {"kind": "Secret", "metadata": {"name": "x", "resourceVersion": "9"}}}\n',
        b"[" * 200_000 + b"\n",  # nesting bomb
        b'{"type": "MODIFIED", "object": NaN}\n',
        b"\xff\xfe\x00junk\n",
        b"x" * (3 * 1024 * 1024),  # one event larger than 2 MiB, never ended
    ],
    ids=[
        "junk",
        "duplicate-keys",
        "no-rv",
        "unknown-type",
        "wrong-kind",
        "deep",
        "nan",
        "binary",
        "oversized",
    ],
)
def test_unreadable_watch_event_unsyncs_and_never_loosens(
    certs: CertFiles,
    kube: FakeKubeApi,
    signed_state: tuple[Path, str],
    tmp_path: Path,
    no_security_context: dict[str, Any],
    line: bytes,
) -> None:
    with labelled(certs, kube, signed_state, tmp_path) as hook:
        wait_for("the namespace list", lambda: synced(hook))
        wait_for("the watch", lambda: kube.open_watches() == 1)
        assert decide(hook, no_security_context, "platform-tools")["allowed"] is True
        # What could not be read may have tightened platform-tools: everything is unknown until
        # a fresh list (kept from succeeding here by a broken list).
        kube.list_override = b"<html>proxy error</html>"
        kube.push_raw(line)
        wait_for("the refusal", lambda: not synced(hook))
        out = decide(hook, no_security_context, "platform-tools")
        assert out["allowed"] is False
        assert "refused" in out["auditAnnotations"]["namespace-labels"]
        assert refusals(hook, "unreadable") >= 1
        kube.list_override = None  # the API server is sane again: the watcher recovers by itself
        wait_for("the relist", lambda: decide(hook, no_security_context, "platform-tools")["allowed"])


def _list(items: list[Any], cont: str = "") -> bytes:
    meta = {"resourceVersion": "5", **({"continue": cont} if cont else {})}
    return json.dumps({"kind": "NamespaceList", "metadata": meta, "items": items}).encode()


GOOD_ITEM = {"metadata": {"name": "platform-tools", "resourceVersion": "5", "labels": {"team": "platform"}}}


@pytest.mark.parametrize(
    "body",
    [
        b"\x00" * 100,
        b"{" * 100_000,
        _list([GOOD_ITEM, {"metadata": {"resourceVersion": "5"}}]),  # one item without a name
        _list([GOOD_ITEM], cont="again"),  # a continue token that never ends
        json.dumps({"metadata": {"resourceVersion": "5"}, "items": {"a": 1}}).encode(),
        _list([GOOD_ITEM, {**GOOD_ITEM, "pad": "x" * 200_000}]),  # larger than the page limit
    ],
    ids=["binary", "deep", "nameless-item", "endless-continue", "items-not-list", "oversized"],
)
def test_hostile_list_is_refused_whole(
    certs: CertFiles,
    kube: FakeKubeApi,
    signed_state: tuple[Path, str],
    tmp_path: Path,
    no_security_context: dict[str, Any],
    body: bytes,
) -> None:
    kube.list_override = body
    small = NamespaceLimits(
        max_page_bytes=128 * 1024, max_namespaces=500, page_size=100, backoff_min_seconds=0.05
    )
    with labelled(certs, kube, signed_state, tmp_path, limits=small) as hook:
        wait_for(
            "a refused list",
            lambda: api_requests(hook, "list", "unreadable") >= 1,
        )
        out = decide(hook, no_security_context, "platform-tools")
        assert out["allowed"] is False  # the good item in a refused answer is not believed either
        assert labels_status(hook)["synced"] is False
        assert "refused" in labels_status(hook)["problem"]


def test_namespaces_past_the_limit_stay_unknown(
    certs: CertFiles,
    kube: FakeKubeApi,
    signed_state: tuple[Path, str],
    tmp_path: Path,
    no_security_context: dict[str, Any],
) -> None:
    for name in ("p-a", "p-b", "p-c", "p-d"):
        kube.apply(name, {"team": "platform"})
    # Six namespaces in all, listed in name order two per page: only the first four are kept.
    limits = NamespaceLimits(max_namespaces=4, page_size=2)
    with labelled(certs, kube, signed_state, tmp_path, limits=limits) as hook:
        wait_for("the namespace list", lambda: synced(hook))
        assert [
            decide(hook, no_security_context, n)["allowed"] for n in ("p-a", "p-d", "platform-tools")
        ] == [
            True,
            True,
            False,
        ]
        kube.apply("p-e", {"team": "platform"})  # a new one while full: refused too
        wait_for(
            "the refusal",
            lambda: refusals(hook, "too_many_namespaces") >= 2,
        )
        assert decide(hook, no_security_context, "p-e")["allowed"] is False


# --- configuration ------------------------------------------------------------------------------


def _kubeconfig(tmp_path: Path, cluster: dict[str, Any]) -> Path:
    path = tmp_path / "kc.json"
    path.write_text(
        json.dumps(
            {
                "clusters": [{"name": "c", "cluster": cluster}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    return path


@pytest.mark.parametrize(
    ("cluster", "fragment"),
    [
        ({"server": "http://127.0.0.1:8080"}, "is not https://"),
        ({"server": "https://127.0.0.1:6443", "insecure-skip-tls-verify": True}, "insecure-skip-tls-verify"),
        ({"server": "https://127.0.0.1:6443", "certificate-authority": "/nonexistent/ca.crt"}, "cannot use"),
    ],
    ids=["plain-http", "insecure", "missing-ca"],
)
def test_a_kubeconfig_that_cannot_be_trusted_stops_the_start(
    tmp_path: Path, cluster: dict[str, Any], fragment: str
) -> None:
    # Labels loosen levels: they must come from a verified API server, or the webhook does not start.
    with pytest.raises(ConfigError, match=fragment):
        kube_client(_kubeconfig(tmp_path, cluster))


def test_namespace_label_options_are_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="only used with --namespace-labels"):
        assemble(WebhookConfig(kubeconfig=tmp_path / "kc"))
    with pytest.raises(ConfigError, match="cannot use"):
        assemble(WebhookConfig(namespace_labels=True, kubeconfig=tmp_path / "missing"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(ConfigError, match="the in-cluster service account"):
        assemble(WebhookConfig(namespace_labels=True))  # not in a pod
    with pytest.raises(ConfigError, match="at least 30 seconds"):
        NamespaceLimits(max_age_seconds=5)


def test_serve_command_reads_namespace_labels(
    certs: CertFiles,
    kube: FakeKubeApi,
    signed_state: tuple[Path, str],
    tmp_path: Path,
    no_security_context: dict[str, Any],
) -> None:
    from tests.admission.test_cli import _post, serving

    args = ("--state", str(signed_state[0]), "--trust", signed_state[1])
    kc = str(kube.kubeconfig(tmp_path))
    with serving(certs, *args, "--namespace-labels", "--kubeconfig", kc) as (port, _):
        wait_for("the namespace list", lambda: len(kube.requests(watch=True)) >= 1, seconds=30)
        out = _post(certs, port, in_namespace(no_security_context, "platform-tools"))
        assert out["allowed"] is True
        out = _post(certs, port, in_namespace(no_security_context, "shop"))
        assert out["allowed"] is False


# --- the manifest -------------------------------------------------------------------------------


def test_manifest_grants_only_namespace_reads_to_the_webhook(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from dutyguard.admission.manifest import ManifestOptions, manifests, render

    docs = manifests(ManifestOptions(image="registry.example.com/dg@sha256:" + "ab" * 32, ca_bundle=b"-"))
    by_kind = {d["kind"]: d for d in docs}
    role, binding = by_kind["ClusterRole"], by_kind["ClusterRoleBinding"]
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch"]}
    ]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "dutyguard-admission", "namespace": "dutyguard-system"}
    ]
    pod = by_kind["Deployment"]["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False  # only the webhook container gets a token
    (container,) = pod["containers"]
    assert "--namespace-labels" in container["args"]
    mount = next(m for m in container["volumeMounts"] if m["name"] == "kube-api-access")
    assert mount == {
        "name": "kube-api-access",
        "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
        "readOnly": True,
    }

    # `dutyguard scan --only rbac` finds nothing at high or above on it...
    path = tmp_path / "webhook.yaml"
    path.write_text(render(docs))
    assert cli_main(["scan", "--only", "rbac", "-f", "json", str(path)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["summary"]["resources"] >= 2 and report["errors"] == []
    assert [f for f in report["findings"] if f["severity"] in ("high", "critical")] == []
    # ...and would, had the role reached for more than namespaces.
    role["rules"][0]["resources"] = ["namespaces", "secrets"]
    path.write_text(render(docs))
    assert cli_main(["scan", "--only", "rbac", "-f", "json", str(path)]) == 1
    worse = json.loads(capsys.readouterr().out)
    assert {f["rule_id"] for f in worse["findings"] if f["severity"] == "critical"} >= {"rbac.secrets-read"}

    off = manifests(ManifestOptions(ca_bundle=b"-", namespace_labels=False))
    assert {d["kind"] for d in off}.isdisjoint({"ClusterRole", "ClusterRoleBinding"})
    off_pod = next(d for d in off if d["kind"] == "Deployment")["spec"]["template"]["spec"]
    assert "--namespace-labels" not in off_pod["containers"][0]["args"]
    assert all(v["name"] != "kube-api-access" for v in off_pod["volumes"])
