"""Roles and bindings read strictly into immutable values, and RBAC's own matching semantics.

Matching follows the Kubernetes RBAC authorizer: ``*`` matches every API group, resource or verb;
a resource ``*`` also matches every subresource and ``*/x`` matches subresource ``x`` of any
resource; an empty ``resourceNames`` matches every object, otherwise only the names listed (a
``create`` of a top-level resource has no name yet, so a name-restricted rule never allows it);
a Role, and a ClusterRole bound by a RoleBinding, grants nothing on cluster-scoped resources.

Reading is fail-closed: what the API server would reject (a scalar where a list belongs, a
non-string entry, an unknown field, a rule without verbs) is a :class:`Problem` that
``rbac.malformed`` reports. The rest of the object is still read as generously as its author
could have meant it (a scalar ``verbs: "*"`` counts as ``["*"]``), so a typo never hides a grant.
"""

from __future__ import annotations

import enum
import heapq
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Final

from dutyguard.core import jsonview as jv
from dutyguard.core.model import JSONPath
from dutyguard.sources.kubernetes import K8sObject

RBAC_GROUP: Final = "rbac.authorization.k8s.io"
ROLE_KINDS: Final = frozenset({"Role", "ClusterRole"})
BINDING_KINDS: Final = frozenset({"RoleBinding", "ClusterRoleBinding"})
PRIVILEGED_NAMESPACES: Final = frozenset({"kube-system"})
"""Namespaces that hold admin-equivalent service accounts (DOMAIN §4 "priv ns")."""

MAX_PROBLEMS_PER_FIELD: Final = 5
"""A field with a million bad entries is one problem with a count, not a million findings."""

_RULE_FIELDS: Final = ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs")


class _AnyName:
    """Marker: "some object", whatever its name (a name-restricted rule still counts)."""

    def __repr__(self) -> str:
        return "ANY_NAME"


ANY_NAME: Final = _AnyName()
Name = str | None | _AnyName
"""The object a request names: a name, ``None`` for "every object" (only an unrestricted rule
counts), or :data:`ANY_NAME`."""


class Reach(enum.Enum):
    """Where a role's grants apply: decides cluster-scoped resources and the severity of some rules."""

    NAMESPACE = "namespace"
    PRIVILEGED = "privileged namespace"
    CLUSTER = "cluster"

    @property
    def cluster_scoped(self) -> bool:
        """Whether cluster-scoped resources (nodes, CRDs, ClusterRoles ...) can be granted."""
        return self is Reach.CLUSTER

    @property
    def wide(self) -> bool:
        """Whether a privileged namespace (kube-system) is within reach."""
        return self is not Reach.NAMESPACE


def namespace_reach(namespace: str | None) -> Reach:
    return Reach.PRIVILEGED if namespace in PRIVILEGED_NAMESPACES else Reach.NAMESPACE


@dataclass(frozen=True, slots=True)
class Problem:
    """Something the API server would refuse, at ``path`` inside the object."""

    message: str
    path: JSONPath


@dataclass(frozen=True, slots=True)
class PolicyRule:
    """One entry of a role's ``rules``, as sets. ``origin`` names the role (set in the scan-wide view)."""

    index: int
    api_groups: frozenset[str]
    resources: frozenset[str]
    verbs: frozenset[str]
    resource_names: frozenset[str]
    non_resource_urls: frozenset[str]
    origin: str = ""

    @property
    def label(self) -> str:
        return f"{self.origin} rules[{self.index}]" if self.origin else f"rules[{self.index}]"

    @property
    def full_wildcard(self) -> bool:
        """``*`` verbs on ``*`` resources of ``*`` groups, on every object: everything."""
        return (
            "*" in self.verbs and "*" in self.resources and "*" in self.api_groups and not self.resource_names
        )

    def allows_verb(self, verb: str) -> bool:
        return verb in self.verbs or "*" in self.verbs

    def allows_group(self, group: str) -> bool:
        return group in self.api_groups or "*" in self.api_groups

    def allows_resource(self, resource: str) -> bool:
        if "*" in self.resources or resource in self.resources:
            return True
        _, slash, sub = resource.partition("/")
        return bool(slash) and f"*/{sub}" in self.resources

    def allows_any_resource_of(self, group: str) -> bool:
        """Some top-level resource of ``group`` (a group whose every resource matters, like
        Gatekeeper's constraints): ``*``, or any resource named under that exact group."""
        if not self.allows_group(group):
            return False
        if "*" in self.resources:
            return True
        return group in self.api_groups and any("/" not in r for r in self.resources)

    def allows_name(self, name: Name) -> bool:
        if isinstance(name, _AnyName):
            return True
        if not self.resource_names:
            return True
        return name is not None and name in self.resource_names


