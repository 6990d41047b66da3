"""Our workload rules where kubesec's and kube-score's own test expectations and ours should agree.

kubesec asserts a total score per file and kube-score a grade per check; each row below names the
upstream test (whose title says which of their rules it is about), the file, and which of our rules
must (True) or must not (False) report on it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dutyguard.core.policy import Policy
from dutyguard.core.rule import RuleRegistry
from dutyguard.limits import DEFAULT_LIMITS
from dutyguard.sources.interface import InputFile
from dutyguard.sources.kubernetes import K8sObject, KubernetesSource

# kubesec test title -> (our rule, reported?)
KUBESEC: dict[str, list[tuple[str, bool]]] = {
    "fails DaemonSet with mounted host docker.sock": [("k8s.runtime-socket-mount", True)],
    "fails DaemonSet with host docker.socket": [("k8s.runtime-socket-mount", True)],
    "passes deployment with securitycontext readOnlyRootFilesystem": [
        ("k8s.writable-root-filesystem", False)
    ],
    "passes deployment with pod securitycontext runAsUser > 10000": [("k8s.low-uid", False)],
    "passes deployment with securitycontext runAsUser > 10000": [("k8s.low-uid", False)],
    "fails deployment with pod securitycontext runAsUser 1": [("k8s.low-uid", True)],
    "fails deployment with securitycontext runAsUser 1": [("k8s.low-uid", True)],
    "passes deployment with pod securitycontext runAsGroup > 10000": [("k8s.low-gid", False)],
    "passes deployment with securitycontext runAsGroup > 10000": [("k8s.low-gid", False)],
    "fails deployment with pod securitycontext runAsGroup 1": [("k8s.low-gid", True)],
    "fails deployment with securitycontext runAsGroup 1": [("k8s.low-gid", True)],
    "passes deployment with cgroup resource limits": [("k8s.no-cpu-limit", False)],
    "passes deployment with cgroup memory limits": [("k8s.no-memory-limit", False)],
    "passes Pod with automountServiceAccountToken set to false": [
        ("k8s.service-account-token-automount", False),
        ("k8s.service-account-token-default-automount", False),
    ],
    "passes Pod with hostUsers set to false": [("k8s.low-uid", False), ("k8s.low-gid", False)],
    "fails StatefulSet with no security": [
        ("k8s.writable-root-filesystem", True),
        ("k8s.low-uid", True),
        ("k8s.net-raw-not-dropped", True),
        ("k8s.service-account-token-default-automount", True),
    ],
    "fails deployment with empty security context": [("k8s.container-security-context-missing", True)],
}
KUBESEC_SCORE = {"assert_lt_zero_points": "<0", "assert_zero_points": "=0", "assert_gt_zero_points": ">0"}

# kube-score (check, file) -> (our rule, reported?). Rows need kube-score's default configuration,
# or one whose non-default settings only enable the optional check.
KUBE_SCORE: dict[tuple[str, str], list[tuple[str, bool]]] = {
    ("Container Resources", "pod-test-resources-none.yaml"): [
        ("k8s.no-cpu-limit", True),
        ("k8s.no-memory-limit", True),
        ("k8s.no-cpu-request", True),
        ("k8s.no-memory-request", True),
    ],
    ("Container Resources", "pod-test-resources-limits-and-requests.yaml"): [
        ("k8s.no-cpu-limit", False),
        ("k8s.no-memory-limit", False),
        ("k8s.no-cpu-request", False),
        ("k8s.no-memory-request", False),
    ],
    # kube-score warns that requests are missing; the API server defaults them to the limits, and the
    # limits are what bounds a noisy neighbour, so our (limit) rules agree it is not critical.
    ("Container Resources", "pod-test-resources-only-limits.yaml"): [
        ("k8s.no-cpu-limit", False),
        ("k8s.no-memory-limit", False),
    ],
    ("Container Resources", "deployment-test-resources.yaml"): [
        ("k8s.no-cpu-limit", False),
        ("k8s.no-memory-limit", False),
    ],
    ("Container Resources", "statefulset-test-resources.yaml"): [
        ("k8s.no-cpu-limit", False),
        ("k8s.no-memory-limit", False),
    ],
    ("Container Resources", "pod-test-resources-limits-and-requests-no-cpu-limit.yaml"): [
        ("k8s.no-cpu-limit", True)
    ],
    ("Container Image Tag", "pod-image-tag-latest.yaml"): [("k8s.image-tag-latest", True)],
    ("Container Image Tag", "pod-image-tag-fixed.yaml"): [("k8s.image-tag-latest", False)],
    ("Container Image Pull Policy", "pod-image-pullpolicy-undefined.yaml"): [
        ("k8s.image-pull-policy-not-always", True)
    ],
    ("Container Image Pull Policy", "pod-image-pullpolicy-undefined-latest-tag.yaml"): [
        ("k8s.image-pull-policy-not-always", False)
    ],
    ("Container Image Pull Policy", "pod-image-pullpolicy-undefined-no-tag.yaml"): [
        ("k8s.image-pull-policy-not-always", False)
    ],
    ("Container Image Pull Policy", "pod-image-pullpolicy-never.yaml"): [
        ("k8s.image-pull-policy-not-always", True)
    ],
    ("Container Image Pull Policy", "pod-image-pullpolicy-always.yaml"): [
        ("k8s.image-pull-policy-not-always", False)
    ],
    ("Container Security Context User Group ID", "pod-security-context-all-good.yaml"): [
        ("k8s.low-uid", False),
        ("k8s.low-gid", False),
    ],
    ("Container Security Context User Group ID", "pod-security-context-low-group-id.yaml"): [
        ("k8s.low-gid", True)
    ],
    ("Container Security Context User Group ID", "pod-security-context-low-user-id.yaml"): [
        ("k8s.low-uid", True)
    ],
    ("Container Security Context User Group ID", "pod-security-context-nosecuritycontext.yaml"): [
        ("k8s.low-uid", True),
        ("k8s.low-gid", True),
    ],
    ("Container Security Context ReadOnlyRootFilesystem", "pod-security-context-all-good.yaml"): [
        ("k8s.writable-root-filesystem", False)
    ],
    (
        "Container Security Context ReadOnlyRootFilesystem",
        "pod-security-context-writeablerootfilesystem.yaml",
    ): [("k8s.writable-root-filesystem", True)],
    ("Container Security Context ReadOnlyRootFilesystem", "pod-security-context-nosecuritycontext.yaml"): [
        ("k8s.writable-root-filesystem", True)
    ],
}
KUBE_SCORE_GRADE = {"GradeCritical": True, "GradeWarning": None, "GradeAllOK": False}
# kube-score's "Container Resources" grade is critical for missing limits only (missing requests are
# a warning): only our limit rules follow its critical/OK verdict.
_LIMIT_OR_CHECK_RULES = {"Container Resources": ("k8s.no-cpu-limit", "k8s.no-memory-limit")}


def _load(path: Path) -> list[K8sObject]:
    data = path.read_bytes()
    return list(KubernetesSource().load(InputFile(name=path.name, data=data, size=len(data)), DEFAULT_LIMITS))


def _reported(registry: RuleRegistry, rule_id: str, objects: list[K8sObject]) -> bool:
    return any(list(registry.get(rule_id).check(o, Policy())) for o in objects)


def _kubesec_row(shared_data: Path, title: str) -> dict[str, object]:
    rows = json.loads((shared_data / "kubesec" / "EXPECTED_BATS.json").read_text())
    (row,) = [r for r in rows if r["test"] == title]
    return dict(row)


@pytest.mark.parametrize("title", sorted(KUBESEC))
def test_kubesec(shared_data: Path, registry: RuleRegistry, title: str) -> None:
    row = _kubesec_row(shared_data, title)
    files, assertions = row["files"], row["assertions"]
    assert isinstance(files, list)
    assert isinstance(assertions, list)
    assert len(files) == 1
    score = KUBESEC_SCORE[assertions[0]]
    objects = _load(shared_data / "kubesec" / "test" / files[0])
    assert objects
    for rule_id, reported in KUBESEC[title]:
        # kubesec's sign agrees with ours: a file it passes (>0) for this setting is not reported.
        assert score == ">0" if not reported else score in ("<0", "=0"), title
        assert _reported(registry, rule_id, objects) is reported, (title, rule_id)


def _kube_score_rows(shared_data: Path, check: str, file: str) -> list[dict[str, object]]:
    rows = json.loads((shared_data / "kube-score" / "EXPECTED_GRADES.json").read_text())
    out = []
    for r in rows:
        target = r["file"] if isinstance(r["file"], str) else (r["file"][0] if r["file"] else "")
        if r["check"] == check and target.endswith("/" + file):
            out.append(dict(r))
    return out


@pytest.mark.parametrize(("check", "file"), sorted(KUBE_SCORE))
def test_kube_score(shared_data: Path, registry: RuleRegistry, check: str, file: str) -> None:
    rows = _kube_score_rows(shared_data, check, file)
    assert rows, (check, file)
    usable = [
        r
        for r in rows
        if r["config"] == "default"
        or "EnabledOptionalTests" in str(r["config"])
        or "IgnoreContainerCpuLimitRequirement: false" in str(r["config"])
    ]
    assert usable, (check, file)
    objects = _load(shared_data / "kube-score" / "score" / "testdata" / file)
    for row in usable:
        critical = KUBE_SCORE_GRADE[str(row["expected_grade"])]
        for rule_id, reported in KUBE_SCORE[(check, file)]:
            if critical is not None and rule_id in _LIMIT_OR_CHECK_RULES.get(check, (rule_id,)):
                assert reported is critical, (check, file, rule_id)
            assert _reported(registry, rule_id, objects) is reported, (check, file, rule_id)
