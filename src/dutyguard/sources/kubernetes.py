"""Kubernetes manifests (YAML or JSON): multi-document files, ``List`` kinds, every pod-template kind.

A :class:`K8sObject` is the same value whether it came from a file (with line numbers) or
from an AdmissionReview (without): rules never know the difference.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from dutyguard.core import jsonview as jv
from dutyguard.core.model import JSONPath, Location, render_path
from dutyguard.core.resource import Resource
from dutyguard.errors import InputError
from dutyguard.limits import Limits
from dutyguard.sources.interface import InputFile, Source
from dutyguard.sources.yamldoc import load_documents

T = TypeVar("T")

POD_SPEC_PATHS: Mapping[str, JSONPath] = {
    "Pod": ("spec",),
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "ReplicationController": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
    "PodTemplate": ("template", "spec"),
}
"""Where each workload kind keeps its pod spec. Metadata is the sibling ``metadata``."""

CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")

_LIST_KINDS = frozenset({"List"})


@dataclass(frozen=True, slots=True)
class ContainerRef:
    """One container of a pod spec with the path to it (relative to the object root)."""

    list_name: str
    index: int
    path: JSONPath
    spec: jv.JSONMap
    name: str = field(init=False)
    """The container's name, or ``containers[2]`` style when it has none (rules ask often)."""

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "name", jv.as_str(self.spec.get("name")) or f"{self.list_name}[{self.index}]"
        )


@dataclass(frozen=True, slots=True, eq=False)
class K8sObject(Resource):
    file: str
    doc: jv.JSONMap
    lines: Mapping[JSONPath, int] = field(default_factory=dict)
    line: int | None = None
    base: JSONPath = ()
    """Prefix of this object inside its YAML document (``('items', 3)`` for a List item)."""
    # Derived once: every rule asks for these, many times per object.
    kind: str = field(init=False)
    name: str | None = field(init=False)
    namespace: str | None = field(init=False)
    pod_spec_path: JSONPath | None = field(init=False)
    _containers: tuple[ContainerRef, ...] = field(init=False, repr=False)
    _memo: dict[object, object] = field(init=False, repr=False, compare=False)
    """Values derived from ``doc`` by rules (see :meth:`memo`). ``doc`` never changes, so a value
    computed once is valid for every rule; concurrent fills compute the same value."""

    def __post_init__(self) -> None:
        md = jv.as_map(self.doc.get("metadata")) or {}
        kind = jv.as_str(self.doc.get("kind")) or ""
        spec_path = POD_SPEC_PATHS.get(kind)
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "name", jv.as_str(md.get("name")) or jv.as_str(md.get("generateName")))
        object.__setattr__(self, "namespace", jv.as_str(md.get("namespace")))
        object.__setattr__(self, "pod_spec_path", spec_path)
        refs: list[ContainerRef] = []
        spec = jv.as_map(jv.get(self.doc, spec_path)) if spec_path is not None else None
        if spec_path is not None and spec is not None:
            for list_name in CONTAINER_LISTS:
                for i, c in enumerate(jv.as_list(spec.get(list_name)) or ()):
                    m = jv.as_map(c)
                    if m is not None:
                        refs.append(ContainerRef(list_name, i, (*spec_path, list_name, i), m))
        object.__setattr__(self, "_containers", tuple(refs))
        object.__setattr__(self, "_memo", {})

    def memo(self, key: object, compute: Callable[[], T]) -> T:
        """``compute()`` once per key for this object (rules share derived views this way)."""
        try:
            return self._memo[key]  # type: ignore[return-value]
        except KeyError:
            value = compute()
            self._memo[key] = value
            return value

    # --- Resource -----------------------------------------------------------------------------
    @property
    def source(self) -> str:
        return self.file

    def locate(self, path: JSONPath, container: str | None = None) -> Location:
        line = self.line
        full = (*self.base, *path)
        for n in range(len(full), len(self.base), -1):
            hit = self.lines.get(full[:n])
            if hit is not None:
                line = hit
                break
        return Location(
            file=self.file,
            line=line,
            kind=self.kind,
            namespace=self.namespace,
            name=self.name,
            container=container,
            field=render_path(path) if path else None,
        )

    def identity(self) -> tuple[str, ...]:
        return (self.kind, self.namespace or "", self.name or "")

    # --- Kubernetes ---------------------------------------------------------------------------
    @property
    def api_version(self) -> str:
        return jv.as_str(self.doc.get("apiVersion")) or ""

    @property
    def metadata(self) -> jv.JSONMap:
        return jv.as_map(self.doc.get("metadata")) or {}

    @property
    def pod_meta_path(self) -> JSONPath | None:
        p = self.pod_spec_path
        return None if p is None else (*p[:-1], "metadata")

    def pod_spec(self) -> jv.JSONMap | None:
        p = self.pod_spec_path
        return None if p is None else jv.as_map(jv.get(self.doc, p))

    def pod_annotations(self) -> jv.JSONMap:
        p = self.pod_meta_path
        if p is None:
            return {}
        return jv.as_map(jv.get(self.doc, (*p, "annotations"))) or {}

    def containers(self, lists: Sequence[str] = CONTAINER_LISTS) -> Iterator[ContainerRef]:
        """Every container of the pod template, init and ephemeral ones included."""
        if lists is CONTAINER_LISTS:
            yield from self._containers
        else:
            yield from (c for c in self._containers if c.list_name in lists)


