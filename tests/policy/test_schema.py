"""The published JSON Schema and the parser agree on the shape of a bundle."""

from __future__ import annotations

import json
from importlib.resources import files
from typing import Any

import jsonschema
import pytest
import yaml

from dutyguard.core.rule import RuleRegistry
from dutyguard.policy.errors import PolicyBundleError
from dutyguard.policy.parse import SPEC_FIELDS, parse_bundle
from tests.policy.test_parse import FULL


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(files("dutyguard").joinpath("data", "policy-bundle.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def full() -> dict[str, Any]:
    value = yaml.safe_load(FULL)
    assert isinstance(value, dict)
    return value


def test_spec_fields_are_the_schemas(validator: jsonschema.Draft202012Validator) -> None:
    assert tuple(validator.schema["properties"]["spec"]["properties"]) == SPEC_FIELDS


def test_valid_bundles_validate(validator: jsonschema.Draft202012Validator, registry: RuleRegistry) -> None:
    minimal = {
        "apiVersion": "dutyguard.dev/v1",
        "kind": "PolicyBundle",
        "metadata": {"name": "m"},
        "spec": {},
    }
    for doc in (full(), minimal):
        validator.validate(doc)
        parse_bundle(doc, "doc", registry)


def _set(doc: dict[str, Any], path: tuple[str | int, ...], value: object) -> dict[str, Any]:
    cur: Any = doc
    for key in path[:-1]:
        cur = cur[key]
    if value is _DELETE:
        del cur[path[-1]]
    else:
        cur[path[-1]] = value
    return doc


_DELETE = object()

STRUCTURAL = [
    (("kind",), "Policy"),
    (("metadata", "name"), _DELETE),
    (("metadata", "owner"), "x"),
    (("spec", "extra"), {}),
    (("spec", "rules", "include", 0), {"id": "pss.privileged", "pack": "pss-baseline"}),
    (("spec", "rules", "include"), []),
    (("spec", "severity", "k8s.image-tag-latest"), "urgent"),
    (("spec", "actions", "ci", "bySeverity", "high"), "deny"),
    (("spec", "actions", "admission", "bySeverity", "info"), _DELETE),
    (("spec", "actions", "edge"), {}),
    (("spec", "scope", "teams"), "payments"),
    (("spec", "scope", "apps"), ["Shop"]),
    (("spec", "podSecurity", "default"), "privileged"),
    (("spec", "podSecurity", "namespaces", 0, "selector"), {"matchLabels": {"a": "b"}}),
    (("spec", "podSecurity", "namespaces", 1, "selector"), {}),
    (("spec", "podSecurity", "namespaces", 1, "selector", "matchExpressions", 0, "operator"), "Equals"),
    (("spec", "exceptions", "quorum", "critical"), 0),
    (("spec", "exceptions", "maxDays", "low"), 400),
    (("spec", "exceptions", "wideScopeQuorum"), True),
    (("spec", "exceptions", "approvers", "roles"), []),
]


@pytest.mark.parametrize(("path", "value"), STRUCTURAL, ids=[".".join(map(str, p)) for p, _ in STRUCTURAL])
def test_structural_errors_are_refused_by_both(
    validator: jsonschema.Draft202012Validator,
    registry: RuleRegistry,
    path: tuple[str | int, ...],
    value: object,
) -> None:
    doc = _set(full(), path, value)
    assert list(validator.iter_errors(doc)), "the schema accepted it"
    with pytest.raises(PolicyBundleError):
        parse_bundle(doc, "doc", registry)


def test_semantic_checks_are_the_parsers(
    validator: jsonschema.Draft202012Validator, registry: RuleRegistry
) -> None:
    # What the schema cannot know (this dutyguard's rule ids) is left to the parser, as documented.
    doc = _set(full(), ("spec", "rules", "include", 0), {"id": "k8s.no-such-rule"})
    validator.validate(doc)
    with pytest.raises(PolicyBundleError, match="invalid policy bundle"):
        parse_bundle(doc, "doc", registry)
