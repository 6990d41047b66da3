"""``dutyguard policy``: Security's policy bundles.

``policy lint FILE`` works offline, so Security can lint bundles in its own repository (and in
its CI) before proposing them; ``policy schema`` prints the published JSON Schema for editors. The server's lifecycle commands (propose, approve, show, diff,
history) join the same group: import :data:`policy_app` and add them there.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

policy_app = typer.Typer(
    name="policy",
    help="Security-owned policy bundles (apiVersion dutyguard.dev/v1, kind PolicyBundle).",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)


@policy_app.command(
    "lint",
    epilog="Exit codes: 0 the bundle is valid; 2 it is not (every problem is listed with its line).",
)
def lint(
    file: Path = typer.Argument(..., metavar="FILE", help="The bundle (YAML or JSON).", dir_okay=False),
    output_json: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout."),
) -> None:
    """Validate a policy bundle offline: its shape, its rule ids, packs and tags, and its consistency."""
    from dutyguard.policy.errors import PolicyBundleError
    from dutyguard.policy.model import Stage
    from dutyguard.policy.parse import lint_bundle, load_bundle
    from dutyguard.rules import default_registry

    try:
        bundle = load_bundle(file, default_registry())
        lint_bundle(bundle, str(file))
    except PolicyBundleError as e:
        if output_json:
            problems = [{"path": list(p.path), "line": p.line, "message": p.message} for p in e.problems]
            print(json.dumps({"file": str(file), "valid": False, "problems": problems}, indent=2))
        for line in e.diagnostics().splitlines():
            print(f"dutyguard: error: {line}", file=sys.stderr)
        raise typer.Exit(2) from None
    ci = bundle.to_policy(Stage.CI, str(file))
    if output_json:
        print(
            json.dumps(
                {
                    "file": str(file),
                    "valid": True,
                    "name": bundle.name,
                    "digest": bundle.digest,
                    "rules": sorted(bundle.enabled_rules),
                },
                indent=2,
            )
        )
        return
    print(
        f"{file}: valid policy bundle {bundle.name!r}: {len(bundle.enabled_rules)} rules, "
        f"CI blocks at {ci.fail_on.value} and above"
        + (
            f" ({len(bundle.actions[Stage.CI].rules)} per-rule actions)"
            if bundle.actions[Stage.CI].rules
            else ""
        )
        + f"; digest {bundle.digest}"
    )


SCHEMA_RESOURCE = "policy-bundle.schema.json"


@policy_app.command("schema")
def schema() -> None:
    """Print the bundle's JSON Schema (draft 2020-12), e.g. for an editor in Security's repository."""
    from importlib.resources import files

    # The shape only: `policy lint` also checks rule ids, packs and tags and the bundle's consistency.
    typer.echo(files("dutyguard").joinpath("data", SCHEMA_RESOURCE).read_text(encoding="utf-8"), nl=False)


def register(app: typer.Typer) -> None:
    app.add_typer(policy_app, name="policy")
