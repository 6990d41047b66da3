"""Our workload rules against Checkov's own example directories, resource by resource.

For every Checkov check one of our ``k8s.*`` rules claims as an equivalent, the example directory is
read through our Kubernetes source and each resource Checkov evaluates is passed or failed by our
rule(s) (found through ``registry.translate``). The expected lists below were derived from the
example files and are checked against Checkov's own counts (and, where its tests name them, its
resource ids) in EXPECTED_SUMMARY.json. Where we deliberately differ, ``ours_*`` says what we do and
``why`` says why.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from dutyguard.core.model import render_path
from dutyguard.core.policy import Policy
from dutyguard.errors import InputError
from dutyguard.limits import DEFAULT_LIMITS
from dutyguard.rules import default_registry
from dutyguard.rules.workload import rules
from dutyguard.rules.workload.placement import CLUSTER_SCOPED
from dutyguard.sources.interface import InputFile
from dutyguard.sources.kubernetes import POD_SPEC_PATHS, K8sObject, KubernetesSource

POD_KINDS = frozenset(POD_SPEC_PATHS)
NAMESPACED = None
"""Marker: Checkov evaluates every namespaced kind for this check."""


@dataclass(frozen=True)
class Case:
    check: str
    example: str
    failed: tuple[str, ...]
    passed: tuple[str, ...]
    kinds: frozenset[str] | None = POD_KINDS
    refused: tuple[str, ...] = ()
    """Files our source refuses as a whole (an input error fails the scan); Checkov reports their
    resources as UNKNOWN, i.e. neither passed nor failed."""
    ours_failed: tuple[str, ...] | None = None
    ours_passed: tuple[str, ...] | None = None
    why: str = ""


def _n(rid: str, n: int) -> tuple[str, ...]:
    return (rid,) * n


UNREADABLE_RESOURCES = (
    "pod-requests-limits-UNKNOWN.yaml has 'resources' as a list and -UNKNOWN2.yaml 'requests' as a list: "
    "Checkov leaves the pods out, we cannot read a quantity there, so it is missing (fail closed; "
    "k8s.workload-malformed names the field as well)."
)

CASES = [
    Case(
        "CKV_K8S_11",
        "example_Requests_Limits",
        failed=("CronJob.default.pghero-capture-query-stats", "Pod.default.frontend"),
        passed=_n("Pod.default.frontend", 2),
        ours_failed=("CronJob.default.pghero-capture-query-stats", *_n("Pod.default.frontend", 2)),
        why=UNREADABLE_RESOURCES,
    ),
    Case(
        "CKV_K8S_13",
        "example_Requests_Limits",
        failed=("CronJob.default.pghero-capture-query-stats", "Pod.default.frontend"),
        passed=_n("Pod.default.frontend", 2),
        ours_failed=("CronJob.default.pghero-capture-query-stats", *_n("Pod.default.frontend", 2)),
        why=UNREADABLE_RESOURCES,
    ),
    Case(
        "CKV_K8S_10",
        "example_Requests_Limits",
        failed=("CronJob.default.pghero-capture-query-stats", "Pod.default.frontend"),
        passed=("Pod.default.frontend",),
        ours_failed=("CronJob.default.pghero-capture-query-stats", *_n("Pod.default.frontend", 3)),
        why=UNREADABLE_RESOURCES,
    ),
    Case(
        "CKV_K8S_12",
        "example_Requests_Limits",
        failed=("CronJob.default.pghero-capture-query-stats", "Pod.default.frontend"),
        passed=("Pod.default.frontend",),
        ours_failed=("CronJob.default.pghero-capture-query-stats", *_n("Pod.default.frontend", 3)),
        why=UNREADABLE_RESOURCES,
    ),
    Case(
        "CKV_K8S_11",
        "example_Suppressed",
        failed=("Deployment.default.hello",),
        passed=(),
        ours_failed=(
            "CronJob.default.hello",
            "Deployment.default.hello",
            "Job.default.pi",
            "Pod.default.bcliveness-exec",
            "Pod.default.cortexliveness-exec",
            "Pod.default.liveness-exec",
            "ReplicaSet.default.frontend",
            "ReplicationController.default.myapp",
            "StatefulSet.default.web",
        ),
        ours_passed=("DaemonSet.default.passed-but-skipped",),
        why=(
            "Checkov skips 9 resources whose annotations (checkov.io/skip*, bridgecrew.io/skip*) suppress "
            "the check. Suppressions written by the people a control constrains are never honoured: the "
            "findings stand and the annotations become suppression requests. The DaemonSet that Checkov "
            "skips has CPU limits, so it passes."
        ),
    ),
    Case(
        "CKV_K8S_30",
        "example_SecurityContexts",
        failed=("CronJob.default.hello", "ReplicaSet.default.frontend"),
        passed=("Pod.default.pod-drop-net-raw-capability", "Pod.default.security-context-demo"),
        refused=("pod-container-FAILED_malformed_spec.yaml",),
    ),
    Case(
        "CKV_K8S_29",
        "example_SecurityContexts",
        failed=(
            "Pod.default.pod-drop-net-raw-capability",
            "Pod.default.security-context-demo",
            "ReplicaSet.default.frontend",
        ),
        passed=("CronJob.default.hello", "Pod.default.security-context-demo"),
        refused=("pod-container-FAILED_malformed_spec.yaml",),
        ours_failed=("Pod.default.pod-drop-net-raw-capability", "ReplicaSet.default.frontend"),
        why=(
            "pod-container-FAILED_malformed_spec.yaml has 'spec' as a list. Checkov fails the pod; our "
            "source refuses the whole file, which fails the scan (exit 2): stronger than one finding."
        ),
    ),
    Case(
        "CKV_K8S_159",
        "example_DangerousGitSync",
        failed=("Deployment.default.fail-deployment", "Deployment.default.fail-deployment2"),
        passed=("Deployment.default.blog-deployment-no-git-sync-git",),
    ),
    Case(
        "CKV_K8S_21",
        "example_DefaultNamespace",
        kinds=NAMESPACED,
        failed=("Service.default.nginx", "StatefulSet.default.web"),
        passed=(
            "DaemonSet.weave.weave-scope-agent",
            "Deployment.weave.weave-scope-app",
            "Deployment.weave.weave-scope-cluster-agent",
            *_n("Service.default.kubernetes", 2),
            "Service.weave.weave-scope-app",
            *_n("ServiceAccount.default.default", 2),
            "ServiceAccount.weave.weave-scope",
        ),
        ours_failed=(),
        ours_passed=(
            "DaemonSet.weave.weave-scope-agent",
            "Deployment.weave.weave-scope-app",
            "Deployment.weave.weave-scope-cluster-agent",
            *_n("Service.default.kubernetes", 2),
            "Service.default.nginx",
            "Service.weave.weave-scope-app",
            *_n("ServiceAccount.default.default", 2),
            "ServiceAccount.weave.weave-scope",
            "StatefulSet.default.web",
        ),
        why=(
            "nginx-statefulset-FAILED.yaml sets no namespace. Checkov takes that as 'default'; we judge "
            "only an explicit namespace: without one the object lands wherever it is applied (kubectl "
            "-n, Helm, kustomize), and at admission the namespace is always known."
        ),
    ),
    Case(
        "CKV_K8S_41",
        "example_DefaultServiceAccount",
        kinds=frozenset({"ServiceAccount"}),
        failed=_n("ServiceAccount.awesomeness.default", 2),
        passed=("ServiceAccount.awesomeness.default", "ServiceAccount.awesomeness.notdefault"),
    ),
    Case(
        "CKV_K8S_27",
        "example_DockerSocketVolume",
        failed=("DaemonSet.amazon-cloudwatch.cloudwatch-agent", "DaemonSet.weave.weave-scope-agent"),
        passed=(
            "CronJob.default.nginx-pod",
            "DaemonSet.amazon-cloudwatch.fluentd-cloudwatch",
            "Deployment.weave.weave-scope-app",
            "Deployment.weave.weave-scope-cluster-agent",
        ),
        refused=("scope-UNKNOWN.yaml",),
    ),
    Case(
        "CKV_K8S_28",
        "example_DropCapabilities",
        failed=("Pod.default.pod-drop-net-raw-capability", "Pod.default.pod-drop-none"),
        passed=(*_n("Pod.default.pod-drop-all-capability", 2), "Pod.default.pod-drop-net-raw-capability"),
    ),
    Case(
        "CKV_K8S_43",
        "example_ImageDigest",
        failed=("Job.default.countdown", "Pod.default.zookeeper"),
        passed=_n("StatefulSet.default.kafka", 3),
    ),
    Case(
        "CKV_K8S_15",
        "example_ImagePullPolicy",
        failed=(
            "Deployment.default.wordpress",
            "Deployment.default.wordpress-mysql",
            "ReplicationController.default.myapp",
        ),
        passed=(
            "Job.default.countdown",
            "Pod.default.nimbus",
            *_n("StatefulSet.default.cassandra", 3),
            "StatefulSet.default.kafka",
        ),
    ),
    Case(
        "CKV_K8S_14",
        "example_ImageTagFixed",
        failed=("Job.default.countdown", "Pod.default.zookeeper"),
        passed=_n("StatefulSet.default.kafka", 4),
    ),
    Case(
        "CKV_K8S_33",
        "example_KubernetesDashboard",
        failed=(
            "Deployment.default.helm-kubernetes-dashboard",
            "Deployment.default.my-nginx",
            "Deployment.kubernetes-dashboard.kubernetes-dashboard",
            "Pod.default.None",
        ),
        passed=("Deployment.default.my-nginx", "Pod.default.None"),
    ),
    Case(
        "CKV_K8S_22",
        "example_ReadOnlyFilesystem",
        failed=("Pod.default.readonly-container", "ReplicaSet.default.frontend"),
        passed=("Pod.default.readonly-container",),
    ),
    Case(
        "CKV_K8S_40",
        "example_RootContainersHighUID",
        failed=(
            "Pod.default.pod1",
            "Pod.default.pod2",
            "Pod.default.pod3",
            *_n("Pod.default.pod4", 3),
            "Pod.default.pod5",
        ),
        passed=("Pod.default.pod1", "Pod.default.pod2", "Pod.default.pod3", "Pod.default.pod4"),
        refused=("rootContainersHighUIDUNKNOWN.yaml",),
    ),
    Case(
        "CKV_K8S_35",
        "example_Secrets",
        failed=("Pod.default.secret-test-pod", "Pod.default.secret-test-pod-2"),
        passed=("Deployment.default.my-nginx", "Pod.default.secret-test-pod"),
        ours_passed=("Deployment.default.my-nginx", *_n("Pod.default.secret-test-pod", 2)),
        why=(
            "pod-secretsEnvironment-UNKNOWN.yaml has 'env: env' (a string). Checkov leaves the pod out; "
            "it references no Secret, so this rule passes it, and k8s.workload-malformed reports the "
            "unreadable env (HIGH)."
        ),
    ),
    Case(
        "CKV_K8S_38",
        "example_ServiceAccountTokens",
        failed=("Pod.default.pod1", "Pod.default.pod2"),
        passed=("Pod.default.pod-pass",),
        refused=("ServiceAccountTokensUNKNOWN.yaml",),
    ),
    Case(
        "CKV_K8S_34",
        "example_Tiller",
        failed=("Deployment.kube-system.tiller-deploy",),
        passed=("Deployment.default.my-nginx",),
    ),
    Case(
        "CKV_K8S_45",
        "example_TillerDeploymentListener",
        failed=("Deployment.default.tiller", "Deployment.kube-system.tiller-deploy"),
        passed=_n("Deployment.kube-system.tiller-deploy", 2),
        ours_failed=("Deployment.default.tiller", *_n("Deployment.kube-system.tiller-deploy", 3)),
        ours_passed=(),
        why=(
            "Checkov passes a Tiller that listens on localhost only. Tiller (Helm v2, end of life) is "
            "reported wherever it runs: kubectl port-forward still reaches a localhost listener, and "
            "Tiller usually runs as cluster-admin without authentication."
        ),
    ),
    Case(
        "CKV_K8S_44",
        "example_TillerService",
        kinds=frozenset({"Service"}),
        failed=_n("Service.kube-system.tiller-deploy", 2),
        passed=(),
        ours_passed=("Service.default.flask-svc",),
        why="Checkov reports a Service that is not Tiller's as UNKNOWN; for us it passes.",
    ),
]


def _summary(shared_data: Path, case: Case) -> dict[str, object]:
    entries = json.loads((shared_data / "checkov" / "EXPECTED_SUMMARY.json").read_text())
    for e in entries:
        if (
            e.get("check_id") == case.check
            and e["test"] == "test_summary"
            and e["example_dir"].endswith("/" + case.example)
        ):
            return dict(e)
    raise AssertionError(f"{case.check} {case.example} not in EXPECTED_SUMMARY.json")


def _load(directory: Path) -> tuple[list[K8sObject], list[str]]:
    source = KubernetesSource()
    objects: list[K8sObject] = []
    refused: list[str] = []
    for name in sorted(os.listdir(directory)):
        if not source.accepts(name):
            continue
        data = (directory / name).read_bytes()
        try:
            objects.extend(source.load(InputFile(name=name, data=data, size=len(data)), DEFAULT_LIMITS))
        except InputError:
            refused.append(name)
    return objects, refused


def checkov_id(obj: K8sObject) -> str:
    return f"{obj.kind}.{obj.namespace or 'default'}.{obj.name}"


def _evaluated(obj: K8sObject, kinds: frozenset[str] | None) -> bool:
    if kinds is None:
        return bool(obj.kind) and obj.kind not in CLUSTER_SCOPED
    return obj.kind in kinds


def _ids(case: Case) -> str:
    return f"{case.check}-{case.example}"


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_expected_lists_agree_with_checkov(shared_data: Path, case: Case) -> None:
    summary = _summary(shared_data, case)
    counts = summary["expected_summary"]
    assert isinstance(counts, dict)
    assert len(case.failed) == counts["failed"]
    assert len(case.passed) == counts.get("passed", 0)
    if "failed_resources" in summary:
        assert sorted(case.failed) == sorted(summary["failed_resources"])  # type: ignore[arg-type]
    if "passed_resources" in summary:
        assert sorted(case.passed) == sorted(summary["passed_resources"])  # type: ignore[arg-type]
    assert (case.ours_failed is None and case.ours_passed is None) or case.why


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_ours_resource_by_resource(shared_data: Path, registry, case: Case) -> None:  # type: ignore[no-untyped-def]
    ours = [r for r in registry.translate(case.check) if r.startswith("k8s.")]
    assert ours, f"no k8s.* rule claims {case.check}"
    objects, refused = _load(shared_data / "checkov" / "tests" / "kubernetes" / "checks" / case.example)
    assert refused == list(case.refused)
    failed: list[str] = []
    passed: list[str] = []
    for obj in objects:
        if not _evaluated(obj, case.kinds):
            continue
        hit = any(list(registry.get(r).check(obj, Policy())) for r in ours)
        (failed if hit else passed).append(checkov_id(obj))
    expected_failed = case.failed if case.ours_failed is None else case.ours_failed
    expected_passed = case.passed if case.ours_passed is None else case.ours_passed
    assert Counter(failed) == Counter(expected_failed)
    assert Counter(passed) == Counter(expected_passed)


def test_every_claimed_checkov_equivalent_is_compared(shared_data: Path) -> None:
    claimed = {i for r in rules() for i in r.meta.equivalents.get("checkov", ())}
    entries = json.loads((shared_data / "checkov" / "EXPECTED_SUMMARY.json").read_text())
    with_examples = {e.get("check_id") for e in entries if e["test"] == "test_summary"}
    compared = {c.check for c in CASES}
    assert claimed & with_examples <= compared
    assert compared <= claimed


def test_unreadable_checkov_resources_are_reported_not_skipped(shared_data: Path) -> None:
    # Where Checkov says UNKNOWN and our source still reads the file, k8s.workload-malformed must
    # say why the resource cannot be evaluated.
    registry = default_registry()
    rule = registry.get("k8s.workload-malformed")
    base = shared_data / "checkov" / "tests" / "kubernetes" / "checks"
    expected = {
        ("example_Requests_Limits", "pod-requests-limits-UNKNOWN.yaml"): "spec.containers[0].resources",
        (
            "example_Requests_Limits",
            "pod-requests-limits-UNKNOWN2.yaml",
        ): "spec.containers[0].resources.requests",
        ("example_Secrets", "pod-secretsEnvironment-UNKNOWN.yaml"): "spec.containers[0].env",
        ("example_DockerSocketVolume", "CronJob-pass.yaml"): "spec.jobTemplate.spec.template.spec",
        ("example_RootContainersHighUID", "rootContainersHighUIDFAILED.yaml"): "spec.securityContext",
    }
    for (example, name), field in expected.items():
        objects, _ = _load(base / example)
        rendered = [render_path(v.path) for o in objects if o.source == name for v in rule.check(o, Policy())]
        assert field in rendered, (example, name, rendered)
