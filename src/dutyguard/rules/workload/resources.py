"""CPU and memory requests and limits: one workload must not be able to starve its neighbours.

Checked on containers and init containers (the API refuses resources on ephemeral containers). A
limit of zero, a negative one or a malformed quantity limits nothing and counts as missing. A
missing request with a limit is not missing: the API server defaults the request to the limit.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from dutyguard.core.model import Severity
from dutyguard.core.policy import Policy
from dutyguard.core.rule import Rule, RuleMeta, Violation
from dutyguard.rules._podview import container_field
from dutyguard.rules.workload._view import PACK, RUNNING_CONTAINERS, quantity_is_set
from dutyguard.sources.kubernetes import K8sObject

_CONTROLS = ("nsa:resource-policies", "nist-800-190:4.4.3")


class _ResourceRule(Rule[K8sObject]):
    kind: str
    """``limits`` or ``requests``."""
    resource_name: str
    """``cpu`` or ``memory``."""

    def check(self, resource: K8sObject, policy: Policy) -> Iterator[Violation]:
        for c in resource.containers(RUNNING_CONTAINERS):
            f = container_field(c, "resources", self.kind, self.resource_name)
            if quantity_is_set(f.value):
                continue
            # The API server copies a limit into a missing request: the request is then set.
            if (
                self.kind == "requests"
                and f.unset
                and quantity_is_set(container_field(c, "resources", "limits", self.resource_name).value)
            ):
                continue
            why = (
                "cannot be read"
                if f.malformed
                else ("is not a positive quantity" if f.is_set else "is not set")
            )
            yield Violation(
                f"container {c.name!r}: {self.kind}.{self.resource_name} {why}",
                path=(*c.path, "resources", self.kind, self.resource_name),
                container=c.name,
            )


def _meta(
    rule_id: str,
    field: str,
    title: str,
    severity: Severity,
    description: str,
    equivalents: Mapping[str, tuple[str, ...]],
) -> RuleMeta:
    return RuleMeta(
        id=rule_id,
        title=title,
        severity=severity,
        description=description,
        remediation=f"Set {field} on every container and init container.",
        controls=_CONTROLS,
        pack=PACK,
        equivalents=equivalents,
    )


class NoCpuLimit(_ResourceRule):
    kind, resource_name = "limits", "cpu"
    meta = _meta(
        "k8s.no-cpu-limit",
        "resources.limits.cpu",
        "No CPU limit",
        Severity.LOW,
        "Without a CPU limit a container can use every core of its node, slowing its neighbours (CPU is "
        "throttled, not killed).",
        {
            "checkov": ("CKV_K8S_11",),
            "trivy": ("KSV011",),
            "kubesec": ("LimitsCPU",),
            "kube-score": ("container-resources",),
        },
    )
    target = K8sObject


class NoMemoryLimit(_ResourceRule):
    kind, resource_name = "limits", "memory"
    meta = _meta(
        "k8s.no-memory-limit",
        "resources.limits.memory",
        "No memory limit",
        Severity.MEDIUM,
        "Without a memory limit one container can exhaust its node's memory, and the kernel's OOM killer "
        "then ends other tenants' pods: a denial of service across workloads.",
        {
            "checkov": ("CKV_K8S_13",),
            "trivy": ("KSV018",),
            "kubesec": ("LimitsMemory",),
            "kube-score": ("container-resources",),
        },
    )
    target = K8sObject


class NoCpuRequest(_ResourceRule):
    kind, resource_name = "requests", "cpu"
    meta = _meta(
        "k8s.no-cpu-request",
        "resources.requests.cpu",
        "No CPU request",
        Severity.INFO,
        "Without a CPU request the scheduler cannot reserve capacity for the container (scheduling "
        "hygiene, not a security boundary).",
        {
            "checkov": ("CKV_K8S_10",),
            "trivy": ("KSV015",),
            "kubesec": ("RequestsCPU",),
            "kube-score": ("container-resources",),
        },
    )
    target = K8sObject


class NoMemoryRequest(_ResourceRule):
    kind, resource_name = "requests", "memory"
    meta = _meta(
        "k8s.no-memory-request",
        "resources.requests.memory",
        "No memory request",
        Severity.INFO,
        "Without a memory request the scheduler may overcommit the node, and the container is among the "
        "first evicted under memory pressure.",
        {
            "checkov": ("CKV_K8S_12",),
            "trivy": ("KSV016",),
            "kubesec": ("RequestsMemory",),
            "kube-score": ("container-resources",),
        },
    )
    target = K8sObject
