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


_MODULES = (
    "scan_cmd",
    "rules_cmd",
    "up_cmd",
    "gov_cmds",
    "policy_cmd",
    "attest_cmd",
    "signed_cmds",
    "admission_cmd",
)
"""Every command module, in the order ``--help`` lists their commands."""

_SIGNED = ("policy_cmd", "attest_cmd", "signed_cmds")  # signed_cmds adds to the policy and attest groups
COMMANDS: dict[str, tuple[str, ...]] = {
    "scan": ("scan_cmd",),
    "rules": ("rules_cmd",),
    **dict.fromkeys(("up", "init", "db"), ("up_cmd",)),
    **dict.fromkeys(
        (
            "login",
            "logout",
            "whoami",
            "user",
            "team",
            "app",
            "token",
            "role",
            "sod",
            "approval",
            "audit",
            "breakglass",
        ),
        ("gov_cmds",),
    ),
    **dict.fromkeys(("policy", "attest", "exception", "state", "keys"), _SIGNED),
    "admission": ("admission_cmd",),
}
"""Top-level command -> the modules that build it. A run builds only its own command: typer turns
every registered signature into click parameters at start-up, which for the whole tree cost a
one-file scan about 30 ms (a test keeps this table equal to the full tree)."""

_registered: set[str] = set()


def _register(command: str | None = None) -> None:
    """Registers the modules of ``command`` (all of them for ``None`` or an unknown name) once
    per process: typer appends on every registration, and main() runs many times in tests."""
    import importlib

    wanted = COMMANDS.get(command or "", _MODULES)
    for name in _MODULES:
        if name in wanted and name not in _registered:
            _registered.add(name)
            importlib.import_module(f"dutyguard.cli.{name}").register(app)
    # Help lists commands in module order even when earlier runs registered a few first.
    rank = {c: _MODULES.index(mods[0]) for c, mods in COMMANDS.items()}
    app.registered_commands.sort(key=lambda c: rank.get(c.name or "", len(_MODULES)))
    app.registered_groups.sort(key=lambda g: rank.get(g.name or "", len(_MODULES)))


def _command_of(args: Sequence[str]) -> str | None:
    """The top-level command of ``args`` (the root's own options take no values)."""
    for arg in args:
        if arg == "--":
            return None
        if not arg.startswith("-"):
            return arg
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args = list(argv) if argv is not None else sys.argv[1:]
    _register(_command_of(args))
    try:
        rc = app(args=args, prog_name="dutyguard", standalone_mode=False)
    except DutyguardError as e:
        print(f"dutyguard: error: {e.diagnostics()}", file=sys.stderr)
        return 2
    except OSError as e:  # a path a command was given that no handler named: still no traceback
        where = f"{e.filename}: " if e.filename is not None else ""
        print(f"dutyguard: error: {where}{e.strerror or e}", file=sys.stderr)
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
