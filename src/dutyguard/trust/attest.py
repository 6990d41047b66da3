"""Gate attestations: in-toto Statement v1 in a DSSE envelope, signed by the control plane.

Payload type ``application/vnd.in-toto+json``; predicate type
``https://dutyguard.dev/attestation/gate/v1``. The predicate (all fields required)::

    {"decision": "pass" | "fail" | "breakglass",
     "policy": {"name": str, "issuer": str, "version": int, "digest": "sha256:<hex>"},
     "exceptions": {"snapshotVersion": int},
     "blockingFindings": [{"ruleId", "severity", "fingerprint"}],
     "waivedFindings": [{"ruleId", "severity", "fingerprint", "exceptionId", "expires"}],
     "errors": int,                       # inputs that could not be read
     "submitter": str,                    # the identity that submitted the scan (a CI token)
     "time": "YYYY-MM-DDTHH:MM:SSZ",      # when the control plane signed the decision
     "breakglass": null | {"grantId": str},
     "scanner": {"name": "dutyguard", "version": str}}

Consistency is part of validity: ``pass`` has no blocking finding and no error; ``fail`` has at
least one of them; ``breakglass`` has a grant (a blocked gate let through, loudly). Subjects are
an image (``oci://REGISTRY/IMAGE@sha256:HEX`` -> name ``REGISTRY/IMAGE``, digest ``sha256``) or
a commit (``git:COMMIT`` -> name ``git``, digest ``gitCommit``).

Per in-toto's parsing rules unknown fields of the Statement and its subjects are ignored; the
predicate is ours and parsed strictly (a new field means a new predicate version). Signed by
the control plane, never by the CI runner: a runner holds no key, so it cannot forge a pass.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from dutyguard.audit.signing import Signer
from dutyguard.core.model import ScanReport
from dutyguard.trust._time import format_time, parse_time
from dutyguard.trust.dsse import Envelope, parse_envelope, sign_envelope, verify_envelope
from dutyguard.trust.errors import MalformedError, SignatureError, SubjectMismatchError
from dutyguard.trust.keys import Keyring, TrustedKey

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://dutyguard.dev/attestation/gate/v1"
INTOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
DECISIONS = ("pass", "fail", "breakglass")
MAX_FINDINGS = 100_000
MAX_SUBJECTS = 64

_OCI = re.compile(r"oci://(?P<name>[a-z0-9][a-z0-9.:-]*(?:/[a-z0-9._-]+)+)@sha256:(?P<hex>[0-9a-f]{64})")
_GIT = re.compile(r"git:(?P<hex>[0-9a-f]{40}|[0-9a-f]{64})")
_DIGEST_VALUE = re.compile(r"[0-9a-f]{40,128}")
_SEVERITIES = ("critical", "high", "medium", "low", "info")
_FP = re.compile(r"[0-9a-f]{32}")
_SHA = re.compile(r"sha256:[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class Subject:
    name: str
    digest: Mapping[str, str]

    @classmethod
    def parse(cls, text: str) -> Subject:
        """``oci://REGISTRY/IMAGE@sha256:HEX`` or ``git:COMMIT``; ``ValueError`` otherwise."""
        m = _OCI.fullmatch(text)
        if m:
            return cls(m["name"], {"sha256": m["hex"]})
        m = _GIT.fullmatch(text)
        if m:
            return cls("git", {"gitCommit": m["hex"]})
        raise ValueError(
            f"{text!r} is not oci://REGISTRY/IMAGE@sha256:<64 hex> or git:<commit hash> (lower case)"
        )

    def render(self) -> str:
        if "sha256" in self.digest and self.name != "git":
            return f"oci://{self.name}@sha256:{self.digest['sha256']}"
        if "gitCommit" in self.digest:
            return f"git:{self.digest['gitCommit']}"
        return f"{self.name} {dict(self.digest)}"

    def covered_by(self, other: Subject) -> bool:
        """Whether ``other`` names this artefact: same name and every digest of ours agrees."""
        return self.name == other.name and all(other.digest.get(k) == v for k, v in self.digest.items())

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "digest": dict(self.digest)}


