"""What every Dockerfile rule shares: the pack, framework references, rule metadata, the base class."""

from __future__ import annotations

from collections.abc import Sequence

from dutyguard.core.model import Severity
from dutyguard.core.rule import Rule, RuleMeta
from dutyguard.sources.dockerfile import Dockerfile

PACK = "dockerfile"

# Framework references. NIST SP 800-190 §4.1 image countermeasures, §4.2 registry, §4.4 container;
# CIS Docker Benchmark §4 (container images and build file) and §5.6 (no sshd in containers).
NIST_IMAGE_VULNS = "nist-800-190:4.1.1"
NIST_IMAGE_CONFIG = "nist-800-190:4.1.2"
NIST_MALWARE = "nist-800-190:4.1.3"
NIST_SECRETS = "nist-800-190:4.1.4"
NIST_UNTRUSTED = "nist-800-190:4.1.5"
NIST_STALE = "nist-800-190:4.2.2"
NIST_RUNTIME_CONFIG = "nist-800-190:4.4.3"


def dockerfile_meta(
    name: str,
    title: str,
    severity: Severity,
    description: str,
    remediation: str,
    controls: tuple[str, ...],
    *,
    hadolint: tuple[str, ...] = (),
    trivy: tuple[str, ...] = (),
    checkov: tuple[str, ...] = (),
    tags: tuple[str, ...] = (),
) -> RuleMeta:
    equivalents = {k: v for k, v in (("hadolint", hadolint), ("trivy", trivy), ("checkov", checkov)) if v}
    return RuleMeta(
        id=f"{PACK}.{name}",
        title=title,
        severity=severity,
        description=description,
        remediation=remediation,
        controls=controls,
        pack=PACK,
        tags=("dockerfile", *tags),
        equivalents=equivalents,
    )


class DockerfileRule(Rule[Dockerfile]):
    """A rule over one parsed Dockerfile."""

    target = Dockerfile


def words(text: str) -> frozenset[str]:
    return frozenset(text.split())


def summary(items: Sequence[str], limit: int = 5) -> str:
    """``a, b, c, d, e and 2 more``."""
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")
