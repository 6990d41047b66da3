"""The role/duty table: invariants of the shipped file and strict parsing of edited copies."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dutyguard.errors import ConfigError
from dutyguard.governance import (
    EMERGENCY_DUTIES,
    MACHINE_DUTIES,
    READ_ONLY_DUTIES,
    Duty,
    PrincipalKind,
    Role,
    duties_of,
    load_roles,
    shipped_roles,
)

AUDIT_WRITE_WORDS = (
    "write",
    "append",
    "edit",
    "delete",
    "erase",
    "purge",
    "truncate",
    "manage",
    "admin",
    "rewrite",
)


def test_role_table_has_no_audit_write_duty() -> None:
    audit_duties = {d for d in Duty if d.value.startswith("audit.")}
    assert audit_duties == {Duty.AUDIT_READ, Duty.AUDIT_EXPORT, Duty.AUDIT_VERIFY}
    assert audit_duties <= READ_ONLY_DUTIES
    for role in Role:
        for duty in duties_of(role):
            assert not (
                duty.value.startswith("audit.") and any(w in duty.value for w in AUDIT_WRITE_WORDS)
            ), (
                role,
                duty,
            )


def test_every_duty_is_held_by_some_role_or_only_by_break_glass() -> None:
    table = shipped_roles()
    for duty in Duty:
        holders = table.roles_with(duty)
        if duty in EMERGENCY_DUTIES:
            # deliberately nobody's: only an open grant confers it
            assert holders == frozenset(), duty
            assert duty in table.breakglass.duties
        else:
            assert holders, f"{duty} is held by no role"


def test_compliance_is_read_only() -> None:
    held = duties_of(Role.COMPLIANCE)
    assert held <= READ_ONLY_DUTIES
    assert {Duty.AUDIT_READ, Duty.AUDIT_EXPORT, Duty.AUDIT_VERIFY} <= held
    assert not any(d.value.endswith((".manage", ".approve", ".propose", ".assign")) for d in held)


def test_machine_identities_only_submit_read_state_and_ask_for_decisions() -> None:
    table = shipped_roles()
    for role in (Role.CI, Role.CLUSTER):
        assert table.kind_of(role) is PrincipalKind.SERVICE
        assert duties_of(role) <= MACHINE_DUTIES
        assert Duty.STATE_READ in duties_of(role)
        assert Duty.DECISION_REQUEST in duties_of(role)
    assert Duty.SCAN_SUBMIT in duties_of(Role.CI)
    assert Duty.EVENT_SUBMIT in duties_of(Role.CLUSTER)
    for role in (Role.SECURITY, Role.DEVOPS, Role.COMPLIANCE, Role.ADMIN):
        assert table.kind_of(role) is PrincipalKind.PERSON


def test_persona_may_never_from_design() -> None:
    """DESIGN.md §1, column "may never"."""
    sec, dev, adm = duties_of(Role.SECURITY), duties_of(Role.DEVOPS), duties_of(Role.ADMIN)
    # security: never requests a waiver or submits deployment evidence itself
    assert not sec & {Duty.EXCEPTION_REQUEST, Duty.SCAN_SUBMIT, Duty.BREAKGLASS_OPEN}
    # devops: no policy change, no approval of anything
    assert not {d for d in dev if d.value.endswith((".approve", ".propose", ".publish", ".review"))}
    assert Duty.EXCEPTION_REQUEST in dev
    assert Duty.BREAKGLASS_OPEN in dev
    # admin: manages identities and bindings, nothing of security or devops, no audit reading
    assert {Duty.USER_MANAGE, Duty.TEAM_MANAGE, Duty.TOKEN_MANAGE, Duty.ROLE_ASSIGN} <= adm
    assert not (adm - READ_ONLY_DUTIES) & ((sec | dev) - READ_ONLY_DUTIES)
    assert Duty.AUDIT_READ not in adm


def test_every_duty_has_a_description() -> None:
    for duty in Duty:
        assert len(duty.description) > 10, duty


def test_unknown_duty_name_does_not_parse() -> None:
    with pytest.raises(ValueError):
        Duty.parse("audit.write")
    with pytest.raises(ValueError):
        Duty.parse("POLICY.APPROVE")


# -- strict parsing of edited copies ------------------------------------------------------------


def _load(tmp_path: Path, text: str) -> None:
    f = tmp_path / "roles.yaml"
    f.write_text(text)
    load_roles(f)


def _refused(tmp_path: Path, text: str, *fragments: str) -> str:
    with pytest.raises(ConfigError) as e:
        _load(tmp_path, text)
    msg = str(e.value)
    assert str(tmp_path / "roles.yaml") in msg
    for frag in fragments:
        assert frag in msg, msg
    return msg


def test_shipped_copy_loads_unchanged(tmp_path: Path, shipped_text: dict[str, str]) -> None:
    _load(tmp_path, shipped_text["roles.yaml"])


def test_unknown_key_in_role_names_file_line_and_key(tmp_path: Path, shipped_text: dict[str, str]) -> None:
    text = shipped_text["roles.yaml"].replace(
        "  devops:\n    kind: person\n", "  devops:\n    kind: person\n    dutis: []\n"
    )
    msg = _refused(tmp_path, text, "roles.devops.dutis", "unknown key 'dutis'")
    line = text.splitlines().index("    dutis: []") + 1
    assert f"roles.yaml:{line}:" in msg


def test_unknown_top_level_key_refused(tmp_path: Path, shipped_text: dict[str, str]) -> None:
    _refused(tmp_path, shipped_text["roles.yaml"] + "superusers: [alice]\n", "superusers", "unknown key")


def test_unknown_role_refused(tmp_path: Path, shipped_text: dict[str, str]) -> None:
    text = shipped_text["roles.yaml"].replace(
        "\nbreakglass:",
        "  auditor:\n    kind: person\n    description: x\n    duties: [audit.read]\n\nbreakglass:",
    )
    _refused(tmp_path, text, "roles.auditor", "unknown key 'auditor'")


def test_missing_role_refused(tmp_path: Path, shipped_text: dict[str, str]) -> None:
    text = shipped_text["roles.yaml"]
    start = text.index("  cluster:")
    end = text.index("\nbreakglass:")
    _refused(tmp_path, text[:start] + text[end:], "missing required key 'cluster'")


def test_audit_write_duty_cannot_be_granted(tmp_path: Path, shipped_text: dict[str, str]) -> None:
    text = shipped_text["roles.yaml"].replace(
        "      - role.assign\n", "      - role.assign\n      - audit.write\n"
    )
    _refused(tmp_path, text, "roles.admin.duties", "unknown duty 'audit.write'")


def test_duplicate_duty_in_role_refused(tmp_path: Path, shipped_text: dict[str, str]) -> None:
    text = shipped_text["roles.yaml"].replace(
        "      - role.assign\n", "      - role.assign\n      - role.assign\n"
    )
    _refused(tmp_path, text, "roles.admin.duties", "duplicate entry 'role.assign'")


def test_duplicate_role_key_refused(tmp_path: Path, shipped_text: dict[str, str]) -> None:
    text = shipped_text["roles.yaml"].replace(
        "\nbreakglass:",
        "  admin:\n    kind: person\n    description: again\n    duties: [user.read]\n\nbreakglass:",
    )
    _refused(tmp_path, text, "duplicate key 'admin'")


def test_compliance_with_a_writing_duty_refused(tmp_path: Path, shipped_text: dict[str, str]) -> None:
    text = shipped_text["roles.yaml"].replace(
        "      - audit.verify\n", "      - audit.verify\n      - exception.approve\n"
    )
    _refused(tmp_path, text, "compliance is read-only", "exception.approve")


def test_machine_role_with_person_duty_refused(tmp_path: Path, shipped_text: dict[str, str]) -> None:
    text = shipped_text["roles.yaml"].replace(
        "      - event.submit\n", "      - event.submit\n      - exception.request\n"
    )
    _refused(tmp_path, text, "roles.cluster.duties", "machine role cluster", "exception.request")


def test_machine_role_bound_to_people_refused(tmp_path: Path, shipped_text: dict[str, str]) -> None:
    text = shipped_text["roles.yaml"].replace("  ci:\n    kind: service", "  ci:\n    kind: person")
    _refused(tmp_path, text, "roles.ci.kind", "service identity")


def test_emergency_duty_held_by_a_role_refused(tmp_path: Path, shipped_text: dict[str, str]) -> None:
    text = shipped_text["roles.yaml"].replace(
        "      - breakglass.open\n", "      - breakglass.open\n      - enforcement.override\n"
    )
    _refused(tmp_path, text, "only by break-glass", "enforcement.override")


def test_unreachable_duty_refused(tmp_path: Path, shipped_text: dict[str, str]) -> None:
    # audit.verify is held by compliance only: drop it and nobody can verify the chain live
    text = shipped_text["roles.yaml"].replace("      - audit.verify\n", "")
    _refused(tmp_path, text, "held by no role", "audit.verify")


def test_break_glass_longer_than_a_day_refused(tmp_path: Path, shipped_text: dict[str, str]) -> None:
    text = re.sub(r"max_duration_minutes: \d+", "max_duration_minutes: 10000", shipped_text["roles.yaml"])
    _refused(tmp_path, text, "breakglass.max_duration_minutes", "between 1 and 1440")


def test_boolean_is_not_a_version(tmp_path: Path, shipped_text: dict[str, str]) -> None:
    text = shipped_text["roles.yaml"].replace("version: 1", "version: yes")
    _refused(tmp_path, text, "version", "expected an integer, got a boolean")


def test_alias_bomb_is_refused(tmp_path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        lines.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]")
    lines.append("version: *a8")
    _refused(tmp_path, "\n".join(lines) + "\n", "YAML nodes")


def test_multiple_documents_refused(tmp_path: Path, shipped_text: dict[str, str]) -> None:
    _refused(tmp_path, shipped_text["roles.yaml"] + "---\nversion: 1\n", "YAML documents")


def test_oversized_file_refused(tmp_path: Path) -> None:
    _refused(tmp_path, "# " + "x" * (1024 * 1024 + 10) + "\n", "larger than")
