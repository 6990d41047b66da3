"""Service account tokens: a pod should carry API credentials only when it needs them (CIS 5.1.5, 5.1.6).

Peers disagree on an unset ``automountServiceAccountToken``: Checkov counts it as a mounted token (it
is, unless the ServiceAccount says otherwise), Trivy does not (the ServiceAccount may say otherwise).
Both are right about different things, so they are two rules: an explicit ``true`` is a decision to
mount (Trivy's KSV036); an unset field mounts the token unless the ServiceAccount, which this object
cannot show, opts out (lower severity). Together they are Checkov's CKV_K8S_38.
"""

from __future__ import annotations

from collections.abc import Iterator

from dutyguard.core import jsonview as jv
from dutyguard.core.model import Severity
from dutyguard.core.policy import Policy
from dutyguard.core.rule import Rule, RuleMeta, Violation
from dutyguard.rules._podview import PodRule, PodView
from dutyguard.rules.workload._view import PACK
from dutyguard.sources.kubernetes import K8sObject

_CONTROLS = ("cis-k8s:5.1.6", "nist-800-190:4.3.1", "nsa:service-account-tokens")
_FIELD = "automountServiceAccountToken"


class ServiceAccountTokenAutomount(PodRule):
    meta = RuleMeta(
        id="k8s.service-account-token-automount",
        title="Service account token mounted explicitly",
        severity=Severity.MEDIUM,
        description=(
            "The pod asks for its service account token to be mounted: code execution in any of its "
            "containers becomes Kubernetes API access with that account's rights."
        ),
        remediation=(
            "Set automountServiceAccountToken: false unless the workload calls the Kubernetes API; if it "
            "does, give it a dedicated service account with least privilege."
        ),
        controls=_CONTROLS,
        pack=PACK,
        equivalents={"trivy": ("KSV036",), "checkov": ("CKV_K8S_38",)},
    )

    def check_pod(self, pod: PodView, policy: Policy) -> Iterator[Violation]:
        f = pod.field(_FIELD)
        if f.value is True:
            yield Violation("the pod sets automountServiceAccountToken: true", path=f.path)
        elif f.is_set and f.value is not False:
            yield Violation("automountServiceAccountToken is not a boolean (taken as mounted)", path=f.path)


class ServiceAccountTokenDefaultAutomount(PodRule):
    meta = RuleMeta(
        id="k8s.service-account-token-default-automount",
        title="Service account token mounted by default",
        severity=Severity.LOW,
        description=(
            "automountServiceAccountToken is not set, so the token is mounted unless the pod's service "
            "account disables it; most workloads never call the Kubernetes API."
        ),
        remediation="Set automountServiceAccountToken: false in the pod spec (or on its ServiceAccount).",
        controls=_CONTROLS,
        pack=PACK,
        equivalents={"checkov": ("CKV_K8S_38",), "kubesec": ("AutomountServiceAccountToken",)},
    )

    def check_pod(self, pod: PodView, policy: Policy) -> Iterator[Violation]:
        if not pod.field(_FIELD).is_set:
            yield Violation(
                "automountServiceAccountToken is not set: the token is mounted unless the service account disables it",
                path=(*pod.spec_path, _FIELD),
            )


class DefaultServiceAccountAutomount(Rule[K8sObject]):
    meta = RuleMeta(
        id="k8s.default-service-account-automount",
        title="Default service account mounts its token",
        severity=Severity.LOW,
        description=(
            "Every pod that names no service account runs as its namespace's 'default' one; unless that "
            "account sets automountServiceAccountToken: false, all of them carry its token."
        ),
        remediation="Set automountServiceAccountToken: false on the 'default' ServiceAccount of each namespace.",
        controls=("cis-k8s:5.1.5", "nsa:service-account-tokens"),
        pack=PACK,
        equivalents={"checkov": ("CKV_K8S_41",)},
    )
    target = K8sObject

    def check(self, resource: K8sObject, policy: Policy) -> Iterator[Violation]:
        if resource.kind != "ServiceAccount" or resource.name != "default":
            return
        value = jv.get(resource.doc, (_FIELD,))
        if value is not False:
            state = "is not set" if value is None else "is not false"
            yield Violation(
                f"the default service account's automountServiceAccountToken {state}", path=(_FIELD,)
            )
