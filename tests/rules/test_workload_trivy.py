"""Our workload rules against trivy-checks' good/bad examples, and coverage of Trivy's high and
critical Kubernetes checks (ours, pss.*, or explicitly out of scope)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from dutyguard.core.model import render_path
from dutyguard.core.policy import Policy
from dutyguard.core.rule import RuleRegistry
from dutyguard.limits import DEFAULT_LIMITS
from dutyguard.sources.interface import InputFile
from dutyguard.sources.kubernetes import K8sObject, KubernetesSource

# Trivy check (canonical id) -> for each bad example, the (rule, field) findings our k8s.* rules give.
# Good examples must give none.
EXAMPLES: dict[str, list[list[tuple[str, str]]]] = {
    "KSV-0006": [[("k8s.runtime-socket-mount", "spec.volumes[0].hostPath.path")]],
    "KSV-0011": [[("k8s.no-cpu-limit", "spec.containers[0].resources.limits.cpu")]],
    "KSV-0013": [[("k8s.image-tag-latest", "spec.containers[0].image")]],
    "KSV-0014": [
        [("k8s.writable-root-filesystem", "spec.containers[0].securityContext.readOnlyRootFilesystem")]
    ],
    "KSV-0015": [[("k8s.no-cpu-request", "spec.containers[0].resources.requests.cpu")]],
    "KSV-0016": [[("k8s.no-memory-request", "spec.containers[0].resources.requests.memory")]],
    "KSV-0018": [[("k8s.no-memory-limit", "spec.containers[0].resources.limits.memory")]],
    "KSV-0020": [[("k8s.low-uid", "spec.containers[0].securityContext.runAsUser")]],
    "KSV-0021": [[("k8s.low-gid", "spec.containers[0].securityContext.runAsGroup")]],
    "KSV-0036": [],  # good examples only
    "KSV-0037": [[("k8s.system-namespace", "metadata.namespace")]],
    "KSV-0102": [[("k8s.tiller-deployed", "spec.template.spec.containers[0].image")]],
    "KSV-0109": [
        [("k8s.secret-in-configmap", "data.password")],
        [("k8s.secret-in-configmap", "data.config")],
    ],
}

# High and critical Trivy Kubernetes checks that no dutyguard rule covers, on purpose.
OUT_OF_SCOPE: dict[str, str] = {}
"""High/critical Trivy Kubernetes checks no dutyguard pack carries (the RBAC family, once listed
here, is the ``rbac`` pack's now: tests/rules/test_rbac*.py)."""

RBAC = frozenset(
    {
        "KSV-0041", "KSV-0043", "KSV-0044", "KSV-0045", "KSV-0046", "KSV-0047", "KSV-0050", "KSV-0051",
        "KSV-0052", "KSV-0053", "KSV-0054", "KSV-0056", "KSV-0112", "KSV-0114", "KSV-0115", "KSV-01011",
        "KSV-0122", "KSV-0123",
    }
)  # fmt: skip
"""Trivy's high/critical RBAC checks: carried by ``rbac.*`` rules, not ``k8s.*`` ones."""

# High and critical Trivy checks that are Pod Security Standards controls: the pss.* rules carry them.
PSS_OWNED = frozenset(
    {"KSV-0005", "KSV-0008", "KSV-0009", "KSV-0010", "KSV-0017", "KSV-0024", "KSV-0119", "KSV-0120"}
)


def _index(shared_data: Path) -> list[dict[str, Any]]:
    data = json.loads((shared_data / "trivy-checks" / "CHECK_INDEX.json").read_text())
    assert isinstance(data, list)
    return data


def _peer_ids(check: dict[str, Any]) -> list[str]:
    return [check["id"], *check["aliases"]]


def _ours(registry: RuleRegistry, check: dict[str, Any], prefix: str = "k8s.") -> set[str]:
    return {r for peer in _peer_ids(check) for r in registry.translate(peer) if r.startswith(prefix)}


def _load(text: str, name: str) -> list[K8sObject]:
    return list(
        KubernetesSource().load(InputFile(name=name, data=text.encode(), size=len(text)), DEFAULT_LIMITS)
    )


def test_example_table_lists_every_check_we_cover(shared_data: Path, registry: RuleRegistry) -> None:
    covered = {
        c["id"]
        for c in _index(shared_data)
        if (c.get("examples_file") or "").startswith("checks/kubernetes/") and _ours(registry, c)
    }
    assert covered == set(EXAMPLES)


@pytest.mark.parametrize("check_id", sorted(EXAMPLES))
def test_good_and_bad_examples(shared_data: Path, registry: RuleRegistry, check_id: str) -> None:
    check = next(c for c in _index(shared_data) if c["id"] == check_id)
    ours = _ours(registry, check)
    docs = yaml.safe_load((shared_data / "trivy-checks" / check["examples_file"]).read_text())["kubernetes"]
    bad = docs.get("bad") or []
    assert len(bad) == len(EXAMPLES[check_id])
    for i, text in enumerate(docs.get("good") or []):
        for obj in _load(text, f"{check_id}:good[{i}]"):
            for rule_id in ours:
                assert list(registry.get(rule_id).check(obj, Policy())) == [], (check_id, "good", i, rule_id)
    for i, (text, expected) in enumerate(zip(bad, EXAMPLES[check_id], strict=True)):
        objs = _load(text, f"{check_id}:bad[{i}]")
        assert len(objs) == 1
        got = [
            (r, render_path(v.path)) for r in sorted(ours) for v in registry.get(r).check(objs[0], Policy())
        ]
        assert got == expected, (check_id, "bad", i)


def ids_of(checks: list[dict[str, Any]]) -> set[str]:
    return {c["id"] for c in checks}


def _high_critical(shared_data: Path) -> list[dict[str, Any]]:
    return [
        c for c in _index(shared_data) if c["id"].startswith("KSV") and c["severity"] in ("HIGH", "CRITICAL")
    ]


def test_high_and_critical_checks_are_covered_or_out_of_scope(
    shared_data: Path, registry: RuleRegistry
) -> None:
    missing = []
    for check in _high_critical(shared_data):
        if check["id"] in OUT_OF_SCOPE or check["id"] in PSS_OWNED:
            continue
        if not _ours(registry, check, prefix="rbac." if check["id"] in RBAC else "k8s."):
            missing.append(f"{check['id']} ({check['title']})")
    assert not missing, f"no k8s.* / rbac.* rule carries these Trivy checks as equivalents: {missing}"
    assert ids_of(_high_critical(shared_data)) >= RBAC
    ids = {c["id"] for c in _high_critical(shared_data)}
    assert set(OUT_OF_SCOPE) <= ids
    assert ids >= PSS_OWNED
    for check_id in OUT_OF_SCOPE:
        check = next(c for c in _high_critical(shared_data) if c["id"] == check_id)
        assert not _ours(registry, check, prefix=""), (
            f"{check_id} is covered now: remove it from OUT_OF_SCOPE"
        )


def test_high_and_critical_pss_checks_carry_their_trivy_ids(
    shared_data: Path, registry: RuleRegistry
) -> None:
    # Owned by the pss.* rules (written separately). A failure names the Trivy ids still missing.
    missing = sorted(
        f"{c['id']} ({c['title']})"
        for c in _high_critical(shared_data)
        if c["id"] in PSS_OWNED and not _ours(registry, c, "pss.")
    )
    assert not missing, f"pss.* rules do not yet list these Trivy checks in equivalents: {missing}"


def test_no_high_critical_check_is_covered_twice_by_us_and_pss(
    shared_data: Path, registry: RuleRegistry
) -> None:
    both = [c["id"] for c in _high_critical(shared_data) if c["id"] in PSS_OWNED and _ours(registry, c)]
    assert both == []
