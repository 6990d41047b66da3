"""Bindings that are dangerous whatever the scanned set holds: to cluster-admin (R01), to admin or
edit, to system:masters (R01), to everyone who can reach the API server (R21), to every
authenticated identity, and to a namespace's default service account.

Severities: R01 Critical (rbac-police, KubiScan); R21 "danger" in krane, Critical here (Trivy
KSV122 agrees); admin/edit High, Critical where the reach includes kube-system (as R06, which they
contain); system:authenticated High (derived: Trivy KSV01011 is Critical on GKE only); default
service account Medium (derived, CIS 5.1.5).
"""

from __future__ import annotations

from collections.abc import Iterator

from dutyguard.core.model import Severity
from dutyguard.core.policy import Policy
from dutyguard.core.rule import Rule, RuleMeta, Violation
from dutyguard.rules.rbac._capability import BASE_CONTROLS, PACK, situational
from dutyguard.rules.rbac._model import BindingView, Subject, binding_view, clip
from dutyguard.sources.kubernetes import K8sObject

_R01 = ("rbac", "r01")


def _subjects(b: BindingView) -> str:
    return clip([s.describe() for s in b.subjects], 4) or "no subject"


class _RoleRefRule(Rule[K8sObject]):
    """A binding of one of ``roles`` (built-in ClusterRoles) to anyone."""

    target = K8sObject
    roles: frozenset[str]

    def severity(self, b: BindingView) -> Severity:
        return self.meta.severity

    def check(self, resource: K8sObject, policy: Policy) -> Iterator[Violation]:
        b = binding_view(resource)
        if b is None or b.role_kind != "ClusterRole" or b.role_name not in self.roles or not b.subjects:
            return
        yield Violation(
            f"{b.title} binds ClusterRole {b.role_name} {b.scope()} to {_subjects(b)}",
            path=("roleRef", "name"),
            severity=situational(policy, self.meta, self.severity(b)),
        )


class ClusterAdminBinding(_RoleRefRule):
    meta = RuleMeta(
        id="rbac.binding-cluster-admin",
        title="Binding grants cluster-admin",
        severity=Severity.CRITICAL,
        description=(
            "cluster-admin is every verb on every resource; bound by a ClusterRoleBinding it is the whole "
            "cluster, by a RoleBinding everything in the namespace (its Secrets, workloads and RBAC)."
        ),
        remediation="Bind a role with the permissions the subject needs; keep cluster-admin for break-glass identities.",
        controls=("cis-k8s:5.1.1", *BASE_CONTROLS),
        pack=PACK,
        tags=_R01,
        equivalents={"trivy": ("KSV111",)},
    )
    roles = frozenset({"cluster-admin"})


class AdminEditBinding(_RoleRefRule):
    meta = RuleMeta(
        id="rbac.binding-admin-edit",
        title="Binding grants the built-in admin or edit role",
        severity=Severity.HIGH,
        description=(
            "edit lets its holders create pods with any service account of the namespace, exec into pods, "
            "read and write Secrets and impersonate service accounts; admin adds RBAC within the namespace. "
            "Critical when bound cluster-wide or in kube-system."
        ),
        remediation="Bind a role listing what the subject needs; reserve admin and edit for people, per namespace.",
        controls=("cis-k8s:5.1.1", "cis-k8s:5.1.4", *BASE_CONTROLS),
        pack=PACK,
        tags=("rbac", "r06"),
        equivalents={"trivy": ("KSV111",)},
    )
    roles = frozenset({"admin", "edit"})

    def severity(self, b: BindingView) -> Severity:
        return Severity.CRITICAL if b.reach.wide else self.meta.severity


