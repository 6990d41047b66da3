"""``dutyguard admission serve|manifest|certs``: the validating admission webhook."""

from __future__ import annotations

import enum
import sys
from pathlib import Path

import typer

from dutyguard.errors import ConfigError

admission_app = typer.Typer(
    help="Deploy-time enforcement: a Kubernetes validating admission webhook with the gate's rules.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


class FailModeChoice(enum.Enum):
    DENY = "deny"
    DEFAULT_POLICY = "default-policy"
    UNSAFE_ALLOW = "unsafe-allow"


@admission_app.command("serve")
def serve(
    cert: Path = typer.Option(
        ..., "--cert", metavar="FILE", help="Serving certificate (PEM); reloaded when it changes."
    ),
    key: Path = typer.Option(
        ..., "--key", metavar="FILE", help="Private key of the serving certificate (PEM)."
    ),
    host: str = typer.Option("0.0.0.0", "--host", help="Address to listen on."),  # noqa: S104
    port: int = typer.Option(8443, "--port", min=1, max=65535, help="Port to listen on."),
    control_plane: str | None = typer.Option(
        None,
        "--control-plane",
        envvar="DUTYGUARD_URL",
        metavar="URL",
        help="Pull signed policy state from this control plane (else: --state DIR, or the built-in default).",
    ),
    state_dir: Path | None = typer.Option(
        None, "--state", metavar="DIR", help="Enforce the signed state in DIR (from `dutyguard state pull`)."
    ),
    trust: list[str] = typer.Option(
        [],
        "--trust",
        metavar="KEY",
        help="Control plane public key or keyring (repeatable); required with state.",
    ),
    cluster: str = typer.Option("", "--cluster", envvar="DUTYGUARD_CLUSTER", help="This cluster's name."),
    token_file: Path | None = typer.Option(
        None, "--token-file", metavar="FILE", help="Token of this cluster's identity (re-read on every use)."
    ),
    cache_dir: Path = typer.Option(
        Path("/var/cache/dutyguard"), "--cache-dir", metavar="DIR", help="Where verified state is cached."
    ),
    ca_file: str | None = typer.Option(
        None,
        "--control-plane-ca",
        metavar="FILE",
        help="CA bundle that signs the control plane's certificate.",
    ),
    refresh_seconds: float = typer.Option(
        30.0, "--refresh-seconds", min=1.0, help="How often to pull state."
    ),
    fail_mode: FailModeChoice = typer.Option(
        FailModeChoice.DENY,
        "--fail-mode",
        help="Without a verified, unexpired state: deny (default), default-policy (built-in, unsigned) "
        "or unsafe-allow (break-glass only).",
    ),
    attestations: Path | None = typer.Option(
        None,
        "--require-attestations",
        metavar="DIR",
        help="Deny images not pinned by digest or without a passing gate attestation in DIR. With "
        "--control-plane the webhook fills DIR itself: every refresh pulls the signed attestations, verifies "
        "each one and keeps the last verified set.",
    ),
    audit_sample_rate: float = typer.Option(
        0.01, "--audit-sample-rate", min=0.0, max=1.0, help="Share of allowed decisions sent in full."
    ),
    max_body_bytes: int = typer.Option(8 * 1024 * 1024, "--max-body-bytes", min=1024),
    spool_dir: Path | None = typer.Option(
        None,
        "--spool-dir",
        metavar="DIR",
        help="With --control-plane: journal denials, exception uses and fail-mode decisions in DIR (created "
        "0700; refused if a symlink, not ours or group/world-writable, or used by another process) so they "
        "reach the audit trail after a crash or restart.",
    ),
    namespace_labels: bool = typer.Option(
        False,
        "--namespace-labels",
        help="Read namespace labels from the API server (list + watch namespaces), so Pod Security levels "
        "selected by label apply exactly; until a namespace's labels are known, the strictest level that "
        "could apply is used.",
    ),
    kubeconfig: Path | None = typer.Option(
        None,
        "--kubeconfig",
        metavar="FILE",
        help="With --namespace-labels: reach the API server with this kubeconfig (default: the pod's "
        "service account).",
    ),
    namespace_labels_max_age: float = typer.Option(
        180.0,
        "--namespace-labels-max-age",
        min=30.0,
        metavar="SECONDS",
        help="Namespace labels older than this (no word from the API server) count as unknown.",
    ),
) -> None:
    """Run the webhook (HTTPS, admission.k8s.io/v1) until interrupted."""
    from dutyguard.admission.serve import ServerOptions, WebhookConfig, assemble, serve

    if fail_mode is FailModeChoice.UNSAFE_ALLOW:
        print(
            "dutyguard: WARNING: --fail-mode unsafe-allow admits every request while no verified state exists",
            file=sys.stderr,
        )
    if control_plane is None and state_dir is None:
        print(
            "dutyguard: no --control-plane or --state: enforcing the built-in default policy (unsigned)",
            file=sys.stderr,
        )
    app = assemble(
        WebhookConfig(
            control_plane=control_plane,
            state_dir=state_dir,
            trust=tuple(trust),
            cluster=cluster,
            token_file=token_file,
            cache_dir=cache_dir,
            control_plane_ca=ca_file,
            refresh_seconds=refresh_seconds,
            fail_mode=fail_mode.value,
            attestations_dir=attestations,
            audit_sample_rate=audit_sample_rate,
            max_body_bytes=max_body_bytes,
            spool_dir=spool_dir,
            namespace_labels=namespace_labels,
            kubeconfig=kubeconfig,
            namespace_labels_max_age=namespace_labels_max_age,
        )
    )
    serve(app, ServerOptions(host=host, port=port, cert=cert, key=key))


@admission_app.command("manifest")
def manifest(
    namespace: str = typer.Option("dutyguard-system", "--namespace", help="Namespace of the webhook."),
    image: str = typer.Option(
        "", "--image", help="dutyguard image, ideally pinned by digest (registry/dutyguard@sha256:…)."
    ),
    replicas: int = typer.Option(2, "--replicas", min=1),
    failure_policy: str = typer.Option(
        "Fail", "--failure-policy", help="Fail (default, fail closed) or Ignore."
    ),
    timeout: int = typer.Option(5, "--timeout", help="Seconds the API server waits for the webhook (1-30)."),
    ca_bundle: Path | None = typer.Option(
        None, "--ca-bundle", metavar="FILE", help="CA certificate for caBundle (from `admission certs`)."
    ),
    tls_dir: Path | None = typer.Option(
        None,
        "--tls-dir",
        metavar="DIR",
        help="Include the serving certificate from DIR as a Secret (and its CA).",
    ),
    control_plane: str | None = typer.Option(None, "--control-plane", metavar="URL"),
    cluster: str = typer.Option("", "--cluster"),
    trust: Path | None = typer.Option(
        None, "--trust", metavar="KEY", help="Control plane public key to pin."
    ),
    fail_mode: FailModeChoice = typer.Option(FailModeChoice.DENY, "--fail-mode"),
    namespace_labels: bool = typer.Option(
        True,
        "--namespace-labels/--no-namespace-labels",
        help="Let the webhook read namespace labels (a ClusterRole to get/list/watch namespaces and its binding).",
    ),
) -> None:
    """Print the Kubernetes objects that run the webhook (kubectl apply -f -)."""
    from dutyguard.admission.certs import CA_CERT, TLS_CERT, TLS_KEY
    from dutyguard.admission.manifest import DEFAULT_IMAGE, ManifestOptions, manifests, render

    def read(p: Path) -> bytes:
        try:
            return p.read_bytes()
        except OSError as e:
            raise ConfigError(f"cannot read {p}: {e.strerror or e}") from None

    ca = read(ca_bundle) if ca_bundle else None
    cert = key = None
    if tls_dir is not None:
        cert, key = read(tls_dir / TLS_CERT), read(tls_dir / TLS_KEY)
        if ca is None:
            ca = read(tls_dir / CA_CERT)
    opts = ManifestOptions(
        namespace=namespace,
        image=image or DEFAULT_IMAGE,
        replicas=replicas,
        failure_policy=failure_policy,
        timeout_seconds=timeout,
        ca_bundle=ca,
        tls_cert=cert,
        tls_key=key,
        control_plane=control_plane,
        cluster=cluster,
        trust_key=read(trust) if trust else None,
        fail_mode=fail_mode.value,
        namespace_labels=namespace_labels,
    )
    docs = manifests(opts)
    if ca is None:
        print(
            "dutyguard: no --ca-bundle/--tls-dir: caBundle left empty (inject it, e.g. with cert-manager)",
            file=sys.stderr,
        )
    sys.stdout.write(render(docs))


@admission_app.command("certs")
def certs(
    out: Path = typer.Option(
        ..., "--out", metavar="DIR", help="Directory for ca.crt, ca.key, tls.crt, tls.key."
    ),
    namespace: str = typer.Option("dutyguard-system", "--namespace"),
    service: str = typer.Option("dutyguard-admission", "--service"),
    extra_name: list[str] = typer.Option(
        [], "--name", help="Extra DNS name or IP for the certificate (repeatable)."
    ),
    days: int = typer.Option(365, "--days", min=1, help="Validity of the serving certificate."),
) -> None:
    """Make a CA (kept if present) and a serving certificate for the webhook's Service."""
    from dutyguard.admission.certs import make_certs

    files = make_certs(out, service=service, namespace=namespace, extra_names=tuple(extra_name), days=days)
    what = "new CA" if files.new_ca else "existing CA"
    print(
        f"dutyguard: serving certificate for {', '.join(files.names)} signed by the {what} in {out}",
        file=sys.stderr,
    )


def register(app: typer.Typer) -> None:
    app.add_typer(admission_app, name="admission")
