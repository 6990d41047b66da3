"""``admission.k8s.io/v1`` AdmissionReview: bounded JSON in, strict values out, responses back.

Everything here treats the body as hostile. The order of checks is the order of cost:

1. size: the caller counts bytes while reading and stops at ``max_body_bytes`` (HTTP 413);
2. encoding: strict UTF-8 (``json.loads`` on bytes would guess UTF-16/32);
3. depth: a linear pre-scan outside strings refuses nesting past ``max_depth`` *before* the
   recursive C parser runs, so a ``[[[[…`` body costs a scan, not the interpreter's stack;
4. syntax: no ``NaN``/``Infinity``, no duplicate keys (with duplicates, what we evaluate and
   what the API server stores could differ, exactly as in the YAML loader of the CI gate);
5. shape: the envelope and the request are matched field by field against the Kubernetes
   type (``k8s.io/api/admission/v1``); unknown fields are refused, required ones must be there.

Failures before a ``uid`` is known can only be answered with HTTP 400 (a response must echo
the uid); :class:`ReviewError` carries the uid when it was read, so the caller can answer
with a well-formed denial instead. Either way the API server sees a refusal, never an allow.
"""

from __future__ import annotations

import enum
import json
import re
from array import array
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

from dutyguard.errors import InputError

API_VERSION = "admission.k8s.io/v1"
KIND = "AdmissionReview"

_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
# Everything but brackets is deleted; the brackets then become signed +1/-1 bytes.
_DELETE = bytes(b for b in range(256) if b not in b"[]{}")
_SIGNS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")

_UID_MAX = 128
_NAME_MAX = 253


@dataclass(frozen=True, slots=True)
class ReviewLimits:
    max_body_bytes: int = 8 * 1024 * 1024
    """An UPDATE carries the object twice; the API server accepts objects up to 3 MiB."""
    max_depth: int = 100
    """JSON nesting; Pods are ~12 deep, the deepest built-in kinds under 30."""
    body_seconds: float = 10.0
    """Time allowed to receive a body (slow senders are cut off)."""


DEFAULT_REVIEW_LIMITS = ReviewLimits()


class ReviewError(InputError):
    """The body is not an AdmissionReview we can evaluate. ``status`` is the HTTP answer."""

    def __init__(self, reason: str, *, status: int = 400, uid: str | None = None) -> None:
        super().__init__("AdmissionReview", reason)
        self.status = status
        self.uid = uid


class Operation(enum.Enum):
    CREATE = "CREATE"
    UPDATE = "UPDATE"
    DELETE = "DELETE"
    CONNECT = "CONNECT"


@dataclass(frozen=True, slots=True)
class GroupVersionKind:
    group: str
    version: str
    kind: str

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


@dataclass(frozen=True, slots=True)
class GroupVersionResource:
    group: str
    version: str
    resource: str


@dataclass(frozen=True, slots=True)
class UserInfo:
    username: str = ""
    uid: str = ""
    groups: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AdmissionRequest:
    """The request part of an AdmissionReview, typed. ``object`` stays the parsed JSON mapping."""

    uid: str
    kind: GroupVersionKind
    resource: GroupVersionResource
    operation: Operation
    user: UserInfo
    object: Mapping[str, Any] | None
    old_object: Mapping[str, Any] | None = None
    sub_resource: str = ""
    name: str = ""
    namespace: str = ""
    dry_run: bool = False


# --- bounded JSON ------------------------------------------------------------------------------


def nesting_depth(data: bytes) -> int:
    """Deepest ``[``/``{`` nesting of a JSON text, ignoring brackets inside strings.

    Linear and iterative: strings are cut out by one regular expression, the remaining brackets
    are mapped to +1/-1 and summed in C. A text with unbalanced brackets is not JSON and is
    refused by the parser afterwards; here it only needs to not be under-counted.
    """
    brackets = _STRING.sub(b"", data).translate(None, _DELETE)
    if not brackets:
        return 0
    return max(accumulate(array("b", brackets.translate(_SIGNS))))


def _no_constants(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"duplicate key {key[:80]!r}")
            seen.add(key)
    return out


