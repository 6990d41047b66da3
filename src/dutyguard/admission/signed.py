"""Signed state for the webhook: pulled from the control plane, verified, cached, refreshed.

The provider is a small state machine over one value, the *enforced* state:

``none`` --(a bundle and snapshot verify)--> ``verified(v)`` --(newer ones verify)--> ``verified(v')``
``verified(v)`` --(now ≥ expiry)--> reported as expired: :meth:`current` returns no state and
the decision follows the configured fail mode; it is never enforced again.

Invariants:

* only :class:`dutyguard.trust.state.TrustedState` turns bytes into state (signature by a
  trusted key, digest, expiry, no rollback against what this webhook accepted before), and a
  candidate replaces the enforced state only after *both* documents verified;
* a failed pull or a failed verification changes nothing but the reported problem: the last
  verified state stays in force until its own expiry (the control plane being unreachable is
  survivable; a tampered or replayed copy is refused and reported);
* the cache directory holds the last verified envelopes; on start they are verified again like
  any other input (the cache is not trusted), so a restart during an outage keeps enforcing
  until expiry; the record of versions seen lives beside them, so a restarted webhook refuses
  an older state than the one it already enforced.

With ``--require-attestations`` the same refresh pulls the gate attestations
(:class:`~dutyguard.admission.attestations.PulledAttestations`), which keep their own last
verified set under the same rules; a problem with either is reported with the state.

Exceptions use the gate's matcher (:mod:`dutyguard.exceptions.matcher`); its index is built per
app / image-digest group at load time, so a request costs a few dictionary lookups.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dutyguard.admission.state import (
    Action,
    AttestationIndex,
    EnforcementState,
    StateProvider,
    StateView,
    Subject,
)
from dutyguard.core.model import Finding, Waiver
from dutyguard.core.policy import Policy
from dutyguard.core.rule import RuleRegistry
from dutyguard.errors import DutyguardError
from dutyguard.exceptions.matcher import ExceptionMatcher, MatchContext
from dutyguard.exceptions.model import ExceptionGrant
from dutyguard.policy.model import ExceptionPolicy, Stage
from dutyguard.trust._time import format_time
from dutyguard.trust.keys import Keyring
from dutyguard.trust.state import (
    BUNDLE_FILE,
    SNAPSHOT_FILE,
    SeenState,
    StateFile,
    TrustedState,
    VerifiedBundle,
    VerifiedSnapshot,
)

if TYPE_CHECKING:
    from dutyguard.admission.attestations import AttestationItem, AttestationLimits, PulledAttestations
    from dutyguard.admission.metrics import AdmissionMetrics

logger = logging.getLogger("dutyguard.admission")

SEEN_FILE = "trusted-state.json"
POLICY_DOCUMENT = "policy"
"""The ``document`` label of the pull metrics for the bundle and snapshot (pulled together)."""

Fetch = Callable[[], tuple[bytes, bytes]]
"""Returns the bundle and snapshot envelopes (bytes), or raises :class:`FetchError`."""


class FetchError(DutyguardError):
    """The control plane could not be reached or did not answer with the state."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        """The HTTP status the control plane answered with, if it answered."""


class TooLargeError(FetchError):
    """An answer larger than its limit (reading stopped there)."""


# --- exceptions at admission --------------------------------------------------------------------
def _preference(e: ExceptionGrant) -> tuple[int, int, float, str]:
    # The gate's order: narrowest scope, most approvers, latest expiry, then the id.
    narrowness = 0 if e.scope.fingerprint else (1 if not e.wide else 2)
    return (narrowness, -len(e.approvers), -e.expires.timestamp(), e.id)


class AdmissionExceptions:
    """The gate's matcher, indexed once per (app, image digest) group of the snapshot.

    ``ExceptionMatcher`` binds the target's context (app, cluster, images) when it indexes;
    at admission every request has its own. Each exception needs at most one app and one
    digest, so grouping by that pair lets one matcher per group serve every request, and a
    request consults only the groups its app and images select.
    """

    def __init__(
        self, grants: Iterable[ExceptionGrant], policy: ExceptionPolicy, cluster: str, now: datetime
    ) -> None:
        self._grants = tuple(grants)
        self._policy = policy
        self._cluster = cluster or None
        self._lock = threading.Lock()
        self._build(now)

    def _build(self, now: datetime) -> None:
        groups: dict[tuple[str | None, str | None], list[ExceptionGrant]] = {}
        live = [g for g in self._grants if g.expires > now]
        for g in live:
            groups.setdefault((g.scope.app, g.scope.image_digest), []).append(g)
        self._groups = {
            (app, digest): ExceptionMatcher(
                items,
                self._policy,
                MatchContext(
                    app=app, cluster=self._cluster, image_digests=frozenset({digest} if digest else ())
                ),
                now,
            )
            for (app, digest), items in groups.items()
        }
        self._next_expiry = min((g.expires for g in live), default=None)
        self.active = sum(m.active for m in self._groups.values())

    def match(self, finding: Finding, subject: Subject) -> Waiver | None:
        now = datetime.now(UTC)
        if self._next_expiry is not None and now >= self._next_expiry:
            with self._lock:
                if self._next_expiry is not None and now >= self._next_expiry:
                    self._build(now)  # an exception expired: it applies nowhere from now on
        if not self._groups:
            return None
        apps: tuple[str | None, ...] = (None, subject.app) if subject.app else (None,)
        digests: tuple[str | None, ...] = (None, *subject.image_digests)
        best: ExceptionGrant | None = None
        for app in apps:
            for digest in digests:
                m = self._groups.get((app, digest))
                if m is None:
                    continue
                g = m.match(finding)
                if g is not None and g.expires > now and (best is None or _preference(g) < _preference(best)):
                    best = g
        return None if best is None else Waiver(best.id, best.expires)


# --- building the state -------------------------------------------------------------------------
def enforcement_state(
    bundle: VerifiedBundle,
    snapshot: VerifiedSnapshot,
    cluster: str,
    now: datetime,
    attestations: AttestationIndex | None = None,
) -> EnforcementState:
    published = bundle.published
    policy = published.bundle.to_policy(Stage.ADMISSION, bundle.describe())
    actions = published.bundle.actions[Stage.ADMISSION]
    snap = snapshot.snapshot
    exceptions = AdmissionExceptions(snap.exceptions, published.bundle.exceptions, cluster, now)

    def policy_for(namespace: str) -> Policy:
        return policy.for_namespace(namespace or None)

    def action_for(finding: Finding, _policy: Policy) -> Action:
        return Action(actions.action_for(finding.rule_id, finding.severity))

    scope = published.bundle.scope

    def out_of_scope(subject: Subject) -> list[str]:
        # The webhook's cluster is compared once per state (cluster_excluded); teams are not
        # known here (the control plane compares them when it attests).
        return scope.uncovered(
            app=subject.app or None,
            namespace=subject.namespace or None,
            images=subject.images,
            required=("app", "namespace"),
        )

    return EnforcementState(
        label=f"{bundle.describe()}, exception snapshot v{snap.version}",
        signed=True,
        policy_for=policy_for,
        action_for=action_for,
        exceptions=exceptions,
        bundle_version=published.version,
        bundle_digest=published.digest,
        snapshot_version=snap.version,
        expires_at=min(published.expires, snap.expires),
        verified_at=now,
        attestations=attestations,
        out_of_scope=out_of_scope if scope.apps or scope.namespaces or scope.registries else None,
    )


def cluster_excluded(bundle: VerifiedBundle, cluster: str) -> str:
    """Why the bundle does not govern this webhook's cluster (empty: it does).

    A webhook that was not told its cluster cannot show that a bundle limited to some clusters
    governs it: that is a reason too."""
    scope = bundle.published.bundle.scope
    if not scope.uncovered(cluster=cluster or None, required=("cluster",)):
        return ""
    # The point first: a warning shown to users is cut at 120 characters.
    governs = ", ".join(scope.clusters)
    if not cluster:
        return (
            f"this webhook was not given its cluster (--cluster), and {bundle.describe()} governs "
            f"only clusters {governs}"
        )
    return f"the bundle's scope excludes cluster {cluster!r}: {bundle.describe()} governs clusters {governs}"


@dataclass(frozen=True, slots=True)
class _Enforced:
    state: EnforcementState
    seen: SeenState
    excluded: str = ""
    """Why the verified state does not govern this cluster: then it is not enforced (as if there
    were no state), though its versions count against rollback."""


class SignedStateProvider(StateProvider):
    """Pulls (optionally), verifies and serves the signed state; see the module docstring."""

    def __init__(
        self,
        keyring: Keyring,
        registry: RuleRegistry,
        cache_dir: Path,
        *,
        cluster: str = "",
        fetch: Fetch | None = None,
        refresh_seconds: float = 30.0,
        attestations: Callable[[], AttestationIndex | None] | None = None,
        attestation_pull: PulledAttestations | None = None,
        metrics: AdmissionMetrics | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.keyring = keyring
        self.registry = registry
        self.cache_dir = Path(cache_dir)
        self.cluster = cluster
        self.fetch = fetch
        self.refresh_seconds = refresh_seconds
        self._attestations = attestations
        self.attestation_pull = attestation_pull
        """Gate attestations pulled with the state (``--require-attestations`` with a control plane)."""
        self.metrics = metrics
        self.clock = clock
        self._enforced: _Enforced | None = None
        self._problem = "no verified policy state yet"
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_pull_ok: datetime | None = None
        self.refreshes = 0

    # --- the request path ---------------------------------------------------------------------
    def current(self, now: datetime) -> StateView:
        enforced = self._enforced
        if enforced is None:
            return StateView(None, self.problem)
        state = enforced.state
        age = (now - state.verified_at).total_seconds() if state.verified_at else None
        if state.expires_at is not None and now >= state.expires_at:
            why = f"the last verified policy state ({state.short_label}) expired at {format_time(state.expires_at)}"
            if self.problem:
                why += f"; {self.problem}"
            return StateView(None, why, age)
        if enforced.excluded:
            why = enforced.excluded
            if self.problem:
                why += f"; {self.problem}"
            return StateView(None, why, age)
        # In force, but possibly stale: the problem (control plane unreachable, a refused update,
        # gate attestations that could not be refreshed) travels with it to /readyz and the
        # audit trail.
        return StateView(state, self.problem, age)

    @property
    def problem(self) -> str:
        pull = self.attestation_pull
        if pull is None or not pull.problem:
            return self._problem
        return f"{self._problem}; {pull.problem}" if self._problem else pull.problem

    # --- loading ------------------------------------------------------------------------------
    def _seen(self) -> SeenState:
        with self._lock:
            enforced = self._enforced
        if enforced is not None:
            return enforced.seen
        return StateFile(self.cache_dir / SEEN_FILE).read()

    def verify(self, bundle: bytes, snapshot: bytes, source: str) -> _Enforced:
        """Verify a candidate; raises the :mod:`dutyguard.trust` error of the check that failed."""
        now = self.clock()
        ts = TrustedState(self.keyring, self.registry, now, self._seen())
        vb = ts.update_bundle(bundle, f"{source}/{BUNDLE_FILE}")
        vs = ts.update_snapshot(snapshot, f"{source}/{SNAPSHOT_FILE}")
        index = self._attestations() if self._attestations is not None else None
        return _Enforced(
            enforcement_state(vb, vs, self.cluster, now, index),
            ts.seen_after(),
            cluster_excluded(vb, self.cluster),
        )

    def load_cache(self) -> bool:
        """Enforce what the cache holds, if it verifies. True when it did."""
        try:
            bundle = _read(self.cache_dir / BUNDLE_FILE)
            snapshot = _read(self.cache_dir / SNAPSHOT_FILE)
        except FileNotFoundError:
            return False
        except OSError as e:
            self._set_problem(f"cached state unreadable: {e}")
            return False
        try:
            candidate = self.verify(bundle, snapshot, str(self.cache_dir))
        except DutyguardError as e:
            self._set_problem(f"cached state refused: {e.diagnostics()}")
            logger.error("cached policy state refused: %s", e.diagnostics())
            return False
        self._install(candidate, persist=False)
        return True

    def refresh(self) -> bool:
        """Pull, verify and install newer state (and the gate attestations, when required).

        True when a new policy state is now enforced.
        """
        if self.fetch is None:
            return False
        installed = self._refresh_state(self.fetch)
        if self.attestation_pull is not None:
            # Independent of the state's outcome: each keeps its last verified version.
            self.attestation_pull.refresh()
        return installed

    def _refresh_state(self, fetch: Fetch) -> bool:
        try:
            bundle, snapshot = fetch()
        except FetchError as e:
            self._set_problem(f"control plane unreachable: {e.diagnostics()}")
            self._pulled("unauthorized" if e.status in (401, 403) else "unreachable")
            logger.warning("policy state not refreshed: %s", e.diagnostics())
            return False
        self.last_pull_ok = self.clock()
        try:
            candidate = self.verify(bundle, snapshot, "control plane")
        except DutyguardError as e:
            self._set_problem(f"state from the control plane refused: {e.diagnostics()}")
            self._pulled("refused")
            logger.error("policy state from the control plane refused: %s", e.diagnostics())
            return False
        self._pulled("ok")
        current = self._enforced
        if current is not None and _same(current.state, candidate.state):
            self._set_problem("")
            self._extend(candidate)
            return False
        self._write_cache(bundle, snapshot)
        self._install(candidate, persist=True)
        self.refreshes += 1
        return True

    def _pulled(self, result: str) -> None:
        m = self.metrics
        if m is None:
            return
        m.state_pulls.inc(POLICY_DOCUMENT, result)
        last = m.state_pull_last_success if result == "ok" else m.state_pull_last_failure
        last.set(POLICY_DOCUMENT, value=self.clock().timestamp())

    def _extend(self, candidate: _Enforced) -> None:
        # The same versions re-verified: a new verification time (and possibly later expiry).
        with self._lock:
            self._enforced = candidate

    def _install(self, candidate: _Enforced, *, persist: bool) -> None:
        if persist:
            StateFile(self.cache_dir / SEEN_FILE).write(candidate.seen)
        with self._lock:
            self._enforced = candidate
            self._problem = ""
        if candidate.excluded:
            logger.error("not enforcing %s: %s", candidate.state.label, candidate.excluded)
        else:
            logger.warning("enforcing %s", candidate.state.label)

    def _set_problem(self, problem: str) -> None:
        with self._lock:
            self._problem = problem

    def _write_cache(self, bundle: bytes, snapshot: bytes) -> None:
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            for name, data in ((BUNDLE_FILE, bundle), (SNAPSHOT_FILE, snapshot)):
                fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=self.cache_dir)
                try:
                    with os.fdopen(fd, "wb") as f:
                        f.write(data)
                    os.replace(tmp, self.cache_dir / name)
                except BaseException:
                    with contextlib.suppress(OSError):
                        os.unlink(tmp)
                    raise
        except OSError as e:  # the state is verified and enforced; only a restart would miss it
            logger.error("could not cache the verified policy state in %s: %s", self.cache_dir, e)

    # --- background ---------------------------------------------------------------------------
    def start(self) -> None:
        pull = self.attestation_pull
        if pull is not None and pull.admitted is None:
            pull.load_cache()
        if self._enforced is None:
            self.load_cache()
        if self.fetch is None or self._thread is not None:
            return
        self.refresh()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="dutyguard-state", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.refresh_seconds):
            try:
                self.refresh()
            except Exception:  # a bug here must not stop refreshing; the state stays as it was
                logger.exception("policy state refresh failed")


def _same(a: EnforcementState, b: EnforcementState) -> bool:
    return (a.bundle_version, a.bundle_digest, a.snapshot_version) == (
        b.bundle_version,
        b.bundle_digest,
        b.snapshot_version,
    )


def _read(path: Path) -> bytes:
    from dutyguard.trust.dsse import MAX_ENVELOPE_BYTES

    with path.open("rb") as f:
        return f.read(MAX_ENVELOPE_BYTES + 1)


# --- pulling over HTTPS -------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class HttpFetch:
    """GET the signed state from the control plane with the ``cluster`` identity's token.

    Calling it returns the two envelopes; :meth:`attestations` pages through the attestation
    list. Every body is counted while it streams in and refused past its limit.
    """

    url: str
    token: Callable[[], str]
    bundle_path: str = "/api/v1/state/bundle"
    snapshot_path: str = "/api/v1/state/exceptions"
    attestations_path: str = "/api/v1/state/attestations"
    ca_file: str | None = None
    timeout_seconds: float = 10.0

    def __call__(self) -> tuple[bytes, bytes]:
        import httpx

        from dutyguard.trust.dsse import MAX_ENVELOPE_BYTES

        try:
            with self._client() as client:
                headers = self._headers()
                bundle = _get(client, self.bundle_path, headers, MAX_ENVELOPE_BYTES)
                snapshot = _get(client, self.snapshot_path, headers, MAX_ENVELOPE_BYTES)
        except httpx.HTTPError as e:
            raise FetchError(f"{type(e).__name__}: {e}") from None
        return bundle, snapshot

    def attestations(self, limits: AttestationLimits | None = None) -> Iterator[AttestationItem]:
        """Every entry of ``GET /state/attestations``, page by page (nothing here is trusted)."""
        import httpx

        from dutyguard.admission.attestations import DEFAULT_LIMITS, parse_page
        from dutyguard.errors import LimitExceeded
        from dutyguard.trust.errors import MalformedError

        lim = limits or DEFAULT_LIMITS
        source = f"{self.url.rstrip('/')}{self.attestations_path}"
        cursors: set[str] = set()
        cursor: str | None = None
        try:
            with self._client() as client:
                headers = self._headers()
                for _ in range(lim.max_pages):
                    params: dict[str, Any] = {"limit": lim.page_size}
                    if cursor is not None:
                        params["cursor"] = cursor
                    try:
                        data = _get(client, self.attestations_path, headers, lim.max_page_bytes, params)
                    except TooLargeError as e:  # an answer, and not one to trust: refused
                        raise LimitExceeded(source, e.diagnostics()) from None
                    items, cursor = parse_page(data, source, lim.page_size)
                    yield from items
                    if cursor is None:
                        return
                    if cursor in cursors:
                        raise MalformedError(source, "the list's cursors go round in a loop")
                    cursors.add(cursor)
        except httpx.HTTPError as e:
            raise FetchError(f"{type(e).__name__}: {e}") from None
        raise LimitExceeded(source, f"more than {lim.max_pages} pages")

    def _client(self) -> Any:
        import httpx

        from dutyguard.admission.tls import client_verify

        return httpx.Client(
            base_url=self.url, timeout=self.timeout_seconds, verify=client_verify(self.ca_file)
        )

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token()}", "Accept": "application/json"}


def _get(
    client: Any, path: str, headers: dict[str, str], limit: int, params: dict[str, Any] | None = None
) -> bytes:
    with client.stream("GET", path, headers=headers, params=params) as r:
        if r.status_code != 200:
            raise FetchError(f"GET {path} answered HTTP {r.status_code}", r.status_code)
        chunks: list[bytes] = []
        size = 0
        for chunk in r.iter_bytes():
            size += len(chunk)
            if size > limit:
                raise TooLargeError(f"GET {path}: larger than {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)


def token_from_file(path: Path) -> Callable[[], str]:
    """Read the token on every use: Kubernetes rotates mounted Secrets in place."""

    def read() -> str:
        try:
            token = path.read_text(encoding="utf-8").strip()
        except OSError as e:
            raise FetchError(f"token file {path}: {e.strerror or e}") from None
        if not token:
            raise FetchError(f"token file {path} is empty")
        return token

    return read
