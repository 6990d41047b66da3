"""Roles and duties: the one table that says what each role may do.

A *duty* is a fine-grained permission a route or an action declares it needs. A *role* is a
bundle of duties, read from ``data/roles.yaml``. The catalogue of duties is code (this enum)
so a route cannot ask for a duty that does not exist; which role holds which duty is data so
Security can read and review it.

Invariants checked when the table is loaded (a file that breaks one is refused, not repaired):

- every role of :class:`Role` is defined, with the kind of principal it may be bound to;
- there is no duty that writes, edits or deletes audit entries (AU-9): none exists to grant;
- ``compliance`` holds read-only duties only;
- machine roles (``ci``, ``cluster``) hold only evidence submission, state and decision duties;
- emergency duties (break-glass) are held by no role: they exist only inside an open grant;
- every duty is reachable: held by some role, or granted by break-glass;
- the *sensitive* duties (``sensitive_bindings`` in the file) include at least
  :data:`SENSITIVE_FLOOR`. A role holding any sensitive duty is a *sensitive role*: binding it
  takes a second person's approval (approval kind ``role.binding``,
  :mod:`dutyguard.governance.grants`). The file may widen the list, never narrow it below the floor.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType

from dutyguard.core.model import JSONPath
from dutyguard.governance._load import Doc, read_file


class Role(StrEnum):
    SECURITY = "security"
    DEVOPS = "devops"
    COMPLIANCE = "compliance"
    ADMIN = "admin"
    CI = "ci"
    CLUSTER = "cluster"


class PrincipalKind(StrEnum):
    PERSON = "person"
    SERVICE = "service"


class Duty(StrEnum):
    # policy bundles and response playbooks (Security-owned state)
    POLICY_READ = "policy.read"
    POLICY_PROPOSE = "policy.propose"
    POLICY_APPROVE = "policy.approve"
    POLICY_PUBLISH = "policy.publish"
    PLAYBOOK_READ = "playbook.read"
    PLAYBOOK_PROPOSE = "playbook.propose"
    PLAYBOOK_APPROVE = "playbook.approve"
    # exceptions (waivers)
    EXCEPTION_READ = "exception.read"
    EXCEPTION_REQUEST = "exception.request"
    EXCEPTION_APPROVE = "exception.approve"
    EXCEPTION_REVOKE = "exception.revoke"
    # evidence and decisions
    SCAN_SUBMIT = "scan.submit"
    EVENT_SUBMIT = "event.submit"
    STATE_READ = "state.read"
    DECISION_REQUEST = "decision.request"
    FINDING_READ = "finding.read"
    FINDING_ACKNOWLEDGE = "finding.acknowledge"
    # incidents
    INCIDENT_READ = "incident.read"
    INCIDENT_MANAGE = "incident.manage"
    INCIDENT_CONTAIN = "incident.contain"
    # audit trail: read, export, verify. There is deliberately no duty that writes or deletes.
    AUDIT_READ = "audit.read"
    AUDIT_EXPORT = "audit.export"
    AUDIT_VERIFY = "audit.verify"
    # identities, teams, ownership, role bindings
    USER_READ = "user.read"
    USER_MANAGE = "user.manage"
    TEAM_READ = "team.read"
    TEAM_MANAGE = "team.manage"
    APP_READ = "app.read"
    APP_MANAGE = "app.manage"
    TOKEN_MANAGE = "token.manage"  # noqa: S105 - a duty name, not a secret
    ROLE_READ = "role.read"
    ROLE_ASSIGN = "role.assign"
    ROLE_APPROVE = "role.approve"
    # segregation of duties itself
    SOD_READ = "sod.read"
    SOD_MITIGATE = "sod.mitigate"
    SOD_RULES_PROPOSE = "sod.rules.propose"
    SOD_RULES_APPROVE = "sod.rules.approve"
    # break-glass
    BREAKGLASS_READ = "breakglass.read"
    BREAKGLASS_OPEN = "breakglass.open"
    BREAKGLASS_REVIEW = "breakglass.review"
    ENFORCEMENT_OVERRIDE = "enforcement.override"

    @property
    def description(self) -> str:
        return _DESCRIPTIONS[self]

    @property
    def read_only(self) -> bool:
        """True when exercising the duty changes no state (it is still audited)."""
        return self in READ_ONLY_DUTIES

    @classmethod
    def parse(cls, text: str) -> Duty:
        """The duty named ``text``; ``ValueError`` for anything else (callers deny)."""
        return cls(text)


_DESCRIPTIONS: Mapping[Duty, str] = MappingProxyType(
    {
        Duty.POLICY_READ: "read policy bundles and their history",
        Duty.POLICY_PROPOSE: "propose a change to a policy bundle (opens an approval request)",
        Duty.POLICY_APPROVE: "approve or reject someone else's policy change",
        Duty.POLICY_PUBLISH: "sign and publish an approved policy bundle",
        Duty.PLAYBOOK_READ: "read response playbooks",
        Duty.PLAYBOOK_PROPOSE: "propose a change to a response playbook",
        Duty.PLAYBOOK_APPROVE: "approve or reject someone else's playbook change",
        Duty.EXCEPTION_READ: "read exceptions (waivers) and their state",
        Duty.EXCEPTION_REQUEST: "request an exception for a finding, with justification",
        Duty.EXCEPTION_APPROVE: "approve or reject someone else's exception request",
        Duty.EXCEPTION_REVOKE: "revoke an approved exception",
        Duty.SCAN_SUBMIT: "submit scan results (CI gate evidence)",
        Duty.EVENT_SUBMIT: "submit runtime and admission events",
        Duty.STATE_READ: "fetch the signed policy bundle and exception snapshot",
        Duty.DECISION_REQUEST: "ask for an enforcement decision",
        Duty.FINDING_READ: "read findings",
        Duty.FINDING_ACKNOWLEDGE: "acknowledge a finding and record its remediation",
        Duty.INCIDENT_READ: "read incidents",
        Duty.INCIDENT_MANAGE: "open, direct and close incidents",
        Duty.INCIDENT_CONTAIN: "trigger a containment action",
        Duty.AUDIT_READ: "read audit entries",
        Duty.AUDIT_EXPORT: "export audit entries and checkpoints as evidence",
        Duty.AUDIT_VERIFY: "verify the audit chain on the live server",
        Duty.USER_READ: "read identities",
        Duty.USER_MANAGE: "create, disable and edit identities",
        Duty.TEAM_READ: "read teams and their members",
        Duty.TEAM_MANAGE: "create teams and change their members",
        Duty.APP_READ: "read the ownership registry (apps, namespaces, clusters)",
        Duty.APP_MANAGE: "register apps, namespaces and clusters and their owning team",
        Duty.TOKEN_MANAGE: "create and revoke API tokens for other identities",
        Duty.ROLE_READ: "read role bindings",
        Duty.ROLE_ASSIGN: "bind and unbind roles (subject to the conflict rules)",
        Duty.ROLE_APPROVE: "approve or reject someone else's binding of a sensitive role (not one's own)",
        Duty.SOD_READ: "read the conflict rules, conflicts, mitigations and the RACI matrix",
        Duty.SOD_MITIGATE: "record or revoke a mitigating control for a conflict",
        Duty.SOD_RULES_PROPOSE: "propose a change to the conflict rules",
        Duty.SOD_RULES_APPROVE: "approve or reject someone else's change to the conflict rules",
        Duty.BREAKGLASS_READ: "read break-glass grants and reviews",
        Duty.BREAKGLASS_OPEN: "open a time-boxed emergency grant with a reason",
        Duty.BREAKGLASS_REVIEW: "review someone else's closed emergency grant",
        Duty.ENFORCEMENT_OVERRIDE: "deploy through a blocking decision (only inside an open break-glass grant)",
    }
)

READ_ONLY_DUTIES: frozenset[Duty] = frozenset(
    {
        Duty.POLICY_READ,
        Duty.PLAYBOOK_READ,
        Duty.EXCEPTION_READ,
        Duty.STATE_READ,
        Duty.DECISION_REQUEST,
        Duty.FINDING_READ,
        Duty.INCIDENT_READ,
        Duty.AUDIT_READ,
        Duty.AUDIT_EXPORT,
        Duty.AUDIT_VERIFY,
        Duty.USER_READ,
        Duty.TEAM_READ,
        Duty.APP_READ,
        Duty.ROLE_READ,
        Duty.SOD_READ,
        Duty.BREAKGLASS_READ,
    }
)
"""Duties that change nothing. ``compliance`` holds only these."""

MACHINE_DUTIES: frozenset[Duty] = frozenset(
    {Duty.SCAN_SUBMIT, Duty.EVENT_SUBMIT, Duty.STATE_READ, Duty.DECISION_REQUEST}
)
"""The only duties a machine identity (``ci``, ``cluster``) may hold."""

EMERGENCY_DUTIES: frozenset[Duty] = frozenset({Duty.ENFORCEMENT_OVERRIDE})
"""Held by no role: only an open break-glass grant confers them."""

MACHINE_ROLES: frozenset[Role] = frozenset({Role.CI, Role.CLUSTER})

SENSITIVE_FLOOR: frozenset[Duty] = frozenset(
    {
        Duty.EXCEPTION_APPROVE,  # waives findings
        Duty.POLICY_PUBLISH,  # signs the state every gate trusts, and rotates its keys
        Duty.INCIDENT_MANAGE,  # directs incident response
        Duty.INCIDENT_CONTAIN,  # acts on running workloads
        Duty.ROLE_APPROVE,  # the checker of sensitive bindings is itself a sensitive role
    }
)
"""Duties whose holders are never bound by one person alone, whatever ``roles.yaml`` says.

