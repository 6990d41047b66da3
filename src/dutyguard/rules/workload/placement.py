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


NAMESPACE_GOVERNANCE = frozenset({"Role", "RoleBinding", "NetworkPolicy", "ResourceQuota", "LimitRange"})
"""Objects that govern the namespace they are in (who may do what there, which traffic, how much): they
must live in the namespace they govern, so their placement is not a finding; a default-deny
NetworkPolicy in ``default`` is a good thing."""


def _placed(resource: K8sObject) -> bool:
    """Whether the object is placed in a namespace by choice (namespaced, not namespace governance)."""
    kind = resource.kind
    return bool(kind) and kind not in CLUSTER_SCOPED and kind not in NAMESPACE_GOVERNANCE


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
        if resource.namespace != "default" or not _placed(resource):
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
        if ns in SYSTEM_NAMESPACES and _placed(resource):
            yield Violation(
                f"{resource.kind} is placed in the {ns} namespace", path=("metadata", "namespace")
            )
