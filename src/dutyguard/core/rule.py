"""Rules: the small interface every check implements, and the registry that holds them.

A rule is stateless: ``check`` gets the resource and the (immutable) policy settings and
yields :class:`Violation` values. The evaluator turns violations into findings, so rules never
build fingerprints or locations themselves and the same rule object is safe to call from
many threads at once (the admission webhook does).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Container, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from dutyguard.core.model import JSONPath, Severity
from dutyguard.core.resource import Resource
from dutyguard.errors import RegistryError

if TYPE_CHECKING:
    from dutyguard.core.policy import Policy

R = TypeVar("R", bound=Resource)

_RULE_ID = re.compile(r"^[a-z0-9]+(?:[.-][a-z0-9]+)*$")


@dataclass(frozen=True, slots=True)
class RuleMeta:
    """Everything users see about a rule. ``id`` is ``<pack>.<name>``, lower case, stable forever."""

    id: str
    title: str
    severity: Severity
    description: str
    remediation: str
    controls: tuple[str, ...]
    """Framework references: ``pss:privileged``, ``nist-800-190:4.4.3``, ``cis-k8s:5.2.2``, ``nsa:...``."""
    pack: str
    """The group a policy selects: ``pss-baseline``, ``pss-restricted``, ``k8s``, ``dockerfile``, ``secrets``."""
    tags: tuple[str, ...] = ()
    equivalents: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """The same check in peers: ``{"checkov": ("CKV_K8S_16",), "trivy": ("KSV017",), "hadolint": (...)}``."""

    def __post_init__(self) -> None:
        if not _RULE_ID.match(self.id):
            raise RegistryError(f"rule id {self.id!r} is not of the form pack.name (lower case)")
        if not self.controls:
            raise RegistryError(f"rule {self.id} maps to no control")


@dataclass(frozen=True, slots=True)
class Violation:
    """One problem a rule found in one resource."""

    message: str
    path: JSONPath = ()
    """The offending field inside the resource (empty: the resource as a whole)."""
    container: str | None = None
    key: str = ""
    """Extra identity for the fingerprint when path alone does not distinguish two problems."""
    severity: Severity | None = None
    """Overrides the rule's severity for this one problem (rare: e.g. a secret in a test fixture)."""


class Rule(ABC, Generic[R]):
    """A check over one resource type. Subclasses set ``meta`` and ``target`` and write ``check``."""

    # Plain attributes, not ClassVars: data-driven rules (secret patterns) set them per instance.
    meta: RuleMeta
    target: type[Resource]
    screen: Screen | None = None
    """Optional shortcut shared by a family of rules: asked once per resource which members can
    find anything there at all (e.g. which secret rules' keywords occur in a file); the others
    are not called. It must never leave out a rule that would have found something."""

    @abstractmethod
    def check(self, resource: R, policy: Policy) -> Iterator[Violation]:
        """Yield every violation in ``resource``. Must not mutate anything."""


AnyRule = Rule[Any]
"""A rule of any resource type (``Rule`` is invariant in its resource type)."""

Screen = Callable[[Any], Container[AnyRule]]


class _EveryRule:
    def __contains__(self, rule: object) -> bool:
        return True


EVERY_RULE: Container[AnyRule] = _EveryRule()
"""What a screen answers when every rule of its family may find something in the resource
(``()`` when none can)."""


class RuleRegistry:
    """An explicit, ordered set of rules. A duplicate id is an error, never a silent overwrite."""

    def __init__(self, rules: Iterable[Rule[R]] = ()) -> None:
        self._rules: dict[str, AnyRule] = {}
        for rule in rules:
            self.register(rule)

    def register(self, rule: Rule[R]) -> None:
        rid = rule.meta.id
        if rid in self._rules:
            raise RegistryError(f"duplicate rule id {rid!r}")
        self._rules[rid] = rule

    def __iter__(self) -> Iterator[AnyRule]:
        return iter(self._rules.values())

    def __len__(self) -> int:
        return len(self._rules)

    def __contains__(self, rule_id: object) -> bool:
        return rule_id in self._rules

    def get(self, rule_id: str) -> AnyRule:
        try:
            return self._rules[rule_id]
        except KeyError:
            raise RegistryError(f"unknown rule {rule_id!r}") from None

    def for_target(self, resource_type: type[Resource]) -> tuple[AnyRule, ...]:
        return tuple(r for r in self._rules.values() if issubclass(resource_type, r.target))

    def translate(self, peer_id: str) -> tuple[str, ...]:
        """dutyguard ids whose ``equivalents`` (or own id) match a peer's check id."""
        needle = peer_id.strip().upper()
        out: list[str] = []
        for rule in self._rules.values():
            if rule.meta.id.upper() == needle:
                out.append(rule.meta.id)
                continue
            for ids in rule.meta.equivalents.values():
                if any(i.upper() == needle for i in ids):
                    out.append(rule.meta.id)
                    break
        return tuple(out)
