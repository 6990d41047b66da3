"""Objects next to workloads that open the cluster to a workload's author: Service external IPs and
image allow-lists in Gatekeeper that admit more than they say."""

from __future__ import annotations

from collections.abc import Iterator

from dutyguard.core import jsonview as jv
from dutyguard.core.model import Severity
from dutyguard.core.policy import Policy
from dutyguard.core.rule import Rule, RuleMeta, Violation
from dutyguard.rules.workload._view import PACK
from dutyguard.sources.kubernetes import K8sObject


class ServiceExternalIPs(Rule[K8sObject]):
    meta = RuleMeta(
        id="k8s.service-external-ips",
        title="Service claims external IPs",
        severity=Severity.HIGH,
        description=(
            "spec.externalIPs makes kube-proxy capture traffic to those addresses on every node: anyone who "
            "can create a Service can intercept traffic meant for any IP (CVE-2020-8554, unfixed by design)."
        ),
        remediation=(
            "Remove spec.externalIPs; use a LoadBalancer or Ingress. Restrict the field cluster-wide "
            "(DenyServiceExternalIPs admission plugin)."
        ),
        controls=("nist-800-190:4.3.3", "nsa:network-separation"),
        pack=PACK,
        equivalents={"trivy": ("KSV-0108",)},
    )
    target = K8sObject

    def check(self, resource: K8sObject, policy: Policy) -> Iterator[Violation]:
        if resource.kind != "Service":
            return
        ips = jv.get(resource.doc, ("spec", "externalIPs"))
        if ips is None or ips == []:
            return
        seq = jv.as_list(ips)
        what = f"{len(seq)} external IP(s)" if seq is not None else "externalIPs that cannot be read"
        yield Violation(f"Service sets {what}", path=("spec", "externalIPs"))


def open_ended(repo: str) -> bool:
    """Whether a Gatekeeper ``repos`` prefix can run past a registry or repository name.

    Gatekeeper's K8sAllowedRepos admits an image when it *starts with* an entry, so ``gcr.io`` admits
    ``gcr.io.evil.com/x`` and ``ghcr.io/acme`` admits ``ghcr.io/acme-evil/x``. An entry is closed when it
    ends with ``/`` or its last component already names a tag or digest.
    """
    if repo.endswith("/"):
        return False
    _, slash, last = repo.rpartition("/")
    return not (slash and (":" in last or "@" in last))


class GatekeeperAllowedReposOpenPrefix(Rule[K8sObject]):
    meta = RuleMeta(
        id="k8s.gatekeeper-allowed-repos-open-prefix",
        title="Gatekeeper allowed repository is an open-ended prefix",
        severity=Severity.HIGH,
        description=(
            "A K8sAllowedRepos entry without a trailing '/' also admits registries and repositories whose "
            "names merely start with it ('gcr.io' admits 'gcr.io.attacker.com'); attackers register such "
            "names to get past the image allow-list."
        ),
        remediation="End every entry with '/': 'gcr.io/my-project/'.",
        controls=("nist-800-190:4.1.5", "cis-k8s:5.5.1"),
        pack=PACK,
        equivalents={"trivy": ("KSV-0124",)},
    )
    target = K8sObject

    def check(self, resource: K8sObject, policy: Policy) -> Iterator[Violation]:
        if resource.kind != "K8sAllowedRepos" or not resource.api_version.startswith(
            "constraints.gatekeeper.sh/"
        ):
            return
        path = ("spec", "parameters", "repos")
        repos = jv.get(resource.doc, path)
        seq = jv.as_list(repos)
        if repos is not None and seq is None:
            yield Violation("spec.parameters.repos is not a list (cannot be checked)", path=path)
            return
        for i, repo in enumerate(seq or ()):
            if not isinstance(repo, str):
                yield Violation(f"repos[{i}] is not a string", path=(*path, i))
            elif open_ended(repo):
                yield Violation(f"repos[{i}] {repo!r} is an open-ended prefix", path=(*path, i), key=repo)
