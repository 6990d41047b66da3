"""Applying a snapshot to real findings (the node-exporter DaemonSet of checkov's test data).

The findings come from scanning the file at Pod Security baseline: pss.host-ports (line 33),
pss.host-namespaces (lines 53, 54) and pss.host-path-volumes (lines 63, 67), all high, all
blocking, in namespace ``monitoring``.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from dutyguard.core.model import Finding, ScanReport, Severity
from dutyguard.core.policy import Policy, PSSLevel
from dutyguard.exceptions.matcher import MAX_CANDIDATES, ExceptionMatcher, MatchContext
from dutyguard.policy.model import DEFAULT_EXCEPTION_POLICY, ExceptionPolicy
from tests.conftest import make_scanner
from tests.trust.simulator import NOW, grant

NODE_EXPORTER = "checkov/tests/kubernetes/checks/example_HostPort/DS-node-exporter-FAILED.yaml"
CTX = MatchContext(app="node-exporter", cluster="prod-eu")
DIGEST = "sha256:" + "ab" * 32


@pytest.fixture(scope="module")
def report(shared_data: Path) -> ScanReport:
    scanner = make_scanner(Policy(pss_level=PSSLevel.BASELINE, enabled_rules=None))
    return scanner.scan([str(shared_data / NODE_EXPORTER)])


def one(report: ScanReport, rule: str, line: int) -> Finding:
    (f,) = [f for f in report.findings if f.rule_id == rule and f.location.line == line]
    return f


def apply(
    report: ScanReport,
    *grants,
    ctx: MatchContext = CTX,
    policy: ExceptionPolicy = DEFAULT_EXCEPTION_POLICY,
    now=NOW,
) -> ScanReport:  # type: ignore[no-untyped-def]
    return ExceptionMatcher(grants, policy, ctx, now).apply(report)


def waived_lines(report: ScanReport) -> set[tuple[str, int | None]]:
    return {(f.rule_id, f.location.line) for f in report.waived}


def test_fixture_is_what_the_tests_assume(report: ScanReport) -> None:
    blocking = {(f.rule_id, f.location.line) for f in report.blocking if f.rule_id.startswith("pss.")}
    assert blocking == {
        ("pss.host-ports", 33),
        ("pss.host-namespaces", 53),
        ("pss.host-namespaces", 54),
        ("pss.host-path-volumes", 63),
        ("pss.host-path-volumes", 67),
    }
    assert one(report, "pss.host-ports", 33).location.namespace == "monitoring"


def test_fingerprint_waives_exactly_that_finding(report: ScanReport) -> None:
    target = one(report, "pss.host-namespaces", 53)
    out = apply(report, grant("exc-1", "pss.host-namespaces", fingerprint=target.fingerprint))
    assert waived_lines(out) == {("pss.host-namespaces", 53)}
    waived = one(out, "pss.host-namespaces", 53)
    assert waived.waiver is not None
    assert waived.waiver.exception_id == "exc-1"
    assert waived.waiver.expires == NOW + timedelta(days=5)
    assert not out.is_blocking(waived)
    assert out.is_blocking(one(out, "pss.host-namespaces", 54))
    assert len(out.findings) == len(report.findings)  # still reported


def test_selector_by_app_and_namespace(report: ScanReport) -> None:
    out = apply(report, grant("exc-1", "pss.host-path-volumes", app="node-exporter", namespace="monitoring"))
    assert waived_lines(out) == {("pss.host-path-volumes", 63), ("pss.host-path-volumes", 67)}


def test_selector_for_another_namespace_does_not_match(report: ScanReport) -> None:
    out = apply(report, grant("exc-1", "pss.host-path-volumes", app="node-exporter", namespace="kube-system"))
    assert out.waived == ()


def test_app_scoped_exception_needs_the_app_in_context(report: ScanReport) -> None:
    g = grant("exc-1", "pss.host-ports", app="node-exporter")
    assert apply(report, g, ctx=MatchContext()).waived == ()
    assert apply(report, g, ctx=MatchContext(app="search")).waived == ()
    assert waived_lines(apply(report, g)) == {("pss.host-ports", 33)}


def test_cluster_and_image_digest_come_from_the_context(report: ScanReport) -> None:
    by_cluster = grant("exc-1", "pss.host-ports", app="node-exporter", cluster="prod-us")
    assert apply(report, by_cluster).waived == ()
    by_image = grant("exc-2", "pss.host-ports", image_digest=DIGEST)
    assert apply(report, by_image).waived == ()
    ctx = MatchContext(app="node-exporter", image_digests=frozenset({DIGEST}))
    assert waived_lines(apply(report, by_image, ctx=ctx)) == {("pss.host-ports", 33)}


def test_other_rule_is_never_waived(report: ScanReport) -> None:
    f = one(report, "pss.host-ports", 33)
    # Same fingerprint, other rule id: exceptions are per rule.
    assert apply(report, grant("exc-1", "pss.host-namespaces", fingerprint=f.fingerprint)).waived == ()


def test_expired_exception_is_ignored_at_scan_time(report: ScanReport) -> None:
    g = grant("exc-1", "pss.host-ports", app="node-exporter", expires=NOW + timedelta(minutes=1))
    assert len(apply(report, g, now=NOW).waived) == 1
    assert apply(report, g, now=NOW + timedelta(minutes=1)).waived == ()


def test_quorum_rises_with_severity(report: ScanReport) -> None:
    # One approver is enough for high (default quorum) but not once Security makes it critical.
    g = grant("exc-1", "pss.host-ports", app="node-exporter", approvers=("bob",))
    assert len(apply(report, g).waived) == 1
    from dataclasses import replace

    critical = replace(
        report, findings=tuple(replace(f, severity=Severity.CRITICAL) for f in report.findings)
    )
    assert apply(critical, g).waived == ()
    two = grant("exc-2", "pss.host-ports", app="node-exporter", approvers=("bob", "carol"))
    assert len(apply(critical, two).waived) == 1


def test_wide_scope_needs_the_wide_quorum(report: ScanReport) -> None:
    policy = ExceptionPolicy(
        max_days=DEFAULT_EXCEPTION_POLICY.max_days,
        quorum=DEFAULT_EXCEPTION_POLICY.quorum,
        wide_scope_quorum=3,
    )
    wide = grant("exc-1", "pss.host-ports", namespace="monitoring", approvers=("bob", "carol"))
    assert wide.wide
    assert apply(report, wide, policy=policy).waived == ()
    wider_quorum = grant(
        "exc-2", "pss.host-ports", namespace="monitoring", approvers=("bob", "carol", "dave")
    )
    assert len(apply(report, wider_quorum, policy=policy).waived) == 1


def test_lifetime_beyond_the_bundle_maximum_does_not_apply(report: ScanReport) -> None:
    # High findings allow 30 days by default; an exception granted for 60 does not waive them.
    long = grant(
        "exc-1",
        "pss.host-ports",
        app="node-exporter",
        approved_at=NOW - timedelta(days=1),
        expires=NOW + timedelta(days=59),
    )
    assert apply(report, long).waived == ()


def test_narrowest_exception_is_reported(report: ScanReport) -> None:
    f = one(report, "pss.host-ports", 33)
    broad = grant("exc-app", "pss.host-ports", app="node-exporter", expires=NOW + timedelta(days=9))
    exact = grant("exc-fp", "pss.host-ports", fingerprint=f.fingerprint, expires=NOW + timedelta(days=2))
    out = apply(report, broad, exact)
    w = one(out, "pss.host-ports", 33).waiver
    assert w is not None
    assert w.exception_id == "exc-fp"


def test_waivers_change_the_decision(report: ScanReport) -> None:
    grants = [
        grant(f"exc-{rule}", rule, app="node-exporter", namespace="monitoring")
        for rule in (
            "pss.host-ports",
            "pss.host-namespaces",
            "pss.host-path-volumes",
            "k8s.sensitive-host-path",
        )
    ]
    assert report.exit_code == 1
    out = apply(report, *grants)
    assert out.blocking == ()
    assert out.exit_code == 0
    assert len(out.waived) == 7


def test_ten_thousand_unrelated_exceptions_change_nothing(report: ScanReport) -> None:
    noise = [
        grant(f"exc-{i}", "pss.privileged", app=f"app-{i % 97}", namespace=f"ns-{i % 89}")
        for i in range(10_000)
    ]
    m = ExceptionMatcher(noise, DEFAULT_EXCEPTION_POLICY, MatchContext(app="app-3"), NOW)
    assert m.apply(report) is report
    # only those whose app matches the context are indexed at all
    assert m.active == len([i for i in range(10_000) if i % 97 == 3])


def test_candidates_per_key_are_bounded_and_that_only_fails_safe(report: ScanReport) -> None:
    # Many exceptions on one (rule, namespace) that the bundle does not admit (granted for longer
    # than the 30 days a high finding allows; their later expiry sorts them first), then one it
    # would admit. Within the bound the good one is found; past it the finding stays blocking.
    def too_long(i: int):  # type: ignore[no-untyped-def]
        return grant(
            f"exc-{i:03d}",
            "pss.host-ports",
            app="node-exporter",
            namespace="monitoring",
            approved_at=NOW - timedelta(days=1),
            expires=NOW + timedelta(days=40 + i),
        )

    good = grant("exc-good", "pss.host-ports", app="node-exporter", namespace="monitoring")
    within = [too_long(i) for i in range(MAX_CANDIDATES - 1)]
    assert waived_lines(apply(report, *within, good)) == {("pss.host-ports", 33)}
    beyond = [too_long(i) for i in range(MAX_CANDIDATES)]
    assert apply(report, *beyond, good).waived == ()
