"""``dutyguard attest``: gate attestations (in-toto Statement v1 in a DSSE envelope).

The control plane signs attestations; this side only verifies them, offline, against a pinned
key, so admission or an auditor can check what the gate decided for an image or a commit.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

attest_app = typer.Typer(
    name="attest",
    help="Verify gate attestations signed by the control plane.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)


@attest_app.command(
    "verify",
    epilog="Exit codes: 0 authentic (and, with --require-pass, a passing gate); "
    "1 authentic but the gate did not pass (--require-pass); 2 not authentic or unreadable "
    "(the failed check is named).",
)
def verify(
    file: Path = typer.Argument(
        ..., metavar="FILE", help="The attestation (a DSSE envelope, JSON).", dir_okay=False
    ),
    trust: list[str] = typer.Option(
        ...,
        "--trust",
        envvar="DUTYGUARD_TRUST",
        metavar="KEY",
        help="Public key of the control plane: PEM file, ed25519:<base64>, or a keyring file.",
    ),
    subject: str | None = typer.Option(
        None,
        "--subject",
        metavar="SUBJECT",
        help="Require the attestation to be about this artefact: oci://REGISTRY/IMAGE@sha256:<hex> or git:<commit>.",
    ),
    require_pass: bool = typer.Option(
        False,
        "--require-pass",
        help="Exit 1 unless the gate passed (a break-glass pass is accepted, loudly).",
    ),
    output_json: bool = typer.Option(False, "--json", help="Print the verified statement as JSON on stdout."),
) -> None:
    """Verify a gate attestation: signature by a trusted key, statement and predicate, subject."""
    from dutyguard.trust.attest import Subject, verify_attestation
    from dutyguard.trust.dsse import MAX_ENVELOPE_BYTES
    from dutyguard.trust.errors import MissingError
    from dutyguard.trust.keys import load_trust

    want = None
    if subject is not None:
        try:
            want = Subject.parse(subject)
        except ValueError as e:
            raise typer.BadParameter(str(e), param_hint="--subject") from None
    keyring = load_trust(trust)
    try:
        with file.open("rb") as f:
            data = f.read(MAX_ENVELOPE_BYTES + 1)
    except OSError as e:
        raise MissingError(str(file), f"cannot read it ({e.strerror or e})") from None
    verified = verify_attestation(data, keyring, str(file), want)
    att = verified.attestation
    p = att.predicate
    if output_json:
        print(
            json.dumps(
                {
                    "verified": True,
                    "signedBy": [k.key_id for k in verified.signed_by],
                    "statement": att.statement(),
                },
                indent=2,
            )
        )
    else:
        subjects = ", ".join(s.render() for s in att.subjects)
        waived = ", ".join(sorted({w.exception_id or "" for w in p.waived}))
        print(
            f"{file}: verified gate attestation for {subjects}\n"
            f"  decision: {p.decision}\n"
            f"  policy: {p.policy_name} v{p.policy_version} ({p.policy_digest}) from {p.policy_issuer}\n"
            f"  exception snapshot: v{p.snapshot_version}\n"
            f"  blocking findings: {len(p.blocking)}; waived: {len(p.waived)}"
            + (f" (exceptions {waived})" if waived else "")
            + f"; input errors: {p.errors}\n"
            f"  submitted by {p.submitter} at {p.time.strftime('%Y-%m-%dT%H:%M:%SZ')}; "
            f"signed by key {verified.signed_by[0].key_id[:16]}…"
        )
    if p.decision == "breakglass":
        print(
            f"dutyguard: warning: BREAK-GLASS: the gate was blocked and let through under grant {p.breakglass_grant}",
            file=sys.stderr,
        )
    if require_pass and p.decision not in ("pass", "breakglass"):
        print(f"dutyguard: the attested gate decision is {p.decision!r}, not a pass", file=sys.stderr)
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(attest_app, name="attest")
