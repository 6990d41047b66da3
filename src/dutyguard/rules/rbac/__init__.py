"""Kubernetes RBAC (pack ``rbac``): roles that give escalation or control-bypass paths, bindings that
hand them out, and who effectively gets what across the scanned set.

Rules follow the escalation and control-bypass patterns R01–R22 of the shared domain notes
(DOMAIN.md §4), with their severities (each module names the source it follows where the sources
disagree), cross-checked against Trivy's KSV RBAC checks and Checkov's CKV_K8S_49/155–158, CKV_K8S_42
and graph checks CKV2_K8S_1–5 (``equivalents``). Matching is RBAC's own (:mod:`._model`), so a
wildcard, a ``*/subresource`` or a ClusterRole bound by a RoleBinding grants exactly what the API
server would let it grant.

Three kinds of rule:

- per role (Role, ClusterRole), one per capability (:mod:`._capability`), plus wildcards,
  malformed objects and aggregation;
- per binding, what needs no role to judge (cluster-admin, system:masters, anonymous, default
  service accounts);
- scan-wide (:mod:`.graph`), over a :class:`~dutyguard.core.scanwide.ScanWide` resource built from
  every RBAC object of the scan: which subject a binding gives which capability, and R22 across
  bindings. The admission webhook sees one object at a time and never evaluates these.

Control references: ``cis-k8s:5.1.x`` (CIS Kubernetes Benchmark v1.9, RBAC and service accounts),
``nsa:authorization`` (NSA/CISA Kubernetes Hardening Guide, authentication and authorization),
``nist-800-190:4.3.1`` (orchestrator: unbounded administrative access), ``nist-800-53:AC-5``,
``AC-6``, ``AC-6(1)``, ``AC-6(10)``, ``AC-14``, ``AU-9(4)``, ``CM-3``, ``CM-5``, ``SC-7``, ``SI-10``.
"""

from __future__ import annotations

from collections.abc import Container

from dutyguard.core.rule import EVERY_RULE, AnyRule
from dutyguard.rules.rbac import (
    bindings,
    credentials,
    escalation,
    graph,
    guardrails,
    network,
    structure,
    workloads,
)
from dutyguard.rules.rbac._capability import CapabilityRule
from dutyguard.rules.rbac._model import BINDING_KINDS, ROLE_KINDS
from dutyguard.sources.kubernetes import K8sObject

_RBAC_KINDS = ROLE_KINDS | BINDING_KINDS


def _rbac_kinds_only(resource: K8sObject) -> Container[AnyRule]:
    """The per-object rules read Roles, ClusterRoles and their bindings only (``is_rbac`` also
    checks the API group): for every other object — nine in ten of a scan — none is called."""
    return EVERY_RULE if resource.kind in _RBAC_KINDS else ()


def rules() -> list[AnyRule]:
    per_role: list[AnyRule] = [
        *escalation.rules(),
        *workloads.rules(),
        *credentials.rules(),
        *guardrails.rules(),
        *network.rules(),
    ]
    capabilities = [r for r in per_role if isinstance(r, CapabilityRule)]
    out: list[AnyRule] = [
        structure.Malformed(),
        *per_role,
        structure.AggregatedClusterRole(),
        structure.AggregateToBuiltin(capabilities),
        *bindings.rules(),
        graph.EffectivePermission(capabilities),
        graph.SubjectActAndErase(),
    ]
    for rule in out:
        if rule.target is K8sObject:
            rule.screen = _rbac_kinds_only
    return out
