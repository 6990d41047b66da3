"""The exception (waiver) value type, as it travels in a signed exception snapshot.

An exception lets one rule's findings pass the gate within a scope, until it expires. The
scope is narrow by default:

- ``fingerprint`` (optionally with ``app``): one problem in one resource, wherever its lines move;
- a selector of ``app``, ``namespace``, ``imageDigest`` and ``cluster`` (every field given
  must match; at least one is given): the rule's findings in that app / namespace / image /
  cluster.

A selector that pins neither an app nor an image digest can span many teams' workloads: that
scope is *wide* and needs the bundle's larger ``wideScopeQuorum``. An exception for a rule
everywhere does not exist: that is a policy change (exclude the rule in the bundle).

Invariants checked on every value (also when read from a snapshot): the requester never
approves, each approver counts once, expiry is after approval. Quorum and maximum duration
depend on the finding's severity and the bundle in force, so the matcher checks them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from dutyguard.errors import InputError
from dutyguard.trust._time import format_time, parse_time

MAX_TEXT = 4096
MAX_APPROVERS = 32

_EXC_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_RULE_ID = re.compile(r"[a-z0-9]+(?:[.-][a-z0-9]+)*")
_FINGERPRINT = re.compile(r"[0-9a-f]{32}")
_PRINCIPAL = re.compile(r"[a-z0-9][a-z0-9._@+-]{0,63}")
_DNS = re.compile(r"(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*")
_NAMESPACE = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")

SCOPE_FIELDS = ("fingerprint", "app", "namespace", "imageDigest", "cluster")
_SCOPE_SET = frozenset(SCOPE_FIELDS)
FIELDS = (
    "id",
    "ruleId",
    "scope",
    "requester",
    "approvers",
    "justification",
    "compensatingControl",
    "approvedAt",
    "expires",
)
_FIELD_SET = frozenset(FIELDS)


class InvalidException(InputError):
    """An exception record is malformed or breaks an invariant (``source`` names the record)."""


@dataclass(frozen=True, slots=True)
class ExceptionScope:
    fingerprint: str | None = None
    app: str | None = None
    namespace: str | None = None
    image_digest: str | None = None
    cluster: str | None = None

    @property
    def wide(self) -> bool:
        """Whether the scope can reach beyond one app or one image."""
        return self.fingerprint is None and self.app is None and self.image_digest is None

    def to_json(self) -> dict[str, str]:
        out = {
            "fingerprint": self.fingerprint,
            "app": self.app,
            "namespace": self.namespace,
            "imageDigest": self.image_digest,
            "cluster": self.cluster,
        }
        return {k: v for k, v in out.items() if v is not None}

    def describe(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.to_json().items())


@dataclass(frozen=True, slots=True)
class ExceptionGrant:
    """An approved exception. Build with :meth:`create` or :meth:`from_json` (both validate)."""

    id: str
    rule_id: str
    scope: ExceptionScope
    requester: str
    approvers: tuple[str, ...]
    justification: str
    compensating_control: str
    approved_at: datetime
    expires: datetime

    def __post_init__(self) -> None:
        where = f"exception {self.id!r}"
        if not _EXC_ID.fullmatch(self.id):
            raise InvalidException(where, "id must be 1-64 letters, digits, '.', '_' or '-'")
        if not _RULE_ID.fullmatch(self.rule_id):
            raise InvalidException(where, f"ruleId {self.rule_id!r} is not a rule id")
        _check_scope(self.scope, where)
        approvers = self.approvers
        if not approvers:
            raise InvalidException(where, "has no approver")
        if len(approvers) > MAX_APPROVERS:
            raise InvalidException(where, f"more than {MAX_APPROVERS} approvers")
        for who in (self.requester, *approvers):
            if not _PRINCIPAL.fullmatch(who):
                raise InvalidException(where, f"{who!r} is not a principal id")
        if len(set(approvers)) != len(approvers):
            raise InvalidException(where, "an approver is counted twice")
        if self.requester in approvers:
            raise InvalidException(where, f"approved by its own requester {self.requester!r}")
        for name, text in (
            ("justification", self.justification),
            ("compensatingControl", self.compensating_control),
        ):
            if len(text) > MAX_TEXT:
                raise InvalidException(where, f"{name} is longer than {MAX_TEXT} characters")
            if not text.strip():
                raise InvalidException(where, f"{name} is empty")
        if self.approved_at.tzinfo is None or self.expires.tzinfo is None:
            raise InvalidException(where, "times must be timezone-aware")
        if self.expires <= self.approved_at:
            raise InvalidException(where, "expires before it was approved")

    @property
    def wide(self) -> bool:
        return self.scope.wide

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "ruleId": self.rule_id,
            "scope": self.scope.to_json(),
            "requester": self.requester,
            "approvers": list(self.approvers),
            "justification": self.justification,
            "compensatingControl": self.compensating_control,
            "approvedAt": format_time(self.approved_at),
            "expires": format_time(self.expires),
        }

    @classmethod
    def from_json(cls, value: object, source: str) -> ExceptionGrant:
        if not isinstance(value, dict):
            raise InvalidException(source, "an exception is a JSON object")
        if len(value) != len(FIELDS) or not _FIELD_SET.issuperset(value):
            unknown = sorted(set(value) - _FIELD_SET)
            missing = [k for k in FIELDS if k not in value]
            raise InvalidException(
                source,
                f"unknown field(s) {', '.join(unknown)}"
                if unknown
                else f"missing field(s) {', '.join(missing)}",
            )
        scope = value["scope"]
        if not isinstance(scope, dict) or not _SCOPE_SET.issuperset(scope):
            raise InvalidException(source, f"scope must be an object with some of {', '.join(SCOPE_FIELDS)}")
        for v in scope.values():
            if not isinstance(v, str):
                raise InvalidException(source, "scope values must be strings")
        approvers = value["approvers"]
        if not isinstance(approvers, list) or not all(isinstance(a, str) for a in approvers):
            raise InvalidException(source, "approvers must be a list of principal ids")
        for k in ("id", "ruleId", "requester", "justification", "compensatingControl"):
            if not isinstance(value[k], str):
                raise InvalidException(source, f"{k} must be a string")
        try:
            return cls(
                id=value["id"],
                rule_id=value["ruleId"],
                scope=ExceptionScope(
                    fingerprint=scope.get("fingerprint"),
                    app=scope.get("app"),
                    namespace=scope.get("namespace"),
                    image_digest=scope.get("imageDigest"),
                    cluster=scope.get("cluster"),
                ),
                requester=value["requester"],
                approvers=tuple(approvers),
                justification=value["justification"],
                compensating_control=value["compensatingControl"],
                approved_at=parse_time(value["approvedAt"]),
                expires=parse_time(value["expires"]),
            )
        except InvalidException as e:
            raise InvalidException(source, e.reason) from None
        except ValueError as e:  # a timestamp
            raise InvalidException(source, str(e)) from None


def _check_scope(scope: ExceptionScope, where: str) -> None:
    fp, app, ns, digest, cluster = (
        scope.fingerprint,
        scope.app,
        scope.namespace,
        scope.image_digest,
        scope.cluster,
    )
    if fp is not None and not _FINGERPRINT.fullmatch(fp):
        raise InvalidException(where, f"scope.fingerprint {fp!r} is not 32 lower-case hex digits")
    if app is not None and not _DNS.fullmatch(app):
        raise InvalidException(where, f"scope.app {app!r} is not a lower-case DNS name")
    if ns is not None and not _NAMESPACE.fullmatch(ns):
        raise InvalidException(where, f"scope.namespace {ns!r} is not a namespace name")
    if digest is not None and not _DIGEST.fullmatch(digest):
        raise InvalidException(where, f"scope.imageDigest {digest!r} is not sha256:<64 hex digits>")
    if cluster is not None and not _DNS.fullmatch(cluster):
        raise InvalidException(where, f"scope.cluster {cluster!r} is not a lower-case DNS name")
    if fp is not None:
        extra = [
            n for n, v in (("namespace", ns), ("imageDigest", digest), ("cluster", cluster)) if v is not None
        ]
        if extra:
            raise InvalidException(
                where, f"a fingerprint scope can only be narrowed by app, not by {', '.join(extra)}"
            )
    elif app is None and ns is None and digest is None and cluster is None:
        raise InvalidException(
            where, "scope is empty: an exception for a rule everywhere is a policy change, not an exception"
        )
