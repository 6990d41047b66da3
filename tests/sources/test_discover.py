"""Walking inputs: .git is skipped, symlinks never leave the tree, FIFOs never hang, kustomize is rendered safely."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import pytest

from dutyguard.errors import InputError
from dutyguard.limits import DEFAULT_LIMITS, Limits
from dutyguard.sources.discover import Pending, Skipped, discover, plan
from dutyguard.sources.interface import InputFile
from tests.conftest import make_scanner

POD = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - {name: a, image: x, securityContext: {privileged: true}}\n"


def _names(items: list[object]) -> list[str]:
    return [i.name for i in items if isinstance(i, InputFile)]


def test_git_directory_is_never_entered(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "pod.yaml").write_text(POD)
    (tmp_path / "pod.yaml").write_text(POD)
    assert _names(list(discover([str(tmp_path)], DEFAULT_LIMITS))) == [str(tmp_path / "pod.yaml")]


def test_symlink_out_of_tree_is_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.yaml").write_text(POD)
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "link.yaml").symlink_to(outside / "secret.yaml")
    (tree / "linkdir").symlink_to(outside, target_is_directory=True)
    items = list(discover([str(tree)], DEFAULT_LIMITS))
    assert _names(items) == []
    skipped = [i for i in items if isinstance(i, Skipped)]
    assert [s.reason for s in skipped] == ["symlink leads outside the scanned tree"]


def test_symlink_inside_tree_is_read(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(POD)
    (tmp_path / "b.yaml").symlink_to(tmp_path / "a.yaml")
    assert sorted(_names(list(discover([str(tmp_path)], DEFAULT_LIMITS)))) == [
        str(tmp_path / "a.yaml"),
        str(tmp_path / "b.yaml"),
    ]


def test_fifo_does_not_hang_the_scan(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "Dockerfile")
    items = list(discover([str(tmp_path / "Dockerfile")], DEFAULT_LIMITS))
    assert isinstance(items[0], InputError)
    assert "not a regular file" in items[0].reason


def test_missing_path_is_an_error() -> None:
    (item,) = list(discover(["/nonexistent/x.yaml"], DEFAULT_LIMITS))
    assert isinstance(item, InputError)
    assert item.source == "/nonexistent/x.yaml"


def test_stdin_is_bounded() -> None:
    limits = Limits(max_file_bytes=100, max_secret_scan_bytes=100)
    (item,) = list(discover(["-"], limits, stdin=io.BytesIO(b"x" * 1000)))
    assert isinstance(item, InputFile)
    assert len(item.data) == 100
    assert item.size > 100


def test_file_count_is_bounded(tmp_path: Path) -> None:
    for i in range(5):
        (tmp_path / f"{i}.txt").write_text("x")
    items = list(discover([str(tmp_path)], Limits(max_files=3)))
    assert isinstance(items[-1], InputError)
    assert "more than 3 files" in items[-1].reason


KUSTOMIZATION = "resources:\n- pod.yaml\nnamespace: shop\n"


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed here")
def test_kustomization_is_rendered_and_members_not_read_twice(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text(KUSTOMIZATION)
    (tmp_path / "pod.yaml").write_text(POD)
    report = make_scanner().scan([str(tmp_path)])
    hits = [f for f in report.findings if f.rule_id == "pss.privileged"]
    assert len(hits) == 1, hits
    assert hits[0].location.file.endswith("(kustomize)")
    assert hits[0].location.namespace == "shop"  # the kustomization's namespace was applied


def test_kustomization_without_kubectl_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    (tmp_path / "kustomization.yaml").write_text(KUSTOMIZATION)
    (tmp_path / "pod.yaml").write_text(POD)
    report = make_scanner().scan([str(tmp_path)])
    assert any("kubectl is not on PATH" in e.message for e in report.errors)
    assert report.exit_code == 2


def test_remote_kustomize_base_is_refused(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources:\n- https://github.com/org/repo//base?ref=main\n")
    report = make_scanner().scan([str(tmp_path)])
    assert any("remote resource" in e.message for e in report.errors)


def test_helm_chart_is_rendered_not_parsed_as_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    chart = tmp_path / "chart"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: demo\nversion: 0.1.0\n")
    (chart / "templates" / "pod.yaml").write_text("{{- if .Values.on }}\nkind: Pod\n{{- end }}\n")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    report = make_scanner().scan([str(tmp_path)])
    messages = [e.message for e in report.errors]
    # the template is not reported as broken YAML; the missing renderer is reported instead
    assert not any("invalid YAML" in m for m in messages), messages
    assert any("helm template" in m and "helm is not on PATH" in m for m in messages), messages
    assert report.exit_code == 2


def test_kustomization_symlinked_out_of_the_tree_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "kustomization.yaml").write_text(KUSTOMIZATION)
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "kustomization.yaml").symlink_to(outside / "kustomization.yaml")
    (tree / "pod.yaml").write_text(POD)
    report = make_scanner().scan([str(tree)])
    assert any("kustomization.yaml is a symlink leading outside" in e.message for e in report.errors)
    assert report.exit_code == 2


def test_file_swapped_for_an_outside_symlink_after_the_walk_is_refused(tmp_path: Path) -> None:
    """A lazy walk reads later (in a worker): the read itself must refuse what the walk would have."""
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "pod.yaml").write_text(POD)
    outside = tmp_path / "outside-secret.yaml"
    outside.write_text("password: hunter2hunter2\n")
    (pending,) = list(plan([str(tree)], DEFAULT_LIMITS))
    assert isinstance(pending, Pending)
    (tree / "pod.yaml").unlink()
    (tree / "pod.yaml").symlink_to(outside)
    got = pending.read(DEFAULT_LIMITS)
    assert isinstance(got, InputError)
    assert str(tree / "pod.yaml") in str(got)


def test_file_swapped_for_a_fifo_after_the_walk_does_not_hang(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    (pending,) = list(plan([str(tmp_path)], DEFAULT_LIMITS))
    assert isinstance(pending, Pending)
    (tmp_path / "Dockerfile").unlink()
    os.mkfifo(tmp_path / "Dockerfile")
    got = pending.read(DEFAULT_LIMITS)
    assert isinstance(got, InputError)
    assert "not a regular file" in str(got)


def test_lazy_plan_reads_nothing_and_lists_what_discover_reads(tmp_path: Path) -> None:
    for i in range(5):
        (tmp_path / f"p{i}.yaml").write_text(POD)
    lazy = list(plan([str(tmp_path)], DEFAULT_LIMITS))
    assert all(isinstance(p, Pending) for p in lazy)
    assert [p.name for p in lazy if isinstance(p, Pending)] == _names(
        list(discover([str(tmp_path)], DEFAULT_LIMITS))
    )
    assert [p.size for p in lazy if isinstance(p, Pending)] == [len(POD)] * 5
