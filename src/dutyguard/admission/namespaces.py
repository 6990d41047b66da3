"""Namespace labels from the Kubernetes API, so label-selected Pod Security levels apply exactly.

pod-security-admission reads a namespace's labels; an AdmissionReview does not carry them. With
``admission serve --namespace-labels`` a background thread keeps a cache of namespace name ->
labels in step with the API server (list, then watch from the list's resourceVersion, the way an
informer does) and the decision asks it for the namespace of each request.

Invariants:

* **Unknown means strictest.** A namespace not in the cache (created a moment ago, its event not
  seen yet), a cache never synced, a cache whose last contact with the API server is older than
  ``max_age_seconds``, a namespace whose labels were refused: the lookup answers "unknown" and the
  decision keeps the strictest level that could apply (what it does without this module). So a
  new namespace can never get a looser level than its labels would give.
* **A refused update forgets.** A namespace whose new labels are refused (too many, malformed)
  becomes unknown; its older, possibly looser labels are never kept. A watch stream that sends
  something unreadable (junk, oversized) may have hidden any event, so the whole cache becomes
  unsynced until a fresh list.
* **A list replaces everything at once** (namespaces deleted while the watch was down go away).
  ``410 Gone`` (the watch's resourceVersion was compacted) means relist.
* **The request path only reads:** one dict lookup and a clock read. The thread is the only
  writer; it replaces the dict on a list and changes single keys on events, each step atomic
  under the GIL, so no lock is shared with the request path and no I/O is ever waited on there.

lightkube supplies the connection: kubeconfig or in-cluster service-account configuration, the
CA, and a bearer token re-read from its file when the API server answers 401 (projected tokens
rotate). The bodies are read here, not by lightkube's list/watch helpers, so that bytes are
counted while streaming and every field is checked before it is believed (DESIGN §8).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import random
import re
import socket
import threading
import time
from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol

from dutyguard.admission.metrics import Counter, Gauge
from dutyguard.admission.review import nesting_depth
from dutyguard.errors import ConfigError, DutyguardError

if TYPE_CHECKING:
    import httpx2

    from dutyguard.core.policy import Policy

logger = logging.getLogger("dutyguard.admission")

NAMESPACES_PATH = "/api/v1/namespaces"


@dataclass(frozen=True, slots=True)
class NamespaceLimits:
    """Bounds on what the API server's answers may make the webhook hold or read."""

    max_namespaces: int = 10_000
    """Kubernetes' scalability thresholds stop at 10,000 namespaces per cluster. Namespaces past
    the bound are refused (logged, counted) and stay unknown: strictest."""
    max_labels: int = 256
    """Labels per namespace. Kubernetes bounds their sizes (key name 63, prefix 253, value 63
    characters), not their number; real namespaces have a handful."""
    max_event_bytes: int = 2 * 1024 * 1024
    """One watch event: etcd keeps objects up to 1.5 MiB, plus the envelope."""
    max_page_bytes: int = 32 * 1024 * 1024
    """One page of the list (``page_size`` namespaces)."""
    page_size: int = 250
    max_depth: int = 64
    """JSON nesting of one event or page (a Namespace with managedFields is about 10 deep)."""
    max_age_seconds: float = 180.0
    """Past this long without a word from the API server the labels are stale: unknown."""
    connect_seconds: float = 10.0
    backoff_min_seconds: float = 0.5
    backoff_max_seconds: float = 30.0

    def __post_init__(self) -> None:
        if self.max_age_seconds < 30:
            raise ConfigError("the namespace label cache's maximum age must be at least 30 seconds")
        if self.max_namespaces < 1 or self.max_labels < 1 or self.page_size < 1:
            raise ConfigError("namespace label limits must be positive")

    @property
    def watch_seconds(self) -> int:
        """``timeoutSeconds`` of each watch: a healthy, idle watch ends and reconnects (a contact)
        well within ``max_age_seconds``."""
        return max(10, int(self.max_age_seconds / 3))

    @property
    def read_seconds(self) -> float:
        """How long a watch may stay silent before its connection is presumed dead."""
        return self.watch_seconds + self.max_age_seconds / 6


DEFAULT_NAMESPACE_LIMITS = NamespaceLimits()


# --- what a request sees -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NamespaceLabels:
    """The labels of one namespace as the webhook knows them, or why they are unknown."""

    labels: Mapping[str, str] | None
    """``None``: unknown (the decision keeps the strictest level that could apply)."""
    digest: str = ""
    """Identifies the label set (sha256 of its canonical JSON), for caching per label set."""
    unknown_because: str = ""


