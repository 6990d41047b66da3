"""A typed, fail-closed view of a pod template for the workload rules.

Manifests are untyped. A field is *unset* when absent or null (what the API server stores as a nil
pointer), *set* with a value, or *malformed* when a parent on the way is not a mapping: a value we
cannot read is never taken to be a safe one.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterator
from dataclasses import dataclass

from dutyguard.core import jsonview as jv
from dutyguard.core.model import JSONPath
from dutyguard.sources.kubernetes import ContainerRef, K8sObject

PACK = "k8s"

RUNNING_CONTAINERS = ("initContainers", "containers")
"""Containers that may declare resources (the API refuses resources on ephemeral containers)."""


class State(enum.Enum):
    UNSET = "unset"
    SET = "set"
    MALFORMED = "malformed"


@dataclass(frozen=True, slots=True)
class Field:
    state: State
    path: JSONPath
    """The field, or for MALFORMED the parent that is not a mapping."""
    value: object = None

    @property
    def is_set(self) -> bool:
        return self.state is State.SET

    @property
    def malformed(self) -> bool:
        return self.state is State.MALFORMED


def lookup(start: object, start_path: JSONPath, *keys: str) -> Field:
    """Follow ``keys`` from ``start`` (found at ``start_path``) trusting no type on the way."""
    cur = start
    path = start_path
    for key in keys:
        if cur is None:
            return Field(State.UNSET, (*start_path, *keys))
        m = jv.as_map(cur)
        if m is None:
            return Field(State.MALFORMED, path)
        cur = m.get(key)
        path = (*path, key)
    if cur is None:
        return Field(State.UNSET, path)
    return Field(State.SET, path, cur)


def as_int(value: object) -> int | None:
    """A JSON integer; ``True`` is an ``int`` in Python but never in Kubernetes."""
    return value if type(value) is int else None


@dataclass(frozen=True, slots=True)
class PodView:
    """The pod spec of a workload object, with the paths findings are reported against."""

    resource: K8sObject
    spec: jv.JSONMap
    spec_path: JSONPath
    meta_path: JSONPath

    @classmethod
    def of(cls, resource: K8sObject) -> PodView | None:
        spec_path = resource.pod_spec_path
        meta_path = resource.pod_meta_path
        spec = resource.pod_spec()
        if spec_path is None or meta_path is None or spec is None:
            return None
        return cls(resource, spec, spec_path, meta_path)

    def field(self, *keys: str) -> Field:
        return lookup(self.spec, self.spec_path, *keys)

    def containers(self, lists: tuple[str, ...] | None = None) -> Iterator[ContainerRef]:
        if lists is None:
            yield from self.resource.containers()
        else:
            yield from self.resource.containers(lists)

    @property
    def is_windows(self) -> bool:
        # The kubelet refuses a pod whose spec.os.name is not its own OS, so Linux-only settings
        # (UIDs, capabilities, read-only root) cannot matter for a Windows pod.
        return self.field("os", "name").value == "windows"

    @property
    def in_user_namespace(self) -> bool:
        """``hostUsers: false``: container UIDs map to an unprivileged range on the node."""
        return self.field("hostUsers").value is False

    def labels(self) -> jv.JSONMap:
        return jv.as_map(jv.get(self.resource.doc, (*self.meta_path, "labels"))) or {}


def container_field(c: ContainerRef, *keys: str) -> Field:
    return lookup(c.spec, c.path, *keys)


def effective_security_context(pod: PodView, c: ContainerRef, key: str) -> Field:
    """A setting a container inherits from the pod unless it sets it itself (runAsUser, runAsGroup)."""
    own = container_field(c, "securityContext", key)
    if own.state is not State.UNSET:
        return own
    return pod.field("securityContext", key)


def object_labels(resource: K8sObject) -> jv.JSONMap:
    return jv.as_map(resource.metadata.get("labels")) or {}


_QUANTITY = re.compile(
    r"(?P<sign>[+-]?)(?P<number>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
    r"(?:[eE][+-]?[0-9]+|Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?"
)


def quantity_is_set(value: object) -> bool:
    """A resource quantity that limits something: positive, and well-formed (else the API refuses it)."""
    if type(value) is int or type(value) is float:
        return value > 0
    if not isinstance(value, str):
        return False
    m = _QUANTITY.fullmatch(value.strip())
    return m is not None and m["sign"] != "-" and float(m["number"]) > 0
