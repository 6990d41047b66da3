"""``dutyguard rules list|show``."""

from __future__ import annotations

import json

import typer

from dutyguard.core.rule import RuleMeta

rules_app = typer.Typer(help="List and explain the built-in rules.", no_args_is_help=True)


def meta_to_dict(m: RuleMeta) -> dict[str, object]:
    return {
        "id": m.id,
        "title": m.title,
        "severity": m.severity.value,
        "pack": m.pack,
        "description": m.description,
        "remediation": m.remediation,
        "controls": list(m.controls),
        "tags": list(m.tags),
        "equivalents": {k: list(v) for k, v in sorted(m.equivalents.items())},
    }


@rules_app.command("list")
def list_rules(fmt: str = typer.Option("table", "--format", "-f", help="table or json")) -> None:
    """Every rule with its severity and pack."""
    from dutyguard.rules import default_registry

    metas = [r.meta for r in default_registry()]
    if fmt == "json":
        typer.echo(json.dumps([meta_to_dict(m) for m in metas], indent=2))
        return
    if fmt != "table":
        raise typer.BadParameter("expected table or json", param_hint="--format")
    width = max(len(m.id) for m in metas) if metas else 10
    for m in metas:
        typer.echo(f"{m.id:<{width}}  {m.severity.value:<8}  {m.pack:<14}  {m.title}")


@rules_app.command("show")
def show_rule(
    rule_id: str = typer.Argument(
        ..., help="A dutyguard rule id or a peer's id (CKV_K8S_16, KSV017, DL3002)."
    ),
) -> None:
    """Everything about one rule, including the peers' equivalent ids."""
    from dutyguard.rules import default_registry

    registry = default_registry()
    ids = (rule_id,) if rule_id in registry else registry.translate(rule_id)
    if not ids:
        typer.echo(f"dutyguard: no rule matches {rule_id!r}", err=True)
        raise typer.Exit(2)
    for rid in ids:
        m = registry.get(rid).meta
        typer.echo(f"{m.id}: {m.title}")
        typer.echo(f"  severity:    {m.severity.value}")
        typer.echo(f"  pack:        {m.pack}")
        typer.echo(f"  description: {m.description}")
        typer.echo(f"  remediation: {m.remediation}")
        typer.echo(f"  controls:    {', '.join(m.controls)}")
        for peer, peer_ids in sorted(m.equivalents.items()):
            typer.echo(f"  {peer + ':':<12} {', '.join(peer_ids)}")


def register(app: typer.Typer) -> None:
    app.add_typer(rules_app, name="rules")
