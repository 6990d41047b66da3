"""Governance commands: a thin client of the control plane API.

Every command calls the API and prints what it returns, as a table or (``--format json``) as
the API's JSON. Refusals come back as problem+json and are shown with their type, detail and
offending fields; the command then exits 2. The only commands that work without a server are
``audit verify FILE --key PUB`` (an auditor's laptop) and ``logout``.
"""

from __future__ import annotations

import getpass
import json
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import typer

from dutyguard.cli.client import ApiError, Client, credentials_path, resolve, save_credentials
from dutyguard.errors import ConfigError

T = TypeVar("T")

_FMT = typer.Option("table", "--format", "-f", help="table or json")
_URL = typer.Option(None, "--url", help="Control plane URL (env DUTYGUARD_URL).")


# -- plumbing ----------------------------------------------------------------------------------------


def _check_fmt(fmt: str) -> None:
    if fmt not in ("table", "json"):
        raise typer.BadParameter("expected table or json", param_hint="--format")


def _run(fmt: str, url: str | None, call: Callable[[Client], T]) -> T:
    """Call the API; in JSON mode a refusal is also printed as the problem document on stdout."""
    _check_fmt(fmt)
    try:
        with Client(resolve(url)) as client:
            return call(client)
    except ApiError as e:
        if fmt == "json":
            typer.echo(json.dumps({"status": e.status, **e.problem}, indent=2, default=str))
        raise