def request_name(verb: str, resource: str, name: Name) -> Name:
    """The name a request carries: a ``create`` of a top-level resource has none yet."""
    if name is ANY_NAME and verb == "create" and "/" not in resource:
        return ""
    return name


@dataclass(frozen=True, slots=True)
class Selector:
    """A label selector of an ``aggregationRule`` (empty: matches every ClusterRole)."""

    labels: tuple[tuple[str, str], ...] = ()
    expressions: tuple[tuple[str, str, tuple[str, ...]], ...] = ()

    @property
    def everything(self) -> bool:
        return not self.labels and not self.expressions

    def matches(self, labels: Mapping[str, str]) -> bool:
        if any(labels.get(k) != v for k, v in self.labels):
            return False
        for key, op, values in self.expressions:
            present = key in labels
            if op == "In" and not (present and labels[key] in values):
                return False
            if op == "NotIn" and present and labels[key] in values:
                return False
            if op == "Exists" and not present:
                return False
            if op == "DoesNotExist" and present:
                return False
        return True

    def describe(self) -> str:
        if self.everything:
            return "{} (every ClusterRole)"
        parts = [f"{k}={v}" for k, v in self.labels]
        parts += [f"{k} {op} ({', '.join(v)})" if v else f"{k} {op}" for k, op, v in self.expressions]
        return ", ".join(parts)


@dataclass(frozen=True, slots=True)
class RoleView:
    kind: str
    name: str
    namespace: str | None
    rules: tuple[PolicyRule, ...]
    labels: tuple[tuple[str, str], ...] = ()
    aggregation: tuple[Selector, ...] | None = None
    """``None``: not aggregated; else the selectors whose ClusterRoles its rules are made of."""
    problems: tuple[Problem, ...] = ()

    @property
    def reach(self) -> Reach:
        return Reach.CLUSTER if self.kind == "ClusterRole" else namespace_reach(self.namespace)

    @property
    def title(self) -> str:
        return f"{self.kind} {self.name}"


@dataclass(frozen=True, slots=True)
class Subject:
    index: int
    kind: str
    name: str
    namespace: str | None
    """For a ServiceAccount: its namespace (a RoleBinding's own when unset); otherwise ``None``."""

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.kind, self.namespace or "", self.name)

    def describe(self) -> str:
        if self.kind == "ServiceAccount":
            return f"ServiceAccount {self.namespace or '(namespace of the apply)'}/{self.name}"
        return f"{self.kind} {self.name}"


@dataclass(frozen=True, slots=True)
class BindingView:
    kind: str
    name: str
    namespace: str | None
    role_kind: str | None
    role_name: str | None
    subjects: tuple[Subject, ...]
    problems: tuple[Problem, ...] = ()

    @property
    def reach(self) -> Reach:
        return Reach.CLUSTER if self.kind == "ClusterRoleBinding" else namespace_reach(self.namespace)

    @property
    def title(self) -> str:
        return f"{self.kind} {self.name}"

    def scope(self) -> str:
        if self.kind == "ClusterRoleBinding":
            return "cluster-wide"
        return f"in namespace {self.namespace}" if self.namespace else "in the namespace of the apply"


def is_rbac(obj: K8sObject) -> bool:
    return obj.kind in ROLE_KINDS | BINDING_KINDS and obj.api_version.startswith(f"{RBAC_GROUP}/")


def role_view(obj: K8sObject) -> RoleView | None:
    """The role ``obj`` declares (``None`` for any other object). Computed once per object."""
    if obj.kind not in ROLE_KINDS or not is_rbac(obj):
        return None
    return obj.memo(role_view, lambda: _read_role(obj))


def binding_view(obj: K8sObject) -> BindingView | None:
    if obj.kind not in BINDING_KINDS or not is_rbac(obj):
        return None
    return obj.memo(binding_view, lambda: _read_binding(obj))


# --- reading ------------------------------------------------------------------------------------
def type_name(value: object) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", int: "a number"}.get(
        type(value), type(value).__name__
    )


def clip(items: Iterable[object], n: int = 5) -> str:
    """A readable, bounded rendering of names, in a stable order (hostile lists can be huge)."""
    names = [str(x) for x in items]
    shown = ", ".join(s[:80] for s in heapq.nsmallest(n, names))
    return f"{shown}, … (+{len(names) - n})" if len(names) > n else shown


