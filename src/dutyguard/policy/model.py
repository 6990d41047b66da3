"""The value types of a policy bundle, and what a bundle means at each enforcement stage.

A :class:`PolicyBundle` is immutable. It keeps the document exactly as Security wrote it
(``document``, a JSON value): that is what is canonicalised, hashed and signed, so the digest
``policy lint`` prints in Security's repository is the digest the gate verifies. The typed
fields are derived from it by :mod:`dutyguard.policy.parse` and are never serialised back.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from types import MappingProxyType
from typing import assert_never

from dutyguard.core.model import Severity
from dutyguard.core.policy import Policy, PSSLevel

API_VERSION = "dutyguard.dev/v1"
KIND = "PolicyBundle"
DIGEST_PREFIX = "sha256:"


class Stage(enum.Enum):
    CI = "ci"
    ADMISSION = "admission"
    RUNTIME = "runtime"

    @property
    def actions(self) -> tuple[str, ...]:
        """The actions of this stage, strongest first."""
        if self is Stage.CI:
            return ("block", "warn")
        if self is Stage.ADMISSION:
            return ("deny", "warn", "audit")
        if self is Stage.RUNTIME:
            return ("contain", "alert")
        assert_never(self)

    @property
    def blocking_action(self) -> str:
        """The action that stops the change (fails the gate, denies the request, contains the workload)."""
        return self.actions[0]

    def strength(self, action: str) -> int:
        """Higher is stronger; used to check that actions never weaken as severity rises."""
        return len(self.actions) - self.actions.index(action)


SEVERITIES_ASCENDING = tuple(sorted(Severity, key=lambda s: s.rank))

DEFAULT_ACTIONS: Mapping[Stage, Mapping[Severity, str]] = MappingProxyType(
    {
        # The same threshold as the built-in default policy (fail on high).
        Stage.CI: {
            Severity.CRITICAL: "block",
            Severity.HIGH: "block",
            Severity.MEDIUM: "warn",
            Severity.LOW: "warn",
            Severity.INFO: "warn",
        },
        Stage.ADMISSION: {
            Severity.CRITICAL: "deny",
            Severity.HIGH: "deny",
            Severity.MEDIUM: "warn",
            Severity.LOW: "audit",
            Severity.INFO: "audit",
        },
        # Containment is opt-in: an automatic response must be chosen, never defaulted into.
        Stage.RUNTIME: dict.fromkeys(Severity, "alert"),
    }
)


@dataclass(frozen=True, slots=True)
class StageActions:
    """What one stage does with a finding: by severity, and per rule (which wins)."""

    stage: Stage
    by_severity: Mapping[Severity, str]
    rules: Mapping[str, str] = field(default_factory=dict)

    def action_for(self, rule_id: str, severity: Severity) -> str:
        return self.rules.get(rule_id) or self.by_severity[severity]

    def blocks(self, rule_id: str, severity: Severity) -> bool:
        return self.action_for(rule_id, severity) == self.stage.blocking_action


@dataclass(frozen=True, slots=True)
class RuleSelector:
    """One ``include``/``exclude`` item: a rule id, a pack or a tag."""

    by: str
    """``id``, ``pack`` or ``tag``."""
    value: str


SCOPE_ATTRIBUTES = ("team", "app", "namespace", "cluster")
"""The named attributes a target may be compared on (besides its images' registries)."""

MAX_SCOPE_PROBLEMS = 10
"""Images listed as outside the scope, at most (then how many more)."""


@dataclass(frozen=True, slots=True)
class BundleScope:
    """Which targets the bundle governs. An empty tuple means every one.

    The one place that decides coverage: the CI gate, the control plane and the admission
    webhook each pass what they know of a target to :meth:`uncovered`.
    """

    teams: tuple[str, ...] = ()
    apps: tuple[str, ...] = ()
    namespaces: tuple[str, ...] = ()
    clusters: tuple[str, ...] = ()
    registries: tuple[str, ...] = ()
    """Registry hosts with optional repository prefixes, matched as ``allowedRegistries`` is."""

    def allowed(self, attribute: str) -> tuple[str, ...]:
        """The values ``attribute`` (one of :data:`SCOPE_ATTRIBUTES`) may take; empty: any."""
        if attribute == "team":
            return self.teams
        if attribute == "app":
            return self.apps
        if attribute == "namespace":
            return self.namespaces
        if attribute == "cluster":
            return self.clusters
        raise ValueError(f"unknown scope attribute {attribute!r}")

    def uncovered(
        self,
        *,
        team: str | None = None,
        app: str | None = None,
        namespace: str | None = None,
        cluster: str | None = None,
        images: Iterable[str] = (),
        required: Collection[str] = (),
    ) -> list[str]:
        """Why a target described by the given attributes is outside the scope (empty: covered).

        An attribute given as ``None`` (or empty) is not known where this is asked and is not
        compared — unless it is ``required`` and the scope restricts it: then the target cannot
        be shown to be governed, and that is a reason too (fail closed). A CI runner knows its
        app and cluster from its flags; the control plane resolves the app's owning team; the
        webhook knows its cluster and the object's namespace, app label and images.
        ``images`` are image references (``registry/repository[:tag][@digest]``): each must come
        from a registry of the scope.
        """
        unknown = set(required) - set(SCOPE_ATTRIBUTES)
        if unknown:
            raise ValueError(f"unknown scope attribute(s): {', '.join(sorted(unknown))}")
        out: list[str] = []
        for what, value in (("team", team), ("app", app), ("namespace", namespace), ("cluster", cluster)):
            allowed = self.allowed(what)
            if not allowed:
                continue
            if value:
                if value not in allowed:
                    out.append(f"{what} {value!r} is not among {', '.join(allowed)}")
            elif what in required:
                out.append(f"no {what} is known, and the bundle governs only {what}s {', '.join(allowed)}")
        if self.registries:
            outside = [why for why in map(self.registry_uncovered, dict.fromkeys(images)) if why]
            out.extend(outside[:MAX_SCOPE_PROBLEMS])
            if len(outside) > MAX_SCOPE_PROBLEMS:
                out.append(f"... and {len(outside) - MAX_SCOPE_PROBLEMS} more image(s) outside the scope")
        return out

    def registry_uncovered(self, image: str) -> str | None:
        """Why ``image`` (a reference as a container spec writes it) is outside ``registries``.

        The registry and repository are read as the container runtime reads them, and matched
        like ``allowedRegistries`` (:mod:`dutyguard.rules.workload.imageref`); a reference that
        does not parse cannot be shown to come from a governed registry.
        """
        if not self.registries:
            return None
        from dutyguard.rules.workload.imageref import (
            ImageReferenceError,
            allowed_by,
            parse_allow_list,
            parse_image,
        )

        shown = image if len(image) <= 200 else image[:199] + "\u2026"
        among = ", ".join(self.registries)
        try:
            ref = parse_image(image)
        except ImageReferenceError as e:
            return f"image {shown!r} cannot be read ({e}): its registry is not known to be among {among}"
        if allowed_by(ref, parse_allow_list(self.registries)) is None:
            return f"image {shown!r} (registry {ref.registry}) is not from {among}"
        return None


@dataclass(frozen=True, slots=True)
class LabelRequirement:
    key: str
    operator: str
    """``In``, ``NotIn``, ``Exists`` or ``DoesNotExist`` (Kubernetes label selector semantics)."""
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.operator == "In":
            return self.key in labels and labels[self.key] in self.values
        if self.operator == "NotIn":
            return self.key not in labels or labels[self.key] not in self.values
        if self.operator == "Exists":
            return self.key in labels
        return self.key not in labels  # DoesNotExist


@dataclass(frozen=True, slots=True)
class NamespaceSelector:
    """Namespace names, or a Kubernetes label selector (``matchLabels`` and ``matchExpressions``, ANDed)."""

    names: frozenset[str] = frozenset()
    match_labels: Mapping[str, str] = field(default_factory=dict)
    expressions: tuple[LabelRequirement, ...] = ()

    @property
    def by_name(self) -> bool:
        return bool(self.names)

    def matches(self, namespace: str, labels: Mapping[str, str] | None) -> bool | None:
        """``True``/``False``, or ``None`` when it depends on labels that are not known."""
        if self.by_name:
            return namespace in self.names
        if labels is None:
            return None
        if any(labels.get(k) != v for k, v in self.match_labels.items()):
            return False
        return all(r.matches(labels) for r in self.expressions)


_STRICTNESS = {PSSLevel.BASELINE: 0, PSSLevel.RESTRICTED: 1}


def strictest(levels: list[PSSLevel]) -> PSSLevel:
    return max(levels, key=_STRICTNESS.__getitem__)


@dataclass(frozen=True, slots=True)
class PodSecurityEntry:
    selector: NamespaceSelector
    level: PSSLevel


@dataclass(frozen=True, slots=True)
class PodSecurity:
    """The Pod Security level per namespace: the first matching entry wins, else ``default``."""

    default: PSSLevel = PSSLevel.RESTRICTED
    entries: tuple[PodSecurityEntry, ...] = ()

    @property
    def by_label(self) -> bool:
        """Whether a namespace's labels can change its level."""
        return any(not e.selector.by_name for e in self.entries)

    def level_for(self, namespace: str, labels: Mapping[str, str] | None = None) -> PSSLevel:
        """The level of a namespace. Unknown labels (``None``) give the strictest level possible."""
        possible: list[PSSLevel] = []
        for entry in self.entries:
            hit = entry.selector.matches(namespace, labels)
            if hit is None:
                possible.append(entry.level)  # might be the first match: count it
            elif hit:
                possible.append(entry.level)
                return strictest(possible)
        possible.append(self.default)
        return strictest(possible)

    def for_ci(self) -> tuple[PSSLevel, dict[str, PSSLevel]]:
        """The level for namespaces not named by any entry, and the level of each named namespace.

        CI sees manifests, not the cluster's namespace labels; where a label selector might
        match, the strictest level it could lead to is used, so CI never checks less than
        admission would.
        """
        named: dict[str, PSSLevel] = {}
        for entry in self.entries:
            for ns in entry.selector.names:
                named.setdefault(ns, self.level_for(ns))
        return self.level_for(""), named


@dataclass(frozen=True, slots=True)
class ExceptionPolicy:
    """Limits on exceptions (waivers): how long, how many approvers, who may approve."""

    max_days: Mapping[Severity, int]
    quorum: Mapping[Severity, int]
    wide_scope_quorum: int
    approver_roles: tuple[str, ...] = ("security",)
    approver_teams: tuple[str, ...] = ()
    """If not empty, approvers must belong to one of these teams."""

    def required_approvals(self, severity: Severity, wide: bool) -> int:
        n = self.quorum[severity]
        return max(n, self.wide_scope_quorum) if wide else n

    def max_duration(self, severity: Severity) -> timedelta:
        return timedelta(days=self.max_days[severity])


DEFAULT_EXCEPTION_POLICY = ExceptionPolicy(
    max_days=MappingProxyType(
        {Severity.CRITICAL: 7, Severity.HIGH: 30, Severity.MEDIUM: 90, Severity.LOW: 180, Severity.INFO: 365}
    ),
    quorum=MappingProxyType(
        {Severity.CRITICAL: 2, Severity.HIGH: 1, Severity.MEDIUM: 1, Severity.LOW: 1, Severity.INFO: 1}
    ),
    wide_scope_quorum=2,
)


@dataclass(frozen=True, slots=True, eq=False)
class PolicyBundle:
    name: str
    description: str
    document: Mapping[str, object]
    """The bundle as written (a JSON value): what is canonicalised, hashed and signed."""
    enabled_rules: frozenset[str]
    """Rule ids the bundle applies, resolved against the rule registry it was parsed with."""
    include: tuple[RuleSelector, ...] | None
    exclude: tuple[RuleSelector, ...]
    severity_overrides: Mapping[str, Severity]
    actions: Mapping[Stage, StageActions]
    scope: BundleScope
    allowed_registries: tuple[str, ...]
    pod_security: PodSecurity
    exceptions: ExceptionPolicy

    def canonical_json(self) -> bytes:
        from dutyguard.audit.canonical import canonical_json

        return canonical_json(self.document)

    @property
    def digest(self) -> str:
        """``sha256:<hex>`` of the canonical JSON (RFC 8785) of the document."""
        return DIGEST_PREFIX + hashlib.sha256(self.canonical_json()).hexdigest()

    def to_policy(self, stage: Stage, source: str) -> Policy:
        """The core evaluation settings for ``stage``; ``source`` says where the bundle came from.

        Severity actions never weaken as severity rises (checked when parsed), so the blocking
        severities are exactly those at or above the lowest blocking one: ``fail_on``. A stage
        where no severity blocks keeps ``fail_on`` at critical and marks every rule non-blocking
        explicitly; per-rule actions win either way.
        """
        acts = self.actions[stage]
        blocking = [s for s in SEVERITIES_ASCENDING if acts.by_severity[s] == stage.blocking_action]
        overrides: dict[str, bool] = {}
        if blocking:
            fail_on = blocking[0]
        else:
            fail_on = Severity.CRITICAL
            overrides = dict.fromkeys(self.enabled_rules, False)
        overrides.update({rid: act == stage.blocking_action for rid, act in acts.rules.items()})
        fallback, named = self.pod_security.for_ci()
        # CI cannot know the cluster's labels; admission may (the webhook's --namespace-labels).
        by_label = stage is not Stage.CI and self.pod_security.by_label
        return Policy(
            pss_level=fallback,
            fail_on=fail_on,
            allowed_registries=self.allowed_registries,
            enabled_rules=self.enabled_rules,
            severity_overrides=MappingProxyType(dict(self.severity_overrides)),
            source=source,
            block_overrides=MappingProxyType(overrides),
            namespace_pss_levels=MappingProxyType({ns: lv for ns, lv in named.items() if lv is not fallback}),
            label_levels=self.pod_security if by_label else None,
        )