class NamespaceLabelSource(Protocol):
    def lookup(self, namespace: str) -> NamespaceLabels: ...


def _digest(labels: Mapping[str, str]) -> str:
    data = json.dumps(sorted(labels.items()), ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(data.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def known(labels: Mapping[str, str]) -> NamespaceLabels:
    frozen = MappingProxyType(dict(labels))
    return NamespaceLabels(frozen, _digest(frozen))


def unknown(why: str) -> NamespaceLabels:
    return NamespaceLabels(None, unknown_because=why)


# --- the cache ---------------------------------------------------------------------------------


class NamespaceCache:
    """Namespace name -> labels, read by requests and written by one :class:`NamespaceWatcher`."""

    def __init__(
        self, limits: NamespaceLimits = DEFAULT_NAMESPACE_LIMITS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limits = limits
        self._clock = clock
        self._entries: dict[str, NamespaceLabels] = {}
        self._synced = False
        self._why_not = "no namespace list received from the API server yet"
        self._contact: float | None = None
        self.lookups = Counter(
            "dutyguard_admission_namespace_label_lookups_total",
            "Namespace label lookups by decisions, by result: known, or why unknown (not_synced, stale, "
            "not_seen, refused); unknown labels mean the strictest Pod Security level that could apply.",
            ("result",),
        )
        self.refused = Counter(
            "dutyguard_admission_namespace_labels_refused_total",
            "Namespaces or watch events refused, by reason (too_many_namespaces, labels, unreadable).",
            ("reason",),
        )

    # The request path.
    def lookup(self, namespace: str) -> NamespaceLabels:
        if not self._synced:
            self.lookups.inc("not_synced")
            return unknown(f"namespace labels not synced with the API server: {self._why_not}")
        age = self.age_seconds()
        if age is None or age > self.limits.max_age_seconds:
            self.lookups.inc("stale")
            return unknown(
                f"namespace labels are stale: no word from the API server for {age or 0:.0f} s "
                f"(limit {self.limits.max_age_seconds:g} s)"
            )
        entry = self._entries.get(namespace)
        if entry is None:
            self.lookups.inc("not_seen")
            return unknown(f"namespace {namespace[:63]!r} not seen from the API server yet")
        self.lookups.inc("known" if entry.labels is not None else "refused")
        return entry

    def age_seconds(self) -> float | None:
        contact = self._contact
        return None if contact is None else max(0.0, self._clock() - contact)

    @property
    def synced(self) -> bool:
        return self._synced

    def __len__(self) -> int:
        return len(self._entries)

    def status(self) -> dict[str, object]:
        """For ``/readyz``."""
        age = self.age_seconds()
        fresh = self._synced and age is not None and age <= self.limits.max_age_seconds
        return {
            "synced": self._synced,
            "fresh": fresh,
            "namespaces": len(self._entries),
            "ageSeconds": None if age is None else round(age, 1),
            "problem": None if self._synced else self._why_not,
        }

    # The watcher's side.
    def touch(self) -> None:
        self._contact = self._clock()

    def replace(self, entries: dict[str, NamespaceLabels]) -> None:
        self._entries = entries
        self._synced = True
        self.touch()

    def put(self, name: str, entry: NamespaceLabels) -> None:
        if name not in self._entries and len(self._entries) >= self.limits.max_namespaces:
            self.refused.inc("too_many_namespaces")
            logger.error(
                "namespace %r not cached: more than %d namespaces; its labels stay unknown (strictest level)",
                name,
                self.limits.max_namespaces,
            )
            return
        self._entries[name] = entry
        self.touch()

    def delete(self, name: str) -> None:
        self._entries.pop(name, None)
        self.touch()

    def unsync(self, why: str) -> None:
        self._synced = False
        self._why_not = why
        self._entries = {}


# --- reading the API server's answers ----------------------------------------------------------

_NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_KEY_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")
_PREFIX = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*")
_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?")


class NamespaceApiError(DutyguardError):
    """The API server could not be read, refused us, or answered something we cannot believe."""

    def __init__(self, message: str, result: str) -> None:
        super().__init__(message)
        self.result = result
        """``unreachable``, ``unauthorized``, ``error`` or ``unreadable`` (a metric label)."""


class _Gone(DutyguardError):
    """410: the resourceVersion we asked from is compacted away; list again."""


def _unreadable(what: str) -> NamespaceApiError:
    return NamespaceApiError(what, "unreadable")


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise ValueError("duplicate key")
    return out


def strict_json(data: bytes, limits: NamespaceLimits, what: str) -> object:
    """UTF-8, depth-checked before parsing, no duplicate keys, no NaN."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise _unreadable(f"{what} is not UTF-8") from None
    if nesting_depth(data) > limits.max_depth:
        raise _unreadable(f"{what} is nested deeper than {limits.max_depth} levels")
    try:
        return json.loads(text, object_pairs_hook=_unique, parse_constant=_no_constant)
    except (ValueError, RecursionError) as e:
        raise _unreadable(f"{what} is not valid JSON ({str(e)[:120]})") from None


def valid_label(key: object, value: object) -> bool:
    """Kubernetes' label syntax: ``[prefix/]name`` (prefix a DNS subdomain ≤ 253, name ≤ 63) and a
    value of at most 63 characters. The API server never stores anything else."""
    if not isinstance(key, str) or not isinstance(value, str) or len(value) > 63:
        return False
    prefix, slash, name = key.rpartition("/")
    if slash and (len(prefix) > 253 or not _PREFIX.fullmatch(prefix)):
        return False
    return bool(_KEY_NAME.fullmatch(name)) and bool(_VALUE.fullmatch(value))


@dataclass(frozen=True, slots=True)
class _Namespace:
    name: str
    resource_version: str
    entry: NamespaceLabels


def read_namespace(obj: object, limits: NamespaceLimits) -> _Namespace:
    """One Namespace object. Without a valid name and resourceVersion the answer is unreadable
    (nothing can be attributed); labels that break Kubernetes' own rules make that namespace
    unknown."""
    if not isinstance(obj, dict):
        raise _unreadable("a namespace is not an object")
    kind = obj.get("kind")
    if kind is not None and kind != "Namespace":
        raise _unreadable(f"an object of kind {str(kind)[:40]!r} where a Namespace was expected")
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        raise _unreadable("a namespace without metadata")
    name, rv = meta.get("name"), meta.get("resourceVersion")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise _unreadable("a namespace without a valid name")
    if not isinstance(rv, str) or not 0 < len(rv) <= 64:
        raise _unreadable(f"namespace {name!r} without a valid resourceVersion")
    labels = meta.get("labels")
    if labels is None:
        return _Namespace(name, rv, known({}))
    problem = ""
    if not isinstance(labels, dict):
        problem = "labels are not a mapping"
    elif len(labels) > limits.max_labels:
        problem = f"{len(labels)} labels, more than {limits.max_labels}"
    elif not all(valid_label(k, v) for k, v in labels.items()):
        problem = "a label breaks Kubernetes' label syntax"
    if problem:
        return _Namespace(name, rv, unknown(f"labels of namespace {name!r} refused: {problem}"))
    return _Namespace(name, rv, known(labels))


@dataclass(frozen=True, slots=True)
class WatchEvent:
    type: str
    """ADDED, MODIFIED, DELETED or BOOKMARK (an ERROR raises)."""
    resource_version: str
    namespace: _Namespace | None = None


def read_event(line: bytes, limits: NamespaceLimits) -> WatchEvent:
    doc = strict_json(line, limits, "a watch event")
    if not isinstance(doc, dict) or not isinstance(doc.get("object"), dict):
        raise _unreadable("a watch event is not {type, object}")
    kind, obj = doc.get("type"), doc["object"]
    if kind == "ERROR":
        code = obj.get("code")
        message = str(obj.get("message", ""))[:200]
        if code == 410:
            raise _Gone(f"watch expired: {message}")
        raise NamespaceApiError(f"the watch ended with an error ({code}): {message}", "error")
    if kind == "BOOKMARK":
        meta = obj.get("metadata")
        rv = meta.get("resourceVersion") if isinstance(meta, dict) else None
        if not isinstance(rv, str) or not 0 < len(rv) <= 64:
            raise _unreadable("a bookmark without a resourceVersion")
        return WatchEvent("BOOKMARK", rv)
    if kind not in ("ADDED", "MODIFIED", "DELETED"):
        raise _unreadable(f"a watch event of unknown type {str(kind)[:40]!r}")
    ns = read_namespace(obj, limits)
    return WatchEvent(kind, ns.resource_version, ns)


@dataclass(frozen=True, slots=True)
class NamespacePage:
    resource_version: str
    continue_token: str
    namespaces: tuple[_Namespace, ...]


def read_page(body: bytes, limits: NamespaceLimits) -> NamespacePage:
    doc = strict_json(body, limits, "the namespace list")
    if not isinstance(doc, dict):
        raise _unreadable("the namespace list is not an object")
    meta, items = doc.get("metadata"), doc.get("items")
    if not isinstance(meta, dict) or not isinstance(items, list):
        raise _unreadable("the namespace list has no metadata or items")
    rv, cont = meta.get("resourceVersion"), meta.get("continue", "")
    if not isinstance(rv, str) or not 0 < len(rv) <= 64:
        raise _unreadable("the namespace list has no resourceVersion")
    if not isinstance(cont, str) or len(cont) > 4096:
        raise _unreadable("the namespace list's continue token is not a short string")
    return NamespacePage(rv, cont, tuple(read_namespace(i, limits) for i in items))


# --- the watcher -------------------------------------------------------------------------------


def kube_client(kubeconfig: Path | None, timeout_seconds: float = 10.0) -> httpx2.Client:
    """An HTTP client for the API server: ``kubeconfig`` (its current context), else the pod's
    service account (``/var/run/secrets/kubernetes.io/serviceaccount``, KUBERNETES_SERVICE_HOST)."""
    import httpx2
    from lightkube.config.client_adapter import Client, ConnectionParams
    from lightkube.config.kubeconfig import KubeConfig

    where = str(kubeconfig) if kubeconfig is not None else "the in-cluster service account"
    try:
        if kubeconfig is not None:
            config = KubeConfig.from_file(kubeconfig).get()
        else:
            config = KubeConfig.from_service_account().get()
        if config is None or config.user is None:
            raise ConfigError("no current context with a user")
        # Labels loosen Pod Security levels: they must come from the API server and nobody else.
        if not config.cluster.server.startswith("https://"):
            raise ConfigError(f"the API server {config.cluster.server!r} is not https://")
        if config.cluster.insecure:
            raise ConfigError("insecure-skip-tls-verify is refused: the API server must be verified")
        return Client(config, ConnectionParams(timeout=httpx2.Timeout(timeout_seconds)))
    except Exception as e:  # lightkube, msgspec, ssl, os errors: all mean the configuration is unusable
        raise ConfigError(f"--namespace-labels: cannot use {where} to reach the API server: {e}") from e


class NamespaceWatcher:
    """Keeps a :class:`NamespaceCache` in step with the API server from a daemon thread."""

    def __init__(
        self,
        client: httpx2.Client,
        cache: NamespaceCache | None = None,
        *,
        limits: NamespaceLimits | None = None,
        random_fraction: Callable[[], float] = random.random,
    ) -> None:
        if limits is None:
            limits = cache.limits if cache is not None else DEFAULT_NAMESPACE_LIMITS
        self.limits = limits
        self.cache = cache if cache is not None else NamespaceCache(self.limits)
        self._client = client
        self._random = random_fraction
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._response: Any = None
        self._progress = False
        self.requests = Counter(
            "dutyguard_admission_namespace_api_requests_total",
            "Requests to the API server for namespaces, by verb (list, watch) and result (ok, gone, "
            "unreachable, unauthorized, error, unreadable).",
            ("verb", "result"),
        )
        self._gauges = (
            Gauge(
                "dutyguard_admission_namespace_labels_synced",
                "1 while the namespace label cache is synced and fresh; 0: every label-selected Pod Security "
                "level is the strictest that could apply.",
                lambda: 1.0 if self.cache.status()["fresh"] else 0.0,
            ),
            Gauge(
                "dutyguard_admission_namespace_labels_age_seconds",
                "Seconds since the API server last answered the namespace watcher.",
                self.cache.age_seconds,
            ),
            Gauge(
                "dutyguard_admission_namespace_labels_cached",
                "Namespaces in the label cache.",
                lambda: float(len(self.cache)),
            ),
        )

    def lookup(self, namespace: str) -> NamespaceLabels:
        return self.cache.lookup(namespace)

    def render_metrics(self) -> bytes:
        lines: list[str] = []
        for metric in (self.requests, self.cache.lookups, self.cache.refused, *self._gauges):
            lines.extend(metric.render())
        return ("\n".join(lines) + "\n").encode("utf-8")

    # --- lifecycle -----------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="dutyguard-namespace-labels", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        response = self._response
        if response is not None:
            # The thread is blocked reading the watch: closing the response from here does not
            # wake a blocked read, shutting its socket down does. Either may fail on a dead stream.
            with contextlib.suppress(Exception):
                response.extensions["network_stream"].get_extra_info("socket").shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(Exception):
                response.close()
        if self._thread is not None:
            self._thread.join(5)
        self._client.close()

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            self._progress = False
            try:
                rv = self._list()
                while not self._stop.is_set():
                    rv = self._watch(rv)
                    failures = 0
            except _Gone as e:
                # Routine: the watch fell behind compaction. The cache stays in force (it was
                # right as of its last event; its age still bounds it) while we list again.
                logger.info("namespace watch: %s; listing again", e)
                failures = 0 if self._progress else min(failures + 1, 30)
                if failures > 1:  # a server that answers nothing but 410 must not spin us
                    self._pause(failures - 1)
            except NamespaceApiError as e:
                failures = 1 if self._progress else min(failures + 1, 30)
                self._failed(e.diagnostics(), e.result, failures)
            except Exception as e:  # a bug here must leave the cache fail-closed, never end the thread
                failures = 1 if self._progress else min(failures + 1, 30)
                logger.exception("namespace watcher failed")
                self._failed(f"internal error: {type(e).__name__}", "unreadable", failures)

    def _failed(self, why: str, result: str, failures: int) -> None:
        if self._stop.is_set():
            return
        if result == "unreadable":
            # Whatever we could not read may have been an event that tightens a namespace.
            self.cache.unsync(f"the API server's answer was refused: {why}")
            self.cache.refused.inc("unreadable")
        elif not self.cache.synced:
            self.cache.unsync(why)
        # Every failure of a run would flood the log during an outage: the 1st, 2nd, 4th, 8th...
        log = logger.error if failures & (failures - 1) == 0 else logger.debug
        log(
            "namespace labels: %s (attempt %d; label-selected namespaces get the strictest level "
            "while the cache is not synced or older than %g s)",
            why,
            failures,
            self.limits.max_age_seconds,
        )
        self._pause(failures)

    def _pause(self, failures: int) -> None:
        lim = self.limits
        delay = min(lim.backoff_max_seconds, lim.backoff_min_seconds * 2 ** (failures - 1))
        self._stop.wait(delay * (0.5 + self._random() / 2))

    # --- the API -------------------------------------------------------------------------------
    def _list(self) -> str:
        try:
            rv, entries = self._list_pages()
        except (NamespaceApiError, _Gone) as e:
            self.requests.inc("list", e.result if isinstance(e, NamespaceApiError) else "gone")
            raise
        self.requests.inc("list", "ok")
        self.cache.replace(entries)
        logger.info("namespace labels: %d namespaces listed at resourceVersion %s", len(entries), rv)
        return rv

    def _list_pages(self) -> tuple[str, dict[str, NamespaceLabels]]:
        lim = self.limits
        entries: dict[str, NamespaceLabels] = {}
        token = ""
        rv = ""
        max_pages = lim.max_namespaces // lim.page_size + 2
        for _ in range(max_pages):
            params = {"limit": str(lim.page_size)}
            if token:
                params["continue"] = token
            with contextlib.closing(self._get(params, lim.max_page_bytes, lim.connect_seconds)) as chunks:
                page = read_page(b"".join(chunks), lim)
            rv = page.resource_version
            for ns in page.namespaces:
                if ns.name not in entries and len(entries) >= lim.max_namespaces:
                    self.cache.refused.inc("too_many_namespaces")
                    continue
                entries[ns.name] = ns.entry
                if ns.entry.labels is None:
                    self.cache.refused.inc("labels")
                    logger.error("%s; it gets the strictest level", ns.entry.unknown_because)
            token = page.continue_token
            if not token:
                break
        else:
            raise _unreadable(f"the namespace list goes on past {max_pages} pages")
        if len(entries) >= lim.max_namespaces:
            logger.error(
                "namespace labels: %d namespaces or more; those past the limit stay unknown (strictest level)",
                lim.max_namespaces,
            )
        return rv, entries

    def _watch(self, rv: str) -> str:
        lim = self.limits
        params = {
            "watch": "true",
            "resourceVersion": rv,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(lim.watch_seconds),
        }
        try:
            with contextlib.closing(self._get(params, None, lim.read_seconds)) as chunks:
                for line in self._lines(chunks):
                    rv = self._apply(read_event(line, lim))
        except (NamespaceApiError, _Gone) as e:
            self.requests.inc("watch", e.result if isinstance(e, NamespaceApiError) else "gone")
            raise
        self.requests.inc("watch", "ok")
        self.cache.touch()  # the server ended the watch at timeoutSeconds: a contact
        return rv

    def _apply(self, event: WatchEvent) -> str:
        ns = event.namespace
        if ns is None:
            self.cache.touch()
        elif event.type == "DELETED":
            self.cache.delete(ns.name)
        else:
            if ns.entry.labels is None:
                self.cache.refused.inc("labels")
                logger.error("%s; it gets the strictest level", ns.entry.unknown_because)
            self.cache.put(ns.name, ns.entry)
        self._progress = True
        return event.resource_version

    def _lines(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        """Newline-separated events, none longer than ``max_event_bytes``."""
        limit = self.limits.max_event_bytes
        buf = b""
        for chunk in chunks:
            buf += chunk
            while (end := buf.find(b"\n")) >= 0:
                line, buf = buf[:end], buf[end + 1 :]
                if len(line) > limit:
                    raise _unreadable(f"a watch event larger than {limit} bytes")
                if line.strip():
                    yield line
            if len(buf) > limit:
                raise _unreadable(f"a watch event larger than {limit} bytes")
        if buf.strip():
            yield buf

    def _get(
        self, params: dict[str, str], max_bytes: int | None, read_seconds: float
    ) -> Generator[bytes, None, None]:
        """The body of ``GET /api/v1/namespaces`` in chunks, at most ``max_bytes`` in all.

        ``Accept-Encoding: identity``: a compressed answer could not be bounded before it is
        inflated, so none is asked for (and one that comes anyway does not parse).
        """
        import httpx2

        what = "watch" if "watch" in params else "list"
        timeout = httpx2.Timeout(self.limits.connect_seconds, read=read_seconds)
        headers = {"Accept": "application/json", "Accept-Encoding": "identity"}
        try:
            with self._client.stream(
                "GET", NAMESPACES_PATH, params=params, headers=headers, timeout=timeout
            ) as response:
                self._response = response
                try:
                    self._check(response, what)
                    if what == "watch":
                        self.cache.touch()
                    total = 0
                    for chunk in response.iter_raw():
                        total += len(chunk)
                        if max_bytes is not None and total > max_bytes:
                            raise _unreadable(f"the namespace {what} is larger than {max_bytes} bytes")
                        yield chunk
                finally:
                    self._response = None
        except httpx2.HTTPError as e:
            if self._stop.is_set():
                return
            raise NamespaceApiError(
                f"API server unreachable ({type(e).__name__}: {str(e)[:200]})", "unreachable"
            ) from None

    def _check(self, response: Any, what: str) -> None:
        status = response.status_code
        if status == 200:
            return
        if status == 410:
            raise _Gone(f"{what}: 410 Gone")
        if status in (401, 403):
            raise NamespaceApiError(
                f"the API server refused to {what} namespaces ({status}): does the webhook's "
                "ServiceAccount have the ClusterRole with get/list/watch on namespaces?",
                "unauthorized",
            )
        raise NamespaceApiError(f"the API server answered {status} to the namespace {what}", "error")


# --- the policy per label set ------------------------------------------------------------------


class LabelledPolicies:
    """The evaluation policy per (namespace, label digest), for one enforcement state at a time.

    A relabelled namespace has a new digest, so it never reuses the policy of its old labels; a
    new state (another bundle) replaces entries as they are asked for. Bounded: cleared when full.
    """

    def __init__(self, max_entries: int = 4 * DEFAULT_NAMESPACE_LIMITS.max_namespaces) -> None:
        self._max = max_entries
        self._cache: dict[tuple[str, str], tuple[object, Policy]] = {}

    def policy(self, owner: object, base: Policy, namespace: str, labels: NamespaceLabels) -> Policy:
        assert labels.labels is not None
        key = (namespace, labels.digest)
        hit = self._cache.get(key)
        if hit is not None and hit[0] is owner:
            return hit[1]
        policy = base.for_namespace_labels(namespace, labels.labels)
        if len(self._cache) >= self._max:
            self._cache.clear()
        self._cache[key] = (owner, policy)
        return policy