def _strings(value: object, path: JSONPath, what: str, problems: list[Problem]) -> frozenset[str]:
    if value is None:
        return frozenset()
    if isinstance(value, str):
        problems.append(Problem(f"{what} is a string, expected a list (read as [{value[:80]!r}])", path))
        return frozenset((value,))
    seq = jv.as_list(value)
    if seq is None:
        problems.append(Problem(f"{what} is {type_name(value)}, expected a list of strings", path))
        return frozenset()
    out: set[str] = set()
    bad = 0
    for i, item in enumerate(seq):
        if isinstance(item, str):
            out.add(item)
            continue
        bad += 1
        if bad <= MAX_PROBLEMS_PER_FIELD:
            problems.append(Problem(f"{what}[{i}] is {type_name(item)}, expected a string", (*path, i)))
    if bad > MAX_PROBLEMS_PER_FIELD:
        problems.append(Problem(f"{what}: {bad - MAX_PROBLEMS_PER_FIELD} more entries are not strings", path))
    return frozenset(out)


def _read_rule(index: int, value: object, namespaced: bool, problems: list[Problem]) -> PolicyRule | None:
    path: JSONPath = ("rules", index)
    m = jv.as_map(value)
    if m is None:
        problems.append(Problem(f"rules[{index}] is {type_name(value)}, expected a mapping", path))
        return None
    unknown = [k for k in m if k not in _RULE_FIELDS]
    if unknown:
        problems.append(
            Problem(
                f"rules[{index}] has unknown field(s) {clip(map(str, unknown))} (ignored by the API)", path
            )
        )
    fields = {
        key: _strings(m.get(key), (*path, key), f"rules[{index}].{key}", problems) for key in _RULE_FIELDS
    }
    rule = PolicyRule(
        index=index,
        api_groups=fields["apiGroups"],
        resources=fields["resources"],
        verbs=fields["verbs"],
        resource_names=fields["resourceNames"],
        non_resource_urls=fields["nonResourceURLs"],
    )
    where = f"rules[{index}]"
    if not rule.verbs:
        problems.append(Problem(f"{where} has no verbs", (*path, "verbs")))
    if rule.non_resource_urls:
        if namespaced:
            problems.append(
                Problem(f"{where}: a Role cannot grant nonResourceURLs", (*path, "nonResourceURLs"))
            )
        if rule.api_groups or rule.resources or rule.resource_names:
            problems.append(
                Problem(f"{where} mixes nonResourceURLs with resources", (*path, "nonResourceURLs"))
            )
    else:
        if not rule.api_groups:
            problems.append(Problem(f"{where} names resources but no apiGroups", (*path, "apiGroups")))
        if not rule.resources:
            problems.append(Problem(f"{where} names no resources", (*path, "resources")))
    return rule


def _read_labels(obj: K8sObject, problems: list[Problem]) -> tuple[tuple[str, str], ...]:
    raw = obj.metadata.get("labels")
    labels = jv.as_map(raw)
    if raw is not None and labels is None:
        problems.append(
            Problem(f"metadata.labels is {type_name(raw)}, expected a mapping", ("metadata", "labels"))
        )
    return tuple((k, v) for k, v in (labels or {}).items() if isinstance(v, str))


def _read_selector(value: object, path: JSONPath, problems: list[Problem]) -> Selector:
    """A selector we cannot read selects everything (fail closed: the role may hold anything)."""
    m = jv.as_map(value)
    if m is None:
        problems.append(Problem(f"selector is {type_name(value)}, read as selecting every ClusterRole", path))
        return Selector()
    labels_raw = m.get("matchLabels")
    labels = jv.as_map(labels_raw)
    if labels_raw is not None and (labels is None or not all(isinstance(v, str) for v in labels.values())):
        problems.append(Problem("matchLabels cannot be read: taken as selecting every ClusterRole", path))
        return Selector()
    exprs: list[tuple[str, str, tuple[str, ...]]] = []
    for i, e in jv.items(m, ("matchExpressions",)):
        em = jv.as_map(e)
        key = jv.as_str(em.get("key")) if em else None
        op = jv.as_str(em.get("operator")) if em else None
        vals = jv.as_list(em.get("values")) if em else None
        if (
            em is None
            or key is None
            or op not in ("In", "NotIn", "Exists", "DoesNotExist")
            or (vals is not None and not all(isinstance(v, str) for v in vals))
        ):
            problems.append(
                Problem(f"matchExpressions[{i}] cannot be read: taken as selecting every ClusterRole", path)
            )
            return Selector()
        exprs.append((key, op, tuple(str(v) for v in vals or ())))
    return Selector(tuple(sorted((k, str(v)) for k, v in (labels or {}).items())), tuple(exprs))