@dataclass(frozen=True, slots=True)
class FindingRef:
    rule_id: str
    severity: str
    fingerprint: str
    exception_id: str | None = None
    expires: datetime | None = None

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "ruleId": self.rule_id,
            "severity": self.severity,
            "fingerprint": self.fingerprint,
        }
        if self.exception_id is not None:
            out["exceptionId"] = self.exception_id
            out["expires"] = format_time(self.expires) if self.expires else None
        return out


@dataclass(frozen=True, slots=True)
class GatePredicate:
    decision: str
    policy_name: str
    policy_issuer: str
    policy_version: int
    policy_digest: str
    snapshot_version: int
    blocking: tuple[FindingRef, ...]
    waived: tuple[FindingRef, ...]
    errors: int
    submitter: str
    time: datetime
    breakglass_grant: str | None = None
    scanner_version: str = field(default="")

    def to_json(self) -> dict[str, object]:
        return {
            "decision": self.decision,
            "policy": {
                "name": self.policy_name,
                "issuer": self.policy_issuer,
                "version": self.policy_version,
                "digest": self.policy_digest,
            },
            "exceptions": {"snapshotVersion": self.snapshot_version},
            "blockingFindings": [f.to_json() for f in self.blocking],
            "waivedFindings": [f.to_json() for f in self.waived],
            "errors": self.errors,
            "submitter": self.submitter,
            "time": format_time(self.time),
            "breakglass": {"grantId": self.breakglass_grant} if self.breakglass_grant else None,
            "scanner": {"name": "dutyguard", "version": self.scanner_version},
        }


def predicate_from_report(
    report: ScanReport,
    *,
    policy_name: str,
    policy_issuer: str,
    policy_version: int,
    policy_digest: str,
    snapshot_version: int,
    submitter: str,
    time: datetime,
    breakglass_grant: str | None = None,
) -> GatePredicate:
    """The predicate for a gate decision (the control plane calls this on a submitted report).

    The decision follows the report: ``pass`` when nothing blocks and every input was read,
    else ``fail``, or ``breakglass`` when a grant lets a failed gate through.
    """
    from dutyguard import __version__

    failing = bool(report.blocking) or bool(report.errors)
    if breakglass_grant is not None and not failing:
        raise ValueError("break-glass is for a blocked gate; this one passes")
    decision = "pass" if not failing else ("breakglass" if breakglass_grant else "fail")
    return GatePredicate(
        decision=decision,
        policy_name=policy_name,
        policy_issuer=policy_issuer,
        policy_version=policy_version,
        policy_digest=policy_digest,
        snapshot_version=snapshot_version,
        blocking=tuple(FindingRef(f.rule_id, f.severity.value, f.fingerprint) for f in report.blocking),
        waived=tuple(
            FindingRef(f.rule_id, f.severity.value, f.fingerprint, f.waiver.exception_id, f.waiver.expires)
            for f in report.findings
            if f.waiver is not None
        ),
        errors=len(report.errors),
        submitter=submitter,
        time=time,
        breakglass_grant=breakglass_grant,
        scanner_version=__version__,
    )


@dataclass(frozen=True, slots=True)
class GateAttestation:
    subjects: tuple[Subject, ...]
    predicate: GatePredicate

    def statement(self) -> dict[str, object]:
        return {
            "_type": STATEMENT_TYPE,
            "subject": [s.to_json() for s in self.subjects],
            "predicateType": PREDICATE_TYPE,
            "predicate": self.predicate.to_json(),
        }


@dataclass(frozen=True, slots=True)
class VerifiedAttestation:
    attestation: GateAttestation
    signed_by: tuple[TrustedKey, ...]


def sign_attestation(signer: Signer, attestation: GateAttestation) -> Envelope:
    """The control plane's side. Refuses to sign a predicate no verifier would accept."""
    from dutyguard.audit.canonical import canonical_json

    statement = attestation.statement()
    _parse_predicate(statement["predicate"], "attestation")  # same rules as the verifier
    return sign_envelope(signer, INTOTO_PAYLOAD_TYPE, canonical_json(statement))


