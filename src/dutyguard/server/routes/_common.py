"""What every router shares: the runtime dependency and the translation of domain refusals.

A governance refusal (SoD conflict, self-approval, missing duty, ...) raised inside a write
transaction rolls that transaction back; :func:`refusals` then records the refusal in a
transaction of its own and answers with a problem carrying the refusal's stable ``code``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Annotated

from fastapi import Depends, Request

from dutyguard.audit.canonical import JSONValue
from dutyguard.errors import (
    ApprovalRefused,
    AuthorizationError,
    BreakglassRefused,
    GovernanceError,
    SoDViolation,
)
from dutyguard.server.auditing import record_refusal
from dutyguard.server.auth import Caller, runtime_of
from dutyguard.server.problems import Problem
from dutyguard.server.runtime import Runtime


async def _runtime(request: Request) -> Runtime:
    # async: a plain attribute read must not cost a trip through the thread pool.
    return runtime_of(request)


RuntimeDep = Annotated[Runtime, Depends(_runtime)]

_FORBIDDEN_CODES = frozenset(
    {
        "forbidden",
        "missing_duty",
        "self_approval",
        "same_team",
        "not_maker",
        "self_review",
        "self_grant",
        "self_mitigation",
        "self_token",
    }
)
_INVALID_CODES = frozenset(
    {
        "reason_required",
        "notes_required",
        "bad_duration",
        "bad_expiry",
        "invalid_outcome",
        "invalid_id",
        "invalid_name",
        "invalid_scope",
        "invalid_time",
        "unknown_team",
        "unknown_rule",
        "invalid_rules",
        "owner_is_subject",
    }
)


def problem_for(e: GovernanceError, **extra: object) -> Problem:
    """HTTP status and problem type for a governance refusal, keyed on its stable code."""
    if isinstance(e, AuthorizationError) or e.code in _FORBIDDEN_CODES:
        status, kind, title = 403, "forbidden", "Not allowed"
    elif e.code in _INVALID_CODES:
        status, kind, title = 422, "invalid", "Refused as invalid"
    elif isinstance(e, SoDViolation):
        status, kind, title = 409, "sod-conflict", "Segregation of duties conflict"
    elif isinstance(e, ApprovalRefused):
        status, kind, title = 409, "approval-refused", "Approval refused"
    elif isinstance(e, BreakglassRefused):
        status, kind, title = 409, "breakglass-refused", "Break-glass refused"
    else:
        status, kind, title = 409, "conflict", "Conflict"
    if isinstance(e, SoDViolation) and e.rule_ids:
        extra.setdefault("rules", list(e.rule_ids))
    return Problem(status, kind, title, e.message, extra={"code": e.code, **extra})


@contextlib.contextmanager
def refusals(
    rt: Runtime,
    caller: Caller,
    action: str,
    obj: str,
    details: Mapping[str, JSONValue] | None = None,
) -> Iterator[None]:
    """Record (and answer) any governance refusal or 403/409 raised inside the block."""
    try:
        yield
    except GovernanceError as e:
        problem = problem_for(e)
        extra: dict[str, JSONValue] = {"code": e.code, "reason": e.message}
        if isinstance(e, SoDViolation) and e.rule_ids:
            extra["rules"] = list(e.rule_ids)
        record_refusal(
            rt,
            actor=caller.id,
            principal=caller.principal,
            action=action,
            obj=obj,
            details={**(details or {}), **extra},
        )
        raise problem from None
    except Problem as p:
        if p.status in (403, 409):
            record_refusal(
                rt,
                actor=caller.id,
                principal=caller.principal,
                action=action,
                obj=obj,
                details={**(details or {}), "code": p.kind, "reason": p.detail},
            )
        raise
