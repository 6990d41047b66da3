"""Traffic and scheduling: status subresources (R20) and networking objects (Trivy KSV056).

Severities: services/status Medium and pods/status, nodes/status Low (DOMAIN §4 R20, rbac-police);
networking writes High (Trivy KSV056; DOMAIN has no row for them).
"""

from __future__ import annotations

from dutyguard.core.model import Severity
from dutyguard.rules.rbac._capability import Access, Capability, CapabilityRule, capability_rule, targets

SERVICE_STATUS = Capability(
    "R20",
    "set status.loadBalancer.ingress on Services and intercept traffic to those IPs (CVE-2020-8554)",
    (Access(("update", "patch"), targets("", "services/status")),),
    Severity.MEDIUM,
)
POD_NODE_STATUS = Capability(
    "R20",
    "forge pod or node status: readiness, addresses and conditions that steer traffic and scheduling",
    (
        Access(("update", "patch"), targets("", "pods/status")),
        Access(("update", "patch"), targets("", "nodes/status", cluster=True)),
    ),
    Severity.LOW,
)
NETWORK_WRITE = Capability(
    "KSV056",
    "redirect Service traffic to pods of their choice or lift NetworkPolicy isolation",
    (
        Access(
            ("create", "update", "patch", "delete", "deletecollection"),
            (
                *targets("", "services", "endpoints"),
                *targets("discovery.k8s.io", "endpointslices"),
                *targets("networking.k8s.io", "networkpolicies", "ingresses"),
                *targets("extensions", "networkpolicies", "ingresses"),
            ),
        ),
    ),
    Severity.HIGH,
)


def rules() -> list[CapabilityRule]:
    return [
        capability_rule(
            id="rbac.service-status-write",
            title="Role can write services/status",
            capability=SERVICE_STATUS,
            description=(
                "Whoever sets a LoadBalancer Service's ingress IP makes kube-proxy on every node capture "
                "traffic to that IP: a man in the middle for any address (CVE-2020-8554, unfixed by design)."
            ),
            remediation="Only load-balancer controllers need services/status; grant it to nothing else.",
            controls=("nist-800-53:SC-7",),
        ),
        capability_rule(
            id="rbac.status-write",
            title="Role can write pods/status or nodes/status",
            capability=POD_NODE_STATUS,
            description="Forged pod or node status changes which endpoints receive traffic and where pods are scheduled.",
            remediation="Status belongs to the kubelet and controllers; remove status writes from other roles.",
            controls=("nist-800-53:SC-7",),
        ),
        capability_rule(
            id="rbac.network-write",
            title="Role can change Services, endpoints, Ingresses or NetworkPolicies",
            capability=NETWORK_WRITE,
            description=(
                "Controlling which pods back a Service or Ingress allows interception; writing "
                "NetworkPolicies lifts isolation between workloads."
            ),
            remediation="Keep networking objects in the deployment pipeline; controllers get only the kinds they manage.",
            controls=("nist-800-53:SC-7", "nsa:network-separation"),
            equivalents={"trivy": ("KSV056",)},
        ),
    ]
