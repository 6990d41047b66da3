"""Running the webhook: uvicorn (httptools + uvloop when installed) over a reloading TLS context.

Why uvicorn and no framework: at the target load (500 requests/s, p99 ≤ 5 ms, one worker on
two cores) the server's own per-request cost matters. uvicorn with httptools parses HTTP in C
and hands the raw ASGI app one scope per request; measured on this machine, FastAPI's routing
and response handling added more per request than our whole decision (docs/admission.md).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dutyguard.admission.app import AdmissionApp
from dutyguard.admission.state import StateView
from dutyguard.admission.tls import ReloadingTLS

if TYPE_CHECKING:
    import uvicorn

    from dutyguard.admission.attestations import PulledAttestations
    from dutyguard.admission.metrics import AdmissionMetrics
    from dutyguard.admission.namespaces import NamespaceWatcher
    from dutyguard.admission.signed import HttpFetch
    from dutyguard.trust.keys import Keyring

logger = logging.getLogger("dutyguard.admission")


@dataclass(frozen=True, slots=True)
class ServerOptions:
    host: str = "0.0.0.0"  # noqa: S104 - a webhook listens on the pod's address
    port: int = 8443
    cert: Path = Path("/etc/dutyguard/tls/tls.crt")
    key: Path = Path("/etc/dutyguard/tls/tls.key")
    cert_check_seconds: float = 1.0
    max_connections: int = 2000
    """Concurrent connections plus in-flight requests; more get HTTP 503."""
    keep_alive_seconds: int = 75
    """The API server reuses connections; keep them longer than its idle timeout (90 s)."""
    shutdown_seconds: int = 10
    """On SIGTERM, how long open connections may finish before they are closed. A silent client
    (a half-open TLS handshake) would otherwise hold the stop until the kubelet kills the pod,
    and the audit spool's final flush with it: 10 s here plus the flush's 5 s stay inside the
    manifest's 30 s termination grace period."""