class _SubjectRule(Rule[K8sObject]):
    """Each subject of a binding that ``matches``."""

    target = K8sObject
    names: frozenset[str] = frozenset()
    """Subjects named so, whatever their kind: a User named like the group is as suspicious."""
    why: str

    def matches(self, s: Subject) -> bool:
        return s.name in self.names

    def check(self, resource: K8sObject, policy: Policy) -> Iterator[Violation]:
        b = binding_view(resource)
        if b is None:
            return
        role = f"{b.role_kind or 'role'} {b.role_name or '?'}"
        for s in b.subjects:
            if self.matches(s):
                yield Violation(
                    f"{b.title} binds {role} {b.scope()} to {s.describe()}: {self.why}",
                    path=("subjects", s.index, "name"),
                )


class SystemMastersBinding(_SubjectRule):
    meta = RuleMeta(
        id="rbac.binding-system-masters",
        title="Binding names the system:masters group",
        severity=Severity.CRITICAL,
        description=(
            "Members of system:masters bypass RBAC and webhook authorization entirely and cannot be "
            "revoked through bindings; a binding naming the group shows an intent to treat it as a role."
        ),
        remediation="Remove the subject; give administrators a bound, revocable role instead of system:masters certificates.",
        controls=("cis-k8s:5.1.7", *BASE_CONTROLS),
        pack=PACK,
        tags=_R01,
        equivalents={"trivy": ("KSV0123", "KSV-0123")},
    )
    names = frozenset({"system:masters"})
    why = "system:masters bypasses RBAC altogether"


class AnonymousBinding(_SubjectRule):
    meta = RuleMeta(
        id="rbac.binding-anonymous",
        title="Binding grants access to unauthenticated requests",
        severity=Severity.CRITICAL,
        description=(
            "system:unauthenticated and system:anonymous are every request without credentials: anyone "
            "who can reach the API server gets the bound role."
        ),
        remediation="Remove the subject. Health checks need no binding (system:public-info-viewer covers them).",
        controls=("nist-800-53:AC-14", "nist-800-190:4.3.2", *BASE_CONTROLS),
        pack=PACK,
        tags=("rbac", "r21"),
        equivalents={"trivy": ("KSV122",)},
    )
    names = frozenset({"system:unauthenticated", "system:anonymous"})
    why = "anyone who can reach the API server gets it"


class AllAuthenticatedBinding(_SubjectRule):
    meta = RuleMeta(
        id="rbac.binding-all-authenticated",
        title="Binding grants access to every authenticated identity",
        severity=Severity.HIGH,
        description=(
            "system:authenticated is every identity with any valid credential: every service account token "
            "of every pod, and on GKE any Google account; system:serviceaccounts is every service account "
            "of every namespace."
        ),
        remediation="Bind the groups or service accounts that need the role.",
        controls=("nist-800-190:4.3.2", *BASE_CONTROLS),
        pack=PACK,
        tags=("rbac", "r21"),
        equivalents={"trivy": ("KSV01011", "KSV-01011")},
    )
    names = frozenset({"system:authenticated", "system:serviceaccounts"})
    why = "every pod's service account and every user with any credential gets it"


class DefaultServiceAccountBinding(_SubjectRule):
    meta = RuleMeta(
        id="rbac.binding-default-service-account",
        title="Binding grants permissions to a default service account",
        severity=Severity.MEDIUM,
        description=(
            "Every pod that names no service account runs as its namespace's 'default' account, so the "
            "role goes to all of them, and to anyone who can create a pod there."
        ),
        remediation="Create a dedicated service account for the workload that needs the role and bind that.",
        controls=("cis-k8s:5.1.5", *BASE_CONTROLS),
        pack=PACK,
        tags=("rbac",),
        equivalents={"checkov": ("CKV_K8S_42",)},
    )
    why = "every pod of that namespace without its own service account gets it"

    def matches(self, s: Subject) -> bool:
        return s.kind == "ServiceAccount" and s.name == "default"


def rules() -> list[Rule[K8sObject]]:
    return [
        ClusterAdminBinding(),
        AdminEditBinding(),
        SystemMastersBinding(),
        AnonymousBinding(),
        AllAuthenticatedBinding(),
        DefaultServiceAccountBinding(),
    ]
