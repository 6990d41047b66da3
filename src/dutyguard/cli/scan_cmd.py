"""``dutyguard scan``: the CI gate."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from dutyguard.core.model import Severity
from dutyguard.core.policy import Policy, PSSLevel
from dutyguard.errors import ConfigError
from dutyguard.formats.interface import FormatContext, OutputFormat
from dutyguard.limits import DEFAULT_LIMITS, Limits


def scan(
    paths: list[str] = typer.Argument(
        ..., help="Files or directories to scan; '-' reads manifests from stdin."
    ),
    pss_level: PSSLevel = typer.Option(
        PSSLevel.RESTRICTED, "--pss-level", help="Pod Security Standards level."
    ),
    output_format: OutputFormat = typer.Option(OutputFormat.TABLE, "--format", "-f", help="Output format."),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Write the report here instead of stdout."
    ),
    fail_on: str = typer.Option(
        "high", "--fail-on", envvar="DUTYGUARD_FAIL_ON", help="Lowest severity that fails the gate."
    ),
    allowed_registry: list[str] = typer.Option(
        [],
        "--allowed-registry",
        envvar="DUTYGUARD_ALLOWED_REGISTRIES",
        help="Registry images must come from (repeat).",
    ),
    secret_rules: Path | None = typer.Option(
        None,
        "--secret-rules",
        help="Use this gitleaks-format TOML file instead of the built-in secret rules.",
    ),
    max_file_size: int = typer.Option(
        DEFAULT_LIMITS.max_file_bytes, "--max-file-size", help="Largest manifest (bytes)."
    ),
) -> None:
    """Scan Kubernetes manifests, Dockerfiles and any file tree for secrets; exit 1 when the gate fails."""
    from dutyguard.engine import Scanner
    from dutyguard.rules import default_registry
    from dutyguard.sources.registry import default_sources

    try:
        threshold = Severity.parse(fail_on)
    except ValueError as e:
        raise ConfigError(f"--fail-on: {e}") from None
    limits = Limits(max_file_bytes=max_file_size)
    registry = default_registry(str(secret_rules) if secret_rules else None)
    policy = Policy(pss_level=pss_level, fail_on=threshold, allowed_registries=tuple(allowed_registry))
    scanner = Scanner(registry=registry, sources=default_sources(), policy=policy, limits=limits)

    to_tty = output is None and sys.stdout.isatty()
    report = scanner.scan(paths, progress=None)
    color = to_tty and "NO_COLOR" not in os.environ
    text = output_format.to_formatter().render(report, FormatContext(registry=registry, color=color))
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")
    for err in report.errors:
        print(f"dutyguard: error: {err.message}", file=sys.stderr)
    raise typer.Exit(report.exit_code)


def register(app: typer.Typer) -> None:
    app.command("scan")(scan)
