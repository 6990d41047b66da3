"""ASGI middleware that bounds request bodies before any handler sees them.

The body is counted while it streams in, so neither a missing nor a lying ``Content-Length``
lets a client make the server buffer more than ``max_body_bytes``. Bodies of the API are small
JSON documents, so buffering the (bounded) body and replaying it to the app is cheap and keeps
the limit in one place.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_METHODS_WITH_BODY = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_body_bytes: int, larger: Mapping[str, int] | None = None) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        # Exact paths whose documents are larger by nature (policy bundles, gate results, batches).
        self.larger = dict(larger or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.larger.get(scope.get("path", ""), self.max_body_bytes)
        declared = _content_length(scope)
        if declared == -1:
            await _problem(scope, send, 400, "bad-request", "Bad request", "Content-Length is not a number")
            return
        if declared is not None and declared > limit:
            await self._too_large(scope, send, limit)
            return
        if scope.get("method") not in _METHODS_WITH_BODY and not declared:
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await self._too_large(scope, send, limit)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, scope: Scope, send: Send, limit: int) -> None:
        await _problem(
            scope,
            send,
            413,
            "body-too-large",
            "Request body too large",
            f"request bodies are limited to {limit} bytes",
            connection_close=True,
        )


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                n = int(value)
            except ValueError:
                return -1
            return n if n >= 0 else -1
    return None


async def _problem(
    scope: Scope,
    send: Send,
    status: int,
    kind: str,
    title: str,
    detail: str,
    *,
    connection_close: bool = False,
) -> None:
    body = json.dumps(
        {
            "type": f"urn:dutyguard:problem:{kind}",
            "title": title,
            "status": status,
            "detail": detail,
            "instance": scope.get("path", ""),
        }
    ).encode()
    headers = [
        (b"content-type", b"application/problem+json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if connection_close:
        # The rest of the body is never read; the connection cannot be reused.
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
