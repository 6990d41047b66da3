"""Pod Security Standards, baseline and restricted, as pod-security-admission evaluates them."""

from __future__ import annotations

from collections.abc import Iterator

from dutyguard.core.model import Severity
from dutyguard.core.policy import Policy
from dutyguard.core.rule import AnyRule, Rule, RuleMeta, Violation
from dutyguard.sources.kubernetes import K8sObject


class Privileged(Rule[K8sObject]):
    meta = RuleMeta(
        id="pss.privileged",
        title="Privileged container",
        severity=Severity.CRITICAL,
        description="A privileged container gets every capability and the host's devices: no isolation left.",
        remediation="Remove securityContext.privileged or set it to false.",
        controls=("pss:privileged", "nist-800-190:4.4.3", "cis-k8s:5.2.2", "nsa:pod-security"),
        pack="pss-baseline",
        equivalents={"checkov": ("CKV_K8S_16",), "trivy": ("KSV017",), "kubesec": ("Privileged",)},
    )
    target = K8sObject

    def check(self, resource: K8sObject, policy: Policy) -> Iterator[Violation]:
        for c in resource.containers():
            value = c.spec.get("securityContext") or {}
            v = value.get("privileged") if isinstance(value, dict) else None
            if v is not None and v is not False:
                yield Violation(
                    f"container {c.name!r} runs privileged",
                    path=(*c.path, "securityContext", "privileged"),
                    container=c.name,
                )


def rules() -> list[AnyRule]:
    return [Privileged()]
