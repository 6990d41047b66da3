"""Workload hardening beyond the Pod Security Standards (pack ``k8s``).

Sources: the NSA/CISA Kubernetes Hardening Guide, CIS Kubernetes Benchmark section 5 and NIST SP
800-190 section 4, cross-checked against the high and critical workload checks of Checkov
(CKV_K8S_*) and Trivy (KSV*). What PSS covers (privileged, host namespaces, hostPath, host ports,
capabilities, privilege escalation, root, seccomp, AppArmor, SELinux, /proc mount, sysctls) is in
``dutyguard.rules.pss``; RBAC objects are a separate pack.

Control references used here:

- ``nist-800-190:4.x.y``: SP 800-190 countermeasure sections (4.1 image, 4.2 registry, 4.3
  orchestrator, 4.4 container, 4.5 host OS);
- ``cis-k8s:n.n.n``: CIS Kubernetes Benchmark v1.9 recommendations;
- ``nsa:<topic>``: NSA/CISA Kubernetes Hardening Guide v1.2 sections: ``non-root-containers``,
  ``immutable-filesystems``, ``secure-images``, ``pod-security``, ``service-account-tokens``,
  ``container-environments``, ``namespaces``, ``network-separation``, ``resource-policies``,
  ``secrets``, ``upgrades``;
- ``nist-800-53:SI-10``: input validation (the fail-closed rule).
"""

from __future__ import annotations

from dutyguard.core.rule import AnyRule
from dutyguard.rules.workload import (
    cluster,
    credentials,
    hardening,
    host,
    identity,
    images,
    placement,
    resources,
    software,
    structure,
)


def rules() -> list[AnyRule]:
    return [
        structure.WorkloadMalformed(),
        images.ImageReferenceInvalid(),
        images.ImageTagLatest(),
        images.ImageNotPinnedByDigest(),
        images.ImageRegistryNotAllowed(),
        images.ImagePullPolicyNotAlways(),
        host.RuntimeSocketMount(),
        host.SensitiveHostPath(),
        hardening.WritableRootFilesystem(),
        hardening.NetRawNotDropped(),
        hardening.LowUid(),
        hardening.LowGid(),
        hardening.RootGroup(),
        hardening.PodSecurityContextMissing(),
        hardening.ContainerSecurityContextMissing(),
        resources.NoCpuLimit(),
        resources.NoMemoryLimit(),
        resources.NoCpuRequest(),
        resources.NoMemoryRequest(),
        identity.ServiceAccountTokenAutomount(),
        identity.ServiceAccountTokenDefaultAutomount(),
        identity.DefaultServiceAccountAutomount(),
        credentials.SecretInEnv(),
        credentials.SecretExposedAsEnv(),
        credentials.SecretInConfigMap(),
        placement.DefaultNamespace(),
        placement.SystemNamespace(),
        software.TillerDeployed(),
        software.KubernetesDashboard(),
        software.GitSyncExecOverride(),
        cluster.ServiceExternalIPs(),
        cluster.GatekeeperAllowedReposOpenPrefix(),
    ]
