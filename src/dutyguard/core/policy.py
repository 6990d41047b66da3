"""The settings one evaluation runs under.

For now this is the built-in default policy, tuned from the CLI. Signed, Security-owned
policy bundles (a later stage) produce the same value type, so the evaluator never knows
where its policy came from.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Protocol

from dutyguard.core.model import Severity
from dutyguard.core.rule import RuleMeta


class PSSLevel(enum.Enum):
    BASELINE = "baseline"
    RESTRICTED = "restricted"


PSS_PACKS = {"pss-baseline": PSSLevel.BASELINE, "pss-restricted": PSSLevel.RESTRICTED}

DEFAULT_POLICY_SOURCE = "built-in default policy (unsigned)"


class LabelLevels(Protocol):
    """The Pod Security level of a namespace from its name and labels (``None``: labels unknown)."""

    def level_for(self, namespace: str, labels: Mapping[str, str] | None = None) -> PSSLevel: ...


@dataclass(frozen=True, slots=True)
class Policy:
    pss_level: PSSLevel = PSSLevel.RESTRICTED
    fail_on: Severity = Severity.HIGH
    allowed_registries: tuple[str, ...] = ()
    """Registry host (optionally with a path prefix) images must come from. Empty: not enforced."""
    enabled_rules: frozenset[str] | None = None
    """Rule ids that apply; ``None`` means every registered rule."""
    severity_overrides: Mapping[str, Severity] = field(default_factory=dict)
    source: str = DEFAULT_POLICY_SOURCE
    block_overrides: Mapping[str, bool] = field(default_factory=dict)
    """Per-rule actions from a policy bundle (rule id -> blocks or not), winning over ``fail_on``."""
    namespace_pss_levels: Mapping[str, PSSLevel] = field(default_factory=dict)
    """Pod Security level of namespaces named by the policy; others get ``pss_level``."""
    label_levels: LabelLevels | None = None
    """Set where a bundle selects levels by namespace label and the stage can read labels
    (admission): what :meth:`for_namespace_labels` asks. The levels above are then the strictest
    that could apply, for when the labels are not known."""

    def for_namespace(self, namespace: str | None) -> Policy:
        """This policy with the Pod Security level of ``namespace`` (itself when that is the same)."""
        if namespace is None:
            return self
        level = self.namespace_pss_levels.get(namespace, self.pss_level)
        return self if level is self.pss_level else replace(self, pss_level=level)

    def for_namespace_labels(self, namespace: str, labels: Mapping[str, str]) -> Policy:
        """This policy at the exact Pod Security level of a namespace whose labels are known.

        The result names no other namespace, so an evaluator applies its level as is.
        """
        if self.label_levels is None:
            return self.for_namespace(namespace)
        level = self.label_levels.level_for(namespace, labels)
        return replace(self, pss_level=level, namespace_pss_levels={}, label_levels=None)

    def applies(self, meta: RuleMeta) -> bool:
        if self.enabled_rules is not None and meta.id not in self.enabled_rules:
            return False
        # Restricted is baseline plus more: a restricted-only rule is off at baseline.
        return not (meta.pack == "pss-restricted" and self.pss_level is PSSLevel.BASELINE)

    def severity_of(self, meta: RuleMeta) -> Severity:
        return self.severity_overrides.get(meta.id, meta.severity)
