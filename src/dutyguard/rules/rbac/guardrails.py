"""Switching the guardrails off: admission webhooks (R12), admission policies of the API server,
Kyverno and Gatekeeper (R13), Kyverno policy exceptions (R14), CRDs (R15), namespace labels such
as Pod Security levels (R16), and the person who can both act and erase the trace (R22).

Severities from DOMAIN §4: R12 High (rbac-police; rbac-tool says Critical), R13 High (rbac-tool),
R14 High (derived), R15 Medium (rbac-tool), R16 High (derived), R22 Critical (derived).
"""

from __future__ import annotations

from collections.abc import Iterator

from dutyguard.core.model import Severity
from dutyguard.core.policy import Policy
from dutyguard.core.rule import Rule, RuleMeta, Violation
from dutyguard.rules.rbac import escalation, workloads
from dutyguard.rules.rbac._capability import (
    BASE_CONTROLS,
    FULL_WILDCARD_RULE,
    PACK,
    Access,
    Capability,
    Match,
    Target,
    capability_rule,
    reported,
    targets,
)
from dutyguard.rules.rbac._model import PolicyRule, Reach, role_view
from dutyguard.sources.kubernetes import K8sObject

WRITE = ("create", "update", "patch", "delete", "deletecollection")
"""Deleting a webhook or a policy switches it off: for guardrails, delete is a write."""
ADMISSION = "admissionregistration.k8s.io"


def every(group: str, cluster: bool = False) -> Target:
    return Target(group, "*", cluster=cluster, every_resource=True)


WEBHOOKS = Capability(
    "R12",
    "read or mutate every object sent to the API server, or switch admission enforcement off",
    (
        Access(
            WRITE,
            targets(
                ADMISSION, "mutatingwebhookconfigurations", "validatingwebhookconfigurations", cluster=True
            ),
        ),
    ),
    Severity.HIGH,
)
ADMISSION_POLICIES = Capability(
    "R13",
    "weaken, exempt or delete the admission policies that enforce the guardrails",
    (
        Access(
            WRITE,
            (
                *targets(
                    ADMISSION,
                    "validatingadmissionpolicies",
                    "validatingadmissionpolicybindings",
                    "mutatingadmissionpolicies",
                    "mutatingadmissionpolicybindings",
                    cluster=True,
                ),
                *targets("kyverno.io", "clusterpolicies", cluster=True),
                *targets("kyverno.io", "policies"),
                every("policies.kyverno.io"),
                *targets("templates.gatekeeper.sh", "constrainttemplates", cluster=True),
                every("constraints.gatekeeper.sh", cluster=True),
                every("mutations.gatekeeper.sh", cluster=True),
                *targets("config.gatekeeper.sh", "configs"),
            ),
        ),
    ),
    Severity.HIGH,
)
POLICY_EXCEPTIONS = Capability(
    "R14",
    "exempt resources from Kyverno policies (before Kyverno 1.13, from any namespace)",
    (
        Access(
            ("create", "update", "patch"),
            (*targets("kyverno.io", "policyexceptions"), *targets("policies.kyverno.io", "policyexceptions")),
        ),
    ),
    Severity.HIGH,
)
CRDS = Capability(
    "R15",
    "change the API of policy engines and operators (CustomResourceDefinitions)",
    (Access(WRITE, targets("apiextensions.k8s.io", "customresourcedefinitions", cluster=True)),),
    Severity.MEDIUM,
)
NAMESPACES = Capability(
    "R16",
    "relabel namespaces: lower their Pod Security level or step out of NetworkPolicy selectors",
    (Access(("update", "patch"), targets("", "namespaces", cluster=True)),),
    Severity.HIGH,
)
AUDIT = Capability(
    "R22",
    "change where audit and detection records go",
    (
        Access(
            WRITE,
            (
                *targets("auditregistration.k8s.io", "auditsinks", cluster=True),
                every("logging.banzaicloud.io"),
                every("logging-extensions.banzaicloud.io"),
                every("fluentbit.fluent.io"),
                every("fluentd.fluent.io"),
            ),
        ),
    ),
    Severity.CRITICAL,
)
ACTS = (
    escalation.FULL,
    escalation.ESCALATE,
    escalation.BIND,
    escalation.IMPERSONATE,
    escalation.RBAC_WRITE,
    workloads.WORKLOADS,
    workloads.EXEC,
    workloads.NODE_PROXY,
)
"""R01–R08: what DOMAIN R22 means by "act"."""