def _read_role(obj: K8sObject) -> RoleView:
    problems: list[Problem] = []
    namespaced = obj.kind == "Role"
    raw = obj.doc.get("rules")
    rules: list[PolicyRule] = []
    seq = jv.as_list(raw)
    if raw is not None and seq is None:
        problems.append(Problem(f"rules is {type_name(raw)}, expected a list", ("rules",)))
    for i, item in enumerate(seq or ()):
        rule = _read_rule(i, item, namespaced, problems)
        if rule is not None:
            rules.append(rule)
    aggregation: tuple[Selector, ...] | None = None
    agg_raw = obj.doc.get("aggregationRule")
    if agg_raw is not None:
        path: JSONPath = ("aggregationRule",)
        if namespaced:
            problems.append(Problem("a Role cannot aggregate", path))
        agg = jv.as_map(agg_raw)
        selectors_raw = agg.get("clusterRoleSelectors") if agg is not None else None
        selectors = jv.as_list(selectors_raw)
        if agg is None or selectors is None:
            problems.append(
                Problem("aggregationRule cannot be read: taken as selecting every ClusterRole", path)
            )
            aggregation = (Selector(),)
        else:
            aggregation = tuple(
                _read_selector(s, (*path, "clusterRoleSelectors", i), problems)
                for i, s in enumerate(selectors)
            )
    return RoleView(
        kind=obj.kind,
        name=obj.name or "",
        namespace=obj.namespace,
        rules=tuple(rules),
        labels=_read_labels(obj, problems),
        aggregation=aggregation,
        problems=tuple(problems),
    )


def _read_binding(obj: K8sObject) -> BindingView:
    problems: list[Problem] = []
    ref_raw = obj.doc.get("roleRef")
    ref = jv.as_map(ref_raw)
    role_kind = role_name = None
    if ref is None:
        what = "missing" if ref_raw is None else type_name(ref_raw)
        problems.append(Problem(f"roleRef is {what}, expected a mapping", ("roleRef",)))
    else:
        role_kind = jv.as_str(ref.get("kind"))
        role_name = jv.as_str(ref.get("name")) or None
        allowed = ("ClusterRole",) if obj.kind == "ClusterRoleBinding" else ("Role", "ClusterRole")
        if role_kind not in allowed:
            problems.append(
                Problem(
                    f"roleRef.kind {ref.get('kind')!r} is not one of {', '.join(allowed)}",
                    ("roleRef", "kind"),
                )
            )
            role_kind = None
        if role_name is None:
            problems.append(Problem("roleRef.name is missing or not a string", ("roleRef", "name")))
        group = ref.get("apiGroup")
        if group is not None and group != RBAC_GROUP:
            problems.append(
                Problem(f"roleRef.apiGroup {group!r} is not {RBAC_GROUP}", ("roleRef", "apiGroup"))
            )
    return BindingView(
        kind=obj.kind,
        name=obj.name or "",
        namespace=obj.namespace,
        role_kind=role_kind,
        role_name=role_name,
        subjects=tuple(_read_subjects(obj, problems)),
        problems=tuple(problems),
    )


def _read_subjects(obj: K8sObject, problems: list[Problem]) -> Iterator[Subject]:
    raw = obj.doc.get("subjects")
    seq = jv.as_list(raw)
    if raw is not None and seq is None:
        problems.append(Problem(f"subjects is {type_name(raw)}, expected a list", ("subjects",)))
        return
    for i, item in enumerate(seq or ()):
        path: JSONPath = ("subjects", i)
        m = jv.as_map(item)
        if m is None:
            problems.append(Problem(f"subjects[{i}] is {type_name(item)}, expected a mapping", path))
            continue
        kind = jv.as_str(m.get("kind"))
        name = jv.as_str(m.get("name"))
        ns = jv.as_str(m.get("namespace"))
        if kind not in ("User", "Group", "ServiceAccount"):
            problems.append(
                Problem(
                    f"subjects[{i}].kind {m.get('kind')!r} is not User, Group or ServiceAccount",
                    (*path, "kind"),
                )
            )
        if not name:
            problems.append(Problem(f"subjects[{i}] has no name", (*path, "name")))
        if kind == "ServiceAccount" and not ns and obj.kind == "ClusterRoleBinding":
            problems.append(
                Problem(f"subjects[{i}]: a ServiceAccount needs a namespace here", (*path, "namespace"))
            )
        if kind is None or name is None:
            continue
        # An unknown kind never matches a request, but it is still reported (above) and kept, so
        # rules that look at names (system:anonymous ...) see it: fail closed.
        sa_ns = (ns or obj.namespace) if kind == "ServiceAccount" else None
        yield Subject(index=i, kind=kind, name=name, namespace=sa_ns)
