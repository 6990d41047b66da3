"""``dutyguard scan``: the CI gate."""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, NoReturn

import typer

from dutyguard import parallel
from dutyguard.core.model import ScanReport, Severity
from dutyguard.core.policy import Policy, PSSLevel
from dutyguard.errors import ConfigError
from dutyguard.formats.interface import FormatContext, OutputFormat
from dutyguard.limits import DEFAULT_LIMITS, Limits

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from dutyguard.core.rule import RuleRegistry
    from dutyguard.exceptions.matcher import MatchContext
    from dutyguard.trust.errors import TrustError
    from dutyguard.trust.gate import SignedGate

EPILOG = (
    "Exit codes: 0 nothing at or above --fail-on (or a blocked gate let through by a break-glass "
    "grant, with --attest); 1 the gate fails; 2 usage error, an input that could not be read, or "
    "signed state (--state, --server) that is missing, unsigned, tampered, expired or rolled back "
    "(the gate fails closed; with --server the refusal is also reported to the control plane, "
    "which audits it)."
)
SEVERITIES = ", ".join(s.value for s in Severity)

PROGRESS_AFTER_SECONDS = 0.5
"""A progress display appears only once a scan has run this long: short scans stay quiet."""


def _parse_fail_on(value: str) -> str:
    try:
        return str(Severity.parse(value).value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a severity; use one of {SEVERITIES}") from None


def _isatty(stream: Any) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(callable(isatty) and isatty())


def _wants_color(stream: Any) -> bool:
    """Colour only for a terminal, never when ``NO_COLOR`` is set to a non-empty value (no-color.org)."""
    if os.environ.get("NO_COLOR", "") != "" or os.environ.get("TERM") == "dumb":
        return False
    return _isatty(stream)


class _ProgressDisplay:
    """The engine's ``progress`` callback: a transient status line on stderr for long scans.

    rich is imported only if the display actually appears, so a single-file scan never pays
    for it. File names are scanned data: they are shown sanitised and never as markup.
    """

    def __init__(self) -> None:
        self._enabled = os.environ.get("TERM") != "dumb" and _isatty(sys.stderr)
        self._started = time.monotonic()
        self._files = 0
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def __call__(self, name: str) -> None:
        self._files += 1
        if not self._enabled:
            return
        if self._progress is None:
            if time.monotonic() - self._started < PROGRESS_AFTER_SECONDS:
                return
            self._start()
        assert self._progress is not None
        assert self._task is not None
        from dutyguard.formats._text import terminal

        self._progress.update(self._task, completed=self._files, name=terminal(name, 80))

    def _start(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        console = Console(file=sys.stderr, no_color=not _wants_color(sys.stderr), highlight=False)
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("scanning", markup=False),
            BarColumn(),
            TextColumn("{task.completed} files", markup=False),
            TimeElapsedColumn(),
            TextColumn("{task.fields[name]}", markup=False),
            console=console,
            transient=True,
        )
        self._task = self._progress.add_task("scan", total=None, name="")
        self._progress.start()

    def __enter__(self) -> _ProgressDisplay:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._progress is not None:
            self._progress.stop()


def _write(text: str, output: Path | None) -> None:
    # Reports are UTF-8 whatever the locale says; formatters already made the text encodable,
    # backslashreplace is the last line of defence against a traceback at the very end.
    data = text.encode("utf-8", "backslashreplace")
    if output is None:
        sys.stdout.flush()
        buffer = getattr(sys.stdout, "buffer", None)
        if buffer is not None:
            buffer.write(data)
            buffer.flush()
        else:
            sys.stdout.write(data.decode("utf-8"))
        return
    try:
        output.write_bytes(data)
    except OSError as e:
        raise ConfigError(f"--output: cannot write {output}: {e.strerror or e}") from None


def _one_line_summary(report: ScanReport, output: Path) -> str:
    from dutyguard.formats._text import plural, terminal

    decision = {0: "pass", 1: "FAIL", 2: "ERROR"}[report.exit_code]
    waived = f", {len(report.waived)} waived by approved exceptions" if report.waived else ""
    return (
        f"dutyguard: {decision}: {plural(len(report.findings), 'finding')} "
        f"({len(report.blocking)} blocking at {report.fail_on.value} or above{waived}), "
        f"{plural(len(report.errors), 'error')}; report written to {terminal(str(output), 300)}"
    )


_CONTEXT_NAME = re.compile(
    r"(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*"
)

POLICY_FLAGS = (
    ("fail_on", "--fail-on"),
    ("pss_level", "--pss-level"),
    ("allowed_registry", "--allowed-registry"),
    ("secret_rules", "--secret-rules"),
    ("only", "--only"),
)
"""Flags that tune the built-in default policy. With signed state, Security's bundle decides."""


def _context_name(value: str | None, flag: str) -> str | None:
    if value is not None and not _CONTEXT_NAME.fullmatch(value):
        raise typer.BadParameter(f"{value!r} is not a lower-case DNS name", param_hint=flag)
    return value


def _refuse_policy_flags(ctx: typer.Context) -> None:
    for name, flag in POLICY_FLAGS:
        source = ctx.get_parameter_source(name)
        if source is not None and source.name != "DEFAULT":
            how = "the environment" if source.name == "ENVIRONMENT" else "the command line"
            raise typer.BadParameter(
                f"cannot be combined with --state (set from {how}): the signed policy bundle decides",
                param_hint=flag,
            )


def _pack_selection(registry: RuleRegistry, packs: list[str]) -> frozenset[str] | None:
    if not packs:
        return None
    known = {r.meta.pack for r in registry}
    unknown = sorted(set(packs) - known)
    if unknown:
        raise typer.BadParameter(
            f"unknown pack {unknown[0]!r} (known: {', '.join(sorted(known))})", param_hint="--only"
        )
    return frozenset(r.meta.id for r in registry if r.meta.pack in packs)


def _image_digests(subject: str | None) -> frozenset[str]:
    if subject is None:
        return frozenset()
    from dutyguard.trust.attest import Subject

    try:
        parsed = Subject.parse(subject)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--subject") from None
    if parsed.name != "git" and "sha256" in parsed.digest:
        return frozenset({f"sha256:{parsed.digest['sha256']}"})
    return frozenset()


def scan(
    ctx: typer.Context,
    paths: list[str] = typer.Argument(
        ...,
        metavar="PATH",
        help="Files or directories to scan (recursively); '-' reads manifests from stdin.",
        show_default=False,
    ),
    pss_level: PSSLevel = typer.Option(
        PSSLevel.RESTRICTED, "--pss-level", help="Pod Security Standards level to enforce."
    ),
    output_format: OutputFormat = typer.Option(
        OutputFormat.TABLE,
        "--format",
        "-f",
        help="table (people), json (documented schema), sarif (GitHub code scanning), junit (CI test "
        "reports), markdown (pull-request comments).",
    ),
    output: Path | None = typer.Option(
        None,
        "--output",
        "-o",
        metavar="FILE",
        help="Write the report to FILE instead of stdout (a one-line summary goes to stderr).",
        dir_okay=False,
    ),
    fail_on: str = typer.Option(
        "high",
        "--fail-on",
        envvar="DUTYGUARD_FAIL_ON",
        metavar="SEVERITY",
        callback=_parse_fail_on,
        help=f"Lowest severity that fails the gate: {SEVERITIES}.",
    ),
    allowed_registry: list[str] = typer.Option(
        [],
        "--allowed-registry",
        envvar="DUTYGUARD_ALLOWED_REGISTRIES",
        metavar="REGISTRY",
        help="Registry images must come from, e.g. registry.example.com/team (repeat for more).",
    ),
    secret_rules: Path | None = typer.Option(
        None,
        "--secret-rules",
        metavar="FILE",
        help="Use this gitleaks-format TOML file instead of the built-in secret rules.",
    ),
    cache_snapshots: bool = typer.Option(
        False,
        "--cache-snapshots",
        help="Reuse an exception snapshot this runner verified in full before (same bytes) instead of parsing it "
        "again: faster for snapshots of thousands of exceptions, but trusts the runner's state directory.",
    ),
    only: list[str] = typer.Option(
        [],
        "--only",
        metavar="PACK",
        help="Run only the rules of this pack (repeatable): pss-baseline, pss-restricted, k8s, rbac, dockerfile, "
        "secrets. Sources no selected rule reads are skipped (--only secrets never parses YAML). "
        "Suppression requests then name only the selected packs' rules. Not with --state: the signed "
        "bundle decides.",
    ),
    jobs: int = typer.Option(
        0,
        "--jobs",
        "-j",
        envvar="DUTYGUARD_JOBS",
        metavar="N",
        min=0,
        max=parallel.MAX_JOBS,
        help="Worker processes for a large scan (0: one per CPU). Small scans always run in one process.",
    ),
    max_file_size: int = typer.Option(
        DEFAULT_LIMITS.max_file_bytes,
        "--max-file-size",
        metavar="BYTES",
        min=1,
        help="Largest manifest or Dockerfile read; larger inputs are reported as errors.",
    ),
    state: Path | None = typer.Option(
        None,
        "--state",
        envvar="DUTYGUARD_STATE",
        metavar="DIR",
        file_okay=False,
        help="Enforce the signed policy bundle and exception snapshot in DIR (bundle.dsse.json and "
        "exceptions.dsse.json, as `dutyguard state pull DIR` saves them). They are verified before "
        "anything is scanned; any failed check is exit 2.",
    ),
    trust: list[str] = typer.Option(
        [],
        "--trust",
        envvar="DUTYGUARD_TRUST",
        metavar="KEY",
        help="Public key that signs the state: a PEM file, ed25519:<base64>, or a keyring file "
        "(repeat during a key rotation).",
    ),
    state_file: Path | None = typer.Option(
        None,
        "--state-file",
        envvar="DUTYGUARD_STATE_FILE",
        metavar="FILE",
        dir_okay=False,
        help="Where this runner remembers the state versions it accepted, to refuse older ones "
        "(default: $XDG_CACHE_HOME/dutyguard/trusted-state.json).",
    ),
    server: str | None = typer.Option(
        None,
        "--server",
        envvar="DUTYGUARD_SERVER",
        metavar="URL",
        help="Fetch the signed state from the control plane at URL (token from DUTYGUARD_TOKEN or "
        "`dutyguard login`) and enforce it as with --state: verified with --trust before anything is "
        "scanned; a download or check that fails is exit 2, and a check that fails is reported to the "
        "control plane (audited).",
    ),
    attest: bool = typer.Option(
        False,
        "--attest",
        help="Submit the decision to the control plane (--server), which checks it and signs a gate "
        "attestation for --subject; saved to --attest-output.",
    ),
    attest_output: Path = typer.Option(
        Path("dutyguard-attestation.dsse.json"),
        "--attest-output",
        metavar="FILE",
        dir_okay=False,
        help="Where --attest saves the signed attestation (a DSSE envelope).",
    ),
    app_name: str | None = typer.Option(
        None,
        "--app",
        metavar="APP",
        help="The app this scan is for: exceptions scoped to an app apply only to it.",
    ),
    cluster: str | None = typer.Option(
        None,
        "--cluster",
        metavar="CLUSTER",
        help="The cluster this is deployed to: exceptions scoped to a cluster apply only to it.",
    ),
    subject: str | None = typer.Option(
        None,
        "--subject",
        metavar="SUBJECT",
        help="What is gated: oci://REGISTRY/IMAGE@sha256:<hex> or git:<commit>. Exceptions scoped "
        "to an image digest apply only to that image.",
    ),
) -> None:
    """Scan Kubernetes manifests, Dockerfiles and any file tree for secrets; exit 1 when the gate fails."""
    if paths.count("-") > 1:
        raise typer.BadParameter("'-' (stdin) can be given only once", param_hint="PATH")
    from dutyguard.engine import Scanner
    from dutyguard.rules import default_registry
    from dutyguard.sources.registry import default_sources

    threshold = Severity.parse(fail_on)
    limits = Limits(max_file_bytes=max_file_size)
    app_name = _context_name(app_name, "--app")
    cluster = _context_name(cluster, "--cluster")
    image_digests = _image_digests(subject)
    if server is not None and state is not None:
        raise typer.BadParameter("give either --server URL or --state DIR, not both", param_hint="--server")
    if attest and (server is None or subject is None):
        raise typer.BadParameter(
            "needs --server URL (the control plane signs attestations) and --subject", param_hint="--attest"
        )
    gate = None
    if state is not None or server is not None:
        _refuse_policy_flags(ctx)
        from dutyguard.exceptions.matcher import MatchContext
        from dutyguard.trust._time import utc_now
        from dutyguard.trust.gate import open_state
        from dutyguard.trust.state import default_state_file

        context = MatchContext(app=app_name, cluster=cluster, image_digests=image_digests)
        registry = default_registry()
        seen = state_file or default_state_file()
        # Every check happens here, before anything is read: a failure is exit 2 (fail closed).
        if server is not None:
            from dutyguard.cli.gate_client import pulled
            from dutyguard.trust.errors import TrustError
            from dutyguard.trust.keys import load_trust

            load_trust(trust)  # an unusable --trust fails before any download
            with pulled(server) as fetched:
                try:
                    gate = open_state(
                        fetched, trust, seen, registry, utc_now(), cache_snapshots=cache_snapshots
                    )
                except TrustError as e:
                    _refuse_served(e, fetched, server, seen, context, subject)
        else:
            assert state is not None
            gate = open_state(state, trust, seen, registry, utc_now(), cache_snapshots=cache_snapshots)
        gate.check_scope(context, subject)
        policy = gate.policy
    elif trust:
        raise typer.BadParameter(
            "a trusted key is only used with --state DIR or --server URL", param_hint="--trust"
        )
    else:
        try:
            registry = default_registry(str(secret_rules) if secret_rules else None, packs=only or None)
        except ValueError as e:
            raise typer.BadParameter(str(e), param_hint="--only") from None
        policy = Policy(
            pss_level=pss_level,
            fail_on=threshold,
            allowed_registries=tuple(allowed_registry),
            enabled_rules=_pack_selection(registry, only),
        )
    scanner = Scanner(
        registry=registry,
        sources=default_sources(registry),
        policy=policy,
        limits=limits,
        scope=gate.scope if gate is not None else None,
    )

    try:
        with _ProgressDisplay() as progress:
            report = scanner.scan(paths, progress=progress, jobs=jobs or parallel.default_jobs())
    except KeyboardInterrupt:
        print("dutyguard: interrupted; no decision was made", file=sys.stderr)
        raise typer.Exit(130) from None
    if gate is not None:
        report = gate.apply(report, context)  # after the scan, judged at the time verification ran

    color = output is None and _wants_color(sys.stdout)
    text = output_format.to_formatter().render(report, FormatContext(registry=registry, color=color))
    _write(text, output)

    from dutyguard.formats._text import terminal

    # A person reading the table on a terminal already sees the errors; anywhere else (a log,
    # a redirected file, a machine format) stderr is where CI and people look for them.
    table_on_terminal = output is None and output_format is OutputFormat.TABLE and _isatty(sys.stdout)
    if not table_on_terminal:
        for err in report.errors:
            print(f"dutyguard: error: {terminal(err.message, 2000)}", file=sys.stderr)
    if output is not None:
        print(_one_line_summary(report, output), file=sys.stderr)
    if attest:
        assert server is not None
        assert subject is not None
        assert gate is not None
        _attest(server, report, gate, context, subject, attest_output)
    from dutyguard.cli import exit_without_teardown

    exit_without_teardown()
    raise typer.Exit(report.exit_code)


def _as_served(error: TrustError, fetched: Path, server: str) -> TrustError:
    """The same failure, naming the document by the URL it was served from: the temporary
    directory it was checked in is gone by the time anyone reads the message."""
    from dutyguard.cli.gate_client import STATE_PATHS

    served = {str(fetched / name): f"{server.rstrip('/')}/api/v1{path}" for name, path in STATE_PATHS}
    if error.source not in served:
        return error
    return type(error)(served[error.source], error.reason)


def _refuse_served(
    error: TrustError, fetched: Path, server: str, seen: Path, context: MatchContext, subject: str | None
) -> NoReturn:
    """Fail closed (exit 2, the same message as any refusal), then tell the control plane which
    document it served failed which check. Reporting is best effort: it never changes the exit."""
    from dutyguard.cli import gate_client
    from dutyguard.formats._text import terminal

    print(f"dutyguard: error: {_as_served(error, fetched, server).diagnostics()}", file=sys.stderr)
    body = gate_client.refusal_report(error, fetched, server, seen, context, subject)
    if body is not None:
        problem = gate_client.report_refusal(server, body)
        if problem is None:
            print("dutyguard: the refusal was reported to the control plane (audited)", file=sys.stderr)
        else:
            print(
                f"dutyguard: warning: could not report the refusal to the control plane: {terminal(problem, 500)}",
                file=sys.stderr,
            )
    raise typer.Exit(2)


def _attest(
    server: str, report: ScanReport, gate: SignedGate, context: MatchContext, subject: str, out: Path
) -> None:
    """Have the control plane sign the decision; a break-glass decision lets a blocked gate pass."""
    from dutyguard.cli import gate_client
    from dutyguard.formats._text import terminal

    result = gate_client.submit(server, report, gate, context, subject)
    try:
        gate_client.save_attestation(result, out)
    except OSError as e:
        raise ConfigError(
            f"--attest-output: cannot write {terminal(str(out), 300)}: {e.strerror or e}; the control plane "
            f"signed attestation {result['id']}: `dutyguard attest get {result['id']} -o FILE` fetches it"
        ) from None
    decision = result["decision"]
    print(
        f"dutyguard: gate attestation {result['id']} signed by the control plane: decision {decision} "
        f"for {terminal(result['subject'], 300)}; saved to {terminal(str(out), 300)}",
        file=sys.stderr,
    )
    if decision == "fail" and report.exit_code == 0:
        # The control plane judges blocking findings again from the bundle in force; if it
        # disagrees with this runner, the signed verdict is the one admission will see.
        print(
            "dutyguard: error: the control plane decided fail where this runner passed; "
            "failing the gate as attested (exit 1)",
            file=sys.stderr,
        )
        raise typer.Exit(1)
    if decision == "breakglass":
        print(
            f"dutyguard: warning: BREAK-GLASS: {len(report.blocking)} blocking finding(s) let through under "
            f"grant {result['breakglass_grant']}; Security has been alerted and will review it",
            file=sys.stderr,
        )
        raise typer.Exit(0)


def register(app: typer.Typer) -> None:
    app.command("scan", epilog=EPILOG)(scan)
