"""The secrets pack: the built-in patterns, or a gitleaks-format rule file instead of them."""

from __future__ import annotations

from dutyguard.core.rule import AnyRule


def rules(gitleaks_file: str | None = None) -> list[AnyRule]:
    """Built-in secret rules, or every rule of ``gitleaks_file`` (which then replaces them)."""
    if gitleaks_file is not None:
        from dutyguard.rules.gitleaks import load_rules

        return load_rules(gitleaks_file)
    from dutyguard.rules.secret_patterns import builtin_rules

    return list(builtin_rules())
