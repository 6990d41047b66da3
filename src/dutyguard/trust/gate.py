"""The CI gate's use of signed state: verify, remember, then give the scan its policy and exceptions.

``open_state`` does every check before anything is scanned and raises the error of the first
check that fails (fail closed). On success it records the versions seen, so that a later run
on this runner refuses anything older, and returns the policy for the CI stage together with
what is needed to apply the exception snapshot.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from dutyguard.core.model import ScanReport
from dutyguard.core.policy import Policy
from dutyguard.core.rule import RuleRegistry
from dutyguard.errors import ConfigError
from dutyguard.exceptions.matcher import ExceptionMatcher, MatchContext
from dutyguard.policy.model import Stage
from dutyguard.trust.keys import load_trust
from dutyguard.trust.snapshot_cache import SnapshotCache
from dutyguard.trust.state import StateFile, TrustedState, VerifiedBundle, VerifiedSnapshot


@dataclass(frozen=True, slots=True)
class SignedGate:
    bundle: VerifiedBundle
    snapshot: VerifiedSnapshot
    policy: Policy
    now: datetime

    def matcher(self, context: MatchContext) -> ExceptionMatcher:
        return ExceptionMatcher(
            self.snapshot.snapshot.exceptions, self.bundle.published.bundle.exceptions, context, self.now
        )

    def check_scope(self, context: MatchContext) -> None:
        """Refuse a scan the bundle does not govern (a pipeline using another team's policy)."""
        problems = self.bundle.published.bundle.scope.uncovered(app=context.app, cluster=context.cluster)
        if problems:
            raise ConfigError(
                f"policy bundle {self.bundle.published.bundle.name} does not govern this scan: "
                + "; ".join(problems)
            )

    def apply(self, report: ScanReport, context: MatchContext) -> ScanReport:
        return self.matcher(context).apply(report)


def describe(bundle: VerifiedBundle, snapshot: VerifiedSnapshot) -> str:
    s = snapshot.snapshot
    return f"{bundle.describe()}; exception snapshot v{s.version} ({len(s.exceptions)} exceptions)"


def open_state(
    state_dir: Path,
    trust: Sequence[str],
    state_file: Path,
    registry: RuleRegistry,
    now: datetime,
    *,
    cache_snapshots: bool = False,
) -> SignedGate:
    """``cache_snapshots`` reuses a snapshot this runner verified in full before (same bytes): fast
    for very large snapshots, but whoever can write the runner's state directory could then change the
    local verdict (the control plane re-checks every waiver it attests, so attestations are safe).
    Off by default: every run verifies and parses the snapshot strictly."""
    keyring = load_trust(trust)
    if not state_dir.is_dir():
        from dutyguard.trust.errors import MissingError

        raise MissingError(str(state_dir), "not a directory holding signed state")
    store = StateFile(state_file)
    with store.locked():
        seen = store.read()
        cache = SnapshotCache.beside(state_file) if cache_snapshots else None
        trusted = TrustedState(keyring, registry, now, seen, cache)
        bundle, snapshot = trusted.load_dir(state_dir)
        after = trusted.seen_after()
        if after != seen:  # a re-run on the same state need not pay for an fsync
            store.write(after)
    policy = bundle.published.bundle.to_policy(Stage.CI, describe(bundle, snapshot))
    return SignedGate(bundle, snapshot, policy, now)
