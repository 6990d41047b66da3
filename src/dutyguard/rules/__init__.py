"""Rule packs and the one place that assembles them into a registry (no import side effects)."""

from __future__ import annotations

from dutyguard.core.rule import RuleRegistry


def default_registry(secret_rules_file: str | None = None) -> RuleRegistry:
    """Every built-in rule. ``secret_rules_file`` swaps the secret patterns for a gitleaks TOML file."""
    from dutyguard.rules import dockerfile, pss, secrets, workload

    registry = RuleRegistry()
    for rule in (*pss.rules(), *workload.rules(), *dockerfile.rules(), *secrets.rules(secret_rules_file)):
        registry.register(rule)
    return registry
