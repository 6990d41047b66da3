"""The exception value type: invariants hold for every value, also one read from a snapshot."""

from __future__ import annotations

from datetime import timedelta

import pytest

from dutyguard.exceptions.model import ExceptionGrant, ExceptionScope, InvalidException
from tests.trust.simulator import NOW, grant

DIGEST = "sha256:" + "ab" * 32


def test_json_roundtrip() -> None:
    g = grant("exc-1", "pss.host-ports", app="web", namespace="shop", image_digest=DIGEST, cluster="prod-eu")
    assert ExceptionGrant.from_json(g.to_json(), "x") == g
    assert g.to_json()["scope"] == {
        "app": "web",
        "namespace": "shop",
        "imageDigest": DIGEST,
        "cluster": "prod-eu",
    }


@pytest.mark.parametrize(
    ("scope", "wide"),
    [
        (ExceptionScope(fingerprint="a" * 32), False),
        (ExceptionScope(app="web"), False),
        (ExceptionScope(image_digest=DIGEST), False),
        (ExceptionScope(namespace="shop"), True),
        (ExceptionScope(cluster="prod-eu"), True),
        (ExceptionScope(namespace="shop", cluster="prod-eu"), True),
    ],
)
def test_wide_scopes(scope: ExceptionScope, wide: bool) -> None:
    assert scope.wide is wide


def test_requester_never_approves() -> None:
    with pytest.raises(InvalidException, match="approved by its own requester 'alice'"):
        grant("exc-1", "pss.host-ports", app="web", approvers=("bob", "alice"))


def test_each_approver_counts_once() -> None:
    with pytest.raises(InvalidException, match="counted twice"):
        grant("exc-1", "pss.host-ports", app="web", approvers=("bob", "bob"))


def test_case_cannot_make_one_approver_look_like_two() -> None:
    with pytest.raises(InvalidException, match="not a principal id"):
        grant("exc-1", "pss.host-ports", app="web", approvers=("bob", "Bob"))


def test_an_exception_for_a_rule_everywhere_does_not_exist() -> None:
    with pytest.raises(InvalidException, match="policy change"):
        grant("exc-1", "pss.host-ports")


def test_fingerprint_scope_is_not_mixed_with_selectors() -> None:
    with pytest.raises(InvalidException, match="only be narrowed by app"):
        grant("exc-1", "pss.host-ports", fingerprint="a" * 32, namespace="shop")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"fingerprint": "XYZ"},
        {"app": "Web"},
        {"namespace": "shop_1"},
        {"image_digest": "sha256:abc"},
        {"cluster": "-prod"},
    ],
)
def test_scope_values_are_checked(kwargs: dict[str, str]) -> None:
    with pytest.raises(InvalidException, match="scope"):
        grant("exc-1", "pss.host-ports", **kwargs)  # type: ignore[arg-type]


def test_expiry_after_approval() -> None:
    with pytest.raises(InvalidException, match="expires before"):
        grant("exc-1", "pss.host-ports", app="web", approved_at=NOW, expires=NOW - timedelta(seconds=1))


@pytest.mark.parametrize(
    ("edit", "why"),
    [
        (lambda d: d.update(extra=1), "unknown field"),
        (lambda d: d.pop("justification"), "missing field"),
        (lambda d: d.update(justification="   "), "justification is empty"),
        (lambda d: d.update(approvers="bob"), "approvers must be a list"),
        (lambda d: d.update(expires="tomorrow"), "UTC timestamp"),
        (lambda d: d.update(scope={"app": 3}), "scope values"),
        (lambda d: d.update(scope={"team": "payments"}), "scope must be an object"),
    ],
)
def test_from_json_is_strict(edit, why: str) -> None:  # type: ignore[no-untyped-def]
    doc = grant("exc-1", "pss.host-ports", app="web").to_json()
    edit(doc)
    with pytest.raises(InvalidException, match=why) as e:
        ExceptionGrant.from_json(doc, "exceptions[4]")
    assert e.value.source == "exceptions[4]"