Without this floor a one-line edit of the data file (or a typo) could turn the
admin -> security path back on; the file may add duties, never drop these."""

MAX_BREAKGLASS_MINUTES = 24 * 60


@dataclass(frozen=True, slots=True)
class RoleSpec:
    role: Role
    kind: PrincipalKind
    description: str
    duties: frozenset[Duty]


@dataclass(frozen=True, slots=True)
class BreakglassSettings:
    duties: frozenset[Duty]
    """What an open grant adds, within its scope, for its opener."""
    max_duration: timedelta
    """The longest a grant may stay open; a longer request is refused, not shortened."""


@dataclass(frozen=True, slots=True)
class RoleTable:
    """Role → duties, as loaded from ``roles.yaml``. Build with :func:`load_roles`."""

    specs: Mapping[Role, RoleSpec]
    breakglass: BreakglassSettings
    source: str
    sensitive_duties: frozenset[Duty]
    """Binding a role that holds one of these needs an approver (``sensitive_bindings``)."""

    def duties_of(self, role: Role) -> frozenset[Duty]:
        return self.specs[role].duties

    def is_sensitive(self, role: Role) -> bool:
        """Does binding ``role`` need a second person's approval?"""
        return bool(self.specs[role].duties & self.sensitive_duties)

    @property
    def sensitive_roles(self) -> frozenset[Role]:
        return frozenset(r for r in self.specs if self.is_sensitive(r))

    def kind_of(self, role: Role) -> PrincipalKind:
        return self.specs[role].kind

    def roles_with(self, duty: Duty) -> frozenset[Role]:
        return frozenset(r for r, spec in self.specs.items() if duty in spec.duties)