def verify_attestation(
    data: bytes, keyring: Keyring, source: str, subject: Subject | None = None
) -> VerifiedAttestation:
    from dutyguard.trust._json import StrictJSONError, loads

    env = parse_envelope(data, source)
    keys = verify_envelope(env, keyring, source)
    if env.payload_type != INTOTO_PAYLOAD_TYPE:
        raise MalformedError(
            source, f"payload type is {env.payload_type!r}, expected {INTOTO_PAYLOAD_TYPE!r}"
        )
    try:
        value = loads(env.payload)
    except StrictJSONError as e:
        raise MalformedError(source, f"the statement is not strict JSON ({e})") from None
    if not isinstance(value, dict):
        raise MalformedError(source, "the statement is not a JSON object")
    if value.get("_type") != STATEMENT_TYPE:
        raise MalformedError(source, f"_type is {value.get('_type')!r}, expected {STATEMENT_TYPE!r}")
    if value.get("predicateType") != PREDICATE_TYPE:
        raise MalformedError(
            source, f"predicateType is {value.get('predicateType')!r}, expected {PREDICATE_TYPE!r}"
        )
    subjects = _parse_subjects(value.get("subject"), source)
    predicate = _parse_predicate(value.get("predicate"), source)
    if not any(k.valid_at(predicate.time) for k in keys):
        k = keys[0]
        raise SignatureError(
            source,
            f"signed by key {k.key_id[:16]}…, which was not valid at the attested time "
            f"{format_time(predicate.time)} (key valid {k.window()})",
        )
    if subject is not None and not any(subject.covered_by(s) for s in subjects):
        names = ", ".join(s.render() for s in subjects)
        raise SubjectMismatchError(source, f"attests {names}, not {subject.render()}")
    return VerifiedAttestation(GateAttestation(subjects, predicate), keys)


def _parse_subjects(value: object, source: str) -> tuple[Subject, ...]:
    if not isinstance(value, list) or not value:
        raise MalformedError(source, "subject must be a non-empty list")
    if len(value) > MAX_SUBJECTS:
        raise MalformedError(source, f"more than {MAX_SUBJECTS} subjects")
    out: list[Subject] = []
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise MalformedError(source, f"subject[{i}] is not an object")
        name, digest = item.get("name", "_"), item.get("digest")
        if not isinstance(name, str) or not isinstance(digest, dict) or not digest:
            raise MalformedError(
                source, f"subject[{i}] needs a name and a digest (in-toto: digest is required)"
            )
        for alg, hexval in digest.items():
            if not isinstance(hexval, str) or not _DIGEST_VALUE.fullmatch(hexval):
                raise MalformedError(source, f"subject[{i}].digest.{alg} is not a lower-case hex digest")
        out.append(Subject(name, dict(digest)))
    return tuple(out)


