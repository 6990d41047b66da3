"""Credentials: reading Secrets (R09), minting service account tokens (R10), approving client
certificates (R11) and writing ConfigMaps, which in kube-system include EKS's aws-auth (R19).

Severities from DOMAIN §4: R09 Medium in an ordinary namespace and Critical where a privileged
namespace is within reach (rbac-police; KubiScan says Critical throughout); R10 Critical where a
privileged namespace is within reach (rbac-police), High elsewhere (derived: a token of the
namespace's accounts is what creating a pod there gives, R06); R11 Critical (rbac-police); R19
Critical (rbac-police) where kube-system is within reach, Medium elsewhere (Trivy KSV049).
"""

from __future__ import annotations

from dutyguard.core.model import Severity
from dutyguard.rules.rbac._capability import Access, Capability, CapabilityRule, capability_rule, targets

CERTIFICATES = "certificates.k8s.io"

SECRETS_READ = Capability(
    "R09",
    "read every Secret in reach, service account tokens and registry credentials included",
    (Access(("get", "list", "watch"), targets("", "secrets"), name=None),),
    Severity.MEDIUM,
    wide_severity=Severity.CRITICAL,
)
TOKEN_CREATE = Capability(
    "R10",
    "mint tokens for service accounts and act with their rights",
    (Access(("create",), targets("", "serviceaccounts/token")),),
    Severity.HIGH,
    wide_severity=Severity.CRITICAL,
    # A Secret of type service-account-token is filled in by the token controller: creating one in
    # kube-system mints a token for an admin-equivalent account.
    wide_accesses=(Access(("create",), targets("", "secrets")),),
)
CSR_APPROVE = Capability(
    "R11",
    "approve client certificates with any name and group, system components and system:masters included",
    (
        Access(
            ("update", "patch"), targets(CERTIFICATES, "certificatesigningrequests/approval", cluster=True)
        ),
    ),
    Severity.CRITICAL,
    requires=((Access(("approve",), targets(CERTIFICATES, "signers", cluster=True)),),),
)
SENSITIVE_CONFIGMAPS = frozenset(
    {"aws-auth", "coredns", "kube-proxy", "kubeadm-config", "extension-apiserver-authentication"}
)
CONFIGMAPS_WRITE = Capability(
    "R19",
    "rewrite configuration read by other components; in kube-system that includes EKS's aws-auth "
    "(cluster-admin), CoreDNS and kube-proxy",
    (Access(("create", "update", "patch"), targets("", "configmaps")),),
    Severity.MEDIUM,
    wide_severity=Severity.CRITICAL,
    wide_names=SENSITIVE_CONFIGMAPS,
)


def rules() -> list[CapabilityRule]:
    return [
        capability_rule(
            id="rbac.secrets-read",
            title="Role can read Secrets",
            capability=SECRETS_READ,
            description=(
                "get, list and watch on secrets return their contents, service account tokens included. "
                "Critical where kube-system is within reach (a Role there, or a ClusterRole), Medium in an "
                "ordinary namespace; a rule limited with resourceNames is not reported."
            ),
            remediation=(
                "Name the Secrets the workload reads (resourceNames) or mount them instead; never grant "
                "list/watch on secrets cluster-wide."
            ),
            controls=("cis-k8s:5.1.2", "nsa:secrets"),
            equivalents={"trivy": ("KSV041", "KSV113")},
        ),
        capability_rule(
            id="rbac.token-create",
            title="Role can mint service account tokens",
            capability=TOKEN_CREATE,
            description=(
                "create on serviceaccounts/token issues a token for any account in reach; where kube-system "
                "is within reach, so does creating a Secret of type service-account-token."
            ),
            remediation="Remove serviceaccounts/token create (and Secret create in kube-system); pods get tokens by projection.",
            controls=("cis-k8s:5.1.13",),
        ),
        capability_rule(
            id="rbac.csr-approve",
            title="Role can approve certificate signing requests",
            capability=CSR_APPROVE,
            description=(
                "Updating certificatesigningrequests/approval together with 'approve' on signers issues "
                "client certificates for any user or group the signer allows, up to system:masters "
                "with the kube-apiserver-client signer."
            ),
            remediation="Leave CSR approval to the controller manager and cluster administrators.",
            controls=("cis-k8s:5.1.11",),
            equivalents={"checkov": ("CKV_K8S_156",)},
        ),
        capability_rule(
            id="rbac.configmap-write",
            title="Role can write ConfigMaps",
            capability=CONFIGMAPS_WRITE,
            description=(
                "Critical where kube-system is within reach unless resourceNames exclude its sensitive "
                "ConfigMaps (aws-auth maps IAM identities to RBAC groups on EKS; coredns, kube-proxy, "
                "kubeadm-config, extension-apiserver-authentication); Medium in an ordinary namespace."
            ),
            remediation="Restrict ConfigMap writes with resourceNames to the workload's own objects, in its own namespace.",
            controls=("nist-800-53:CM-5",),
            equivalents={"trivy": ("KSV049", "KSV115")},
        ),
    ]