def _fastest(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def build_server(
    app: AdmissionApp, options: ServerOptions, tls: ReloadingTLS | None = None
) -> tuple[uvicorn.Server, ReloadingTLS]:
    import uvicorn

    if tls is None:

        def reloaded(ok: bool) -> None:
            app.metrics.cert_reloads.inc("ok" if ok else "error")

        tls = ReloadingTLS(
            options.cert, options.key, check_interval=options.cert_check_seconds, on_reload=reloaded
        )
    listening = tls.listening
    config = uvicorn.Config(
        app,
        host=options.host,
        port=options.port,
        http="httptools" if _fastest("httptools") else "h11",
        loop="uvloop" if _fastest("uvloop") else "asyncio",
        lifespan="on",
        access_log=False,
        log_config=None,
        server_header=False,
        date_header=False,
        limit_concurrency=options.max_connections,
        timeout_keep_alive=options.keep_alive_seconds,
        timeout_graceful_shutdown=options.shutdown_seconds,
        ssl_context_factory=lambda _config, _default: listening,
    )
    return uvicorn.Server(config), tls


def serve(app: AdmissionApp, options: ServerOptions, sock: socket.socket | None = None) -> None:
    """Serve until interrupted (SIGINT/SIGTERM). ``sock``: an already bound listening socket."""
    server, _ = build_server(app, options)
    logger.warning(
        "dutyguard admission webhook listening on https://%s:%d%s",
        options.host,
        sock.getsockname()[1] if sock is not None else options.port,
        "/validate",
    )
    server.run(sockets=[sock] if sock is not None else None)


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    """Everything ``dutyguard admission serve`` wires together (the CLI only maps flags here)."""

    control_plane: str | None = None
    state_dir: Path | None = None
    trust: tuple[str, ...] = ()
    cluster: str = ""
    token_file: Path | None = None
    cache_dir: Path = Path("/var/cache/dutyguard")
    control_plane_ca: str | None = None
    refresh_seconds: float = 30.0
    fail_mode: str = "deny"
    attestations_dir: Path | None = None
    audit_sample_rate: float = 0.01
    max_body_bytes: int = 8 * 1024 * 1024
    spool_dir: Path | None = None
    """Keep must-send decisions for the audit trail on disk here, across restarts (``--spool-dir``)."""
    namespace_labels: bool = False
    """Read namespace labels from the API server (list + watch), for label-selected Pod Security levels."""
    kubeconfig: Path | None = None
    """With ``namespace_labels``: reach the API server with this kubeconfig, not the pod's service account."""
    namespace_labels_max_age: float = 180.0


def _pulled_attestations(
    directory: Path, keyring: Keyring, fetch: HttpFetch, metrics: AdmissionMetrics
) -> PulledAttestations:
    """``--require-attestations DIR`` with a control plane: the webhook keeps DIR itself."""
    from dutyguard.admission.attestations import PULLED_FILE, PulledAttestations

    try:
        leftovers = sorted(p.name for p in directory.glob("*.dsse.json"))
    except OSError:
        leftovers = []
    if leftovers:
        logger.warning(
            "%s: %d envelope file(s) left by `state pull --attestations` are not read: with "
            "--control-plane the webhook pulls and verifies the attestations itself (%s)",
            directory,
            len(leftovers),
            PULLED_FILE,
        )
    return PulledAttestations(
        keyring,
        directory / PULLED_FILE,
        fetch.attestations,
        metrics=metrics,
        source=f"{fetch.url.rstrip('/')}{fetch.attestations_path}",
    )


def assemble(config: WebhookConfig) -> AdmissionApp:
    """The webhook application for ``config``: state provider, decider, audit shipper, metrics.

    Without a control plane or a state directory the built-in default policy is enforced
    (labelled unsigned everywhere). With either, ``trust`` is required: nothing unverified is
    ever enforced.
    """
    from datetime import UTC, datetime

    from dutyguard.admission.decide import Decider
    from dutyguard.admission.metrics import AdmissionMetrics
    from dutyguard.admission.review import ReviewLimits
    from dutyguard.admission.state import (
        AttestationIndex,
        BuiltinStateProvider,
        FailMode,
        StateProvider,
    )
    from dutyguard.errors import ConfigError
    from dutyguard.rules import default_registry

    registry = default_registry()
    try:
        mode = FailMode(config.fail_mode)
    except ValueError:
        raise ConfigError(f"unknown fail mode {config.fail_mode!r}") from None
    if config.spool_dir is not None and config.control_plane is None:
        raise ConfigError("--spool-dir needs --control-plane (it keeps decisions for its audit trail)")
    metrics = AdmissionMetrics()
    provider: StateProvider
    sink = None
    if config.control_plane is None and config.state_dir is None:
        if config.trust or config.attestations_dir:
            raise ConfigError("--trust and --require-attestations need --control-plane or --state")
        provider = BuiltinStateProvider()
    else:
        from dutyguard.admission.signed import HttpFetch, SignedStateProvider, token_from_file
        from dutyguard.trust.keys import load_trust

        keyring = load_trust(list(config.trust))
        index: Callable[[], AttestationIndex | None] | None = None
        pulled = None
        fetch = None
        cache = config.cache_dir
        if config.control_plane is not None:
            if config.token_file is None:
                raise ConfigError("--control-plane needs --token-file (tokens are never taken from flags)")
            if not config.cluster:
                raise ConfigError("--control-plane needs --cluster NAME")
            token = token_from_file(config.token_file)
            fetch = HttpFetch(config.control_plane, token, ca_file=config.control_plane_ca)
            if config.attestations_dir is not None:
                pulled = _pulled_attestations(config.attestations_dir, keyring, fetch, metrics)
                pulled_index: AttestationIndex = pulled

                def index() -> AttestationIndex | None:
                    return pulled_index

            from dutyguard.admission.audit import AuditOptions, AuditShipper

            sink = AuditShipper(
                AuditOptions(
                    url=config.control_plane,
                    cluster=config.cluster,
                    allow_sample_rate=config.audit_sample_rate,
                    ca_file=config.control_plane_ca,
                    spool_dir=config.spool_dir,
                ),
                token,
                metrics,
            )
        elif config.state_dir is not None:
            cache = config.state_dir
            if config.attestations_dir is not None:
                from dutyguard.admission.attestations import load_index

                att_dir = config.attestations_dir

                def index() -> AttestationIndex | None:
                    return load_index(att_dir, keyring)

        provider = SignedStateProvider(
            keyring,
            registry,
            cache,
            cluster=config.cluster,
            fetch=fetch,
            refresh_seconds=config.refresh_seconds,
            attestations=index,
            attestation_pull=pulled,
            metrics=metrics,
        )
        if pulled is not None:
            puller = pulled

            def admitted() -> float | None:
                n = puller.admitted
                return None if n is None else float(n)

            metrics.attestations_passing.bind(admitted)

    def view_now() -> StateView:
        return provider.current(datetime.now(UTC))

    def age() -> float | None:
        return view_now().age_seconds

    def expires_in() -> float | None:
        st = view_now().state
        if st is None or st.expires_at is None:
            return None
        return (st.expires_at - datetime.now(UTC)).total_seconds()

    namespaces = _namespace_watcher(config)

    metrics.state_age.bind(age)
    metrics.state_expires_in.bind(expires_in)
    if sink is not None:
        shipper = sink
        metrics.queue_depth.bind(lambda: float(shipper.depth))
    return AdmissionApp(
        Decider(registry, fail_mode=mode, cluster=config.cluster, namespaces=namespaces),
        provider,
        metrics=metrics,
        sink=sink,
        limits=ReviewLimits(max_body_bytes=config.max_body_bytes),
        namespaces=namespaces,
    )


def _namespace_watcher(config: WebhookConfig) -> NamespaceWatcher | None:
    """``--namespace-labels``: the client is built now, so an unusable kubeconfig or service account
    stops the start; an unreachable API server does not (labels stay unknown: strictest)."""
    from dutyguard.errors import ConfigError

    if not config.namespace_labels:
        if config.kubeconfig is not None:
            raise ConfigError("--kubeconfig is only used with --namespace-labels")
        return None
    from dutyguard.admission.namespaces import NamespaceLimits, NamespaceWatcher, kube_client

    limits = NamespaceLimits(max_age_seconds=config.namespace_labels_max_age)
    return NamespaceWatcher(kube_client(config.kubeconfig, limits.connect_seconds), limits=limits)
