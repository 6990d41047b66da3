"""The controlled changes the server can apply once maker-checker approves them.

Each kind names its approval policy (``governance.approvals``), the duty needed to read its
requests, and how to apply the approved payload inside the transaction of the deciding vote. A
kind is registered explicitly; a duplicate id is an error. Features (policy bundles, exceptions)
register their own kinds with the registry they are given by the app factory.

Applying re-checks that the stored payload still hashes to the digest the checkers approved, so
a payload edited in the database after approval is refused rather than applied.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy.engine import Connection

from dutyguard.audit.canonical import JSONValue
from dutyguard.errors import GovernanceError, RegistryError
from dutyguard.governance.approvals import ApprovalKind, ApprovalPolicy, default_policy
from dutyguard.governance.duties import Duty
from dutyguard.governance.sod import parse_rules_text
from dutyguard.server import store

if TYPE_CHECKING:
    from dutyguard.server.runtime import Runtime

Apply = Callable[["Runtime", Connection, store.StoredRequest, datetime], dict[str, JSONValue]]


@dataclass(frozen=True, slots=True)
class KindHandler:
    kind: str
    policy: ApprovalPolicy
    read_duty: Duty
    apply: Apply


class ApprovalKinds:
    def __init__(self) -> None:
        self._kinds: dict[str, KindHandler] = {}

    def register(self, handler: KindHandler) -> None:
        if handler.kind in self._kinds:
            raise RegistryError(f"approval kind {handler.kind!r} is already registered")
        if handler.policy.kind != handler.kind:
            raise RegistryError(f"approval kind {handler.kind!r} has a policy for {handler.policy.kind!r}")
        self._kinds[handler.kind] = handler

    def get(self, kind: str) -> KindHandler | None:
        return self._kinds.get(kind)

    def __iter__(self) -> Iterator[KindHandler]:
        return iter(self._kinds.values())


# -- sod.rules.change ---------------------------------------------------------------------------


def rules_payload(document: str, base_version: int) -> str:
    return json.dumps({"base_version": base_version, "document": document}, sort_keys=True)


def apply_rules_change(
    rt: Runtime, conn: Connection, stored: store.StoredRequest, now: datetime
) -> dict[str, JSONValue]:
    try:
        payload = json.loads(stored.payload)
        document = payload["document"]
        base_version = payload["base_version"]
    except (ValueError, KeyError, TypeError):
        raise GovernanceError(
            "invalid_request", f"request {stored.request.id}: stored payload is unreadable"
        ) from None
    if not isinstance(document, str) or not isinstance(base_version, int):
        raise GovernanceError("invalid_request", f"request {stored.request.id}: stored payload is unreadable")
    rules = parse_rules_text(document, f"approval {stored.request.id}", rt.roles)
    if rules.digest != stored.request.subject_digest:
        raise GovernanceError(
            "stale_subject", f"request {stored.request.id}: the stored rules are not the ones approved"
        )
    current = store.current_rules(conn, rt.shipped_rules, rt.roles)
    if current.version != base_version:
        # Applying would silently undo the change approved in between.
        raise GovernanceError(
            "stale_base",
            f"request {stored.request.id} was proposed against rules v{base_version}; v{current.version} is in force now",
        )
    store.insert_rules(conn, current.version + 1, rules, stored.request.id, now)
    return {"rules_version": current.version + 1, "rules_digest": rules.digest}


def default_kinds() -> ApprovalKinds:
    kinds = ApprovalKinds()
    kinds.register(
        KindHandler(
            kind=ApprovalKind.SOD_RULES_CHANGE.value,
            policy=default_policy(ApprovalKind.SOD_RULES_CHANGE),
            read_duty=Duty.SOD_READ,
            apply=apply_rules_change,
        )
    )
    return kinds


def digest_of(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
