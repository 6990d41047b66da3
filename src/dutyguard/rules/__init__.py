"""Rule packs and the one place that assembles them into a registry (no import side effects)."""

from __future__ import annotations

import importlib
from collections.abc import Collection, Mapping

from dutyguard.core.rule import AnyRule, RuleRegistry

PACKS: Mapping[str, str] = {
    "pss-baseline": "pss",
    "pss-restricted": "pss",
    "k8s": "workload",
    "dockerfile": "dockerfile",
    "secrets": "secrets",
    "rbac": "rbac",
}
"""Every pack and the module (in ``dutyguard.rules``) that builds it, in registry order: a scan
limited to some packs imports only their modules (``--only secrets`` never loads YAML)."""


def default_registry(
    secret_rules_file: str | None = None, packs: Collection[str] | None = None
) -> RuleRegistry:
    """Every built-in rule, or those of the modules building ``packs`` (which may hold other packs
    too: the policy selects rules). ``secret_rules_file`` swaps the secret patterns for a
    gitleaks TOML file."""
    unknown = sorted(set(packs or ()) - PACKS.keys())
    if unknown:
        raise ValueError(f"unknown pack {unknown[0]!r} (known: {', '.join(sorted(PACKS))})")
    modules = dict.fromkeys(PACKS[p] for p in PACKS if packs is None or p in packs)
    registry = RuleRegistry()
    for name in modules:
        module = importlib.import_module(f"dutyguard.rules.{name}")
        rules: tuple[AnyRule, ...] = (
            tuple(module.rules(secret_rules_file)) if name == "secrets" else tuple(module.rules())
        )
        for rule in rules:
            registry.register(rule)
    return registry
