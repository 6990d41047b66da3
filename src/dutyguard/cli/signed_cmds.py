"""Policy lifecycle, exceptions, signed state and keys: thin clients of the control plane API.

``policy propose|rollback|list|show|diff|history|approve|reject|withdraw`` join ``policy lint`` (which
stays offline); ``exception request|list|show|approve|reject|revoke|withdraw``; ``state pull DIR``
(for air-gapped CI and webhooks); ``keys export|rotate``; ``attest list|get``. Every command
takes ``--format json``; refusals print the problem and exit 2 (see :mod:`dutyguard.cli.gov_cmds`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from dutyguard.cli.gov_cmds import _FMT, _URL, _emit, _json, _run, _show, _table
from dutyguard.errors import ConfigError, InputError

if TYPE_CHECKING:
    from dutyguard.cli.client import Client

MAX_FILE_BYTES = 1024 * 1024


def _read_text(path: Path, what: str) -> str:
    try:
        with path.open("rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as e:
        raise InputError(str(path), f"cannot read ({e.strerror or e})") from None
    if len(data) > MAX_FILE_BYTES:
        raise InputError(str(path), f"larger than {MAX_FILE_BYTES} bytes, the limit for {what}")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(str(path), f"not valid UTF-8 (byte {e.start})") from None


def _write_text(path: Path, text: str, flag: str) -> None:
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{flag}: cannot write {path}: {e.strerror or e}") from None


def _shown(fmt: str, item: dict[str, Any], show: Callable[[dict[str, Any]], None]) -> bool:
    """Print ``item`` as JSON or through ``show``; True when shown as text (the caller may add a hint)."""
    if fmt == "json":
        _json(item)
        return False
    show(item)
    return True


def _act(
    fmt: str, url: str | None, path: str, body: dict[str, Any], show: Callable[[dict[str, Any]], None]
) -> dict[str, Any] | None:
    """POST one action and print its result; the result when it was shown as text, else ``None``."""
    item: dict[str, Any] = _run(fmt, url, lambda c: c.post(path, body))
    return item if _shown(fmt, item, show) else None


# -- policy ----------------------------------------------------------------------------------------------


def _print_proposal(p: dict[str, Any], *, diff: bool) -> None:
    _show(
        {
            "id": p["id"],
            "bundle": f"{p['name']} {p['digest']}",
            "state": p["state"],
            "maker": p["maker"],
            "message": p["message"],
            "severity": p["severity"],
            "approvals": f"{len(p['approvals'])}/{p['quorum']} {', '.join(p['approvals'])}".rstrip(),
            "based on": f"v{p['base_version']}" if p["base_version"] else "(nothing published)",
            "published": f"v{p['published_version']}" if p["published_version"] else "-",
            "expires": p["expires_at"],
        }
    )
    for change in p["changes"]:
        typer.echo(f"  {change['effect']}: {change['what']}")
    if diff and p.get("diff"):
        typer.echo(p["diff"])


def _print_detail(p: dict[str, Any]) -> None:
    _print_proposal(p, diff=True)


def _print_brief(p: dict[str, Any]) -> None:
    _print_proposal(p, diff=False)


def policy_propose(
    file: Path = typer.Argument(..., metavar="FILE", help="The bundle (YAML or JSON).", dir_okay=False),
    message: str = typer.Option(..., "--message", "-m", help="Why the policy changes (shown to approvers)."),
    url: str | None = _URL,
    fmt: str = _FMT,
) -> None:
    """Propose a bundle (security): it is linted on the server and published once others approve it."""
    text = _read_text(file, "a policy bundle")
    p = _act(fmt, url, "/policies/proposals", {"document": text, "message": message}, _print_detail)
    if p is not None:
        typer.echo(f"next: another security member runs `dutyguard policy approve {p['id']}`")


def policy_rollback(
    version: int = typer.Argument(..., metavar="VERSION", min=1, help="The published version to restore."),
    message: str = typer.Option(..., "--message", "-m", help="Why (shown to approvers)."),
    url: str | None = _URL,
    fmt: str = _FMT,
) -> None:
    """Propose an earlier version's content again (security): approved, it is published as a new
    version; an old version is never re-published, so no runner sees a version number go back."""

    def propose_again(c: Client) -> dict[str, Any]:
        old = c.get(f"/policies/{version}")
        document = json.dumps(old["document"], indent=2, sort_keys=True) + "\n"
        proposal: dict[str, Any] = c.post("/policies/proposals", {"document": document, "message": message})
        return proposal

    p = _run(fmt, url, propose_again)
    if _shown(fmt, p, _print_detail):
        typer.echo(f"next: another security member runs `dutyguard policy approve {p['id']}`")


def policy_list(
    state: str | None = typer.Option(None, "--state", help="pending, approved, rejected, expired, withdrawn"),
    url: str | None = _URL,
    fmt: str = _FMT,
) -> None:
    """Policy proposals."""
    items = _run(fmt, url, lambda c: list(c.paginate("/policies/proposals", state=state)))
    rows = [
        {**p, "approvals": f"{len(p['approvals'])}/{p['quorum']}", "published": p["published_version"]}
        for p in items
    ]
    _emit(fmt, items, rows, ("id", "name", "state", "severity", "maker", "approvals", "published", "message"))


def policy_show(
    ref: str | None = typer.Argument(
        None, metavar="[ID|VERSION]", help="A proposal id or a version (default: current)."
    ),
    url: str | None = _URL,
    fmt: str = _FMT,
) -> None:
    """A proposal (with its diff), a published version, or the bundle in force."""
    if ref is not None and not ref.isdigit():
        _shown(fmt, _run(fmt, url, lambda c: c.get(f"/policies/proposals/{ref}")), _print_detail)
        return
    path = f"/policies/{int(ref)}" if ref is not None else "/policies/current"
    v = _run(fmt, url, lambda c: c.get(path))
    if fmt == "json":
        _json(v)
        return
    _show(
        {
            k: v[k]
            for k in (
                "version",
                "name",
                "digest",
                "previous_digest",
                "published_at",
                "published_by",
                "proposal_id",
                "expires_at",
                "key_id",
            )
        }
    )
    typer.echo(json.dumps(v["document"], indent=2, sort_keys=True))


def policy_diff(
    ref: str = typer.Argument(..., metavar="ID|OLD", help="A proposal id, or the older version."),
    new: int | None = typer.Argument(None, metavar="[NEW]", help="The newer version (with OLD)."),
    url: str | None = _URL,
    fmt: str = _FMT,
) -> None:
    """What a proposal changes against the version it is based on, or what changed between versions."""
    if not ref.isdigit():
        p = _run(fmt, url, lambda c: c.get(f"/policies/proposals/{ref}"))
        data = {"changes": p["changes"], "diff": p["diff"]}
    else:
        if new is None:
            raise typer.BadParameter(
                "give the newer version too (dutyguard policy diff 3 4)", param_hint="NEW"
            )
        data = _run(fmt, url, lambda c: c.get("/policies/diff", old=int(ref), new=new))
    if fmt == "json":
        _json(data)
        return
    for change in data["changes"]:
        typer.echo(f"{change['effect']}: {change['what']}")
    typer.echo(data["diff"] or "(no difference)")


def policy_history(url: str | None = _URL, fmt: str = _FMT) -> None:
    """Published versions, newest first."""
    items = _run(fmt, url, lambda c: list(c.paginate("/policies")))
    _emit(fmt, items, items, ("version", "name", "digest", "published_at", "published_by", "proposal_id"))


def policy_approve(
    proposal_id: str,
    digest: str | None = typer.Option(
        None, "--digest", help="The bundle digest you reviewed (sha256:… or hex); refused if it changed."
    ),
    reason: str = typer.Option("", "--reason"),
    url: str | None = _URL,
    fmt: str = _FMT,
) -> None:
    """Approve someone else's proposal; the approval that reaches the quorum publishes it."""
    body: dict[str, Any] = {"reason": reason}
    if digest:
        body["seen_digest"] = digest.removeprefix("sha256:")
    p = _act(fmt, url, f"/policies/proposals/{proposal_id}/approve", body, _print_brief)
    if p is not None and p["published_version"]:
        typer.echo(f"published as v{p['published_version']}: signed and served to every gate")


