"""What the workload rules share besides the pod view (:mod:`dutyguard.rules._podview`).

The pod view is fail-closed: a field is unset, set or malformed, and a value we cannot read is never
taken to be a safe one.
"""

from __future__ import annotations

import re

from dutyguard.core import jsonview as jv
from dutyguard.rules._podview import Field, PodView, container_field
from dutyguard.sources.kubernetes import ContainerRef, K8sObject

PACK = "k8s"

RUNNING_CONTAINERS = ("initContainers", "containers")
"""Containers that may declare resources (the API refuses resources on ephemeral containers)."""


def as_int(value: object) -> int | None:
    """A JSON integer; ``True`` is an ``int`` in Python but never in Kubernetes."""
    return value if type(value) is int else None


def effective_security_context(pod: PodView, c: ContainerRef, key: str) -> Field:
    """A setting a container inherits from the pod unless it sets it itself (runAsUser, runAsGroup)."""
    own = container_field(c, "securityContext", key)
    if not own.unset:
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
