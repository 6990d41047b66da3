"""The CI gate's use of signed state: verify, remember, then give the scan its policy and exceptions.

``open_state`` does every check before anything is scanned and raises the error of the first
check that fails (fail closed). On success it records the versions seen, so that a later run
on this runner refuses anything older, and returns the policy for the CI stage together with
what is needed to apply the exception snapshot.

The bundle's scope (:class:`~dutyguard.policy.model.BundleScope`) is enforced twice: before the
scan for what the pipeline says it gates (``--app``, ``--cluster``, the registry of
``--subject oci://…``), and while reading for the objects themselves (:class:`NamespaceScope`:
every object declaring a namespace the bundle does not govern is an error of its file, never
evaluated). Either way the scan is refused (exit 2), saying why.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from dutyguard.core.model import ScanError, ScanReport
from dutyguard.core.policy import Policy
from dutyguard.core.resource import Resource
from dutyguard.core.rule import RuleRegistry
from dutyguard.errors import ConfigError
from dutyguard.exceptions.matcher import ExceptionMatcher, MatchContext
from dutyguard.policy.model import BundleScope, Stage
from dutyguard.trust.keys import load_trust
from dutyguard.trust.snapshot_cache import SnapshotCache
from dutyguard.trust.state import StateFile, TrustedState, VerifiedBundle, VerifiedSnapshot

if TYPE_CHECKING:
    from dutyguard.trust.attest import Subject

MAX_OBJECTS_SHOWN = 10
"""Objects outside the scope named per input file (then how many more)."""
MAX_INPUTS_SHOWN = 20
"""Input files with objects outside the scope listed per scan (then one line for the rest)."""


def subject_image(subject: Subject) -> str | None:
    """The image reference an ``oci://`` subject names (``None`` for a git commit)."""
    if subject.name == "git" or "sha256" not in subject.digest:
        return None
    return f"{subject.name}@sha256:{subject.digest['sha256']}"


def _images(subject: str | None) -> tuple[str, ...]:
    if subject is None:
        return ()
    from dutyguard.trust.attest import Subject

    try:
        image = subject_image(Subject.parse(subject))
    except ValueError as e:
        raise ConfigError(f"--subject: {e}") from None
    return () if image is None else (image,)


def _short(text: str, n: int = 120) -> str:
    return text if len(text) <= n else text[: n - 1] + "\u2026"


def _scope_mark(bundle: str) -> str:
    return f"outside the scope of policy bundle {bundle}"


@dataclass(frozen=True, slots=True)
class NamespaceScope:
    """Objects of the scan that declare a namespace the bundle does not govern (an engine
    :class:`~dutyguard.engine.ResourceScope`). An object without a namespace is not compared:
    where it lands is decided at deploy time, and admission, which knows, checks it."""

    bundle: str
    scope: BundleScope

    @property
    def reads(self) -> type[Resource] | None:
        from dutyguard.sources.kubernetes import K8sObject

        return K8sObject

    def split(self, source: str, resources: list[Resource]) -> tuple[list[Resource], ScanError | None]:
        kept: list[Resource] = []
        refused: list[Resource] = []
        for r in resources:
            ns = r.namespace
            (refused if ns and self.scope.uncovered(namespace=ns) else kept).append(r)
        if not refused:
            return resources, None
        named = []
        for r in refused[:MAX_OBJECTS_SHOWN]:
            loc = r.locate(())
            where = f"line {loc.line}: " if loc.line else ""
            # Names come from the scanned file: bounded, whatever it says.
            what = _short(f"{loc.kind or 'object'} {loc.name or '(unnamed)'}")
            named.append(f"{where}{what} in namespace {_short(repr(r.namespace))}")
        if len(refused) > MAX_OBJECTS_SHOWN:
            named.append(f"and {len(refused) - MAX_OBJECTS_SHOWN} more")
        message = (
            f"{source}: {len(refused)} object(s) {_scope_mark(self.bundle)}, which governs namespaces "
            f"{', '.join(self.scope.namespaces)} (they were not evaluated): {'; '.join(named)}"
        )
        return kept, ScanError(source, message)


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

    def check_scope(self, context: MatchContext, subject: str | None = None) -> None:
        """Refuse a scan the bundle does not govern (a pipeline using another team's policy).

        Compares what the pipeline says it gates: ``--app``, ``--cluster`` and the registry of an
        ``oci://`` ``--subject``. The owning team is only known to the control plane, which
        compares it when it attests; the objects' namespaces are compared while reading
        (:attr:`scope`)."""
        bundle = self.bundle.published.bundle
        problems = bundle.scope.uncovered(app=context.app, cluster=context.cluster, images=_images(subject))
        if problems:
            raise ConfigError(
                f"policy bundle {bundle.name} does not govern this scan: " + "; ".join(problems)
            )

    @property
    def scope(self) -> NamespaceScope | None:
        """The check of every object's namespace while the scan reads it (``None``: the bundle
        governs every namespace)."""
        bundle = self.bundle.published.bundle
        return NamespaceScope(bundle.name, bundle.scope) if bundle.scope.namespaces else None

    def apply(self, report: ScanReport, context: MatchContext) -> ScanReport:
        return self._capped(self.matcher(context).apply(report))

    def _capped(self, report: ScanReport) -> ScanReport:
        """At most :data:`MAX_INPUTS_SHOWN` files named for objects outside the scope, then a count:
        a tree deployed to the wrong namespace says so in a screenful (still exit 2)."""
        mark = _scope_mark(self.bundle.published.bundle.name)
        scoped = [i for i, e in enumerate(report.errors) if mark in e.message]
        if len(scoped) <= MAX_INPUTS_SHOWN:
            return report
        dropped = set(scoped[MAX_INPUTS_SHOWN:])
        errors = [e for i, e in enumerate(report.errors) if i not in dropped]
        errors.append(ScanError("<scope>", f"... and {len(dropped)} more file(s) with objects {mark}"))
        return replace(report, errors=tuple(errors))


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