def read_duties(doc: Doc, value: object, path: JSONPath) -> frozenset[Duty]:
    """A non-empty list of known duties, without repeats, from a data file."""
    return frozenset(doc.unique_list(value, path, lambda v, p: doc.choice(v, p, Duty.parse, "duty")))


def parse_roles(doc: Doc) -> RoleTable:
    top = doc.mapping(doc.value, (), required=("version", "roles", "breakglass", "sensitive_bindings"))
    doc.integer(top["version"], ("version",), lo=1, hi=1)
    raw_roles = doc.mapping(top["roles"], ("roles",), required=[r.value for r in Role])
    specs: dict[Role, RoleSpec] = {}
    for name, raw in raw_roles.items():
        role = Role(name)
        path = ("roles", name)
        body = doc.mapping(raw, path, required=("kind", "description", "duties"))
        kind = doc.choice(body["kind"], (*path, "kind"), PrincipalKind, "principal kind")
        expected_kind = PrincipalKind.SERVICE if role in MACHINE_ROLES else PrincipalKind.PERSON
        if kind is not expected_kind:
            raise doc.error((*path, "kind"), f"role {name} must be bound to a {expected_kind} identity")
        duties = read_duties(doc, body["duties"], (*path, "duties"))
        _check_role(doc, role, duties, (*path, "duties"))
        specs[role] = RoleSpec(role, kind, doc.string(body["description"], (*path, "description")), duties)

    bg = doc.mapping(top["breakglass"], ("breakglass",), required=("duties", "max_duration_minutes"))
    bg_duties = read_duties(doc, bg["duties"], ("breakglass", "duties"))
    minutes = doc.integer(
        bg["max_duration_minutes"], ("breakglass", "max_duration_minutes"), lo=1, hi=MAX_BREAKGLASS_MINUTES
    )
    if bg_duties != EMERGENCY_DUTIES:
        raise doc.error(
            ("breakglass", "duties"),
            f"must be exactly the emergency duties ({', '.join(sorted(EMERGENCY_DUTIES))})",
        )
    held = frozenset().union(*(s.duties for s in specs.values()))
    unreachable = set(Duty) - held - bg_duties
    if unreachable:
        raise doc.error(("roles",), f"duties held by no role: {', '.join(sorted(unreachable))}")
    sensitive = _sensitive(doc, top["sensitive_bindings"])
    return RoleTable(
        specs=MappingProxyType(specs),
        breakglass=BreakglassSettings(bg_duties, timedelta(minutes=minutes)),
        source=doc.source,
        sensitive_duties=sensitive,
    )