def act_matches(rules: tuple[PolicyRule, ...], reach: Reach) -> list[tuple[Capability, Match]]:
    return [(cap, m) for cap in ACTS for m in cap.find(rules, reach)[:1]]


class ActAndErase(Rule[K8sObject]):
    meta = RuleMeta(
        id="rbac.act-and-erase",
        title="Role can both act (R01–R08) and change audit or detection configuration",
        severity=Severity.CRITICAL,
        description=(
            "One role that can run code, escalate or administer RBAC and also rewrite log shipping or "
            "audit sinks lets the same person act and erase the trace (separation of duties). Across "
            "bindings, rbac.subject-act-and-erase finds the same combination held by one subject."
        ),
        remediation=(
            "Split the role: audit and log-shipping configuration belongs to Security's own role, which "
            "holds no workload or RBAC permissions."
        ),
        controls=("nist-800-53:AC-5", "nist-800-53:AU-9(4)", *BASE_CONTROLS),
        pack=PACK,
        tags=("rbac", "r22"),
    )
    target = K8sObject

    def check(self, resource: K8sObject, policy: Policy) -> Iterator[Violation]:
        role = role_view(resource)
        if role is None:
            return
        reach = role.reach
        erase = AUDIT.find(role.rules, reach)
        if not erase:
            return
        acts = act_matches(role.rules, reach)
        if not acts or (acts[0][0] is escalation.FULL and reported(policy, FULL_WILDCARD_RULE)):
            return  # nothing to act with, or everything: rbac.cluster-admin-equivalent says so
        how = "; ".join(f"{m.text()} ({cap.ref})" for cap, m in acts[:3])
        yield Violation(
            f"{role.title}: {erase[0].text()} (audit and detection), and {how}",
            path=("rules", erase[0].rule.index),
        )


def rules() -> list[Rule[K8sObject]]:
    return [
        capability_rule(
            id="rbac.webhook-config-write",
            title="Role can change admission webhook configurations",
            capability=WEBHOOKS,
            description=(
                "A mutating or validating webhook configuration decides which service sees (and may "
                "change) every admitted object, Secrets included; deleting or narrowing one switches its "
                "enforcement off."
            ),
            remediation=(
                "Leave webhook configurations to cluster administrators; a webhook that patches its own "
                "caBundle should be limited with resourceNames to its configuration."
            ),
            controls=("cis-k8s:5.1.12", "nist-800-53:AC-6(10)"),
            equivalents={"checkov": ("CKV_K8S_155",), "trivy": ("KSV114",)},
        ),
        capability_rule(
            id="rbac.admission-policy-write",
            title="Role can change admission policies (ValidatingAdmissionPolicy, Kyverno, Gatekeeper)",
            capability=ADMISSION_POLICIES,
            description=(
                "Writing ValidatingAdmissionPolicies and their bindings, Kyverno policies, Gatekeeper "
                "templates, constraints, mutations or its Config (excludedNamespaces) weakens or exempts "
                "the guardrail itself."
            ),
            remediation="Policies are Security's: only their pipeline's identity should write them.",
            controls=("nist-800-53:AC-6(10)", "nist-800-53:CM-5"),
        ),
        capability_rule(
            id="rbac.policy-exception-write",
            title="Role can create Kyverno policy exceptions",
            capability=POLICY_EXCEPTIONS,
            description=(
                "A PolicyException bypasses an existing Kyverno policy for the resources it names; "
                "exceptions are Security's decision (GO-2024-3230: any namespace before Kyverno 1.13)."
            ),
            remediation=(
                "Grant policyexceptions create only to Security's identity, and restrict the namespaces "
                "Kyverno accepts exceptions from."
            ),
            controls=("nist-800-53:AC-6(10)", "nist-800-53:CM-3"),
        ),
        capability_rule(
            id="rbac.crd-write",
            title="Role can change CustomResourceDefinitions",
            capability=CRDS,
            description="CRDs define the API of policy engines and operators; changing one can disable what reads it.",
            remediation="Install and upgrade CRDs from the platform pipeline, not from workload identities.",
            controls=("nist-800-53:CM-5",),
        ),
        capability_rule(
            id="rbac.namespace-write",
            title="Role can relabel namespaces",
            capability=NAMESPACES,
            description=(
                "Namespace labels select the Pod Security level (pod-security.kubernetes.io/enforce) and "
                "NetworkPolicy peers: patching them lowers enforcement for everything in the namespace."
            ),
            remediation="Leave namespace updates to the platform team; tenants get namespaces, not their labels.",
            controls=("nist-800-53:AC-6(10)",),
        ),
        ActAndErase(),
    ]
