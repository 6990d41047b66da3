"""``dutyguard rules list|show``: what the gate checks, and how it maps to peers and frameworks."""

from __future__ import annotations

import enum
import json

import typer

from dutyguard.core.rule import RuleMeta, RuleRegistry

rules_app = typer.Typer(
    help="List and explain the built-in rules.", no_args_is_help=True, rich_markup_mode=None
)


class ListFormat(enum.Enum):
    TABLE = "table"
    JSON = "json"


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


def _registry() -> RuleRegistry:
    from dutyguard.rules import default_registry

    return default_registry()


@rules_app.command("list")
def list_rules(
    fmt: ListFormat = typer.Option(
        ListFormat.TABLE, "--format", "-f", case_sensitive=False, help="table for people, json for tools."
    ),
    pack: str | None = typer.Option(
        None, "--pack", metavar="PACK", help="Only rules of this pack (pss-baseline, pss-restricted, ...)."
    ),
) -> None:
    """Every rule with its severity, pack and title."""
    metas = [r.meta for r in _registry()]
    if pack is not None:
        metas = [m for m in metas if m.pack == pack]
        if not metas:
            raise typer.BadParameter(f"no rule is in pack {pack!r}", param_hint="--pack")
    if fmt is ListFormat.JSON:
        typer.echo(json.dumps([meta_to_dict(m) for m in metas], indent=2, ensure_ascii=False))
        return
    id_w = max([len("RULE"), *(len(m.id) for m in metas)])
    pack_w = max([len("PACK"), *(len(m.pack) for m in metas)])
    typer.echo(f"{'RULE':<{id_w}}  {'SEVERITY':<8}  {'PACK':<{pack_w}}  TITLE")
    for m in metas:
        typer.echo(f"{m.id:<{id_w}}  {m.severity.value:<8}  {m.pack:<{pack_w}}  {m.title}")
    typer.echo(f"\n{len(metas)} rules. 'dutyguard rules show ID' explains one (peer ids work too).")


@rules_app.command("show")
def show_rule(
    rule_id: str = typer.Argument(
        ...,
        metavar="ID",
        help="A dutyguard rule id (pss.privileged) or a peer's id (CKV_K8S_16, KSV017, DL3002).",
        show_default=False,
    ),
    fmt: ListFormat = typer.Option(
        ListFormat.TABLE, "--format", "-f", case_sensitive=False, help="table for people, json for tools."
    ),
) -> None:
    """Everything about one rule: severity, controls, remediation and the peers' equivalent ids."""
    registry = _registry()
    ids = (rule_id,) if rule_id in registry else registry.translate(rule_id)
    if not ids:
        from dutyguard.formats._text import terminal

        typer.echo(
            f"dutyguard: error: no rule matches {terminal(rule_id, 200)!r}; "
            "'dutyguard rules list' shows every rule",
            err=True,
        )
        raise typer.Exit(2)
    metas = [registry.get(rid).meta for rid in ids]
    if fmt is ListFormat.JSON:
        typer.echo(json.dumps([meta_to_dict(m) for m in metas], indent=2, ensure_ascii=False))
        return
    for n, m in enumerate(metas):
        if n:
            typer.echo("")
        if m.id != rule_id.strip().lower():
            typer.echo(f"({rule_id} is a peer's id for {m.id})")
        typer.echo(f"{m.id}: {m.title}")
        typer.echo(f"  severity:     {m.severity.value}")
        typer.echo(f"  pack:         {m.pack}")
        typer.echo(f"  description:  {m.description}")
        typer.echo(f"  remediation:  {m.remediation}")
        typer.echo(f"  controls:     {', '.join(m.controls)}")
        if m.tags:
            typer.echo(f"  tags:         {', '.join(m.tags)}")
        if m.equivalents:
            typer.echo("  equivalents:")
            for peer, peer_ids in sorted(m.equivalents.items()):
                typer.echo(f"    {peer + ':':<12} {', '.join(peer_ids)}")


def register(app: typer.Typer) -> None:
    app.add_typer(rules_app, name="rules")
