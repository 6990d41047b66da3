"""Kubernetes source: kinds with pod templates, List kinds, stdin, hostile files through the whole engine."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import pytest

from dutyguard.limits import DEFAULT_LIMITS
from dutyguard.sources.interface import InputFile
from dutyguard.sources.kubernetes import POD_SPEC_PATHS, KubernetesSource
from tests.conftest import make_scanner

PRIV = {"securityContext": {"privileged": True}}


def _workload(kind: str) -> str:
    container = "- name: c\n  image: nginx:1.27\n  securityContext:\n    privileged: true\n"
    spec_path = POD_SPEC_PATHS[kind]
    lines = [f"apiVersion: v1\nkind: {kind}\nmetadata:\n  name: w-{kind.lower()}\n  namespace: ns\n"]
    indent = ""
    for part in spec_path:
        lines.append(f"{indent}{part}:\n")
        indent += "  "
    lines.append(f"{indent}containers:\n")
    lines.extend(f"{indent}{line}\n" for line in container.splitlines())
    return "".join(lines)


@pytest.mark.parametrize("kind", sorted(POD_SPEC_PATHS))
def test_every_pod_template_kind_is_checked(kind: str) -> None:
    text = _workload(kind)
    (obj,) = KubernetesSource().load(InputFile("w.yaml", text.encode()), DEFAULT_LIMITS)
    report = make_scanner().scan(["-"], stdin=io.BytesIO(text.encode()))
    hits = [f for f in report.findings if f.rule_id == "pss.privileged"]
    assert [(f.location.kind, f.location.name, f.location.container) for f in hits] == [
        (kind, f"w-{kind.lower()}", "c")
    ]
    # the line is the `privileged: true` field, not the document start
    expected_line = text.splitlines().index(next(s for s in text.splitlines() if "privileged: true" in s)) + 1
    assert hits[0].location.line == expected_line
    assert obj.kind == kind


def test_list_kind_items_are_objects_with_their_own_lines() -> None:
    text = (
        "apiVersion: v1\nkind: List\nitems:\n"
        "- apiVersion: v1\n  kind: Pod\n  metadata: {name: ok}\n  spec:\n    containers: [{name: a, image: x}]\n"
        "- apiVersion: v1\n  kind: Pod\n  metadata: {name: bad}\n  spec:\n    containers:\n"
        "    - name: b\n      image: x\n      securityContext: {privileged: true}\n"
    )
    report = make_scanner().scan(["-"], stdin=io.BytesIO(text.encode()))
    (hit,) = [f for f in report.findings if f.rule_id == "pss.privileged"]
    assert (hit.location.name, hit.location.line) == ("bad", 16)


def test_non_kubernetes_yaml_is_not_a_resource() -> None:
    objs = KubernetesSource().load(InputFile("ci.yml", b"on: push\njobs: {}\n"), DEFAULT_LIMITS)
    assert objs == []


def test_fingerprint_survives_line_moves() -> None:
    a = _workload("Pod")
    b = "# a comment\n# another\n" + a
    fa = make_scanner().scan(["-"], stdin=io.BytesIO(a.encode())).findings
    fb = make_scanner().scan(["-"], stdin=io.BytesIO(b.encode())).findings
    assert {f.fingerprint for f in fa} == {f.fingerprint for f in fb}
    assert {f.location.line for f in fa} != {f.location.line for f in fb}


@pytest.mark.parametrize(
    ("name", "data", "needle"),
    [
        ("junk.yaml", os.urandom(4096).replace(b"\x00", b"") + b"\x00", "binary data"),
        ("latin1.yaml", b"apiVersion: v1\nkind: Pod\nname: caf\xe9\n", "not valid UTF-8"),
        ("broken.yaml", b"apiVersion: v1\nkind: Pod\na: [1, 2\nb: c\n", "invalid YAML: line 4"),
        ("dup.json", b'{"apiVersion": "v1", "kind": "Pod", "kind": "Secret"}', "duplicate key 'kind'"),
    ],
)
def test_hostile_manifest_is_a_per_file_error_and_scan_goes_on(
    tmp_path: Path, name: str, data: bytes, needle: str
) -> None:
    (tmp_path / name).write_bytes(data)
    (tmp_path / "good.yaml").write_text(_workload("Pod"))
    start = time.monotonic()
    report = make_scanner().scan([str(tmp_path)])
    assert time.monotonic() - start < 5
    bad = [e for e in report.errors if e.source.endswith(name)]
    assert bad, report.errors
    assert needle in bad[0].message
    assert any(f.rule_id == "pss.privileged" for f in report.findings)  # the other file was still scanned
    assert report.exit_code == 2


def test_huge_manifest_refused_without_reading_it_all(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    with big.open("wb") as fh:
        fh.write(b"a: " + b"x" * (DEFAULT_LIMITS.max_file_bytes + 10) + b"\n")
    report = make_scanner().scan([str(big)])
    assert any("larger than" in e.message and e.source.endswith("big.yaml") for e in report.errors)
    assert report.exit_code == 2


@pytest.mark.parametrize(
    ("containers", "needle"),
    [
        ('"nginx"', "spec.containers is not a list"),
        ("[nginx]", r"spec.containers[0] is not a mapping"),
        ("[{name: a, image: x}, 42]", r"spec.containers[1] is not a mapping"),
    ],
)
def test_malformed_container_lists_are_errors_not_skipped(containers: str, needle: str) -> None:
    text = f"apiVersion: v1\nkind: Pod\nmetadata: {{name: p}}\nspec:\n  containers: {containers}\n"
    report = make_scanner().scan(["-"], stdin=io.BytesIO(text.encode()))
    assert report.exit_code == 2
    assert any(needle in e.message for e in report.errors), report.errors


def test_yaml_without_kubernetes_keys_is_not_parsed_as_a_manifest(tmp_path: Path) -> None:
    (tmp_path / "values.yaml").write_text("image: [unclosed\n")  # broken, but nobody's manifest
    report = make_scanner().scan([str(tmp_path)])
    assert report.errors == ()
    assert report.exit_code == 0


@pytest.mark.parametrize(
    "header",
    [
        '"api\\x56ersion": v1\n"k\\u0069nd": Pod\n',  # YAML double-quoted escapes
        '"apiVersion": v1\n"\\x6bind": Pod\n',
    ],
)
def test_escaped_keys_cannot_hide_a_manifest(tmp_path: Path, header: str) -> None:
    body = "metadata: {name: p}\nspec:\n  containers:\n  - {name: a, image: x, securityContext: {privileged: true}}\n"
    (tmp_path / "pod.yaml").write_text(header + body)
    report = make_scanner().scan([str(tmp_path)])
    assert [f.location.name for f in report.findings if f.rule_id == "pss.privileged"] == ["p"]
