"""Hostile bodies, over real HTTPS: a well-formed 4xx or a clear denial, never a crash, a hang or an allow.

Each test also checks the server still answers a normal review afterwards (no state was damaged).
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import time
from typing import Any

import pytest

from dutyguard.admission.app import AdmissionApp
from dutyguard.admission.certs import CertFiles
from dutyguard.admission.decide import Decider
from dutyguard.admission.review import ReviewError, ReviewLimits, nesting_depth, parse_json, read_review
from dutyguard.rules import default_registry
from tests.admission.support import SwitchableProvider, Webhook, pod_request, review, running

PRIVILEGED = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "p", "namespace": "shop"},
    "spec": {
        "containers": [
            {"name": "c", "image": "registry.example/app:1", "securityContext": {"privileged": True}}
        ]
    },
}


def _still_serving(webhook: Webhook) -> None:
    out = webhook.post(review(pod_request(PRIVILEGED, uid="after"))).admission
    assert out["uid"] == "after"
    assert out["allowed"] is False


def _problem(resp: Any, status: int, fragment: str) -> None:
    assert resp.status == status, resp.body
    assert resp.headers["content-type"] == "application/problem+json"
    doc = resp.json
    assert doc["status"] == status
    assert fragment in doc["detail"], doc["detail"]


def test_not_json_is_400(webhook: Webhook) -> None:
    _problem(webhook.post(b"this is not json"), 400, "not valid JSON")
    _still_serving(webhook)


def test_binary_junk_is_400(webhook: Webhook) -> None:
    _problem(webhook.post(bytes(range(256)) * 4), 400, "not UTF-8")


def test_utf16_body_is_refused_not_guessed(webhook: Webhook) -> None:
    # json.loads(bytes) would detect UTF-16 and parse it; the API server only sends UTF-8.
    body = json.dumps(review(pod_request(PRIVILEGED))).encode("utf-16")
    _problem(webhook.post(body), 400, "not UTF-8")


@pytest.mark.parametrize("api_version", ["admission.k8s.io/v1beta1", "v1", None, 1])
def test_wrong_api_version_is_400(webhook: Webhook, api_version: object) -> None:
    doc = review(pod_request(PRIVILEGED))
    doc["apiVersion"] = api_version
    _problem(webhook.post(doc), 400, "apiVersion")


def test_wrong_kind_is_400(webhook: Webhook) -> None:
    doc = review(pod_request(PRIVILEGED))
    doc["kind"] = "AdmissionRequest"
    _problem(webhook.post(doc), 400, "kind is 'AdmissionRequest'")


def test_missing_request_is_400(webhook: Webhook) -> None:
    _problem(
        webhook.post({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}),
        400,
        "request is missing",
    )


def test_a_bare_admission_request_is_400(webhook: Webhook) -> None:
    # Without the envelope it is not an AdmissionReview, even if everything else is right.
    _problem(webhook.post(pod_request(PRIVILEGED)), 400, "unknown field")


@pytest.mark.parametrize("uid", [None, "", 7, "x" * 200, "bad uid\n"])
def test_missing_or_bad_uid_is_400(webhook: Webhook, uid: object) -> None:
    req = pod_request(PRIVILEGED)
    if uid is None:
        del req["uid"]
    else:
        req["uid"] = uid
    resp = webhook.post(review(req))
    assert resp.status == 400
    assert "uid" in resp.json["detail"]


def test_missing_object_is_denied(webhook: Webhook) -> None:
    req = pod_request(PRIVILEGED, uid="no-object")
    del req["object"]
    out = webhook.post(review(req)).admission
    assert out == {
        "uid": "no-object",
        "allowed": False,
        "status": out["status"],
        "auditAnnotations": {"decision": "deny", "reason": "CREATE request without an object"},
    }
    assert "without an object" in out["status"]["message"]


def test_unknown_field_with_a_known_uid_is_a_clear_denial(webhook: Webhook) -> None:
    req = pod_request(PRIVILEGED, uid="odd")
    req["patch"] = "W10="
    resp = webhook.post(review(req))
    out = resp.admission
    assert resp.status == 200
    assert out["uid"] == "odd"
    assert out["allowed"] is False
    assert out["status"]["code"] == 400
    assert "unknown field(s) 'patch'" in out["status"]["message"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("operation", "PATCH"),
        ("operation", 1),
        ("kind", "Pod"),
        ("resource", None),
        ("userInfo", "alice"),
        ("dryRun", "yes"),
    ],
)
def test_wrong_types_are_refused(webhook: Webhook, field: str, value: object) -> None:
    req = pod_request(PRIVILEGED, uid="typed")
    req[field] = value
    out = webhook.post(review(req)).admission
    assert out["allowed"] is False
    assert f"request.{field}" in out["status"]["message"]


def test_oversized_declared_body_is_413(certs: CertFiles) -> None:
    app = AdmissionApp(
        Decider(default_registry()), SwitchableProvider(), limits=ReviewLimits(max_body_bytes=4096)
    )
    with running(app, certs) as hook:
        big = review(
            pod_request({**PRIVILEGED, "metadata": {"name": "p", "annotations": {"a": "x" * 10_000}}})
        )
        _problem(hook.post(big), 413, "larger than 4096 bytes")
        assert app.metrics.rejected_bodies.value("413") == 1


def test_oversized_chunked_body_is_cut_while_reading(certs: CertFiles) -> None:
    # No Content-Length: the server must count bytes as they arrive and stop at the limit.
    app = AdmissionApp(
        Decider(default_registry()), SwitchableProvider(), limits=ReviewLimits(max_body_bytes=4096)
    )
    with running(app, certs) as hook:
        conn = hook.connection()
        conn.putrequest("POST", "/validate")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        chunk = b"[" + b"0," * 1000
        for _ in range(8):
            conn.send(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        r = conn.getresponse()
        assert r.status == 413
        assert b"larger than 4096 bytes" in r.read()
        conn.close()


def test_slow_body_is_cut_off(certs: CertFiles) -> None:
    app = AdmissionApp(
        Decider(default_registry()), SwitchableProvider(), limits=ReviewLimits(body_seconds=0.3)
    )
    with running(app, certs) as hook:
        conn = hook.connection()
        conn.putrequest("POST", "/validate")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", "1000")
        conn.endheaders()
        conn.send(b'{"apiVersion":')  # and then nothing
        started = time.monotonic()
        r = conn.getresponse()
        assert r.status == 408
        assert time.monotonic() - started < 5
        conn.close()


def test_deep_nesting_is_refused_before_parsing(webhook: Webhook) -> None:
    obj = {**PRIVILEGED, "metadata": {"name": "p", "annotations": {}}}
    body = json.dumps(review(pod_request(obj))).encode()
    # 50,000 levels inside the object: json.loads would recurse; the pre-scan refuses it first.
    deep = b"[" * 50_000 + b"]" * 50_000
    body = body.replace(b'"annotations": {}', b'"annotations": {"x": ' + deep + b"}")
    _problem(webhook.post(body), 400, "nested deeper than 100 levels")
    _still_serving(webhook)


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    text = json.dumps({"a": "[[[[{{{{" * 100, "b": ['\\"[[[', {"c": "]]]]"}]}).encode()
    assert nesting_depth(text) == 3
    assert parse_json(text)  # accepted: only real nesting is bounded


def test_duplicate_key_cannot_hide_a_privileged_container(webhook: Webhook) -> None:
    # With duplicates the API server and a lenient parser may read different values; refuse them.
    body = json.dumps(review(pod_request(PRIVILEGED, uid="dup"))).replace(
        '"privileged": true', '"privileged": true, "privileged": false'
    )
    resp = webhook.post(body.encode())
    _problem(resp, 400, "duplicate key 'privileged'")


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_non_json_constants_are_refused(webhook: Webhook, constant: str) -> None:
    body = json.dumps(review(pod_request(PRIVILEGED))).replace('"name": "p"', f'"name": "p", "n": {constant}')
    _problem(webhook.post(body.encode()), 400, "not JSON")


def test_huge_integer_is_refused(webhook: Webhook) -> None:
    body = json.dumps(review(pod_request(PRIVILEGED))).replace(
        '"name": "p"', '"name": "p", "n": ' + "9" * 5000
    )
    _problem(webhook.post(body.encode()), 400, "not valid JSON")


def test_wrong_content_type_is_415(webhook: Webhook) -> None:
    resp = webhook.request(
        "POST",
        "/validate",
        json.dumps(review(pod_request(PRIVILEGED))).encode(),
        {"Content-Type": "text/plain"},
    )
    _problem(resp, 415, "Content-Type")


def test_get_on_validate_is_405(webhook: Webhook) -> None:
    _problem(webhook.request("GET", "/validate"), 405, "POST")


def test_unknown_path_is_404(webhook: Webhook) -> None:
    _problem(
        webhook.request("POST", "/mutate", b"{}", {"Content-Type": "application/json"}), 404, "not found"
    )


@pytest.mark.parametrize(
    ("group", "kind", "resource"),
    [("", "ConfigMap", "configmaps"), ("example.com", "Deployment", "deployments"), ("apps", "Pod", "pods")],
)
def test_unknown_kinds_are_denied(webhook: Webhook, group: str, kind: str, resource: str) -> None:
    req = pod_request({"apiVersion": "v1", "kind": kind, "metadata": {"name": "x"}}, uid="k")
    req["kind"] = {"group": group, "version": "v1", "kind": kind}
    req["resource"] = {"group": group, "version": "v1", "resource": resource}
    out = webhook.post(review(req)).admission
    assert out["allowed"] is False
    assert "should not send it" in out["status"]["message"]


def test_object_claiming_another_kind_is_denied(webhook: Webhook) -> None:
    # The request says Deployment (checked at its template path); the object says Pod.
    req = pod_request(PRIVILEGED, uid="mismatch")
    req["kind"] = {"group": "apps", "version": "v1", "kind": "Deployment"}
    req["resource"] = {"group": "apps", "version": "v1", "resource": "deployments"}
    out = webhook.post(review(req)).admission
    assert out["allowed"] is False
    assert "the object's kind 'Pod' is not the request's 'Deployment'" in out["status"]["message"]


def test_object_in_another_namespace_than_the_request_is_denied(webhook: Webhook) -> None:
    out = webhook.post(review(pod_request(PRIVILEGED, uid="ns", namespace="other"))).admission
    assert out["allowed"] is False
    assert "namespace 'shop' is not the request's 'other'" in out["status"]["message"]


@pytest.mark.parametrize("containers", ["nginx", [["c"]], {"name": "c"}, [None]])
def test_malformed_containers_are_denied_not_skipped(webhook: Webhook, containers: object) -> None:
    obj = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": containers}}
    out = webhook.post(review(pod_request(obj, uid="malformed"))).admission
    assert out["allowed"] is False
    assert "spec.containers" in out["status"]["message"]


def test_lone_surrogates_in_names_do_not_break_the_response(webhook: Webhook) -> None:
    body = json.dumps(review(pod_request(PRIVILEGED, uid="sur"))).replace('"name": "p"', '"name": "p\\ud800"')
    resp = webhook.post(body.encode())
    out = resp.admission
    assert out["allowed"] is False
    assert resp.body.isascii()


def test_garbage_on_the_tls_port_does_not_take_the_server_down(webhook: Webhook) -> None:
    with socket.create_connection(("127.0.0.1", webhook.port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # plaintext HTTP to a TLS port
        with contextlib.suppress(ConnectionError, TimeoutError, ssl.SSLError):
            s.recv(100)
    _still_serving(webhook)


def test_parser_refuses_a_response_review() -> None:
    # A body that carries a response (someone replaying our answer) is not a request.
    doc = review(pod_request(PRIVILEGED))
    doc["response"] = {"uid": "u-1", "allowed": True}
    with pytest.raises(ReviewError, match="unknown field"):
        read_review(json.dumps(doc).encode())
