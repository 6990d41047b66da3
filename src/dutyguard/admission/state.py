"""What the webhook enforces: a policy per namespace, an action per finding, approved exceptions.

An :class:`EnforcementState` is immutable and built in one place from verified inputs (the
signed policy bundle and exception snapshot), or is the built-in default policy, labelled as
unsigned wherever it shows (responses, audit annotations, metrics). A
:class:`StateProvider` hands out the state to enforce *now*, or says why there is none; the
decision code never sees unverified data, so it cannot enforce it by mistake.

Invariants (see :mod:`dutyguard.admission.signed` for the signed provider):

* a state is only ever built from inputs that passed verification;
* an expired state is never enforced: the provider reports the problem instead and the
  decision follows the configured :class:`FailMode` (default: deny, saying why);
* the built-in default is used only when configured (no control plane) or as an explicit
  fail mode, never silently in place of a signed state.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from dutyguard.core.model import Finding, Severity, Waiver
from dutyguard.core.policy import DEFAULT_POLICY_SOURCE, Policy


class Action(enum.Enum):
    """What admission does with a finding (the ``admission`` stage of a policy bundle)."""

    DENY = "deny"
    WARN = "warn"
    AUDIT = "audit"


class FailMode(enum.Enum):
    """What to do when there is no verified, unexpired state to enforce."""

    DENY = "deny"
    """Refuse every evaluated request, with a message saying why (the default)."""
    DEFAULT_POLICY = "default-policy"
    """Enforce the built-in default policy (labelled unsigned); no exception applies."""
    UNSAFE_ALLOW = "unsafe-allow"
    """Allow, with a warning on every response and in the audit trail. For break-glass only."""


@dataclass(frozen=True, slots=True)
class Subject:
    """What an exception can be scoped to, as seen at admission."""

    namespace: str
    kind: str
    name: str
    app: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    images: tuple[str, ...] = ()
    """Every image reference of the pod template, as written."""
    image_digests: tuple[str, ...] = ()
    """``sha256:…`` of every image pinned by digest."""
    cluster: str = ""
    owner_kind: str = ""
    owner_name: str = ""
    """The controller that owns this object (Pods of a ReplicaSet resolve to its Deployment)."""


class ExceptionMatcher(Protocol):
    def match(self, finding: Finding, subject: Subject) -> Waiver | None: ...


class NoExceptions:
    def match(self, finding: Finding, subject: Subject) -> Waiver | None:
        return None


NO_EXCEPTIONS = NoExceptions()


def default_action(finding: Finding, fail_on: Severity) -> Action:
    """The built-in default: what blocks the CI gate is denied, everything else is a warning."""
    return Action.DENY if finding.severity.at_least(fail_on) else Action.WARN


@dataclass(frozen=True, slots=True)
class EnforcementState:
    label: str
    """How the state is shown to people: ``policy bundle v7 (sha256:ab12…), exceptions v31``."""
    signed: bool
    policy_for: Callable[[str], Policy]
    """The evaluation policy (Pod Security level, rules, severities) for a namespace."""
    action_for: Callable[[Finding, Policy], Action]
    exceptions: ExceptionMatcher = NO_EXCEPTIONS
    bundle_version: int | None = None
    bundle_digest: str | None = None
    snapshot_version: int | None = None
    expires_at: datetime | None = None
    verified_at: datetime | None = None
    attestations: AttestationIndex | None = None
    out_of_scope: Callable[[Subject], list[str]] | None = None
    """Why the signed bundle does not govern an object (its ``scope``): any reason denies it.
    ``None``: the state governs every object (the built-in default)."""

    @property
    def short_label(self) -> str:
        if self.bundle_version is None:
            return "builtin-unsigned"
        digest = (self.bundle_digest or "")[:19]
        snap = f",exceptions-v{self.snapshot_version}" if self.snapshot_version is not None else ""
        return f"bundle-v{self.bundle_version}{(',' + digest) if digest else ''}{snap}"


class AttestationIndex(Protocol):
    """Gate attestations by image digest (from the signed state), for the optional image rule."""

    def passing(self, image_digest: str) -> str | None:
        """The id of a verified, passing gate attestation for this digest, or ``None``."""
        ...


def builtin_state(policy: Policy | None = None) -> EnforcementState:
    """The built-in default policy: restricted everywhere, deny at high and above, warn below."""
    pol = policy or Policy()

    def policy_for(namespace: str) -> Policy:
        return pol

    def action_for(finding: Finding, p: Policy) -> Action:
        return default_action(finding, p.fail_on)

    return EnforcementState(
        label=pol.source if pol.source else DEFAULT_POLICY_SOURCE,
        signed=False,
        policy_for=policy_for,
        action_for=action_for,
    )


@dataclass(frozen=True, slots=True)
class StateView:
    """The state to enforce now, or why there is none."""

    state: EnforcementState | None
    problem: str = ""
    """Why there is no state (missing, expired, failed verification), or, with a state, why it
    may be stale (the last pull failed or was refused); empty when all is well."""
    age_seconds: float | None = None
    """Seconds since the enforced state was last verified (``None``: built-in, never pulled)."""


class StateProvider(ABC):
    """Hands out the state to enforce. Implementations must be cheap: called on every request."""

    @abstractmethod
    def current(self, now: datetime) -> StateView: ...

    def start(self) -> None:  # noqa: B027 - optional hook, most providers have nothing to start
        """Begin background work (pulling, refreshing). Called once the server is up."""

    def stop(self) -> None:  # noqa: B027
        """End background work."""


class BuiltinStateProvider(StateProvider):
    """Always the built-in default policy (no control plane configured)."""

    def __init__(self, policy: Policy | None = None) -> None:
        self._view = StateView(builtin_state(policy))

    def current(self, now: datetime) -> StateView:
        return self._view
