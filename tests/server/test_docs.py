"""docs/control-plane.md stays true: its route table is what the code declares."""

from __future__ import annotations

from pathlib import Path

from dutyguard.server.app import create_app
from dutyguard.server.authz import declared_routes
from dutyguard.server.settings import Settings

DOC = Path(__file__).resolve().parents[2] / "docs" / "control-plane.md"


def expected_table(tmp_path: Path) -> str:
    app = create_app(Settings(data_dir=tmp_path / "d"))
    rows = [
        f"| `{d.method} {d.path.removeprefix('/api/v1')}` | {d.requirement.describe()} |"
        for d in declared_routes(app)
    ]
    return "\n".join(["| route | needs |", "|---|---|", *rows])


def test_route_table_matches_the_declarations(tmp_path: Path) -> None:
    text = DOC.read_text(encoding="utf-8")
    documented = text.split("<!-- routes:start -->\n", 1)[1].split("\n<!-- routes:end -->", 1)[0]
    expected = expected_table(tmp_path)
    assert documented == expected, f"update docs/control-plane.md's route table to:\n{expected}"


def test_cli_commands_in_the_docs_exist() -> None:
    from dutyguard.cli import _register, app

    _register()
    import typer.main

    click_app = typer.main.get_command(app)
    names = set(click_app.commands)  # type: ignore[attr-defined]
    for group in (
        "login",
        "whoami",
        "user",
        "team",
        "app",
        "token",
        "role",
        "sod",
        "approval",
        "audit",
        "breakglass",
        "up",
        "init",
        "db",
    ):
        assert group in names, group
        assert f"dutyguard {group}" in DOC.read_text(encoding="utf-8"), group