def _json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def _table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> None:
    if not rows:
        typer.echo("(none)")
        return
    cells = [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    typer.echo("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for row in cells:
        typer.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ",".join(str(v) for v in value) or "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _show(data: Mapping[str, Any]) -> None:
    width = max((len(k) for k in data), default=0)
    for k, v in data.items():
        typer.echo(f"{k + ':':<{width + 1}} {_cell(v)}")


def _emit(
    fmt: str, data: Any, rows: Iterable[Mapping[str, Any]] | None = None, columns: Sequence[str] = ()
) -> None:
    if fmt == "json":
        _json(data)
    elif rows is not None:
        _table(list(rows), columns)
    else:
        _show(data)


_TTL = re.compile(r"(\d{1,6})([smhd])")


def parse_ttl(text: str) -> int:
    """``90m``, ``12h``, ``30d`` → seconds."""
    m = _TTL.fullmatch(text.strip())
    if not m:
        raise typer.BadParameter("expected a number followed by s, m, h or d (e.g. 30d)", param_hint="--ttl")
    return int(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


# -- login / whoami ----------------------------------------------------------------------------------


def login(
    url: str | None = _URL,
    token_stdin: bool = typer.Option(
        False, "--token-stdin", help="Read the token from stdin instead of a prompt."
    ),
    fmt: str = _FMT,
) -> None:
    """Check a token against the server and store it (0600) for later commands.

    The token comes from DUTYGUARD_TOKEN, stdin (--token-stdin) or a hidden prompt. An
    enrollment token (issued to you by an administrator) is exchanged at once for a token of
    your own, and only yours is stored.
    """
    import os

    _check_fmt(fmt)
    if token_stdin:
        token = sys.stdin.readline().strip()
    else:
        token = os.environ.get("DUTYGUARD_TOKEN") or getpass.getpass("dutyguard token: ").strip()
    if not token:
        raise ConfigError("no token given")
    base = resolve(url)
    creds = type(base)(url=base.url, token=token)
    with Client(creds) as client:
        me = client.get("/whoami")
        if me.get("token_purpose") == "enrollment":
            created = client.post("/tokens", {"description": "dutyguard login"})
            token = created["token"]
    with Client(type(base)(url=base.url, token=token)) as client:
        me = client.get("/whoami")
    path = save_credentials(base.url, token)
    if fmt == "json":
        _json({"identity": me["id"], "url": base.url, "credentials": str(path)})
    else:
        typer.echo(f"logged in to {base.url} as {me['id']} ({', '.join(me['bindings']) or 'no roles'})")
        typer.echo(f"token stored in {path}")


def logout() -> None:
    """Forget the stored token (it stays valid until revoked: dutyguard token revoke ID)."""
    path = credentials_path()
    if path.exists():
        path.unlink()
        typer.echo(f"removed {path}")
    else:
        typer.echo("not logged in")


def whoami(url: str | None = _URL, fmt: str = _FMT) -> None:
    """Who the current token belongs to, with teams, role bindings and duties."""
    me = _run(fmt, url, lambda c: c.get("/whoami"))
    _emit(fmt, me)


# -- users, teams, apps --------------------------------------------------------------------------------

user_app = typer.Typer(help="People and service identities.", no_args_is_help=True)


@user_app.command("list")
def user_list(
    kind: str | None = typer.Option(None, "--kind", help="person or service"),
    url: str | None = _URL,
    fmt: str = _FMT,
) -> None:
    items = _run(fmt, url, lambda c: list(c.paginate("/users", kind=kind)))
    _emit(fmt, items, items, ("id", "kind", "display_name", "email", "disabled"))


@user_app.command("show")
def user_show(user_id: str, url: str | None = _URL, fmt: str = _FMT) -> None:
    _emit(fmt, _run(fmt, url, lambda c: c.get(f"/users/{user_id}")))


@user_app.command("create")
def user_create(
    user_id: str,
    service: bool = typer.Option(
        False, "--service", help="A service identity (for the ci and cluster roles)."
    ),
    name: str | None = typer.Option(None, "--name", help="Display name."),
    email: str | None = typer.Option(None, "--email"),
    url: str | None = _URL,
    fmt: str = _FMT,
) -> None:
    body: dict[str, Any] = {"id": user_id, "kind": "service" if service else "person"}
    if name:
        body["display_name"] = name
    if email:
        body["email"] = email
    _emit(fmt, _run(fmt, url, lambda c: c.post("/users", body)))


@user_app.command("disable")
def user_disable(user_id: str, url: str | None = _URL, fmt: str = _FMT) -> None:
    """Disable an identity and revoke all its tokens."""
    _emit(fmt, _run(fmt, url, lambda c: c.post(f"/users/{user_id}/disable")))


team_app = typer.Typer(help="Teams and their members.", no_args_is_help=True)


@team_app.command("list")
def team_list(url: str | None = _URL, fmt: str = _FMT) -> None:
    items = _run(fmt, url, lambda c: list(c.paginate("/teams")))
    _emit(fmt, items, items, ("id", "display_name", "members", "assets"))


@team_app.command("show")
def team_show(team_id: str, url: str | None = _URL, fmt: str = _FMT) -> None:
    _emit(fmt, _run(fmt, url, lambda c: c.get(f"/teams/{team_id}")))


@team_app.command("create")
def team_create(
    team_id: str, name: str | None = typer.Option(None, "--name"), url: str | None = _URL, fmt: str = _FMT
) -> None:
    body: dict[str, Any] = {"id": team_id}
    if name:
        body["display_name"] = name
    _emit(fmt, _run(fmt, url, lambda c: c.post("/teams", body)))


@team_app.command("add-member")
def team_add_member(team_id: str, identity: str, url: str | None = _URL, fmt: str = _FMT) -> None:
    _emit(fmt, _run(fmt, url, lambda c: c.post(f"/teams/{team_id}/members", {"identity": identity})))


@team_app.command("remove-member")
def team_remove_member(team_id: str, identity: str, url: str | None = _URL, fmt: str = _FMT) -> None:
    _emit(fmt, _run(fmt, url, lambda c: c.delete(f"/teams/{team_id}/members/{identity}")))


app_app = typer.Typer(
    help="The ownership registry: which team owns which app, namespace, cluster.", no_args_is_help=True
)

_KIND = typer.Option("app", "--kind", help="app, namespace or cluster")


@app_app.command("list")
def app_list(
    team: str | None = typer.Option(None, "--team"), url: str | None = _URL, fmt: str = _FMT
) -> None:
    items = _run(fmt, url, lambda c: list(c.paginate("/assets", team=team)))
    _emit(fmt, items, items, ("scope", "team", "created_by", "created_at"))


@app_app.command("add")
def app_add(
    name: str,
    team: str = typer.Option(..., "--team", help="Owning team."),
    kind: str = _KIND,
    url: str | None = _URL,
    fmt: str = _FMT,
) -> None:
    _emit(fmt, _run(fmt, url, lambda c: c.post("/assets", {"kind": kind, "name": name, "team": team})))


@app_app.command("move")
def app_move(
    name: str,
    team: str = typer.Option(..., "--team", help="New owning team."),
    kind: str = _KIND,
    url: str | None = _URL,
    fmt: str = _FMT,
) -> None:
    _emit(
        fmt,
        _run(fmt, url, lambda c: c.request("PUT", f"/assets/{kind}/{name}/owner", json_body={"team": team})),
    )


@app_app.command("remove")
def app_remove(name: str, kind: str = _KIND, url: str | None = _URL, fmt: str = _FMT) -> None:
    _run(fmt, url, lambda c: c.delete(f"/assets/{kind}/{name}"))
    _emit(fmt, {"removed": f"{kind}:{name}"})


# -- tokens ----------------------------------------------------------------------------------------------

token_app = typer.Typer(
    help="API tokens: shown once, stored hashed, expiring, revocable.", no_args_is_help=True
)


@token_app.command("create")
def token_create(
    for_: str | None = typer.Option(None, "--for", help="Another identity (needs token.manage)."),
    ttl: str | None = typer.Option(None, "--ttl", help="Lifetime, e.g. 12h or 30d."),
    description: str = typer.Option("", "--description", "-d"),
    url: str | None = _URL,
    fmt: str = _FMT,
) -> None:
    """Create a token; the secret is printed once (for a person other than you: an enrollment token)."""
    body: dict[str, Any] = {"description": description}
    if for_:
        body["identity"] = for_
    if ttl:
        body["ttl_seconds"] = parse_ttl(ttl)
    created = _run(fmt, url, lambda c: c.post("/tokens", body))
    if fmt == "json":
        _json(created)
        return
    _show({k: v for k, v in created.items() if k != "token"})
    typer.echo(f"token (shown once): {created['token']}")


@token_app.command("list")
def token_list(
    for_: str | None = typer.Option(
        None, "--for", help="Another identity, or '*' for all (needs token.manage)."
    ),
    url: str | None = _URL,
    fmt: str = _FMT,
) -> None:
    items = _run(fmt, url, lambda c: list(c.paginate("/tokens", identity=for_)))
    _emit(fmt, items, items, ("id", "identity", "state", "description", "expires_at", "created_by"))


@token_app.command("revoke")
def token_revoke(token_id: str, url: str | None = _URL, fmt: str = _FMT) -> None:
    _emit(fmt, _run(fmt, url, lambda c: c.delete(f"/tokens/{token_id}")))


# -- roles --------------------------------------------------------------------------------------------------

role_app = typer.Typer(
    help="Roles and scoped role bindings (checked against the conflict rules).", no_args_is_help=True
)


@role_app.command("list")
def role_list(
    identity: str | None = typer.Option(None, "--identity"),
    role: str | None = typer.Option(None, "--role"),
    url: str | None = _URL,
    fmt: str = _FMT,
) -> None:
    """Role bindings."""
    items = _run(fmt, url, lambda c: list(c.paginate("/role-bindings", identity=identity, role=role)))
    _emit(fmt, items, items, ("id", "identity", "role", "scope", "created_by", "created_at"))


@role_app.command("bind")
def role_bind(
    identity: str,
    role: str,
    scope: str = typer.Option(
        "org", "--scope", help="org, team:ID, app:NAME, namespace:NAME or cluster:NAME"
    ),
    url: str | None = _URL,
    fmt: str = _FMT,
) -> None:
    """Bind ROLE to IDENTITY; refused (exit 2) when it would create a segregation-of-duties conflict.

    A sensitive role (security) is not bound at once: the server opens an approval request, and a
    security approver other than you and IDENTITY binds it with `dutyguard approval approve ID`.
    """
    body = {"identity": identity, "role": role, "scope": "org:*" if scope == "org" else scope}
    made = _run(fmt, url, lambda c: c.post("/role-bindings", body))
    if fmt == "table" and made.get("state") == "pending":
        approval = made["approval_id"]
        typer.echo(f"pending approval {approval}: {made['role']}@{made['scope']} for {made['identity']}")
        typer.echo(
            f"  not bound yet; a holder of {made['approver_duty']} (other than you and {made['identity']}) "
            f"must run: dutyguard approval approve {approval}"
        )
        typer.echo(f"  {made['eligible_approvers']} eligible approver(s); expires {made['expires_at']}")
        return
    _emit(fmt, made)


@role_app.command("unbind")
def role_unbind(binding_id: str, url: str | None = _URL, fmt: str = _FMT) -> None:
    _run(fmt, url, lambda c: c.delete(f"/role-bindings/{binding_id}"))
    _emit(fmt, {"unbound": binding_id})


@role_app.command("table")
def role_table(url: str | None = _URL, fmt: str = _FMT) -> None:
    """Which duties each role bundles."""
    items = _run(fmt, url, lambda c: c.get("/roles"))
    _emit(fmt, items, items, ("role", "kind", "duties"))


# -- segregation of duties ---------------------------------------------------------------------------------

sod_app = typer.Typer(
    help="Segregation of duties: report, rules, mitigations, rule changes.", no_args_is_help=True
)


@sod_app.command("report")
def sod_report(url: str | None = _URL, fmt: str = _FMT) -> None:
    """Conflicts (mitigated or not), mitigating controls, the RACI matrix, forbidden role pairs."""
    rep = _run(fmt, url, lambda c: c.get("/sod/report"))
    if fmt == "json":
        _json(rep)
        return
    typer.echo(f"conflict rules v{rep['rules_version']} ({rep['rules_digest'][:12]})")
    typer.echo("")
    typer.echo(f"CONFLICTS ({len(rep['conflicts'])}, {rep['unmitigated']} unmitigated)")
    _table(rep["conflicts"], ("principal", "rule", "severity", "mitigated", "mitigation", "bindings"))
    typer.echo("")
    typer.echo("MITIGATING CONTROLS")
    active = [{**m, "state": "active"} for m in rep["mitigations"]["active"]]
    lapsed = [{**m, "state": "lapsed"} for m in rep["mitigations"]["lapsed"]]
    _table(active + lapsed, ("id", "rule_id", "principal", "owner", "expires_at", "state", "reason"))
    typer.echo("")
    typer.echo("RACI (R responsible, A accountable, C consulted, I informed)")
    roles = list(rep["raci"][0]["cells"]) if rep["raci"] else []
    rows = [{"process": r["process"], **r["cells"]} for r in rep["raci"]]
    _table(rows, ("process", *roles))
    typer.echo("")
    typer.echo("FORBIDDEN ROLE PAIRS")
    _table(
        [{"roles": " + ".join(p["roles"]), "rules": p["rules"]} for p in rep["forbidden_role_pairs"]],
        ("roles", "rules"),
    )


@sod_app.command("rules")
def sod_rules(url: str | None = _URL, fmt: str = _FMT) -> None:
    """The conflict rules in force."""
    data = _run(fmt, url, lambda c: c.get("/sod/rules"))
    if fmt == "json":
        _json(data)
        return
    typer.echo(f"version {data['version']} ({data['digest'][:12]})")
    _table(data["rules"], ("id", "severity", "mitigable", "title"))


@sod_app.command("propose")
def sod_propose(
    file: Path = typer.Argument(..., help="The complete new rule set (sod-rules.yaml format)."),
    url: str | None = _URL,
    fmt: str = _FMT,
) -> None:
    """Propose new conflict rules; they apply once another security approver approves."""
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{file}: {e.strerror}") from None
    _emit(fmt, _run(fmt, url, lambda c: c.post("/sod/rules/proposals", {"document": text})))


@sod_app.command("mitigate")
def sod_mitigate(
    rule_id: str,
    principal: str,
    owner: str = typer.Option(..., "--owner", help="Who operates the control (not the principal)."),
    reason: str = typer.Option(..., "--reason"),
    expires: str = typer.Option(..., "--expires", help="ISO date-time with zone, e.g. 2027-01-31T00:00:00Z"),
    url: str | None = _URL,
    fmt: str = _FMT,
) -> None:
    """Record a mitigating control so a conflicting binding can be granted."""
    body = {
        "rule_id": rule_id,
        "principal": principal,
        "owner": owner,
        "reason": reason,
        "expires_at": expires,
    }
    _emit(fmt, _run(fmt, url, lambda c: c.post("/sod/mitigations", body)))


@sod_app.command("mitigations")
def sod_mitigations(url: str | None = _URL, fmt: str = _FMT) -> None:
    items = _run(fmt, url, lambda c: c.get("/sod/mitigations"))
    _emit(fmt, items, items, ("id", "rule_id", "principal", "owner", "expires_at", "active"))


@sod_app.command("unmitigate")
def sod_unmitigate(mitigation_id: str, url: str | None = _URL, fmt: str = _FMT) -> None:
    _run(fmt, url, lambda c: c.delete(f"/sod/mitigations/{mitigation_id}"))
    _emit(fmt, {"revoked": mitigation_id})


# -- approvals -----------------------------------------------------------------------------------------------

approval_app = typer.Typer(help="Maker-checker approval requests.", no_args_is_help=True)

_APPROVAL_COLUMNS = ("id", "kind", "state", "maker", "severity", "approvals", "quorum", "subject")


@approval_app.command("list")
def approval_list(
    state: str | None = typer.Option(None, "--state", help="pending, approved, rejected, expired, withdrawn"),
    url: str | None = _URL,
    fmt: str = _FMT,
) -> None:
    items = _run(fmt, url, lambda c: list(c.paginate("/approvals", state=state)))
    _emit(fmt, items, items, _APPROVAL_COLUMNS)


@approval_app.command("show")
def approval_show(approval_id: str, url: str | None = _URL, fmt: str = _FMT) -> None:
    """One request, with what its kind says a checker should know (for a role binding: the
    person, and whether, when and from where their enrollment token was redeemed)."""
    data = _run(fmt, url, lambda c: c.get(f"/approvals/{approval_id}"))
    if fmt == "json":
        _json(data)
        return
    details = data.get("details")
    _show({k: v for k, v in data.items() if k != "details"})
    if isinstance(details, Mapping):
        _show_tree(details, "")


def _show_tree(data: Mapping[str, Any], indent: str) -> None:
    for key, value in data.items():
        if isinstance(value, Mapping):
            typer.echo(f"{indent}{key}:")
            _show_tree(value, indent + "  ")
        elif isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
            typer.echo(f"{indent}{key}:")
            for item in value:
                typer.echo(f"{indent}  - " + ", ".join(f"{k}={_cell(v)}" for k, v in item.items()))
        else:
            typer.echo(f"{indent}{key}: {_cell(value)}")


@approval_app.command("approve")
def approval_approve(
    approval_id: str,
    reason: str = typer.Option("", "--reason"),
    digest: str | None = typer.Option(
        None, "--digest", help="The subject digest you reviewed (refused if it changed)."
    ),
    url: str | None = _URL,
    fmt: str = _FMT,
) -> None:
    body: dict[str, Any] = {"reason": reason}
    if digest:
        body["seen_digest"] = digest
    _emit(fmt, _run(fmt, url, lambda c: c.post(f"/approvals/{approval_id}/approve", body)))


@approval_app.command("reject")
def approval_reject(
    approval_id: str, reason: str = typer.Option(..., "--reason"), url: str | None = _URL, fmt: str = _FMT
) -> None:
    _emit(fmt, _run(fmt, url, lambda c: c.post(f"/approvals/{approval_id}/reject", {"reason": reason})))


@approval_app.command("withdraw")
def approval_withdraw(
    approval_id: str, reason: str = typer.Option(..., "--reason"), url: str | None = _URL, fmt: str = _FMT
) -> None:
    _emit(fmt, _run(fmt, url, lambda c: c.post(f"/approvals/{approval_id}/withdraw", {"reason": reason})))


# -- audit ------------------------------------------------------------------------------------------------------

audit_app = typer.Typer(help="The tamper-evident audit trail: read, export, verify.", no_args_is_help=True)


@audit_app.command("entries")
def audit_entries(
    after: int = typer.Option(0, "--after", help="Start after this sequence number."),
    limit: int = typer.Option(50, "--limit", min=1, max=500),
    url: str | None = _URL,
    fmt: str = _FMT,
) -> None:
    page = _run(fmt, url, lambda c: c.get("/audit/entries", after_seq=after, limit=limit))
    items = page["items"]
    _emit(fmt, page, items, ("seq", "ts", "actor", "action", "object", "outcome"))


@audit_app.command("export")
def audit_export(file: Path, url: str | None = _URL, fmt: str = _FMT) -> None:
    """Download entries and signed checkpoints (JSON Lines) for offline verification."""
    n = _run(fmt, url, lambda c: c.stream_to("/audit/export", file))
    _emit(fmt, {"file": str(file), "bytes": n})


@audit_app.command("public-key")
def audit_public_key(
    output: Path | None = typer.Option(None, "--output", "-o", help="Write the PEM here."),
    url: str | None = _URL,
    fmt: str = _FMT,
) -> None:
    """The server's checkpoint key (pin it out of band before trusting it)."""
    data = _run(fmt, url, lambda c: c.get("/audit/public-key"))
    if output is not None:
        output.write_text(data["pem"], encoding="ascii")
    _emit(fmt, {k: v for k, v in data.items() if k != "pem" or fmt == "json"})


@audit_app.command("verify")
def audit_verify(
    file: Path | None = typer.Argument(None, help="An export file to verify offline."),
    key: str | None = typer.Option(
        None, "--key", help="Trusted public key: a PEM file or ed25519:<base64> (needed offline)."
    ),
    server: bool = typer.Option(False, "--server", help="Ask the live server to verify its trail."),
    known: list[Path] = typer.Option(
        [],
        "--known",
        help="An earlier export (or checkpoint file) whose signed checkpoints you kept: catches truncation "
        "of everything after them.",
    ),
    url: str | None = _URL,
    fmt: str = _FMT,
) -> None:
    """Verify an export offline (FILE --key PUB) or the live trail (--server); exit 2 on any tampering."""
    _check_fmt(fmt)
    if server == (file is not None):
        raise typer.BadParameter("give either FILE (with --key) or --server")
    if server:
        report = _run(fmt, url, lambda c: c.get("/audit/verify"))
    else:
        assert file is not None
        report = _verify_offline(file, key, known)
    if fmt == "json":
        _json(report)
    else:
        _print_report(report)
    if not report.get("ok"):
        raise typer.Exit(2)


def _verify_offline(file: Path, key: str | None, known: Sequence[Path] = ()) -> dict[str, Any]:
    from dutyguard.audit.verify import verify_export

    if not key:
        raise ConfigError(
            "offline verification needs --key (the server's audit public key, pinned out of band)"
        )
    return dict(verify_export(file, [_trusted_key(key)], known=_known_checkpoints(known)).to_json())


def _trusted_key(key: str) -> Any:
    from dutyguard.audit.signing import load_public_key, parse_public_key

    if key.startswith("ed25519:"):
        return parse_public_key(key.encode("ascii"), "--key")
    return load_public_key(Path(key))


def _known_checkpoints(files: Sequence[Path]) -> list[Any]:
    """Signed checkpoints from earlier exports (each line parsed strictly)."""
    from dutyguard.audit.checkpoint import SignedCheckpoint
    from dutyguard.audit.errors import AuditValueError
    from dutyguard.errors import InputError

    out = []
    for path in files:
        try:
            with path.open("rb") as f:
                for lineno, line in enumerate(f, 1):
                    if not line.startswith(b'{"checkpoint":'):
                        continue
                    try:
                        out.append(SignedCheckpoint.from_line(line.rstrip(b"\n")))
                    except AuditValueError as e:
                        raise InputError(f"{path}:{lineno}", f"not a checkpoint line ({e})") from None
        except OSError as e:
            raise InputError(str(path), e.strerror or "cannot read") from None
    return out


def _print_report(report: Mapping[str, Any]) -> None:
    verdict = "OK" if report.get("ok") else "TAMPERED"
    typer.echo(f"{report.get('source')}: {verdict}")
    typer.echo(
        f"  entries {report.get('entries')}, last seq {report.get('last_seq')}, "
        f"signed up to {report.get('signed_size')} ({report.get('checkpoints_verified')}/{report.get('checkpoints')} checkpoints verified), "
        f"unsigned tail {report.get('unsigned_entries')}"
    )
    for p in report.get("problems") or ():
        typer.echo(f"  {p.get('message')}")


# -- break-glass ------------------------------------------------------------------------------------------------

breakglass_app = typer.Typer(
    help="Emergency grants: open (devops), close, review (someone else).", no_args_is_help=True
)

_GRANT_COLUMNS = ("id", "opener", "scope", "state", "opened_at", "expires_at", "reviewer", "review_outcome")


@breakglass_app.command("list")
def breakglass_list(
    pending_review: bool = typer.Option(
        False, "--pending-review", help="Only ended grants not yet reviewed."
    ),
    url: str | None = _URL,
    fmt: str = _FMT,
) -> None:
    items = _run(fmt, url, lambda c: list(c.paginate("/breakglass", pending_review=pending_review or None)))
    _emit(fmt, items, items, _GRANT_COLUMNS)


@breakglass_app.command("show")
def breakglass_show(grant_id: str, url: str | None = _URL, fmt: str = _FMT) -> None:
    _emit(fmt, _run(fmt, url, lambda c: c.get(f"/breakglass/{grant_id}")))


@breakglass_app.command("open")
def breakglass_open(
    reason: str = typer.Option(
        ..., "--reason", help="Why (at least 10 characters): it is sent to Security at once."
    ),
    scope: str = typer.Option(
        "org", "--scope", help="org, team:ID, app:NAME, namespace:NAME or cluster:NAME"
    ),
    minutes: int = typer.Option(60, "--minutes", min=1, max=1440, help="Time box."),
    url: str | None = _URL,
    fmt: str = _FMT,
) -> None:
    body = {"reason": reason, "scope": "org:*" if scope == "org" else scope, "duration_minutes": minutes}
    _emit(fmt, _run(fmt, url, lambda c: c.post("/breakglass", body)))


@breakglass_app.command("close")
def breakglass_close(grant_id: str, url: str | None = _URL, fmt: str = _FMT) -> None:
    _emit(fmt, _run(fmt, url, lambda c: c.post(f"/breakglass/{grant_id}/close")))


@breakglass_app.command("review")
def breakglass_review(
    grant_id: str,
    outcome: str = typer.Option(..., "--outcome", help="justified or unjustified"),
    notes: str = typer.Option(..., "--notes"),
    url: str | None = _URL,
    fmt: str = _FMT,
) -> None:
    body = {"outcome": outcome, "notes": notes}
    _emit(fmt, _run(fmt, url, lambda c: c.post(f"/breakglass/{grant_id}/review", body)))


def register(app: typer.Typer) -> None:
    app.command("login")(login)
    app.command("logout")(logout)
    app.command("whoami")(whoami)
    app.add_typer(user_app, name="user")
    app.add_typer(team_app, name="team")
    app.add_typer(app_app, name="app")
    app.add_typer(token_app, name="token")
    app.add_typer(role_app, name="role")
    app.add_typer(sod_app, name="sod")
    app.add_typer(approval_app, name="approval")
    app.add_typer(audit_app, name="audit")
    app.add_typer(breakglass_app, name="breakglass")
