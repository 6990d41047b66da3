"""The tables of docs/governance.md, rendered from the shipped data (the doc test compares them).

Regenerate after changing a data file: ``.venv/bin/python -m tests.governance.doc_tables``.
"""

from __future__ import annotations

import itertools
import re
import sys
from collections.abc import Callable
from pathlib import Path

from dutyguard.core.model import Severity
from dutyguard.governance import (
    EMERGENCY_DUTIES,
    ApprovalKind,
    Duty,
    Role,
    default_policy,
    role_conflicts,
    shipped_raci,
    shipped_roles,
    shipped_rules,
)
from dutyguard.governance.duties import MACHINE_ROLES

DOC = Path(__file__).resolve().parents[2] / "docs" / "governance.md"
PEOPLE = [r for r in Role if r not in MACHINE_ROLES]


def duty_table() -> str:
    table = shipped_roles()
    head = "| duty | what it allows | read-only | " + " | ".join(r.value for r in Role) + " |"
    sep = "|---|---|:-:|" + ":-:|" * len(Role)
    rows = [head, sep]
    for duty in Duty:
        marks = []
        for role in Role:
            if duty in table.duties_of(role):
                marks.append("✓")
            elif duty in EMERGENCY_DUTIES and role is Role.DEVOPS:
                marks.append("break-glass")
            else:
                marks.append("")
        ro = "yes" if duty.read_only else ""
        rows.append(f"| `{duty.value}` | {duty.description} | {ro} | " + " | ".join(marks) + " |")
    return "\n".join(rows)


def rule_list() -> str:
    out = []
    for r in shipped_rules().rules:
        out.append(f"### `{r.id}`: {r.title}")
        out.append("")
        mit = "yes" if r.mitigable else "**no**"
        out.append(f"- severity: {r.severity.value}; mitigable: {mit}")
        out.append(f"- left ({r.left.match.value} of): " + ", ".join(f"`{d}`" for d in sorted(r.left.duties)))
        out.append(
            f"- right ({r.right.match.value} of): " + ", ".join(f"`{d}`" for d in sorted(r.right.duties))
        )
        out.append(f"- why: {r.rationale}")
        out.append("- sources: " + "; ".join(r.refs))
        out.append("")
    return "\n".join(out).rstrip()


def pair_table() -> str:
    rows = ["| roles held together | conflict rules broken |", "|---|---|"]
    for a, b in itertools.combinations(PEOPLE, 2):
        ids = role_conflicts(a, b)
        rows.append(f"| {a.value} + {b.value} | " + (", ".join(f"`{i}`" for i in ids) or "none") + " |")
    return "\n".join(rows)


def raci_table() -> str:
    rows = [
        "| process | " + " | ".join(r.value for r in PEOPLE) + " | governed duties (sign-off in bold) |",
        "|---|" + ":-:|" * len(PEOPLE) + "---|",
    ]
    raci = shipped_raci()
    for row in raci.matrix():
        p = raci.process(row.process)
        duties = ", ".join(f"**`{d}`**" if d in p.signoff else f"`{d}`" for d in sorted(p.duties))
        rows.append(f"| {row.process} | " + " | ".join(row.cells[r] for r in PEOPLE) + f" | {duties} |")
    return "\n".join(rows)


def approval_table() -> str:
    sev = sorted(Severity, key=lambda s: -s.rank)
    rows = [
        "| kind | maker needs | checker needs | quorum "
        + "/".join(s.value for s in sev)
        + " | pending for | maker's team excluded |",
        "|---|---|---|---|---|---|",
    ]
    for kind in ApprovalKind:
        p = default_policy(kind)
        q = "/".join(str(p.quorum(s)) for s in sev)
        rows.append(
            f"| `{kind.value}` | `{p.maker_duty}` | `{p.approver_duty}` | {q} | {p.ttl.days} days | "
            f"{'yes' if p.exclude_maker_team else 'no'} |"
        )
    return "\n".join(rows)


BLOCKS: dict[str, Callable[[], str]] = {
    "duty-table": duty_table,
    "conflict-rules": rule_list,
    "role-pairs": pair_table,
    "raci": raci_table,
    "approval-kinds": approval_table,
}


def block_re(name: str) -> re.Pattern[str]:
    return re.compile(rf"(<!-- generated:{name} -->\n)(.*?)(<!-- end:{name} -->)", re.S)


def regenerate(text: str) -> str:
    for name, render in BLOCKS.items():
        pattern = block_re(name)
        if not pattern.search(text):
            raise SystemExit(f"{DOC}: no generated block {name!r}")
        text = pattern.sub(lambda m, r=render: m.group(1) + r() + "\n" + m.group(3), text)  # type: ignore[misc]
    return text


if __name__ == "__main__":
    DOC.write_text(regenerate(DOC.read_text()))
    sys.stdout.write(f"regenerated {DOC}\n")