def parse_json(data: bytes, limits: ReviewLimits = DEFAULT_REVIEW_LIMITS) -> object:
    """Strict, bounded JSON: UTF-8 only, depth-checked before parsing, no duplicate keys."""
    if len(data) > limits.max_body_bytes:
        raise ReviewError(f"body larger than {limits.max_body_bytes} bytes", status=413)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ReviewError(f"body is not UTF-8 (byte {e.start})") from None
    depth = nesting_depth(data)
    if depth > limits.max_depth:
        raise ReviewError(f"JSON nested deeper than {limits.max_depth} levels")
    try:
        return json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constants)
    except RecursionError:  # unreachable after the depth check; kept so nothing escapes as a crash
        raise ReviewError(f"JSON nested deeper than {limits.max_depth} levels") from None
    except ValueError as e:  # JSONDecodeError, duplicate keys, constants, oversized integers
        raise ReviewError(f"body is not valid JSON: {_short(str(e))}") from None


# --- strict shape ------------------------------------------------------------------------------

_REVIEW_FIELDS = frozenset({"apiVersion", "kind", "request"})
_REQUEST_FIELDS = frozenset(
    {
        "uid",
        "kind",
        "resource",
        "subResource",
        "requestKind",
        "requestResource",
        "requestSubResource",
        "name",
        "namespace",
        "operation",
        "userInfo",
        "object",
        "oldObject",
        "dryRun",
        "options",
    }
)
_GVK_FIELDS = frozenset({"group", "version", "kind"})
_GVR_FIELDS = frozenset({"group", "version", "resource"})
_USER_FIELDS = frozenset({"username", "uid", "groups", "extra"})
_PRINTABLE = re.compile(r"^[\x21-\x7e]+$")


def _short(text: str, limit: int = 200) -> str:
    text = text.replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _unknown(where: str, value: Mapping[str, Any], allowed: frozenset[str], uid: str | None) -> None:
    extra = sorted(set(value) - allowed)
    if extra:
        names = ", ".join(repr(_short(k, 60)) for k in extra[:5])
        raise ReviewError(f"{where}: unknown field(s) {names}", uid=uid)


def _str(where: str, value: object, uid: str | None, *, required: bool = True, limit: int = _NAME_MAX) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        what = "missing" if value is None else f"not a string ({type(value).__name__})"
        raise ReviewError(f"{where} is {what}", uid=uid)
    if len(value) > limit:
        raise ReviewError(f"{where} is longer than {limit} characters", uid=uid)
    return value


def _map(where: str, value: object, uid: str | None) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        what = "missing" if value is None else f"not an object ({type(value).__name__})"
        raise ReviewError(f"{where} is {what}", uid=uid)
    return value


def _gvk(where: str, value: object, uid: str) -> GroupVersionKind:
    m = _map(where, value, uid)
    _unknown(where, m, _GVK_FIELDS, uid)
    # Go's GroupVersionKind always serialises "group"; tools that build requests by hand often
    # drop it for the core group, which is what an empty group means anyway.
    return GroupVersionKind(
        group=_str(f"{where}.group", m.get("group"), uid, required=False),
        version=_str(f"{where}.version", m.get("version"), uid),
        kind=_str(f"{where}.kind", m.get("kind"), uid),
    )


def _gvr(where: str, value: object, uid: str) -> GroupVersionResource:
    m = _map(where, value, uid)
    _unknown(where, m, _GVR_FIELDS, uid)
    return GroupVersionResource(
        group=_str(f"{where}.group", m.get("group"), uid, required=False),
        version=_str(f"{where}.version", m.get("version"), uid),
        resource=_str(f"{where}.resource", m.get("resource"), uid),
    )


def _user(value: object, uid: str) -> UserInfo:
    m = _map("request.userInfo", value, uid)
    _unknown("request.userInfo", m, _USER_FIELDS, uid)
    groups = m.get("groups")
    if groups is None:
        groups = []
    if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
        raise ReviewError("request.userInfo.groups is not a list of strings", uid=uid)
    extra = m.get("extra")
    if extra is not None and not isinstance(extra, dict):
        raise ReviewError("request.userInfo.extra is not an object", uid=uid)
    return UserInfo(
        username=_str("request.userInfo.username", m.get("username"), uid, required=False, limit=1024),
        uid=_str("request.userInfo.uid", m.get("uid"), uid, required=False, limit=1024),
        groups=tuple(groups),
    )


