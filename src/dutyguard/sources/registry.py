"""The sources a scan uses, assembled explicitly."""

from __future__ import annotations

import importlib

from dutyguard.core.rule import RuleRegistry
from dutyguard.sources.interface import Source

_SOURCES = (
    ("dutyguard.sources.kubernetes", "KubernetesSource"),
    ("dutyguard.sources.dockerfile", "DockerfileSource"),
    ("dutyguard.sources.text", "TextSource"),
)
"""Each source's module; the resource type it makes is defined in that module (or below it)."""


def default_sources(registry: RuleRegistry | None = None) -> tuple[Source, ...]:
    """Every source, or only those whose resources some rule of ``registry`` reads: a registry
    of secret rules needs neither the YAML nor the Dockerfile parser, not even imported."""
    targets = None if registry is None else {r.target for r in registry}
    wanted = None if targets is None else {t.__module__ for t in targets}
    out: list[Source] = []
    for module, name in _SOURCES:
        if wanted is not None and not any(m == module or m.startswith(module + ".") for m in wanted):
            continue
        source: Source = getattr(importlib.import_module(module), name)()
        if targets is None or source.produces is None or source.produces in targets:
            out.append(source)
    return tuple(out)
