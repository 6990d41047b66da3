"""Running code: create or change workloads (R06), exec or attach into pods (R07), the kubelet API
through nodes/proxy (R08), hostPath-capable PersistentVolumes (R17) and pulling pods onto a node of
one's choice (R18).

Severities from DOMAIN §4: R06 High (KubiScan, rbac-tool), Critical where a privileged namespace is
within reach (rbac-police); R07 High; R08 High (rbac-police; rbac-tool says Critical); R17 High
(rbac-tool); R18 High (rbac-police).
"""

from __future__ import annotations

from dutyguard.core.model import Severity
from dutyguard.rules.rbac._capability import Access, Capability, CapabilityRule, capability_rule, targets

WORKLOAD_KINDS = (
    *targets("apps", "deployments", "daemonsets", "statefulsets", "replicasets"),
    *targets("extensions", "deployments", "daemonsets", "replicasets"),
    *targets("batch", "jobs", "cronjobs"),
    *targets("", "replicationcontrollers"),
)

WORKLOADS = Capability(
    "R06",
    "run pods as any service account of the namespace, mount its Secrets, and take the node with a "
    "privileged pod where admission allows one",
    (Access(("create", "update", "patch"), (*targets("", "pods"), *WORKLOAD_KINDS)),),
    Severity.HIGH,
    wide_severity=Severity.CRITICAL,
)
EXEC = Capability(
    "R07",
    "run commands in existing pods (and with their service accounts' rights)",
    (
        Access(("create", "get"), targets("", "pods/exec", "pods/attach")),
        Access(("update", "patch"), targets("", "pods/ephemeralcontainers")),
    ),
    Severity.HIGH,
)
NODE_PROXY = Capability(
    "R08",
    "reach the kubelet API of every node: exec in any pod there, bypassing audit logging and admission",
    (Access(("get", "create"), targets("", "nodes/proxy", cluster=True)),),
    Severity.HIGH,
)
PERSISTENT_VOLUMES = Capability(
    "R17",
    "create a hostPath PersistentVolume and reach the node's filesystem through a claim",
    (Access(("create",), targets("", "persistentvolumes", cluster=True)),),
    Severity.HIGH,
)
NODE_HIJACK = Capability(
    "R18",
    "taint nodes and evict pods, steering powerful pods onto a node they control",
    (Access(("update", "patch"), targets("", "nodes", cluster=True)),),
    Severity.HIGH,
    requires=(
        (
            Access(("create",), targets("", "pods/eviction")),
            Access(("delete", "deletecollection"), targets("", "pods")),
        ),
    ),
)


def rules() -> list[CapabilityRule]:
    return [
        capability_rule(
            id="rbac.workload-write",
            title="Role can create or change pods and workloads",
            capability=WORKLOADS,
            description=(
                "Whoever creates a pod (directly or through a Deployment, Job, DaemonSet ...) chooses its "
                "service account, Secrets and volumes, so this is every right held in the namespace; "
                "changing a pod's image runs new code under its identity. Critical where kube-system is "
                "within reach (a Role there, or a ClusterRole)."
            ),
            remediation=(
                "Let the deployment pipeline hold workload writes; give controllers only the kinds they "
                "manage, in their namespaces, and enforce Pod Security admission there."
            ),
            controls=("cis-k8s:5.1.4", "nist-800-190:4.4.1"),
            equivalents={"trivy": ("KSV048",)},
        ),
        capability_rule(
            id="rbac.pod-exec",
            title="Role can exec or attach into pods",
            capability=EXEC,
            description=(
                "pods/exec and pods/attach (create, and get over WebSocket before Kubernetes 1.35) and "
                "pods/ephemeralcontainers (a privileged debug container can break out) run code in "
                "running pods with their identity."
            ),
            remediation="Grant exec only to break-glass or debugging roles, per namespace, and audit its use.",
            controls=("nist-800-53:AC-6(10)",),
            equivalents={"trivy": ("KSV053", "KSV054")},
        ),
        capability_rule(
            id="rbac.node-proxy",
            title="Role can use nodes/proxy",
            capability=NODE_PROXY,
            description=(
                "nodes/proxy reaches the kubelet API: exec in every pod of the node, without audit logging "
                "or admission control. 'get' is not read-only here."
            ),
            remediation="Remove nodes/proxy; monitoring reads nodes/metrics and nodes/stats instead.",
            controls=("cis-k8s:5.1.10",),
            equivalents={"trivy": ("KSV047",)},
        ),
        capability_rule(
            id="rbac.persistentvolume-create",
            title="Role can create PersistentVolumes",
            capability=PERSISTENT_VOLUMES,
            description="A PersistentVolume can be a hostPath: any claim bound to it mounts the node's filesystem.",
            remediation="Leave PersistentVolumes to storage provisioners (StorageClasses) and cluster administrators.",
            controls=("cis-k8s:5.1.9",),
        ),
        capability_rule(
            id="rbac.node-taint-evict",
            title="Role can taint nodes and evict pods",
            capability=NODE_HIJACK,
            description=(
                "Tainting every other node and evicting a powerful pod (a controller with a privileged "
                "service account) makes it reschedule onto a node the holder controls."
            ),
            remediation="Keep node updates and pod eviction in separate roles; neither belongs to workloads.",
        ),
    ]