def _sensitive(doc: Doc, value: object) -> frozenset[Duty]:
    path: JSONPath = ("sensitive_bindings",)
    body = doc.mapping(value, path, required=("duties",))
    duties = read_duties(doc, body["duties"], (*path, "duties"))
    missing = SENSITIVE_FLOOR - duties
    if missing:
        raise doc.error(
            (*path, "duties"),
            f"must include {', '.join(sorted(missing))} (binding a holder of these always needs an approver)",
        )
    emergency = duties & EMERGENCY_DUTIES
    if emergency:
        # no role holds them, so listing them would read as a control that never applies
        raise doc.error(
            (*path, "duties"), f"emergency duties are held by no role: {', '.join(sorted(emergency))}"
        )
    return duties


def _check_role(doc: Doc, role: Role, duties: frozenset[Duty], path: tuple[str, ...]) -> None:
    emergency = duties & EMERGENCY_DUTIES
    if emergency:
        raise doc.error(
            path, f"emergency duties are granted only by break-glass: {', '.join(sorted(emergency))}"
        )
    if role is Role.COMPLIANCE and not duties <= READ_ONLY_DUTIES:
        bad = ", ".join(sorted(duties - READ_ONLY_DUTIES))
        raise doc.error(path, f"compliance is read-only; these duties change state: {bad}")
    if role in MACHINE_ROLES and not duties <= MACHINE_DUTIES:
        bad = ", ".join(sorted(duties - MACHINE_DUTIES))
        raise doc.error(
            path, f"machine role {role} may hold only submission/state/decision duties, not: {bad}"
        )


def load_roles(path: Path | None = None) -> RoleTable:
    """Load and check ``path`` (default: the table shipped with dutyguard)."""
    return parse_roles(read_file(path, "roles.yaml"))


@functools.cache
def shipped_roles() -> RoleTable:
    return load_roles()


def duties_of(role: Role) -> frozenset[Duty]:
    """Duties of ``role`` in the shipped table."""
    return shipped_roles().duties_of(role)