def _may_hold_object(data: bytes) -> bool:
    """Whether a file could hold a Kubernetes object, decided without parsing it.

    An object needs both ``apiVersion`` and ``kind`` keys. YAML and JSON can spell a key without
    its literal characters only through escapes in quoted strings (``"api\\x56ersion"``), which need
    a backslash — so a file with neither the two words nor any backslash cannot be a manifest and
    is not parsed (CI configs, Helm values, scanner outputs). Its text is still searched for secrets.
    """
    return (b"apiVersion" in data and b"kind" in data) or b"\\" in data


def is_manifest_name(filename: str) -> bool:
    return os.path.splitext(filename)[1].lower() in (".yaml", ".yml", ".json")


def objects_from_value(
    value: object, file: str, lines: Mapping[JSONPath, int], line: int | None, limits: Limits
) -> list[K8sObject]:
    """Kubernetes objects in one parsed document: itself, or a ``List``'s items (nested lists too)."""
    out: list[K8sObject] = []
    stack: list[tuple[object, JSONPath, int]] = [(value, (), 0)]
    while stack:
        cur, base, depth = stack.pop()
        m = jv.as_map(cur)
        if m is None or not isinstance(m.get("kind"), str) or not isinstance(m.get("apiVersion"), str):
            continue  # not a Kubernetes object (another YAML file); other sources may still read it
        if m["kind"] in _LIST_KINDS or (str(m["kind"]).endswith("List") and isinstance(m.get("items"), list)):
            if depth > 4:
                raise InputError(file, "List nested too deeply")
            items = list(jv.items(m, ("items",)))
            if len(out) + len(items) > limits.max_documents:
                raise InputError(file, f"more than {limits.max_documents} objects")
            stack.extend((item, (*base, "items", i), depth + 1) for i, item in reversed(items))
            continue
        obj_line = lines.get(base, line) if base else line
        obj = K8sObject(file=file, doc=m, lines=lines, line=obj_line, base=base)
        _check_shape(obj)
        out.append(obj)
    return out


def _check_shape(obj: K8sObject) -> None:
    """Refuse pod templates whose structure the API server would reject.

    Rules read containers through :meth:`K8sObject.containers`, which only yields mappings; a
    malformed list must therefore be an error here, or its containers would go unchecked.
    """
    spec_path = obj.pod_spec_path
    if spec_path is None or not jv.has(obj.doc, spec_path):
        return
    where = f"{obj.kind} {obj.name or '?'}"
    line = obj.locate(spec_path).line
    if jv.as_map(jv.get(obj.doc, spec_path)) is None:
        raise InputError(obj.file, f"line {line}: {where}: {render_path(spec_path)} is not a mapping")
    for list_name in CONTAINER_LISTS:
        path = (*spec_path, list_name)
        value = jv.get(obj.doc, path)
        if value is None:
            continue
        seq = jv.as_list(value)
        if seq is None:
            raise InputError(
                obj.file, f"line {obj.locate(path).line}: {where}: {render_path(path)} is not a list"
            )
        for i, c in enumerate(seq):
            if jv.as_map(c) is None:
                p = (*path, i)
                raise InputError(
                    obj.file, f"line {obj.locate(p).line}: {where}: {render_path(p)} is not a mapping"
                )


class KubernetesSource(Source):
    name = "Kubernetes YAML/JSON"
    reads_streams = True
    produces = K8sObject

    def accepts(self, filename: str) -> bool:
        return is_manifest_name(filename)

    def wants(self, f: InputFile) -> bool:
        # Files a kustomization renders are read through its rendered output instead.
        return f.origin != "kustomize-member" and super().wants(f)

    def _load(self, f: InputFile, limits: Limits) -> Sequence[K8sObject]:
        f.check_size(limits.max_file_bytes, "manifests")
        if f.is_binary:
            raise InputError(f.name, "binary data, not YAML or JSON")
        if f.origin == "file" and not _may_hold_object(f.data):
            return []
        text = f.text()
        out: list[K8sObject] = []
        for doc in load_documents(text, f.name, limits):
            out.extend(objects_from_value(doc.value, f.name, doc.lines, doc.line, limits))
        return out
