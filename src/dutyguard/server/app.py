"""The app factory: wire settings, runtime, routers, limits and error handling into one FastAPI app.

``create_app(settings)`` opens the runtime itself (data directory, keys, migrations); tests and
``dutyguard up`` may pass a prepared ``runtime`` instead. The factory refuses to build an app in
which any route lacks an access declaration (default deny, checked before serving anything).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from dutyguard import __version__
from dutyguard.audit.errors import AuditError
from dutyguard.errors import GovernanceError, InputError
from dutyguard.server import problems
from dutyguard.server.auditing import seal_quiet_tail
from dutyguard.server.authz import check_declarations
from dutyguard.server.middleware import BodyLimitMiddleware
from dutyguard.server.routes import (
    admission,
    approvals,
    attestations,
    audit,
    bindings,
    breakglass,
    exceptions,
    identities,
    meta,
    policies,
    sod,
    state,
    tokens,
)
from dutyguard.server.runtime import Runtime, open_runtime
from dutyguard.server.settings import Settings, settings_from_env

logger = logging.getLogger("dutyguard.server")

API_PREFIX = "/api/v1"
LARGER_BODIES = {
    f"{API_PREFIX}/policies/proposals": 2 * 1024 * 1024,  # a bundle may be 1 MB of YAML, JSON-escaped
    f"{API_PREFIX}/attestations": 4 * 1024 * 1024,  # up to 20,000 findings
    f"{API_PREFIX}/admission/decisions": 8 * 1024 * 1024,  # up to 1,000 decisions
}


def create_app(settings: Settings | None = None, *, runtime: Runtime | None = None) -> FastAPI:
    if runtime is None:
        runtime = open_runtime(settings or settings_from_env())
    rt = runtime

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        rt.notifier.start()
        timer = asyncio.create_task(_checkpoint_timer(rt))
        try:
            yield
        finally:
            timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await timer
            rt.notifier.close()

    app = FastAPI(
        title="dutyguard control plane",
        version=__version__,
        description=(
            "Who may do what, segregation of duties, maker-checker approvals, break-glass and the "
            "tamper-evident audit trail. Errors are RFC 9457 problem+json."
        ),
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.runtime = rt
    problems.install(app)
    _install_domain_handlers(app)
    for module in (meta, identities, tokens, bindings, sod, approvals, breakglass, audit):
        app.include_router(module.router, prefix=API_PREFIX)
    for module in (policies, exceptions, state, attestations, admission):  # signed state (issue 4)
        app.include_router(module.router, prefix=API_PREFIX)
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=rt.settings.max_body_bytes, larger=LARGER_BODIES)
    check_declarations(app)
    return app


async def _checkpoint_timer(rt: Runtime) -> None:
    """Seals a quiet trail: entries are covered by a signed checkpoint at most
    ``checkpoint_max_age`` (plus half of it) after they were written, however little else happens."""
    interval = max(rt.settings.checkpoint_max_age.total_seconds() / 2, 0.025)
    while True:
        await asyncio.sleep(interval)
        try:
            size = await asyncio.to_thread(seal_quiet_tail, rt)
        except Exception:  # a failed seal is retried next round; a request would show the cause
            logger.exception("audit checkpoint timer could not sign a checkpoint")
            continue
        if size is not None:
            logger.debug("audit checkpoint timer signed the trail up to entry %d", size)


def _install_domain_handlers(app: FastAPI) -> None:
    async def on_audit(request: Request, exc: Exception) -> JSONResponse:
        logger.error("audit trail refused a write on %s: %s", request.url.path, exc)
        problem = problems.Problem(
            503,
            "audit-integrity",
            "Audit trail refuses writes",
            f"the audit trail failed its integrity check; changes are stopped until it is investigated ({exc})",
        )
        return problems.render(problem, request.url.path)

    async def on_governance(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, GovernanceError)
        from dutyguard.server.routes._common import problem_for

        return problems.render(problem_for(exc), request.url.path)

    async def on_input(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, InputError)
        return problems.render(problems.bad_request(exc.diagnostics()), request.url.path)

    app.add_exception_handler(AuditError, on_audit)
    app.add_exception_handler(GovernanceError, on_governance)
    app.add_exception_handler(InputError, on_input)


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory dutyguard.server.app:app_from_env`` (settings from ``DUTYGUARD_*``)."""
    return create_app(settings_from_env())
