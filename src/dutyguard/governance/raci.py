"""Ownership of the seed model's processes: who is Responsible, Accountable, Consulted, Informed.

``data/raci.yaml`` lists, for each process, exactly one Accountable role, the Responsible,
Consulted and Informed roles, the duties the process governs, and which of them are the
Accountable role's alone (sign-offs: approving a policy, closing a break-glass review).

Checked at load, against the role table:

- the six processes of the seed model are all present, each exactly once;
- a role has one letter per process (A may also be R; C and I are disjoint from A and R);
- a duty is governed by at most one process;
- a governed duty is held, in ``roles.yaml``, only by that process's A or R roles;
- a sign-off duty is held only by the Accountable role, and the Accountable role holds all of them;
- every Responsible role holds at least one governed duty (R does the work, so it must be able to).

:func:`Raci.permits` is what authorization asks, so the matrix is enforced, not only printed.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import MappingProxyType

from dutyguard.governance._load import Doc, read_file
from dutyguard.governance.duties import MACHINE_ROLES, Duty, Role, RoleTable, read_duties, shipped_roles

SEED_PROCESSES: tuple[str, ...] = (
    "policy-authoring",
    "risk-evaluation",
    "remediation",
    "incident-response",
    "compliance-monitoring",
    "audit-pentest",
)


@dataclass(frozen=True, slots=True)
class Process:
    id: str
    title: str
    accountable: Role
    responsible: frozenset[Role]
    consulted: frozenset[Role]
    informed: frozenset[Role]
    duties: frozenset[Duty]
    signoff: frozenset[Duty]
    refs: tuple[str, ...]

    def letters(self, role: Role) -> str:
        """``A``, ``R``, ``A/R``, ``C``, ``I`` or ``""`` for one cell of the matrix."""
        out = []
        if role is self.accountable:
            out.append("A")
        if role in self.responsible:
            out.append("R")
        if role in self.consulted:
            out.append("C")
        if role in self.informed:
            out.append("I")
        return "/".join(out)


@dataclass(frozen=True, slots=True)
class MatrixRow:
    process: str
    title: str
    cells: Mapping[Role, str]
    accountable: Role


@dataclass(frozen=True, slots=True)
class Raci:
    processes: tuple[Process, ...]
    by_duty: Mapping[Duty, Process]
    source: str

    def process(self, process_id: str) -> Process:
        for p in self.processes:
            if p.id == process_id:
                return p
        raise KeyError(process_id)

    def governing(self, duty: Duty) -> Process | None:
        return self.by_duty.get(duty)

    def accountable_for(self, duty: Duty) -> Role | None:
        p = self.by_duty.get(duty)
        return p.accountable if p is not None else None

    def permits(self, role: Role, duty: Duty) -> bool:
        """May a binding of ``role`` exercise ``duty`` as far as process ownership goes?

        Ungoverned duties are left to the role table alone.
        """
        p = self.by_duty.get(duty)
        if p is None:
            return True
        if duty in p.signoff:
            return role is p.accountable
        return role is p.accountable or role in p.responsible

    def matrix(self) -> tuple[MatrixRow, ...]:
        """One row per process, a cell per person role, for ``sod report``."""
        people = [r for r in Role if r not in MACHINE_ROLES]
        return tuple(
            MatrixRow(p.id, p.title, MappingProxyType({r: p.letters(r) for r in people}), p.accountable)
            for p in self.processes
        )


def _role(doc: Doc, value: object, path: tuple[str | int, ...]) -> Role:
    role = doc.choice(value, path, Role, "role")
    if role in MACHINE_ROLES:
        raise doc.error(path, f"machine role {role} cannot own a process")
    return role


def _parse_process(doc: Doc, item: object, path: tuple[str | int, ...]) -> Process:
    body = doc.mapping(
        item,
        path,
        required=("id", "title", "accountable", "responsible", "duties", "signoff", "refs"),
        optional=("consulted", "informed"),
    )
    pid = doc.string(body["id"], (*path, "id"), max_len=64)
    if pid not in SEED_PROCESSES:
        raise doc.error((*path, "id"), f"unknown process {pid!r} (one of {', '.join(SEED_PROCESSES)})")
    accountable = _role(doc, body["accountable"], (*path, "accountable"))

    def roles_at(key: str) -> frozenset[Role]:
        if key not in body:
            return frozenset()
        return frozenset(doc.unique_list(body[key], (*path, key), partial(_role, doc), allow_empty=True))

    responsible = roles_at("responsible")
    consulted = roles_at("consulted")
    informed = roles_at("informed")
    if not responsible:
        raise doc.error((*path, "responsible"), "at least one role is Responsible")
    for key, group in (("consulted", consulted), ("informed", informed)):
        clash = group & (responsible | {accountable})
        if clash:
            raise doc.error((*path, key), f"{', '.join(sorted(clash))} already Accountable or Responsible")
    if consulted & informed:
        raise doc.error((*path, "informed"), f"{', '.join(sorted(consulted & informed))} already Consulted")
    duties = read_duties(doc, body["duties"], (*path, "duties"))
    signoff = read_duties(doc, body["signoff"], (*path, "signoff"))
    if not signoff <= duties:
        raise doc.error((*path, "signoff"), "sign-off duties must be among the process's duties")
    return Process(
        id=pid,
        title=doc.string(body["title"], (*path, "title"), max_len=200),
        accountable=accountable,
        responsible=responsible,
        consulted=consulted,
        informed=informed,
        duties=duties,
        signoff=signoff,
        refs=doc.unique_list(body["refs"], (*path, "refs"), lambda v, p: doc.string(v, p, max_len=300)),
    )


def parse_raci(doc: Doc, roles: RoleTable) -> Raci:
    top = doc.mapping(doc.value, (), required=("version", "processes"))
    doc.integer(top["version"], ("version",), lo=1, hi=1)
    raw = top["processes"]
    if not isinstance(raw, list) or not raw:
        raise doc.error(("processes",), "expected a non-empty list of processes")
    processes: list[Process] = []
    by_duty: dict[Duty, Process] = {}
    for i, item in enumerate(raw):
        path: tuple[str | int, ...] = ("processes", i)
        process = _parse_process(doc, item, path)
        if any(p.id == process.id for p in processes):
            raise doc.error((*path, "id"), f"duplicate process {process.id!r}")
        for duty in sorted(process.duties):
            if duty in by_duty:
                raise doc.error((*path, "duties"), f"{duty} is already governed by {by_duty[duty].id}")
            by_duty[duty] = process
        _check_against_roles(doc, process, roles, path)
        processes.append(process)
    missing = [p for p in SEED_PROCESSES if not any(q.id == p for q in processes)]
    if missing:
        raise doc.error(("processes",), f"missing processes: {', '.join(missing)}")
    return Raci(tuple(processes), MappingProxyType(by_duty), doc.source)


def _check_against_roles(doc: Doc, p: Process, roles: RoleTable, path: tuple[str | int, ...]) -> None:
    doers = p.responsible | {p.accountable}
    for duty in sorted(p.duties):
        holders = roles.roles_with(duty)
        allowed = {p.accountable} if duty in p.signoff else doers
        stray = holders - allowed
        if stray:
            raise doc.error(
                (*path, "duties"),
                f"{duty} is held by {', '.join(sorted(stray))} in {roles.source}, "
                f"but only {', '.join(sorted(allowed))} may exercise it for {p.id}",
            )
    missing = p.signoff - roles.duties_of(p.accountable)
    if missing:
        raise doc.error(
            (*path, "signoff"),
            f"the Accountable role {p.accountable} does not hold {', '.join(sorted(missing))} in {roles.source}",
        )
    for role in sorted(p.responsible):
        if not roles.duties_of(role) & p.duties:
            raise doc.error(
                (*path, "responsible"), f"{role} is Responsible but holds none of the process's duties"
            )


def load_raci(path: Path | None = None, roles: RoleTable | None = None) -> Raci:
    """Load ``path`` (default: the shipped file) and check it against ``roles`` (default: shipped)."""
    return parse_raci(read_file(path, "raci.yaml"), roles if roles is not None else shipped_roles())


@functools.cache
def shipped_raci() -> Raci:
    return load_raci()


def accountable_for(duty: Duty) -> Role | None:
    """The Accountable role of the process governing ``duty`` in the shipped matrix."""
    return shipped_raci().accountable_for(duty)


def matrix() -> tuple[MatrixRow, ...]:
    return shipped_raci().matrix()
