"""Roles that are, or can become, cluster-admin: wildcards (R01), escalate (R02), bind (R03),
impersonate (R04) and writing RBAC objects (R05). Severities: Critical for all five, as rbac-police,
KubiScan and rbac-tool rate them (krane rates R05 a warning; we follow rbac-tool)."""

from __future__ import annotations

from collections.abc import Iterator

from dutyguard.core.model import Severity
from dutyguard.core.policy import Policy
from dutyguard.core.rule import Rule, RuleMeta, Violation
from dutyguard.rules.rbac._capability import (
    BASE_CONTROLS,
    FULL_WILDCARD_RULE,
    PACK,
    Access,
    Capability,
    CapabilityRule,
    Target,
    capability_rule,
    reported,
    targets,
)
from dutyguard.rules.rbac._model import RBAC_GROUP, PolicyRule, role_view
from dutyguard.sources.kubernetes import K8sObject

ROLES = (*targets(RBAC_GROUP, "roles"), *targets(RBAC_GROUP, "clusterroles", cluster=True))
BINDINGS = (*targets(RBAC_GROUP, "rolebindings"), *targets(RBAC_GROUP, "clusterrolebindings", cluster=True))

FULL = Capability(
    "R01",
    "do anything to every resource in reach, as cluster-admin does",
    (Access(("*",), (Target("*", "*"),), name=None),),
    Severity.CRITICAL,
)
ESCALATE = Capability(
    "R02",
    "create or change roles with permissions they do not hold themselves",
    (Access(("escalate",), ROLES),),
    Severity.CRITICAL,
)
BIND = Capability(
    "R03",
    "bind roles whose permissions they do not hold (to themselves or anyone)",
    (Access(("bind",), ROLES),),
    Severity.CRITICAL,
)
IMPERSONATE = Capability(
    "R04",
    "act as other users, groups or service accounts and gain their rights",
    (
        Access(
            ("impersonate",),
            (
                *targets("", "users", "groups", cluster=True),
                *targets("", "serviceaccounts"),
                *targets("authentication.k8s.io", "uids", cluster=True),
            ),
        ),
    ),
    Severity.CRITICAL,
)
RBAC_WRITE = Capability(
    "R05",
    "manage RBAC: grant what they hold to anyone, and change who holds what",
    (Access(("create", "update", "patch"), (*ROLES, *BINDINGS)),),
    Severity.CRITICAL,
)


def full_wildcard() -> CapabilityRule:
    return capability_rule(
        id=FULL_WILDCARD_RULE,
        title="Role grants every verb on every resource (cluster-admin equivalent)",
        capability=FULL,
        description=(
            "An entry with '*' verbs on '*' resources in '*' API groups gives full control of everything "
            "in the role's reach, including Secrets, workloads and RBAC itself; bound cluster-wide it is "
            "cluster-admin. Narrower rbac rules leave such an entry to this rule."
        ),
        remediation=(
            "List the API groups, resources and verbs the workload needs. Controllers that apply arbitrary "
            "manifests (GitOps) should be limited to the namespaces they deploy to."
        ),
        controls=("cis-k8s:5.1.1", "cis-k8s:5.1.3"),
        equivalents={"trivy": ("KSV044",), "checkov": ("CKV_K8S_49",)},
    )


def escalate() -> CapabilityRule:
    return capability_rule(
        id="rbac.escalate",
        title="Role grants 'escalate' on roles",
        capability=ESCALATE,
        description=(
            "'escalate' switches off RBAC's escalation check for role writes: its holders can write a role "
            "with any permission, then use it."
        ),
        remediation="Remove 'escalate' (and '*' verbs) on roles and clusterroles; nothing but cluster administration needs it.",
        controls=("cis-k8s:5.1.8", "nist-800-53:AC-6(1)"),
        equivalents={"checkov": ("CKV_K8S_158",)},
    )


def bind() -> CapabilityRule:
    return capability_rule(
        id="rbac.bind",
        title="Role grants 'bind' on roles",
        capability=BIND,
        description=(
            "'bind' lets its holders create bindings to roles they do not hold, cluster-admin included. "
            "'bind' on rolebindings or clusterrolebindings means nothing to the API server; it must be on "
            "the roles."
        ),
        remediation=(
            "Remove 'bind' (and '*' verbs) on roles and clusterroles, or restrict it with resourceNames to "
            "the few roles a delegated administrator may hand out."
        ),
        controls=("cis-k8s:5.1.8", "nist-800-53:AC-6(1)"),
        equivalents={"checkov": ("CKV_K8S_157",), "trivy": ("KSV051", "KSV052")},
    )


def impersonate() -> CapabilityRule:
    return capability_rule(
        id="rbac.impersonate",
        title="Role grants 'impersonate'",
        capability=IMPERSONATE,
        description=(
            "'impersonate' on users, groups, service accounts or uids lets its holders send requests as "
            "someone else (system:masters included) and get their rights."
        ),
        remediation="Remove 'impersonate'; where a proxy needs it, restrict it with resourceNames to the identities it serves.",
        controls=("cis-k8s:5.1.8", "nist-800-53:AC-6(1)"),
        equivalents={"trivy": ("KSV043",)},
    )


def rbac_write() -> CapabilityRule:
    return capability_rule(
        id="rbac.rbac-write",
        title="Role can create or change roles and bindings",
        capability=RBAC_WRITE,
        description=(
            "Writing roles or bindings lets its holders hand their own permissions to any identity, add "
            "subjects to existing bindings and, with 'bind' or 'escalate', take more."
        ),
        remediation="Leave RBAC objects to cluster administrators and the deployment pipeline; grant read-only verbs otherwise.",
        controls=("cis-k8s:5.1.8", "nist-800-53:AC-6(1)"),
        equivalents={"trivy": ("KSV050", "KSV055")},
    )


def _wildcards(rule: PolicyRule) -> list[str]:
    out = []
    if "*" in rule.api_groups:
        out.append("apiGroups")
    if any(r == "*" or r.startswith("*/") for r in rule.resources):
        out.append("resources")
    if "*" in rule.verbs:
        out.append("verbs")
    if any(u.endswith("*") for u in rule.non_resource_urls):
        out.append("nonResourceURLs")
    return out


class Wildcard(Rule[K8sObject]):
    meta = RuleMeta(
        id="rbac.wildcard",
        title="Role uses wildcards",
        severity=Severity.MEDIUM,
        description=(
            "A '*' in apiGroups, resources, verbs or nonResourceURLs grants everything that exists now and "
            "everything added later (new CRDs, subresources, verbs). What a wildcard grants today that is "
            "dangerous is reported by the specific rbac rules; this one asks for explicit lists."
        ),
        remediation="Replace each '*' with the API groups, resources and verbs the workload uses.",
        controls=("cis-k8s:5.1.3", *BASE_CONTROLS),
        pack=PACK,
        tags=("rbac",),
        equivalents={"checkov": ("CKV_K8S_49",), "trivy": ("KSV045", "KSV046", "KSV112")},
    )
    target = K8sObject

    def check(self, resource: K8sObject, policy: Policy) -> Iterator[Violation]:
        role = role_view(resource)
        if role is None:
            return
        skip_full = reported(policy, FULL_WILDCARD_RULE)
        for rule in role.rules:
            if skip_full and rule.full_wildcard:
                continue
            where = _wildcards(rule)
            if where:
                yield Violation(
                    f"{role.title}: {rule.label} uses '*' in {', '.join(where)}", path=("rules", rule.index)
                )


def rules() -> list[Rule[K8sObject]]:
    return [full_wildcard(), Wildcard(), escalate(), bind(), impersonate(), rbac_write()]
