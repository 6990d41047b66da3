"""The sources a scan uses, assembled explicitly."""

from __future__ import annotations

from dutyguard.sources.interface import Source


def default_sources() -> tuple[Source, ...]:
    from dutyguard.sources.dockerfile import DockerfileSource
    from dutyguard.sources.kubernetes import KubernetesSource
    from dutyguard.sources.text import TextSource

    return (KubernetesSource(), DockerfileSource(), TextSource())
