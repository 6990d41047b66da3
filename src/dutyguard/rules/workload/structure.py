"""A workload whose structure cannot be read is a finding, not a pass.

Every other rule reads pod templates through tolerant accessors that see "nothing there" in a list
where a mapping should be. The API server would refuse such an object, but a scanner that quietly
skips it passes exactly the input an attacker would craft to hide a container from it. This rule
names every field of the wrong shape so that the rest can stay simple.
"""

from __future__ import annotations

from collections.abc import Iterator

from dutyguard.core import jsonview as jv
from dutyguard.core.model import JSONPath, Severity
from dutyguard.core.policy import Policy
from dutyguard.core.rule import Rule, RuleMeta, Violation
from dutyguard.rules.workload._view import PACK
from dutyguard.sources.kubernetes import CONTAINER_LISTS, K8sObject

_MAP, _LIST, _STR = "a mapping", "a list", "a string"
_POD_FIELDS = {"securityContext": _MAP, "volumes": _LIST, "os": _MAP}
_CONTAINER_FIELDS = {
    "securityContext": _MAP,
    "resources": _MAP,
    "env": _LIST,
    "envFrom": _LIST,
    "ports": _LIST,
    "volumeMounts": _LIST,
    "command": _LIST,
    "args": _LIST,
}


def _type_name(value: object) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )


def _wrong(value: object, expected: str) -> bool:
    """Present (not null) and not of the expected shape."""
    if value is None:
        return False
    if expected == _MAP:
        return jv.as_map(value) is None
    if expected == _LIST:
        return jv.as_list(value) is None
    return not isinstance(value, str)


def _fields(doc: jv.JSONMap, base: JSONPath, expected: dict[str, str]) -> Iterator[Violation]:
    for key, shape in expected.items():
        value = doc.get(key)
        if _wrong(value, shape):
            yield Violation(f"{key} is {_type_name(value)}, expected {shape}", path=(*base, key))


def _list_of_maps(doc: jv.JSONMap, base: JSONPath, key: str) -> Iterator[Violation]:
    for i, item in jv.items(doc, (key,)):
        if jv.as_map(item) is None:
            yield Violation(f"{key}[{i}] is {_type_name(item)}, expected a mapping", path=(*base, key, i))


class WorkloadMalformed(Rule[K8sObject]):
    meta = RuleMeta(
        id="k8s.workload-malformed",
        title="Workload cannot be evaluated",
        severity=Severity.HIGH,
        description=(
            "A pod template field has the wrong shape (a list where a mapping belongs, a container without "
            "a name, no containers at all), so its settings cannot be checked. Fail closed."
        ),
        remediation="Fix the manifest so that it validates against the Kubernetes API schema (kubectl apply --dry-run=server).",
        controls=("nist-800-53:SI-10", "nist-800-190:4.4.3"),
        pack=PACK,
    )
    target = K8sObject

    def check(self, resource: K8sObject, policy: Policy) -> Iterator[Violation]:
        spec_path = resource.pod_spec_path
        if spec_path is None:
            return
        metadata = resource.doc.get("metadata")
        if _wrong(metadata, _MAP):
            yield Violation(f"metadata is {_type_name(metadata)}, expected a mapping", path=("metadata",))
        else:
            yield from _fields(resource.metadata, ("metadata",), {"name": _STR, "namespace": _STR})
        spec = jv.get(resource.doc, spec_path)
        spec_map = jv.as_map(spec)
        if spec_map is None:
            what = "missing" if spec is None else _type_name(spec)
            yield Violation(f"the pod spec is {what}, expected a mapping", path=spec_path)
            return
        yield from _fields(spec_map, spec_path, {**_POD_FIELDS, **dict.fromkeys(CONTAINER_LISTS, _LIST)})
        yield from _list_of_maps(spec_map, spec_path, "volumes")
        if spec_map.get("containers") in (None, []):
            yield Violation("the pod has no containers", path=(*spec_path, "containers"))
        for list_name in CONTAINER_LISTS:
            yield from _list_of_maps(spec_map, spec_path, list_name)
        for c in resource.containers():
            if not isinstance(c.spec.get("name"), str) or not c.spec.get("name"):
                yield Violation(
                    f"{c.list_name}[{c.index}] has no name", path=(*c.path, "name"), container=c.name
                )
            for v in _fields(c.spec, c.path, _CONTAINER_FIELDS):
                yield Violation(f"container {c.name!r}: {v.message}", path=v.path, container=c.name)
            resources = jv.as_map(c.spec.get("resources"))
            if resources is not None:
                for v in _fields(resources, (*c.path, "resources"), {"limits": _MAP, "requests": _MAP}):
                    yield Violation(f"container {c.name!r}: {v.message}", path=v.path, container=c.name)
            caps_path = (*c.path, "securityContext", "capabilities")
            caps = jv.get(c.spec, ("securityContext", "capabilities"))
            if _wrong(caps, _MAP):
                yield Violation(
                    f"container {c.name!r}: capabilities is {_type_name(caps)}, expected a mapping",
                    path=caps_path,
                    container=c.name,
                )
            elif caps is not None:
                for v in _fields(jv.as_map(caps) or {}, caps_path, {"add": _LIST, "drop": _LIST}):
                    yield Violation(f"container {c.name!r}: {v.message}", path=v.path, container=c.name)
