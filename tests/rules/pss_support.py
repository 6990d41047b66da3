"""Helpers for the Pod Security Standards tests: build pods, evaluate them at a level, summarise findings."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from dutyguard.core.evaluate import evaluate
from dutyguard.core.model import Finding
from dutyguard.core.policy import Policy, PSSLevel
from dutyguard.core.rule import RuleRegistry
from dutyguard.rules import pss
from dutyguard.sources.kubernetes import K8sObject

REGISTRY = RuleRegistry(pss.rules())
BASELINE = PSSLevel.BASELINE
RESTRICTED = PSSLevel.RESTRICTED

Doc = dict[str, Any]


def merge(base: Mapping[str, Any], change: Mapping[str, Any]) -> Doc:
    """A deep copy of ``base`` with ``change`` merged in (mappings recursively, anything else replaced)."""
    out: Doc = copy.deepcopy(dict(base))
    for key, value in change.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def container(name: str = "app", **fields: Any) -> Doc:
    """A container that passes every restricted check; ``fields`` are merged in."""
    base: Doc = {
        "name": name,
        "image": "registry.example/app:1.0",
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    }
    return merge(base, fields)


def spec(*containers: Doc, **fields: Any) -> Doc:
    """A pod spec that passes every restricted check; ``fields`` are merged in."""
    base: Doc = {
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": list(containers) or [container()],
    }
    return merge(base, fields)


def pod(pod_spec: Doc | None = None, *, annotations: Mapping[str, Any] | None = None, name: str = "p") -> Doc:
    meta: Doc = {"name": name, "namespace": "ns"}
    if annotations is not None:
        meta["annotations"] = dict(annotations)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": pod_spec if pod_spec is not None else spec(),
    }


def findings(doc: Mapping[str, Any], level: PSSLevel, policy: Policy | None = None) -> list[Finding]:
    pol = policy or Policy(pss_level=level)
    ev = evaluate(REGISTRY, pol, [K8sObject(file="t.yaml", doc=doc)])
    assert ev.errors == (), ev.errors
    return list(ev.findings)


def hits(
    doc: Mapping[str, Any], level: PSSLevel, policy: Policy | None = None
) -> set[tuple[str, str | None]]:
    """(rule id, offending field) of every finding."""
    return {(f.rule_id, f.location.field) for f in findings(doc, level, policy)}


def rule_hits(doc: Mapping[str, Any], level: PSSLevel, rule_id: str) -> list[Finding]:
    return [f for f in findings(doc, level) if f.rule_id == rule_id]


def admission_object(path: Path) -> Doc:
    """The object of a kubewarden test AdmissionRequest (or AdmissionReview).

    The fixtures often trim ``apiVersion``/``kind`` from the object; the API server always sends them,
    so they are restored from the request's ``kind``.
    """
    data = json.loads(path.read_text())
    request = data.get("request", data)
    obj: Doc = dict(request["object"])
    gvk = request.get("kind") or {}
    if "kind" not in obj:
        obj["kind"] = gvk["kind"]
    if "apiVersion" not in obj:
        group, version = gvk.get("group", ""), gvk.get("version", "v1")
        obj["apiVersion"] = f"{group}/{version}" if group else version
    return obj


def by_rule(found: Iterable[Finding]) -> dict[str, list[tuple[str | None, str | None]]]:
    """Rule id -> sorted (container, field) pairs."""
    out: dict[str, list[tuple[str | None, str | None]]] = {}
    for f in found:
        out.setdefault(f.rule_id, []).append((f.location.container, f.location.field))
    return {k: sorted(v, key=lambda t: (t[0] or "", t[1] or "")) for k, v in out.items()}