class _P:
    """Strict accessors for the predicate; every failure is a MalformedError naming the field."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, why: str) -> MalformedError:
        return MalformedError(self.source, f"predicate.{where}: {why}")

    def obj(self, value: object, where: str, keys: Sequence[str]) -> dict[str, object]:
        if not isinstance(value, dict):
            raise self.fail(where, "expected an object")
        if set(value) != set(keys):
            odd = sorted(set(value) ^ set(keys))
            raise self.fail(where, f"unexpected or missing field(s): {', '.join(odd)}")
        return value

    def text(
        self, value: object, where: str, pattern: re.Pattern[str] | None = None, max_len: int = 256
    ) -> str:
        if not isinstance(value, str) or not value or len(value) > max_len:
            raise self.fail(where, f"expected a string of 1-{max_len} characters")
        if pattern is not None and not pattern.fullmatch(value):
            raise self.fail(where, f"{value!r} is not valid here")
        return value

    def count(self, value: object, where: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise self.fail(where, "expected a non-negative integer")
        return value

    def time(self, value: object, where: str) -> datetime:
        try:
            return parse_time(value)
        except ValueError as e:
            raise self.fail(where, str(e)) from None

    def findings(self, value: object, where: str, waived: bool) -> tuple[FindingRef, ...]:
        if not isinstance(value, list) or len(value) > MAX_FINDINGS:
            raise self.fail(where, f"expected a list of at most {MAX_FINDINGS} findings")
        keys = ("ruleId", "severity", "fingerprint", *(("exceptionId", "expires") if waived else ()))
        out: list[FindingRef] = []
        for i, item in enumerate(value):
            w = f"{where}[{i}]"
            m = self.obj(item, w, keys)
            sev = m["severity"]
            if sev not in _SEVERITIES:
                raise self.fail(f"{w}.severity", f"{sev!r} is not a severity")
            out.append(
                FindingRef(
                    rule_id=self.text(m["ruleId"], f"{w}.ruleId", max_len=128),
                    severity=str(sev),
                    fingerprint=self.text(m["fingerprint"], f"{w}.fingerprint", _FP),
                    exception_id=self.text(m["exceptionId"], f"{w}.exceptionId", max_len=64)
                    if waived
                    else None,
                    expires=self.time(m["expires"], f"{w}.expires") if waived else None,
                )
            )
        return tuple(out)


_PREDICATE_KEYS = (
    "decision",
    "policy",
    "exceptions",
    "blockingFindings",
    "waivedFindings",
    "errors",
    "submitter",
    "time",
    "breakglass",
    "scanner",
)


def _parse_predicate(value: object, source: str) -> GatePredicate:
    p = _P(source)
    if not isinstance(value, dict):
        raise MalformedError(source, "predicate is not an object")
    m = p.obj(value, "(root)", _PREDICATE_KEYS)
    decision = m["decision"]
    if decision not in DECISIONS:
        raise p.fail("decision", f"{decision!r} is not one of {', '.join(DECISIONS)}")
    pol = p.obj(m["policy"], "policy", ("name", "issuer", "version", "digest"))
    version = pol["version"]
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise p.fail("policy.version", "expected a positive integer")
    exc = p.obj(m["exceptions"], "exceptions", ("snapshotVersion",))
    snap = exc["snapshotVersion"]
    if isinstance(snap, bool) or not isinstance(snap, int) or snap < 1:
        raise p.fail("exceptions.snapshotVersion", "expected a positive integer")
    blocking = p.findings(m["blockingFindings"], "blockingFindings", waived=False)
    waived = p.findings(m["waivedFindings"], "waivedFindings", waived=True)
    errors = p.count(m["errors"], "errors")
    grant = None
    if m["breakglass"] is not None:
        grant = p.text(
            p.obj(m["breakglass"], "breakglass", ("grantId",))["grantId"], "breakglass.grantId", max_len=64
        )
    scanner = p.obj(m["scanner"], "scanner", ("name", "version"))
    if scanner["name"] != "dutyguard":
        raise p.fail("scanner.name", "expected 'dutyguard'")
    pred = GatePredicate(
        decision=str(decision),
        policy_name=p.text(pol["name"], "policy.name", max_len=63),
        policy_issuer=p.text(pol["issuer"], "policy.issuer", max_len=253),
        policy_version=version,
        policy_digest=p.text(pol["digest"], "policy.digest", _SHA),
        snapshot_version=snap,
        blocking=blocking,
        waived=waived,
        errors=errors,
        submitter=p.text(m["submitter"], "submitter", max_len=128),
        time=p.time(m["time"], "time"),
        breakglass_grant=grant,
        scanner_version=p.text(scanner["version"], "scanner.version", max_len=64),
    )
    failing = bool(pred.blocking) or pred.errors > 0
    if pred.decision == "pass" and failing:
        raise p.fail("decision", "'pass' with blocking findings or errors")
    if pred.decision == "fail" and not failing:
        raise p.fail("decision", "'fail' without any blocking finding or error")
    if pred.decision == "breakglass" and (grant is None or not failing):
        raise p.fail("decision", "'breakglass' needs a grant and a gate that was blocked")
    if pred.decision != "breakglass" and grant is not None:
        raise p.fail("breakglass", f"a grant on a {pred.decision!r} decision")
    return pred
