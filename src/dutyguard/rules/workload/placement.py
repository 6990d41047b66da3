"""Where objects are placed: namespaces are the boundary RBAC, quotas, network and PSS policies hang on.

Only an explicit namespace is judged. A manifest without one lands wherever it is applied
(``kubectl -n``, Helm's release namespace, kustomize); at admission the namespace is always known.
"""

from __future__ import annotations

from collections.abc import Iterator

from dutyguard.core.model import Severity
from dutyguard.core.policy import Policy
from dutyguard.core.rule import Rule, RuleMeta, Violation
from dutyguard.rules.workload._view import PACK
from dutyguard.sources.kubernetes import K8sObject

CLUSTER_SCOPED = frozenset(
    {"Namespace", "Node", "PersistentVolume", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
     "StorageClass", "PriorityClass", "RuntimeClass", "IngressClass", "CSIDriver", "CSINode",
     "VolumeAttachment", "APIService", "CertificateSigningRequest", "PodSecurityPolicy", "FlowSchema",
     "PriorityLevelConfiguration", "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration",
     "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding", "MutatingAdmissionPolicy",
     "MutatingAdmissionPolicyBinding", "ComponentStatus", "ConstraintTemplate", "ClusterIssuer",
     "ClusterPolicy", "ClusterPolicyReport"}
)  # fmt: skip
"""Kinds that have no namespace: a ``namespace`` written on them is ignored by the API server."""

SYSTEM_NAMESPACES = frozenset({"kube-system", "kube-public", "kube-node-lease"})

_MANAGED_IN_DEFAULT = frozenset(
    {("Service", "kubernetes"), ("Endpoints", "kubernetes"), ("EndpointSlice", "kubernetes"),
     ("ServiceAccount", "default"), ("ConfigMap", "kube-root-ca.crt")}
)  # fmt: skip
"""Objects the control plane itself keeps in every (or the default) namespace."""


def _namespaced(resource: K8sObject) -> bool:
    return bool(resource.kind) and resource.kind not in CLUSTER_SCOPED


class DefaultNamespace(Rule[K8sObject]):
    meta = RuleMeta(
        id="k8s.default-namespace",
        title="Object in the default namespace",
        severity=Severity.LOW,
        description=(
            "The default namespace is where everything lands by accident; it rarely has the quotas, "
            "network policies, Pod Security level and RBAC a team namespace has."
        ),
        remediation="Deploy into a dedicated namespace.",
        controls=("cis-k8s:5.7.4", "cis-k8s:5.7.1", "nsa:namespaces"),
        pack=PACK,
        equivalents={"checkov": ("CKV_K8S_21",), "trivy": ("KSV110",)},
    )
    target = K8sObject

    def check(self, resource: K8sObject, policy: Policy) -> Iterator[Violation]:
        if resource.namespace != "default" or not _namespaced(resource):
            return
        if (resource.kind, resource.name) in _MANAGED_IN_DEFAULT:
            return
        yield Violation(f"{resource.kind} is placed in the default namespace", path=("metadata", "namespace"))


class SystemNamespace(Rule[K8sObject]):
    meta = RuleMeta(
        id="k8s.system-namespace",
        title="Object in a system namespace",
        severity=Severity.MEDIUM,
        description=(
            "kube-system holds the cluster's most privileged service accounts and secrets, and is usually "
            "exempt from admission policy; kube-public is world-readable; kube-node-lease is for node "
            "heartbeats. Workloads placed there share that trust."
        ),
        remediation="Deploy into a dedicated namespace; keep system namespaces to the platform team's own components.",
        controls=("nist-800-190:4.3.4", "cis-k8s:5.7.1", "nsa:namespaces"),
        pack=PACK,
        equivalents={"trivy": ("KSV037",)},
    )
    target = K8sObject

    def check(self, resource: K8sObject, policy: Policy) -> Iterator[Violation]:
        ns = resource.namespace
        if ns in SYSTEM_NAMESPACES and _namespaced(resource):
            yield Violation(
                f"{resource.kind} is placed in the {ns} namespace", path=("metadata", "namespace")
            )
