"""RACI: one Accountable per process, consistency with the role table, strict parsing, the matrix."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from types import MappingProxyType

import pytest

from dutyguard.errors import ConfigError
from dutyguard.governance import (
    Duty,
    Role,
    accountable_for,
    load_raci,
    load_roles,
    matrix,
    shipped_raci,
    shipped_roles,
)
from dutyguard.governance.raci import SEED_PROCESSES


def test_every_seed_process_has_exactly_one_accountable_role() -> None:
    raci = shipped_raci()
    assert [p.id for p in raci.processes] == list(SEED_PROCESSES)
    for p in raci.processes:
        assert isinstance(p.accountable, Role)
        letters = next(row.cells for row in matrix() if row.process == p.id)
        assert [r for r, cell in letters.items() if "A" in cell] == [p.accountable]


def test_accountable_roles_follow_the_seed_model() -> None:
    assert accountable_for(Duty.POLICY_APPROVE) is Role.SECURITY
    assert accountable_for(Duty.EXCEPTION_APPROVE) is Role.SECURITY
    assert accountable_for(Duty.FINDING_ACKNOWLEDGE) is Role.DEVOPS
    assert accountable_for(Duty.INCIDENT_CONTAIN) is Role.SECURITY
    assert accountable_for(Duty.BREAKGLASS_OPEN) is Role.SECURITY  # devops is R, security answers for it
    assert accountable_for(Duty.AUDIT_EXPORT) is Role.COMPLIANCE
    assert accountable_for(Duty.AUDIT_VERIFY) is Role.COMPLIANCE
    assert accountable_for(Duty.POLICY_READ) is None


def test_governed_duties_are_held_only_by_accountable_or_responsible_roles() -> None:
    table = shipped_roles()
    for p in shipped_raci().processes:
        for duty in p.duties:
            assert table.roles_with(duty) <= p.responsible | {p.accountable}, (p.id, duty)
        for duty in p.signoff:
            assert table.roles_with(duty) == {p.accountable}, (p.id, duty)


def test_matrix_rows_for_sod_report() -> None:
    rows = {row.process: row for row in matrix()}
    assert rows["policy-authoring"].cells[Role.SECURITY] == "A/R"
    assert rows["policy-authoring"].cells[Role.DEVOPS] == "C"
    assert rows["incident-response"].cells[Role.DEVOPS] == "R"
    assert rows["audit-pentest"].cells[Role.COMPLIANCE] == "A/R"
    assert Role.CI not in rows["remediation"].cells


# -- strict parsing ---------------------------------------------------------------------------------


def _refused(tmp_path: Path, text: str, *fragments: str, roles_text: str | None = None) -> None:
    f = tmp_path / "raci.yaml"
    f.write_text(text)
    roles = None
    if roles_text is not None:
        r = tmp_path / "roles.yaml"
        r.write_text(roles_text)
        roles = load_roles(r)
    with pytest.raises(ConfigError) as e:
        load_raci(f, roles)
    for frag in fragments:
        assert frag in str(e.value), str(e.value)


def test_two_accountable_roles_refused(tmp_path: Path, shipped_text: dict[str, str]) -> None:
    text = shipped_text["raci.yaml"].replace(
        "    accountable: devops\n", "    accountable: [devops, security]\n"
    )
    _refused(tmp_path, text, "processes[2].accountable", "expected a string, got a list")


def test_missing_accountable_refused(tmp_path: Path, shipped_text: dict[str, str]) -> None:
    text = shipped_text["raci.yaml"].replace("    accountable: devops\n", "")
    _refused(tmp_path, text, "processes[2]", "missing required key 'accountable'")


def test_duplicate_process_refused(tmp_path: Path, shipped_text: dict[str, str]) -> None:
    text = shipped_text["raci.yaml"].replace("id: audit-pentest", "id: compliance-monitoring")
    _refused(tmp_path, text, "processes[5].id", "duplicate process 'compliance-monitoring'")


def test_missing_process_refused(tmp_path: Path, shipped_text: dict[str, str]) -> None:
    text = shipped_text["raci.yaml"]
    text = text[: text.index("  - id: audit-pentest")]
    _refused(tmp_path, text, "missing processes: audit-pentest")


def test_unknown_key_refused(tmp_path: Path, shipped_text: dict[str, str]) -> None:
    text = shipped_text["raci.yaml"].replace(
        "    accountable: devops\n", "    accountable: devops\n    owner: bob\n"
    )
    _refused(tmp_path, text, "processes[2].owner", "unknown key 'owner'")


def test_role_with_two_letters_refused(tmp_path: Path, shipped_text: dict[str, str]) -> None:
    text = shipped_text["raci.yaml"].replace(
        "    consulted: [devops]\n    informed: [compliance, admin]",
        "    consulted: [devops, security]\n    informed: [compliance, admin]",
    )
    _refused(tmp_path, text, "processes[0].consulted", "security already Accountable or Responsible")


def test_duty_governed_twice_refused(tmp_path: Path, shipped_text: dict[str, str]) -> None:
    text = shipped_text["raci.yaml"].replace("duties: [audit.verify]", "duties: [audit.verify, audit.export]")
    _refused(tmp_path, text, "audit.export is already governed by compliance-monitoring")


def test_role_table_inconsistent_with_raci_refused(tmp_path: Path, shipped_text: dict[str, str]) -> None:
    """Giving compliance a sign-off duty of incident response contradicts the matrix (and AC-5)."""
    roles = shipped_text["roles.yaml"].replace(
        "      - audit.verify\n", "      - audit.verify\n      - breakglass.review\n"
    )
    # breakglass.review is not read-only, so the role loader itself refuses it for compliance first
    (tmp_path / "r.yaml").write_text(roles)
    with pytest.raises(ConfigError):
        load_roles(tmp_path / "r.yaml")
    roles = shipped_text["roles.yaml"].replace(
        "      - breakglass.open\n", "      - breakglass.open\n      - incident.contain\n"
    )
    _refused(
        tmp_path,
        shipped_text["raci.yaml"],
        "incident.contain is held by devops",
        "only security may exercise it for incident-response",
        roles_text=roles,
    )


def test_accountable_role_without_its_signoff_refused(tmp_path: Path, shipped_text: dict[str, str]) -> None:
    """A process whose Accountable role cannot sign off would have nobody to close it."""
    table = shipped_roles()
    dev = table.specs[Role.DEVOPS]
    narrowed = replace(
        table,
        specs=MappingProxyType(
            {**table.specs, Role.DEVOPS: replace(dev, duties=dev.duties - {Duty.FINDING_ACKNOWLEDGE})}
        ),
    )
    f = tmp_path / "raci.yaml"
    f.write_text(shipped_text["raci.yaml"])
    with pytest.raises(ConfigError) as e:
        load_raci(f, narrowed)
    assert "the Accountable role devops does not hold finding.acknowledge" in str(e.value)


def test_machine_role_cannot_own_a_process(tmp_path: Path, shipped_text: dict[str, str]) -> None:
    text = shipped_text["raci.yaml"].replace(
        "    informed: [compliance]\n    duties: [finding.acknowledge",
        "    informed: [compliance, ci]\n    duties: [finding.acknowledge",
    )
    _refused(tmp_path, text, "machine role ci cannot own a process")