def _object(where: str, value: object, uid: str) -> Mapping[str, Any] | None:
    if value is None:
        return None
    return _map(where, value, uid)


def parse_review(doc: object) -> AdmissionRequest:
    """The typed request of an AdmissionReview, or :class:`ReviewError` naming the first problem."""
    review = _map("the body", doc, None)
    _unknown("AdmissionReview", review, _REVIEW_FIELDS, None)
    if review.get("apiVersion") != API_VERSION:
        raise ReviewError(
            f"apiVersion is {_short(repr(review.get('apiVersion')), 80)}, expected {API_VERSION!r} "
            "(set admissionReviewVersions: [v1] in the webhook configuration)"
        )
    if review.get("kind") != KIND:
        raise ReviewError(f"kind is {_short(repr(review.get('kind')), 80)}, expected {KIND!r}")
    req = _map("request", review.get("request"), None)

    raw_uid = req.get("uid")
    uid = _str("request.uid", raw_uid, None, limit=_UID_MAX)
    if not _PRINTABLE.match(uid):
        raise ReviewError("request.uid is empty or not printable ASCII")
    _unknown("request", req, _REQUEST_FIELDS, uid)

    op_text = _str("request.operation", req.get("operation"), uid, limit=16)
    try:
        operation = Operation(op_text)
    except ValueError:
        raise ReviewError(
            f"request.operation {_short(op_text, 20)!r} is not an admission operation", uid=uid
        ) from None

    for optional_gvk in ("requestKind",):
        if req.get(optional_gvk) is not None:
            _gvk(f"request.{optional_gvk}", req[optional_gvk], uid)
    if req.get("requestResource") is not None:
        _gvr("request.requestResource", req["requestResource"], uid)
    for text_field in ("requestSubResource",):
        _str(f"request.{text_field}", req.get(text_field), uid, required=False)
    options = req.get("options")
    if options is not None:
        _map("request.options", options, uid)
    dry_run = req.get("dryRun", False)
    if dry_run is None:
        dry_run = False
    if not isinstance(dry_run, bool):
        raise ReviewError("request.dryRun is not a boolean", uid=uid)

    return AdmissionRequest(
        uid=uid,
        kind=_gvk("request.kind", req.get("kind"), uid),
        resource=_gvr("request.resource", req.get("resource"), uid),
        operation=operation,
        user=_user(req.get("userInfo"), uid),
        object=_object("request.object", req.get("object"), uid),
        old_object=_object("request.oldObject", req.get("oldObject"), uid),
        sub_resource=_str("request.subResource", req.get("subResource"), uid, required=False),
        name=_str("request.name", req.get("name"), uid, required=False),
        namespace=_str("request.namespace", req.get("namespace"), uid, required=False),
        dry_run=dry_run,
    )


def read_review(data: bytes, limits: ReviewLimits = DEFAULT_REVIEW_LIMITS) -> AdmissionRequest:
    return parse_review(parse_json(data, limits))


# --- responses ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AdmissionResponse:
    uid: str
    allowed: bool
    message: str = ""
    code: int = 200
    reason: str = ""
    warnings: tuple[str, ...] = ()
    audit_annotations: Mapping[str, str] | None = None

    def to_json(self) -> dict[str, Any]:
        response: dict[str, Any] = {"uid": self.uid, "allowed": self.allowed}
        if not self.allowed:
            response["status"] = {
                "status": "Failure",
                "code": self.code,
                "reason": self.reason or "Forbidden",
                "message": self.message,
            }
        elif self.message:
            response["status"] = {"status": "Success", "code": 200, "message": self.message}
        if self.warnings:
            response["warnings"] = list(self.warnings)
        if self.audit_annotations:
            response["auditAnnotations"] = dict(self.audit_annotations)
        return {"apiVersion": API_VERSION, "kind": KIND, "response": response}

    def to_bytes(self) -> bytes:
        # ensure_ascii: object names can hold lone surrogates; escaped they are still valid JSON
        return json.dumps(self.to_json(), separators=(",", ":")).encode("ascii")
