"""RBAC objects that cannot be read, and ClusterRoles whose rules are made elsewhere (aggregation).

A role the API server would refuse (or would read differently from us) is a finding, not a pass:
the other rules read what they can (see :mod:`._model`), and this one names every field of the
wrong shape. An aggregated ClusterRole grants whatever ClusterRoles match its selectors, now or
later; a ClusterRole labelled ``aggregate-to-admin|edit|view`` adds its rules to those built-in
roles, i.e. to everyone they are bound to.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from dutyguard.core.model import Severity
from dutyguard.core.policy import Policy
from dutyguard.core.rule import Rule, RuleMeta, Violation
from dutyguard.rules.rbac._capability import BASE_CONTROLS, PACK, CapabilityRule, situational
from dutyguard.rules.rbac._model import binding_view, role_view
from dutyguard.sources.kubernetes import K8sObject

BOOTSTRAP_LABELS = {"kubernetes.io/bootstrapping": "rbac-defaults"}
"""What the built-in ClusterRoles carry, cluster-admin included."""
BUILTIN_AGGREGATES = {f"rbac.authorization.k8s.io/aggregate-to-{r}": r for r in ("admin", "edit", "view")}


class Malformed(Rule[K8sObject]):
    meta = RuleMeta(
        id="rbac.malformed",
        title="RBAC object cannot be read as the API server reads it",
        severity=Severity.HIGH,
        description=(
            "A role or binding field has the wrong shape (a string where a list belongs, non-string verbs, "
            "an unknown field, a rule without verbs, a subject without a kind). The API server would refuse "
            "it or read it differently, so its grants cannot be judged with certainty. Fail closed."
        ),
        remediation="Fix the object so that it validates (kubectl apply --dry-run=server --validate=strict).",
        controls=("nist-800-53:SI-10", *BASE_CONTROLS),
        pack=PACK,
        tags=("rbac",),
    )
    target = K8sObject

    def check(self, resource: K8sObject, policy: Policy) -> Iterator[Violation]:
        view = role_view(resource) or binding_view(resource)
        if view is None:
            return
        if not resource.name:
            yield Violation(f"{view.kind} has no metadata.name", path=("metadata", "name"))
        for p in view.problems:
            yield Violation(f"{view.title}: {p.message}", path=p.path, key=p.message)


class AggregatedClusterRole(Rule[K8sObject]):
    meta = RuleMeta(
        id="rbac.aggregated-clusterrole",
        title="ClusterRole is aggregated from other ClusterRoles",
        severity=Severity.MEDIUM,
        description=(
            "An aggregationRule makes the control plane fill the role with the rules of every ClusterRole "
            "whose labels match, including ones created later by anyone who can create ClusterRoles. The "
            "object alone does not show what it grants (rbac.effective-permission resolves it within the "
            "scanned set). Critical when a selector matches the built-in roles, cluster-admin included."
        ),
        remediation="Select on a label only your platform sets, or list the rules explicitly.",
        controls=("cis-k8s:5.1.1", *BASE_CONTROLS),
        pack=PACK,
        tags=("rbac",),
    )
    target = K8sObject

    def check(self, resource: K8sObject, policy: Policy) -> Iterator[Violation]:
        role = role_view(resource)
        if role is None or role.aggregation is None:
            return
        if not role.aggregation:
            return  # no selectors: it aggregates nothing
        builtin = [s for s in role.aggregation if s.matches(BOOTSTRAP_LABELS)]
        sev = situational(policy, self.meta, Severity.CRITICAL if builtin else self.meta.severity)
        shown = "; ".join(s.describe() for s in role.aggregation[:3])
        more = f" (+{len(role.aggregation) - 3} more)" if len(role.aggregation) > 3 else ""
        what = " — this matches the built-in roles, cluster-admin included" if builtin else ""
        yield Violation(
            f"{role.title} takes its rules from ClusterRoles selected by {shown}{more}{what}",
            path=("aggregationRule",),
            severity=sev,
        )


class AggregateToBuiltin(Rule[K8sObject]):
    meta = RuleMeta(
        id="rbac.aggregate-to-builtin",
        title="ClusterRole adds dangerous permissions to the built-in admin, edit or view roles",
        severity=Severity.HIGH,
        description=(
            "A ClusterRole labelled rbac.authorization.k8s.io/aggregate-to-admin, -edit or -view adds its "
            "rules to that built-in role, so every subject bound to it (often everyone with read access) "
            "gains them. Reported when the rules give any capability another rbac rule reports."
        ),
        remediation="Aggregate only the custom resources the role is about; never Secrets, pods or RBAC.",
        controls=("cis-k8s:5.1.1", *BASE_CONTROLS),
        pack=PACK,
        tags=("rbac",),
    )
    target = K8sObject

    def __init__(self, capabilities: Sequence[CapabilityRule]) -> None:
        self.capabilities = tuple(capabilities)

    def check(self, resource: K8sObject, policy: Policy) -> Iterator[Violation]:
        role = role_view(resource)
        if role is None or role.kind != "ClusterRole":
            return
        labels = dict(role.labels)
        into = [name for key, name in BUILTIN_AGGREGATES.items() if labels.get(key) == "true"]
        if not into:
            return
        found: list[str] = []
        for rule in self.capabilities:
            matches = rule.capability.find(role.rules, role.reach)
            if matches:
                found.append(f"{rule.meta.id} ({matches[0].text()})")
        if found:
            shown = "; ".join(found[:4]) + (f"; +{len(found) - 4} more" if len(found) > 4 else "")
            yield Violation(
                f"{role.title} aggregates into {', '.join(into)}: {shown}",
                path=("metadata", "labels"),
            )
