"""The ``dutyguard`` command. Thin: parse flags, call the library, turn errors into exit codes.

Exit codes: 0 pass, 1 the gate fails, 2 usage error or an input/state that could not be
read or verified (fail closed).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence

import typer

from dutyguard import __version__
from dutyguard.errors import DutyguardError

logger = logging.getLogger("dutyguard")

app = typer.Typer(
    name="dutyguard",
    help="Security controls automated everywhere, owned by Security.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"dutyguard {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log what dutyguard does to stderr."),
) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format="%(name)s: %(message)s")


_registered = False


def _register() -> None:
    # Once per process: typer appends on every registration, and main() runs many times in tests.
    global _registered
    if _registered:
        return
    _registered = True
    from dutyguard.cli import (
        admission_cmd,
        attest_cmd,
        gov_cmds,
        policy_cmd,
        rules_cmd,
        scan_cmd,
        signed_cmds,
        up_cmd,
    )

    scan_cmd.register(app)
    rules_cmd.register(app)
    up_cmd.register(app)
    gov_cmds.register(app)
    policy_cmd.register(app)
    attest_cmd.register(app)
    signed_cmds.register(app)
    admission_cmd.register(app)


def main(argv: Sequence[str] | None = None) -> int:
    _register()
    try:
        rc = app(args=list(argv) if argv is not None else None, prog_name="dutyguard", standalone_mode=False)
    except DutyguardError as e:
        print(f"dutyguard: error: {e.diagnostics()}", file=sys.stderr)
        return 2
    except typer.Exit as e:
        return int(e.exit_code or 0)
    except typer.Abort:
        print("dutyguard: aborted", file=sys.stderr)
        return 2
    except typer.TyperException as e:  # usage errors (click's exceptions derive from this)
        show = getattr(e, "show", None)
        if callable(show):
            show()
        else:
            print(f"dutyguard: error: {e}", file=sys.stderr)
        return 2
    # Without standalone mode click returns the command's exit code instead of raising Exit.
    return rc if isinstance(rc, int) else 0


_exit_without_teardown = False


def exit_without_teardown() -> None:
    """Called by a command that holds nothing to clean up (no files, sockets, threads): the console
    script then ends with ``os._exit`` once stdout and stderr are flushed. Freeing a large scan's
    heap object by object took the interpreter about 30 ms; the OS reclaims it at once."""
    global _exit_without_teardown
    _exit_without_teardown = True


def entrypoint() -> None:
    rc = main()
    if _exit_without_teardown:
        try:
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
        except OSError:  # e.g. a closed pipe: say so by the exit code, as sys.exit would
            os._exit(rc or 120)
        os._exit(rc)
    sys.exit(rc)
