"""RFC 9457 problem details: the one shape every error of the API takes.

``type`` is a URN per kind of problem (``urn:dutyguard:problem:validation``) so clients can
switch on it; ``errors[]`` names each offending field of a request (``body.ttl_days``) for
validation problems. Nothing a handler raises leaves as a traceback: unexpected exceptions
become a bare 500 problem and are logged, with no detail for the caller.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger("dutyguard.server")

MEDIA_TYPE = "application/problem+json"


class Problem(Exception):
    """Raised by handlers and dependencies; rendered as problem+json."""

    def __init__(
        self,
        status: int,
        kind: str,
        title: str,
        detail: str,
        *,
        errors: Sequence[Mapping[str, object]] = (),
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, object] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.kind = kind
        self.title = title
        self.detail = detail
        self.errors = list(errors)
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})

    def body(self, instance: str) -> dict[str, object]:
        out: dict[str, object] = {
            "type": f"urn:dutyguard:problem:{self.kind}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "instance": instance,
        }
        if self.errors:
            out["errors"] = self.errors
        for k, v in self.extra.items():
            out.setdefault(k, v)
        return out


def unauthorized(detail: str) -> Problem:
    return Problem(
        401, "unauthenticated", "Authentication required", detail, headers={"WWW-Authenticate": "Bearer"}
    )


def forbidden(detail: str, **extra: object) -> Problem:
    return Problem(403, "forbidden", "Not allowed", detail, extra=extra)


def not_found(what: str) -> Problem:
    return Problem(404, "not-found", "Not found", f"{what} does not exist")


def conflict(kind: str, title: str, detail: str, **extra: object) -> Problem:
    return Problem(409, kind, title, detail, extra=extra)


def bad_request(detail: str, field: str | None = None) -> Problem:
    errors = [{"field": field, "message": detail}] if field else []
    return Problem(400, "bad-request", "Bad request", detail, errors=errors)


def render(problem: Problem, instance: str) -> JSONResponse:
    return JSONResponse(
        problem.body(instance), status_code=problem.status, media_type=MEDIA_TYPE, headers=problem.headers
    )


def _field(loc: Sequence[Any]) -> str:
    return ".".join(str(p) for p in loc)


def _validation_problem(exc: RequestValidationError) -> Problem:
    errors: list[dict[str, object]] = []
    malformed = False
    for err in exc.errors():
        kind = str(err.get("type", "invalid"))
        if kind == "json_invalid":
            malformed = True
            errors.append({"field": "body", "message": str(err.get("msg", "")), "code": kind})
            continue
        errors.append({"field": _field(err.get("loc", ())), "message": str(err.get("msg", "")), "code": kind})
    if malformed:
        return Problem(
            400, "malformed-body", "Malformed request body", "the body is not valid JSON", errors=errors
        )
    fields = ", ".join(str(e["field"]) for e in errors[:5])
    return Problem(
        422, "validation", "Invalid request", f"{len(errors)} invalid field(s): {fields}", errors=errors
    )


def install(app: FastAPI) -> None:
    async def on_problem(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Problem)
        return render(exc, request.url.path)

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return render(_validation_problem(exc), request.url.path)

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        kind = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http")
        title = {404: "Not found", 405: "Method not allowed"}.get(exc.status_code, "HTTP error")
        problem = Problem(exc.status_code, kind, title, str(exc.detail), headers=exc.headers)
        return render(problem, request.url.path)

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unexpected error on %s %s", request.method, request.url.path)
        problem = Problem(500, "internal", "Internal error", "the server failed; the error is logged")
        return render(problem, request.url.path)

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)
