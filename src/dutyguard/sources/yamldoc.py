"""Bounded YAML/JSON loading that keeps line numbers.

libyaml's C composer builds the node graph (it refuses nesting beyond 1000 levels by itself);
we then convert nodes to plain values ourselves, iteratively bounded by depth and by a count
of visited nodes that includes every alias expansion, so an alias bomb ("billion laughs")
costs at most ``max_nodes`` steps. We never construct tagged Python objects: unknown tags
are read as their plain scalar/mapping/sequence. Duplicate mapping keys are refused: with
them, what we check and what the API server applies could differ.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import yaml

from dutyguard.core.model import JSONPath
from dutyguard.errors import InputError, LimitExceeded
from dutyguard.limits import Limits

_STR = "tag:yaml.org,2002:str"

# First characters for which YAML 1.1's implicit resolvers (bool, int, float, null, timestamp,
# merge, value, and the "yaml" tag of "!", "&", "*") can produce a non-string tag. Every other plain scalar is a string, which the
# fast path below decides without PyYAML's per-scalar regex lookups (most manifest scalars).
_MAYBE_TYPED = frozenset("-+0123456789.yYnNtTfFoO~<=!&*")

try:
    _Base: Any = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - libyaml missing: pure-Python fallback, same semantics
    _Base = yaml.SafeLoader


_SEQ = "tag:yaml.org,2002:seq"
_MAP = "tag:yaml.org,2002:map"


class _Loader(_Base):  # type: ignore[misc]
    # libyaml's composer calls these back for every node; the results are PyYAML's own (a
    # quoted or "!"-tagged scalar is a string, a collection its default tag), decided without
    # its per-scalar regular expressions wherever the first character rules them out.
    saw_merge = False
    """Whether a ``<<`` merge key was resolved: documents with one take the slower conversion."""

    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        if kind is yaml.ScalarNode:
            if not implicit[0] or (value and value[0] not in _MAYBE_TYPED):
                return _STR
            tag = super().resolve(kind, value, implicit)
            if tag == _MERGE:
                self.saw_merge = True
            return tag
        return _SEQ if kind is yaml.SequenceNode else _MAP

    # Path resolvers (``add_path_resolver``) are never registered here, so PyYAML's descend /
    # ascend hooks have nothing to do; C builtins that accept the same arguments cost a tenth
    # of a Python call, twice per node.
    descend_resolver = staticmethod(slice)
    ascend_resolver = staticmethod(tuple)


_CONSTRUCTOR = yaml.constructor.SafeConstructor()
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"
_MERGE = "tag:yaml.org,2002:merge"


@dataclass(frozen=True, slots=True)
class YamlDocument:
    value: object
    lines: dict[JSONPath, int]
    """1-based line of each mapping key / sequence item, by path."""
    line: int
    """1-based line where the document starts."""
    index: int


class _Budget:
    __slots__ = ("deadline", "limits", "nodes", "source")

    def __init__(self, source: str, limits: Limits) -> None:
        self.source = source
        self.limits = limits
        self.nodes = 0
        self.deadline = time.monotonic() + limits.file_seconds

    def step(self, depth: int) -> None:
        self.nodes += 1
        if self.nodes > self.limits.max_nodes:
            raise LimitExceeded(
                self.source,
                f"more than {self.limits.max_nodes} YAML nodes (alias bomb or oversized document)",
            )
        if depth > self.limits.max_depth:
            raise LimitExceeded(self.source, f"nesting deeper than {self.limits.max_depth} levels")
        if self.nodes & 0x3FFF == 0 and time.monotonic() > self.deadline:
            raise LimitExceeded(self.source, f"parsing took longer than {self.limits.file_seconds} s")


def _scalar(node: yaml.ScalarNode) -> object:
    tag = node.tag
    if tag == _STR:
        return node.value
    try:
        if tag == _INT:
            return _CONSTRUCTOR.construct_yaml_int(node)
        if tag == _FLOAT:
            return _CONSTRUCTOR.construct_yaml_float(node)
        if tag == _BOOL:
            return _CONSTRUCTOR.construct_yaml_bool(node)
    except (ValueError, yaml.YAMLError):
        return node.value
    if tag == _NULL:
        return None
    # timestamps, binary, custom tags: keep the text, never construct objects
    return node.value


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


class _HasMergeKeys(Exception):
    """An explicitly tagged ``!!merge`` key the loader could not see coming: convert again."""


class _Converter:
    def __init__(self, budget: _Budget, merges: bool) -> None:
        self.budget = budget
        self.merges = merges
        self.lines: dict[JSONPath, int] = {}

    def convert(self, node: yaml.Node, path: JSONPath, depth: int) -> object:
        self.budget.step(depth)
        cls = node.__class__
        if cls is yaml.ScalarNode:
            return node.value if node.tag == _STR else _scalar(node)  # type: ignore[arg-type]
        if cls is yaml.MappingNode:
            if self.merges:
                return self._merging(node, path, depth)  # type: ignore[arg-type]
            return self._mapping(node, path, depth)  # type: ignore[arg-type]
        if cls is yaml.SequenceNode:
            out_list: list[object] = []
            lines = self.lines
            for i, item in enumerate(node.value):
                p = (*path, i)
                if p not in lines:
                    lines[p] = item.start_mark.line + 1
                out_list.append(self.convert(item, p, depth + 1))
            return out_list
        raise InputError(self.budget.source, f"unsupported YAML node at line {_line(node)}")

    def _key(self, key_node: yaml.Node, seen: dict[str, object]) -> str:
        if key_node.__class__ is not yaml.ScalarNode:
            raise InputError(self.budget.source, f"line {_line(key_node)}: a mapping key must be a scalar")
        key: str = key_node.value
        if key in seen:
            raise InputError(
                self.budget.source, f"line {_line(key_node)}: duplicate key {key!r} (ambiguous: refused)"
            )
        return key

    def _mapping(self, node: yaml.MappingNode, path: JSONPath, depth: int) -> dict[str, object]:
        """A mapping of a document without merge keys (nearly all): one pass."""
        out: dict[str, object] = {}
        lines = self.lines
        budget = self.budget
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                raise _HasMergeKeys
            key = self._key(key_node, out)
            p = (*path, key)
            lines[p] = key_node.start_mark.line + 1
            if value_node.__class__ is yaml.ScalarNode and value_node.tag == _STR:
                budget.step(depth + 1)  # the common case, without a call to convert()
                out[key] = value_node.value
            else:
                out[key] = self.convert(value_node, p, depth + 1)
        return out

    def _merging(self, node: yaml.MappingNode, path: JSONPath, depth: int) -> dict[str, object]:
        # YAML merge keys: merged maps are converted first so that explicit keys (converted
        # after them) win for both the value and the recorded line; earlier merged maps win
        # over later ones.
        merged: dict[str, object] = {}
        explicit: list[tuple[yaml.Node, yaml.Node]] = []
        for key_node, value_node in node.value:
            if key_node.tag != _MERGE:
                explicit.append((key_node, value_node))
                continue
            sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
            for src in reversed(sources):
                if not isinstance(src, yaml.MappingNode):
                    raise InputError(self.budget.source, f"line {_line(src)}: merge key needs a mapping")
                merged.update(self._merging(src, path, depth + 1))
        out: dict[str, object] = {}
        for key_node, value_node in explicit:
            key = self._key(key_node, out)
            p = (*path, key)
            self.lines[p] = _line(key_node)
            out[key] = self.convert(value_node, p, depth + 1)
        for k, v in merged.items():
            out.setdefault(k, v)
        return out


def load_documents(text: str, source: str, limits: Limits) -> list[YamlDocument]:
    """Every document in ``text``; raises :class:`InputError` naming ``source`` and the line."""
    budget = _Budget(source, limits)
    docs: list[YamlDocument] = []
    loader = _Loader(text)
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:  # pragma: no cover - empty stream
                continue
            if len(docs) >= limits.max_documents:
                raise LimitExceeded(source, f"more than {limits.max_documents} YAML documents")
            conv = _Converter(budget, loader.saw_merge)
            try:
                value = conv.convert(node, (), 0)
            except _HasMergeKeys:
                conv = _Converter(budget, True)
                value = conv.convert(node, (), 0)
            docs.append(YamlDocument(value=value, lines=conv.lines, line=_line(node), index=len(docs)))
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        what = " ".join(x for x in (e.context, e.problem) if x)
        raise InputError(source, f"invalid YAML: {where}{what}") from None
    except yaml.YAMLError as e:
        raise InputError(source, f"invalid YAML: {e}") from None
    except RecursionError:
        raise LimitExceeded(source, "nesting too deep") from None
    finally:
        loader.dispose()
    return docs