def policy_reject(
    proposal_id: str,
    reason: str = typer.Option(..., "--reason", help="Why (required): one rejection ends the proposal."),
    url: str | None = _URL,
    fmt: str = _FMT,
) -> None:
    """Reject a proposal (security, not its maker): one rejection ends it."""
    _act(fmt, url, f"/policies/proposals/{proposal_id}/reject", {"reason": reason}, _print_brief)


def policy_withdraw(
    proposal_id: str,
    reason: str = typer.Option(..., "--reason"),
    url: str | None = _URL,
    fmt: str = _FMT,
) -> None:
    """Withdraw your own pending proposal (its maker only)."""
    _act(fmt, url, f"/policies/proposals/{proposal_id}/withdraw", {"reason": reason}, _print_brief)


# -- exceptions ------------------------------------------------------------------------------------------

exception_app = typer.Typer(
    help="Exceptions (waivers): requested by DevOps, approved by Security, signed into the snapshot.",
    no_args_is_help=True,
)

_SELECTOR_KEYS = {"app": "app", "namespace": "namespace", "imageDigest": "image_digest", "cluster": "cluster"}


def _selector(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in _SELECTOR_KEYS or not value:
            raise typer.BadParameter(
                f"{item!r}: expected KEY=VALUE with KEY one of {', '.join(_SELECTOR_KEYS)}",
                param_hint="--selector",
            )
        if _SELECTOR_KEYS[key] in out:
            raise typer.BadParameter(f"{key} given twice", param_hint="--selector")
        out[_SELECTOR_KEYS[key]] = value
    return out


def from_suppression(spec: str, rule: str | None) -> dict[str, Any]:
    """The finding a reported inline suppression asked to silence: its rule, fingerprint, namespace.

    ``spec`` is ``REPORT.json`` (the only suppression request in it) or ``REPORT.json:INDEX``
    (``suppression_requests[INDEX]`` of ``dutyguard scan -f json``). The finding is the one in the
    same file for a rule the suppression names; ``--rule`` picks one when it names several.
    """
    path_text, sep, index_text = spec.rpartition(":")
    if not sep or not index_text.isdigit():
        path_text, index_text = spec, ""
    path = Path(path_text)
    try:
        report = json.loads(_read_text(path, "a scan report"))
    except ValueError as e:
        raise InputError(str(path), f"not a JSON scan report ({e})") from None
    if not isinstance(report, dict) or not isinstance(report.get("suppression_requests"), list):
        raise InputError(str(path), "not a `dutyguard scan -f json` report (no suppression_requests)")
    requests = report["suppression_requests"]
    if not requests:
        raise InputError(str(path), "reports no inline suppression")
    if index_text:
        index = int(index_text)
        if index >= len(requests):
            raise InputError(
                str(path), f"has {len(requests)} suppression request(s); index {index} is out of range"
            )
    elif len(requests) == 1:
        index = 0
    else:
        listed = "; ".join(
            f"{i}: {r.get('file')}:{r.get('line')} {r.get('text')}" for i, r in enumerate(requests[:20])
        )
        raise InputError(
            str(path), f"reports {len(requests)} suppressions; pick one with {path}:INDEX ({listed})"
        )
    sup = requests[index]
    wanted = set(sup.get("matched_rules") or [])
    if rule is not None:
        if wanted and rule not in wanted:
            raise ConfigError(
                f"--rule {rule} is not among the rules the suppression names ({', '.join(sorted(wanted))})"
            )
        wanted = {rule}
    if not wanted:
        raise ConfigError(
            f"suppression {index} ({sup.get('text')!r}) names no dutyguard rule: give --rule to say which finding"
        )
    candidates = [
        f
        for f in report.get("findings", [])
        if isinstance(f, dict)
        and f.get("rule_id") in wanted
        and (f.get("location") or {}).get("file") == sup.get("file")
    ]
    if not candidates:
        raise ConfigError(
            f"no finding of {', '.join(sorted(wanted))} in {sup.get('file')}: nothing to request an exception for"
        )
    if len({(f["rule_id"], f["fingerprint"]) for f in candidates}) > 1:
        same = _in_same_resource(candidates, str(sup.get("file")), int(sup.get("line") or 0))
        if same == []:
            raise ConfigError(
                f"suppression {index} at {sup.get('file')}:{sup.get('line')} names {', '.join(sorted(wanted))}, but "
                "the resource it is in has no such finding: nothing to request an exception for"
            )
        candidates = same or candidates
    if len({(f["rule_id"], f["fingerprint"]) for f in candidates}) > 1:
        listed = "; ".join(
            f"{f['rule_id']} line {f['location'].get('line')} fingerprint {f['fingerprint']}"
            for f in candidates[:20]
        )
        raise ConfigError(
            f"several findings match the suppression; request with --rule and --fingerprint ({listed})"
        )
    f = candidates[0]
    return {
        "rule_id": f["rule_id"],
        "fingerprint": f["fingerprint"],
        "reason": sup.get("reason") or "",
        "where": f"{sup.get('file')}:{sup.get('line')}",
    }


def _in_same_resource(candidates: list[dict[str, Any]], file: str, line: int) -> list[dict[str, Any]] | None:
    """The findings of the manifest document the suppression sits in (or, for a comment between
    documents, the one after it); ``None`` when the scanned file is not at hand to tell."""
    from dutyguard.limits import DEFAULT_LIMITS
    from dutyguard.sources.yamldoc import load_documents

    try:
        docs = load_documents(_read_text(Path(file), "a manifest"), file, DEFAULT_LIMITS)
    except (InputError, OSError):
        return None
    spans = [(d.line, max(d.lines.values(), default=d.line), d.value) for d in docs]
    chosen = next((v for start, end, v in spans if start <= line <= end), None)
    if chosen is None:
        chosen = next((v for start, _end, v in spans if start > line), None)
    if not isinstance(chosen, dict):
        return None
    meta = chosen.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    return [
        f
        for f in candidates
        if (f.get("location") or {}).get("kind") == chosen.get("kind")
        and (f.get("location") or {}).get("name") == name
    ]


@exception_app.command("request")
def exception_request(
    rule: str | None = typer.Option(None, "--rule", help="The rule id to waive."),
    fingerprint: str | None = typer.Option(None, "--fingerprint", help="One finding (from the scan report)."),
    selector: list[str] = typer.Option(
        [],
        "--selector",
        help="namespace=NS, imageDigest=sha256:…, cluster=C, app=A (repeatable; all must match).",
    ),
    app: str | None = typer.Option(None, "--app", help="The app the exception is for (narrows the scope)."),
    suppression: str | None = typer.Option(
        None,
        "--from-suppression",
        metavar="REPORT.json[:INDEX]",
        help="Request it for the finding an inline suppression in a `scan -f json` report asked to silence.",
    ),
    justification: str | None = typer.Option(
        None, "--justification", help="Why the finding must be accepted."
    ),
    control: str = typer.Option(..., "--compensating-control", help="What limits the risk meanwhile."),
    days: int = typer.Option(..., "--days", min=1, max=365, help="How long (within the bundle's maximum)."),
    url: str | None = _URL,
    fmt: str = _FMT,
) -> None:
    """Ask Security to accept one rule's findings in a narrow scope for a limited time (devops)."""
    body: dict[str, Any] = {}
    if suppression is not None:
        if fingerprint is not None or selector:
            raise typer.BadParameter(
                "the suppression names the finding", param_hint="--fingerprint/--selector"
            )
        found = from_suppression(suppression, rule)
        body.update(rule_id=found["rule_id"], fingerprint=found["fingerprint"])
        justification = justification or (
            f"{found['reason']} (inline suppression at {found['where']})" if found["reason"] else None
        )
    else:
        if rule is None:
            raise typer.BadParameter("which rule? (or --from-suppression REPORT.json)", param_hint="--rule")
        if fingerprint is None and not selector and app is None:
            raise typer.BadParameter(
                "give --fingerprint F (one finding) or --selector KEY=VALUE / --app A",
                param_hint="--fingerprint",
            )
        body["rule_id"] = rule
        if fingerprint is not None:
            body["fingerprint"] = fingerprint
        body.update(_selector(selector))
    if app is not None:
        if body.get("app") not in (None, app):
            raise typer.BadParameter("--app and --selector app= disagree", param_hint="--app")
        body["app"] = app
    if not justification:
        raise typer.BadParameter("say why the finding must be accepted", param_hint="--justification")
    body.update(justification=justification, compensating_control=control, days=days)
    e = _act(fmt, url, "/exceptions", body, _print_exception)
    if e is None:
        return
    typer.echo(
        f"next: {e['quorum']} security approver(s) outside your team run `dutyguard exception approve {e['id']}`"
    )


def _print_exception(e: dict[str, Any]) -> None:
    _show(
        {
            "id": e["id"],
            "status": e["status"],
            "rule": f"{e['rule_id']} ({e['severity']})",
            "scope": ", ".join(f"{k}={v}" for k, v in e["scope"].items()) + (" (wide)" if e["wide"] else ""),
            "requester": e["requester"],
            "approvals": f"{len(e['approvals'])}/{e['quorum']} {', '.join(e['approvals'])}".rstrip(),
            "justification": e["justification"],
            "compensating control": e["compensating_control"],
            "duration": f"{e['days']} days",
            "expires": e["expires_at"] or f"(request open until {e['request_expires_at']})",
        }
    )
    if e.get("revoked_at"):
        typer.echo(f"revoked by {e['revoked_by']} at {e['revoked_at']}: {e['revoke_reason']}")


@exception_app.command("list")
def exception_list(
    status: str | None = typer.Option(
        None, "--status", help="pending, active, expired, revoked, rejected, withdrawn, lapsed"
    ),
    app: str | None = typer.Option(None, "--app"),
    rule: str | None = typer.Option(None, "--rule"),
    url: str | None = _URL,
    fmt: str = _FMT,
) -> None:
    """Exceptions and requests you may read, newest first."""
    items = _run(fmt, url, lambda c: list(c.paginate("/exceptions", status=status, app=app, rule=rule)))
    rows = [
        {
            **e,
            "scope": ",".join(f"{k}={v}" for k, v in e["scope"].items()),
            "approvals": f"{len(e['approvals'])}/{e['quorum']}",
        }
        for e in items
    ]
    _emit(
        fmt,
        items,
        rows,
        ("id", "status", "rule_id", "severity", "scope", "requester", "approvals", "expires_at"),
    )


@exception_app.command("show")
def exception_show(exception_id: str, url: str | None = _URL, fmt: str = _FMT) -> None:
    """One exception: scope, texts, approvals, expiry or why it ended."""
    _shown(fmt, _run(fmt, url, lambda c: c.get(f"/exceptions/{exception_id}")), _print_exception)


@exception_app.command("approve")
def exception_approve(
    exception_id: str,
    digest: str | None = typer.Option(
        None, "--digest", help="The subject digest you reviewed; refused if it changed."
    ),
    reason: str = typer.Option("", "--reason"),
    url: str | None = _URL,
    fmt: str = _FMT,
) -> None:
    """Approve a request (security; never your own, never your team's)."""
    body: dict[str, Any] = {"reason": reason}
    if digest:
        body["seen_digest"] = digest
    _act(fmt, url, f"/exceptions/{exception_id}/approve", body, _print_exception)


@exception_app.command("reject")
def exception_reject(
    exception_id: str,
    reason: str = typer.Option(..., "--reason", help="Why (required): one rejection ends the request."),
    url: str | None = _URL,
    fmt: str = _FMT,
) -> None:
    """Reject a request (security): one rejection ends it."""
    _act(fmt, url, f"/exceptions/{exception_id}/reject", {"reason": reason}, _print_exception)


@exception_app.command("revoke")
def exception_revoke(
    exception_id: str,
    reason: str = typer.Option(..., "--reason"),
    url: str | None = _URL,
    fmt: str = _FMT,
) -> None:
    """End an active exception now; the next snapshot leaves it out."""
    _act(fmt, url, f"/exceptions/{exception_id}/revoke", {"reason": reason}, _print_exception)


@exception_app.command("withdraw")
def exception_withdraw(
    exception_id: str,
    reason: str = typer.Option(..., "--reason"),
    url: str | None = _URL,
    fmt: str = _FMT,
) -> None:
    """Withdraw your own request before it is decided."""
    _act(fmt, url, f"/exceptions/{exception_id}/withdraw", {"reason": reason}, _print_exception)


# -- state and keys --------------------------------------------------------------------------------------

state_app = typer.Typer(help="Signed state for air-gapped CI runners and webhooks.", no_args_is_help=True)


@state_app.command("pull")
def state_pull(
    directory: Path = typer.Argument(..., metavar="DIR", file_okay=False),
    trust: list[str] = typer.Option(
        [],
        "--trust",
        envvar="DUTYGUARD_TRUST",
        metavar="KEY",
        help="Verify before saving (PEM, ed25519:…, keyring).",
    ),
    attestations: bool = typer.Option(
        False,
        "--attestations",
        help="Also save the latest gate attestation of every subject in DIR/attestations.",
    ),
    url: str | None = _URL,
    fmt: str = _FMT,
) -> None:
    """Save the signed bundle and exception snapshot in DIR, for `dutyguard scan --state DIR --trust KEY`."""
    import shutil
    import tempfile

    from dutyguard.cli import gate_client
    from dutyguard.cli.client import resolve

    server = resolve(url).url
    with tempfile.TemporaryDirectory(prefix="dutyguard-pull-") as tmp:
        staged = Path(tmp)
        saved = gate_client.pull(server, staged, attestations=attestations)
        summary = None
        if trust:
            summary = _verify_pulled(staged, trust)
        try:
            directory.mkdir(parents=True, exist_ok=True)
            for name, _path in gate_client.STATE_PATHS:
                gate_client._write(directory / name, (staged / name).read_bytes())
            if attestations:
                target = directory / gate_client.ATTESTATIONS_DIR
                if target.exists():
                    shutil.rmtree(target)
                shutil.copytree(staged / gate_client.ATTESTATIONS_DIR, target)
        except OSError as e:
            raise ConfigError(f"{directory}: cannot save the signed state there: {e.strerror or e}") from None
    result = {"directory": str(directory), "server": server, "saved": saved, "verified": summary}
    if fmt == "json":
        _json(result)
        return
    typer.echo(f"saved the signed state from {server} in {directory}")
    if summary:
        typer.echo(f"verified: {summary}")
    else:
        typer.echo("not verified here (no --trust): `dutyguard scan --state DIR --trust KEY` verifies it")


def _verify_pulled(directory: Path, trust: list[str]) -> str:
    """Every check of the gate except the runner's record (nothing is recorded by a pull)."""
    from dutyguard.rules import default_registry
    from dutyguard.trust._time import utc_now
    from dutyguard.trust.gate import describe
    from dutyguard.trust.keys import load_trust
    from dutyguard.trust.state import SeenState, TrustedState

    trusted = TrustedState(load_trust(trust), default_registry(), utc_now(), SeenState())
    bundle, snapshot = trusted.load_dir(directory)
    return describe(bundle, snapshot)


keys_app = typer.Typer(help="The keys that sign published state and attestations.", no_args_is_help=True)


@keys_app.command("export")
def keys_export(
    output: Path | None = typer.Option(None, "--output", "-o", metavar="FILE", dir_okay=False),
    url: str | None = _URL,
) -> None:
    """The public keyring to pin (`--trust FILE`): every key with its validity window."""
    ring = _run("json", url, lambda c: c.get("/keys"))
    text = json.dumps(ring, indent=2) + "\n"
    if output is None:
        typer.echo(text, nl=False)
        return
    _write_text(output, text, "--output")
    ids = ", ".join(k["keyid"][:16] + "…" for k in ring["keys"])
    typer.echo(f"wrote the keyring ({ids}) to {output}; compare the key ids with the control plane's host")


@keys_app.command("rotate")
def keys_rotate(
    reason: str = typer.Option(..., "--reason"),
    url: str | None = _URL,
    fmt: str = _FMT,
) -> None:
    """Retire the current signing key and start a new one (security); re-pin with `keys export`."""
    ring = _run(fmt, url, lambda c: c.post("/keys/rotate", {"reason": reason}))
    if fmt == "json":
        _json(ring)
        return
    _table(
        [{**k, "state": "current" if k["notAfter"] is None else "retired"} for k in ring["keys"]],
        ("keyid", "state", "notBefore", "notAfter"),
    )


# -- attestations (listing; `attest verify` is offline) ---------------------------------------------------


def attest_list(
    subject: str | None = typer.Option(None, "--subject", help="oci://REGISTRY/IMAGE@sha256:… or git:COMMIT"),
    url: str | None = _URL,
    fmt: str = _FMT,
) -> None:
    """Gate attestations the control plane signed, newest first."""
    items = _run(fmt, url, lambda c: list(c.paginate("/attestations", subject=subject)))
    rows = [{k: v for k, v in a.items() if k != "envelope"} for a in items]
    _emit(fmt, items, rows, ("id", "subject", "decision", "submitter", "bundle_version", "created_at"))


def attest_get(
    attestation_id: str,
    output: Path = typer.Option(..., "--output", "-o", metavar="FILE", dir_okay=False),
    url: str | None = _URL,
) -> None:
    """Save one attestation (a DSSE envelope) for `dutyguard attest verify FILE --trust KEY`."""
    a = _run("json", url, lambda c: c.get(f"/attestations/{attestation_id}"))
    _write_text(output, json.dumps(a["envelope"], indent=2) + "\n", "--output")
    typer.echo(f"saved attestation {attestation_id} ({a['decision']} for {a['subject']}) to {output}")


def register(app: typer.Typer) -> None:
    from dutyguard.cli.attest_cmd import attest_app
    from dutyguard.cli.policy_cmd import policy_app

    for name, fn in (
        ("propose", policy_propose),
        ("rollback", policy_rollback),
        ("list", policy_list),
        ("show", policy_show),
        ("diff", policy_diff),
        ("history", policy_history),
        ("approve", policy_approve),
        ("reject", policy_reject),
        ("withdraw", policy_withdraw),
    ):
        policy_app.command(name)(fn)
    attest_app.command("list")(attest_list)
    attest_app.command("get")(attest_get)
    app.add_typer(exception_app, name="exception")
    app.add_typer(state_app, name="state")
    app.add_typer(keys_app, name="keys")
