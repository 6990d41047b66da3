"""A typed, fail-closed view of a pod spec, shared by the Pod Security Standards and workload rules.

Manifests are untyped. Kubernetes (and pod-security-admission, which reads a typed ``corev1.PodSpec``)
sees a field as set when its pointer is non-nil: a JSON ``null`` is the same as an absent key, ``{}``
is set. So a field here is *unset* when absent or null, *set* with a value, or *malformed* when a
parent on the way is not a mapping: a value we cannot read is never taken to be a safe one.
"""

from __future__ import annotations

import enum
from abc import abstractmethod
from collections.abc import Container, Iterator
from dataclasses import dataclass
from typing import NamedTuple

from dutyguard.core import jsonview as jv
from dutyguard.core.model import JSONPath
from dutyguard.core.policy import Policy
from dutyguard.core.rule import EVERY_RULE, AnyRule, Rule, Violation
from dutyguard.sources.kubernetes import ContainerRef, K8sObject


class State(enum.Enum):
    UNSET = "unset"
    """Absent or null: the API server (and PSA) sees a nil pointer."""
    SET = "set"
    MALFORMED = "malformed"
    """A parent on the way is not a mapping; the field cannot be read, so it cannot be trusted."""


class Field(NamedTuple):
    # A NamedTuple, not a frozen dataclass: every pod rule makes a dozen of these per container,
    # and a tuple is built in half the time.
    state: State
    path: JSONPath
    """The field itself, or (MALFORMED) the parent that is not a mapping."""
    value: object = None

    @property
    def unset(self) -> bool:
        return self.state is State.UNSET

    @property
    def is_set(self) -> bool:
        return self.state is State.SET

    @property
    def malformed(self) -> bool:
        return self.state is State.MALFORMED


def lookup(start: object, start_path: JSONPath, *keys: str) -> Field:
    """Follow ``keys`` from ``start`` (found at ``start_path``) trusting no type on the way."""
    # Hot: every pod rule reads its fields through here (a dozen per container). Paths are built
    # once, at the end, and plain dicts (what parsers give) skip the Mapping check.
    cur = start
    for depth, key in enumerate(keys):
        if cur is None:
            return Field(State.UNSET, (*start_path, *keys))
        if type(cur) is not dict:
            m = jv.as_map(cur)
            if m is None:
                return Field(State.MALFORMED, (*start_path, *keys[:depth]))
            cur = m
        cur = cur.get(key)
    return Field(State.UNSET if cur is None else State.SET, (*start_path, *keys), cur)


def container_field(c: ContainerRef, *keys: str) -> Field:
    return lookup(c.spec, c.path, *keys)


@dataclass(frozen=True, slots=True)
class PodView:
    """The pod spec of a pod-bearing object (Pod, workload template, PodTemplate), with the paths
    findings are reported against."""

    resource: K8sObject
    spec: jv.JSONMap
    spec_path: JSONPath
    meta_path: JSONPath
    containers: tuple[ContainerRef, ...]
    """Every container: init, regular and ephemeral ones."""

    @classmethod
    def of(cls, resource: K8sObject) -> PodView | None:
        # Every pod rule asks for the same view of the same object: build it once per object.
        return resource.memo(cls, lambda: cls._build(resource))

    @classmethod
    def _build(cls, resource: K8sObject) -> PodView | None:
        spec_path = resource.pod_spec_path
        meta_path = resource.pod_meta_path
        spec = resource.pod_spec()
        if spec_path is None or meta_path is None or spec is None:
            return None
        return cls(resource, spec, spec_path, meta_path, tuple(resource.containers()))

    def field(self, *keys: str) -> Field:
        return lookup(self.spec, self.spec_path, *keys)

    def security_context(self, *keys: str) -> Field:
        return self.field("securityContext", *keys)

    @property
    def is_windows(self) -> bool:
        """``spec.os.name: windows``. The kubelet refuses a pod whose OS is not its own, so Linux-only
        settings (UIDs, capabilities, read-only root) cannot matter; PSA relaxes its restricted checks
        for it (``podSpec.OS != nil && podSpec.OS.Name == "windows"``, from 1.25)."""
        return self.field("os", "name").value == "windows"

    @property
    def in_user_namespace(self) -> bool:
        """``hostUsers: false``: container UIDs map to an unprivileged range on the node (PSA's
        ``relaxPolicyForUserNamespacePod``: ``HostUsers != nil && !*HostUsers``, unconditional from 1.35)."""
        return self.field("hostUsers").value is False

    def labels(self) -> jv.JSONMap:
        return jv.as_map(jv.get(self.resource.doc, (*self.meta_path, "labels"))) or {}


def _pod_bearing(resource: K8sObject) -> Container[AnyRule]:
    """Objects without a pod spec (Services, RBAC, CRDs: half of a typical scan) have nothing any
    pod rule could find; the evaluator then calls none of them."""
    return EVERY_RULE if resource.pod_spec_path is not None else ()


class PodRule(Rule[K8sObject]):
    """A check over the pod spec of any pod-bearing kind; objects without one have nothing to check."""

    target = K8sObject
    screen = staticmethod(_pod_bearing)

    def check(self, resource: K8sObject, policy: Policy) -> Iterator[Violation]:
        pod = PodView.of(resource)
        if pod is None:
            return iter(())
        return self.check_pod(pod, policy)

    @abstractmethod
    def check_pod(self, pod: PodView, policy: Policy) -> Iterator[Violation]: ...
