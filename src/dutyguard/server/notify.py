"""Alarms to a webhook, off the request path.

A request that opens break-glass must not wait for (or fail because of) a slow receiver, so
events go on a bounded queue served by one daemon thread that POSTs JSON with a bounded timeout
and a few retries. Events are queued only after the transaction that caused them committed;
the audit entry, not the webhook, is the record (a full queue drops the alarm and logs it).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping

logger = logging.getLogger("dutyguard.server.notify")

_STOP = object()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A receiver that redirects is misconfigured (or hostile): the alarm is not sent elsewhere."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


class Notifier:
    def __init__(
        self, url: str | None, timeout_s: float = 3.0, attempts: int = 3, max_queue: int = 1000
    ) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.attempts = attempts
        self._queue: queue.Queue[object] = queue.Queue(maxsize=max_queue)
        self._thread: threading.Thread | None = None
        self.delivered = 0
        self.failed = 0

    def start(self) -> None:
        if self.url is None or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="dutyguard-notify", daemon=True)
        self._thread.start()

    def send(self, event: Mapping[str, object]) -> None:
        if self.url is None:
            return
        self.start()
        try:
            self._queue.put_nowait(dict(event))
        except queue.Full:
            self.failed += 1
            logger.error("notification queue full; dropped %s", event.get("event"))

    def close(self, wait_s: float = 5.0) -> None:
        """Deliver what is queued (up to ``wait_s``), then stop the thread."""
        if self._thread is None:
            return
        try:
            self._queue.put(_STOP, timeout=wait_s)
        except queue.Full:
            return
        self._thread.join(wait_s)
        self._thread = None

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            assert isinstance(item, dict)
            self._deliver(item)

    def _deliver(self, event: dict[str, object]) -> None:
        assert self.url is not None
        body = json.dumps(event, sort_keys=True).encode()
        for attempt in range(self.attempts):
            req = urllib.request.Request(  # noqa: S310 (the scheme is checked to be http(s) by Settings)
                self.url,
                data=body,
                method="POST",
                headers={"Content-Type": "application/json", "User-Agent": "dutyguard-notify"},
            )
            try:
                with _OPENER.open(req, timeout=self.timeout_s) as resp:
                    if 200 <= resp.status < 300:
                        self.delivered += 1
                        return
            except (urllib.error.URLError, OSError, ValueError) as e:
                logger.warning("notification to webhook failed (attempt %d): %s", attempt + 1, e)
            time.sleep(min(0.5 * 2**attempt, 5.0))
        self.failed += 1
        logger.error("notification %s not delivered after %d attempts", event.get("event"), self.attempts)
