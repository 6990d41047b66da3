"""One admission decision: the same evaluation the CI gate runs, then admission's actions.

The object of the request becomes a :class:`~dutyguard.sources.kubernetes.K8sObject` (no
lines: the same value a manifest produces) and goes through
:class:`dutyguard.core.evaluate.Evaluator` with the registry the gate uses. What differs from the
gate is only what happens to each finding: the enforced state maps it to deny / warn / audit,
and an approved exception from the signed snapshot waives it, exactly as in CI.

Which requests are evaluated follows pod-security-admission, so a webhook in ``Fail`` mode
never wedges a cluster on requests that cannot make a workload less safe:

* CREATE and UPDATE of Pods and of every kind with a pod template;
* Pod subresources that carry a Pod (``ephemeralcontainers``, and any subresource we do not
  know, which fails safe); the read/exec-like ones (``exec``, ``status``, ``binding``…) are
  not evaluated;
* an UPDATE that leaves the pod template and its security annotations unchanged (labels,
  finalizers, replicas, a deletion in progress) is allowed without evaluation: nothing it
  changes can be a finding;
* DELETE and CONNECT are not evaluated.

Anything else that reaches the webhook (a kind it does not know, a missing object, an object
whose kind contradicts the request) is denied with a message saying what was wrong.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from dutyguard.admission.namespaces import LabelledPolicies
from dutyguard.admission.review import AdmissionRequest, AdmissionResponse, Operation
from dutyguard.admission.state import (
    Action,
    EnforcementState,
    FailMode,
    StateView,
    Subject,
    builtin_state,
)
from dutyguard.core import jsonview as jv
from dutyguard.core.evaluate import Evaluator
from dutyguard.core.model import Finding, Waiver
from dutyguard.core.policy import Policy
from dutyguard.core.resource import Resource
from dutyguard.core.rule import RuleRegistry
from dutyguard.errors import DutyguardError
from dutyguard.limits import DEFAULT_LIMITS
from dutyguard.sources.kubernetes import POD_SPEC_PATHS, K8sObject, objects_from_value

if TYPE_CHECKING:
    from dutyguard.admission.namespaces import NamespaceLabelSource

# (API group, kind) -> resource name, for every kind the webhook evaluates.
EVALUATED_KINDS: Mapping[tuple[str, str], str] = {
    ("", "Pod"): "pods",
    ("", "PodTemplate"): "podtemplates",
    ("", "ReplicationController"): "replicationcontrollers",
    ("apps", "Deployment"): "deployments",
    ("apps", "StatefulSet"): "statefulsets",
    ("apps", "DaemonSet"): "daemonsets",
    ("apps", "ReplicaSet"): "replicasets",
    ("batch", "Job"): "jobs",
    ("batch", "CronJob"): "cronjobs",
}
assert {k for _, k in EVALUATED_KINDS} == set(POD_SPEC_PATHS), "every pod-template kind is evaluated"

# pod-security-admission's ignoredPodSubresources: none of them can change the pod spec.
IGNORED_POD_SUBRESOURCES = frozenset(
    {"exec", "attach", "binding", "eviction", "log", "portforward", "proxy", "status"}
)
SECURITY_ANNOTATION_PREFIXES = (
    "seccomp.security.alpha.kubernetes.io/",
    "container.seccomp.security.alpha.kubernetes.io/",
    "container.apparmor.security.beta.kubernetes.io/",
)
APP_LABELS = ("app.kubernetes.io/name", "app")

MAX_DENIED_RULES_SHOWN = 10
MAX_WARNINGS = 10
WARNING_CHARS = 120
"""Kubernetes asks webhooks to keep warnings within 120 characters (longer ones may be cut)."""
MESSAGE_CHARS = 4000


class Outcome(enum.Enum):
    ALLOW = "allow"
    DENY = "deny"
    SKIP = "skip"
    """Allowed without evaluation (an operation or subresource that cannot change a pod)."""


@dataclass(frozen=True, slots=True)
class Decision:
    outcome: Outcome
    reason: str = ""
    """Why, when no finding explains it (not evaluated, fail-closed, malformed object)."""
    subject: Subject | None = None
    state: EnforcementState | None = None
    policy: Policy | None = None
    denied: tuple[Finding, ...] = ()
    warned: tuple[Finding, ...] = ()
    audited: tuple[Finding, ...] = ()
    waived: tuple[tuple[Finding, Waiver], ...] = ()
    errors: tuple[str, ...] = ()
    extra_warnings: tuple[str, ...] = ()
    state_problem: str = ""
    namespace_labels: str = ""
    """Where the bundle selects Pod Security levels by namespace label and the webhook reads
    labels: ``known``, or ``unknown: why`` (the strictest level that could apply was used)."""

    @property
    def allowed(self) -> bool:
        return self.outcome is not Outcome.DENY

    @property
    def exception_ids(self) -> tuple[str, ...]:
        return tuple(sorted({w.exception_id for _, w in self.waived}))


@dataclass(frozen=True, slots=True)
class Decider:
    """Everything a decision needs besides the request; immutable, safe to share."""

    registry: RuleRegistry
    fail_mode: FailMode = FailMode.DENY
    cluster: str = ""
    fallback: EnforcementState = field(default_factory=builtin_state)
    """What :attr:`FailMode.DEFAULT_POLICY` enforces."""
    namespaces: NamespaceLabelSource | None = None
    """Namespace labels from the API server (``--namespace-labels``); ``None``: not read."""
    _by_labels: LabelledPolicies = field(
        default_factory=LabelledPolicies, init=False, repr=False, compare=False
    )
    """The policy per (namespace, label set) and state: a relabel is a new key, never a stale hit."""
    _evaluators: dict[int, tuple[EnforcementState, Evaluator]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    """One evaluator per state (by identity; the state is kept so its id cannot be reused)."""

    def _evaluator(self, state: EnforcementState, policy: Policy) -> Evaluator:
        hit = self._evaluators.get(id(state))
        if hit is not None and hit[0] is state:
            return hit[1]
        if len(self._evaluators) >= 8:  # states are replaced on each verified pull: keep the new ones
            self._evaluators.clear()
        ev = Evaluator(self.registry, policy)
        self._evaluators[id(state)] = (state, ev)
        return ev

    def decide(self, request: AdmissionRequest, view: StateView) -> Decision:
        try:
            return self._decide(request, view)
        except DutyguardError as e:
            return Decision(Outcome.DENY, reason=e.diagnostics())

    def _decide(self, request: AdmissionRequest, view: StateView) -> Decision:
        if request.operation not in (Operation.CREATE, Operation.UPDATE):
            return Decision(Outcome.SKIP, reason=f"{request.operation.value} is not evaluated")
        gk = (request.kind.group, request.kind.kind)
        if gk not in EVALUATED_KINDS:
            return Decision(
                Outcome.DENY,
                reason=(
                    f"dutyguard evaluates Pods and workloads with a pod template; it received "
                    f"{_gk(request)} ({request.resource.resource}), which the webhook configuration "
                    "should not send it"
                ),
            )
        sub = request.sub_resource
        if sub:
            if gk != ("", "Pod"):
                return Decision(Outcome.SKIP, reason=f"subresource {sub!r} does not change the pod template")
            if sub in IGNORED_POD_SUBRESOURCES:
                return Decision(Outcome.SKIP, reason=f"subresource {sub!r} does not change the pod spec")
        doc = request.object
        if doc is None:
            return Decision(Outcome.DENY, reason=f"{request.operation.value} request without an object")
        old = request.old_object
        updating = request.operation is Operation.UPDATE and not sub and old is not None
        if updating and old is not None and not significant_update(request.kind.kind, doc, old):
            return Decision(
                Outcome.SKIP, reason="the pod template and its security annotations are unchanged"
            )

        obj = admitted_object(request, doc)
        subject = subject_of(obj, self.cluster)

        state = view.state
        if state is None:
            return self._without_state(request, obj, subject, view)
        return self._evaluate(obj, subject, state, view.problem)

    def _without_state(
        self, request: AdmissionRequest, obj: K8sObject, subject: Subject, view: StateView
    ) -> Decision:
        problem = view.problem or "no verified policy state"
        if self.fail_mode is FailMode.DEFAULT_POLICY:
            d = self._evaluate(obj, subject, self.fallback, problem, exceptions=False)
            note = f"dutyguard: enforcing the built-in default policy (unsigned) because {problem}"
            return _with_warning(d, note)
        if self.fail_mode is FailMode.UNSAFE_ALLOW:
            return Decision(
                Outcome.ALLOW,
                reason=f"UNSAFE: allowed without evaluation because {problem}",
                subject=subject,
                extra_warnings=(_cut(f"dutyguard: UNSAFE allow, nothing was checked: {problem}"),),
                state_problem=problem,
            )
        return Decision(
            Outcome.DENY,
            reason=(
                f"dutyguard cannot verify the policy to enforce ({problem}); refusing until a verified, "
                "unexpired policy bundle is available from the control plane"
            ),
            subject=subject,
            state_problem=problem,
        )

    def _evaluate(
        self,
        obj: K8sObject,
        subject: Subject,
        state: EnforcementState,
        problem: str,
        *,
        exceptions: bool = True,
    ) -> Decision:
        if state.out_of_scope is not None:
            outside = state.out_of_scope(subject)
            if outside:
                # Not evaluated: a policy Security did not approve for this object decides nothing.
                return Decision(
                    Outcome.DENY,
                    reason=f"the policy in force ({state.label}) does not govern it: {'; '.join(outside)}",
                    subject=subject,
                    state=state,
                    state_problem=problem,
                )
        policy, labels_note = self._with_labels(state, state.policy_for(subject.namespace), subject.namespace)
        ev = self._evaluator(state, policy).evaluate_under(policy, [obj, *object_text(obj, subject)])
        if ev.errors:
            return Decision(
                Outcome.DENY,
                reason="the object could not be evaluated",
                subject=subject,
                state=state,
                policy=policy,
                errors=tuple(e.message for e in ev.errors),
                state_problem=problem,
                namespace_labels=labels_note,
            )
        denied: list[Finding] = []
        warned: list[Finding] = []
        audited: list[Finding] = []
        waived: list[tuple[Finding, Waiver]] = []
        for f in ev.findings:
            waiver = state.exceptions.match(f, subject) if exceptions else None
            if waiver is not None:
                waived.append((f, waiver))
                continue
            action = state.action_for(f, policy)
            if action is Action.DENY:
                denied.append(f)
            elif action is Action.WARN:
                warned.append(f)
            else:
                audited.append(f)
        extra: tuple[str, ...] = ()
        if state.attestations is not None:
            missing = _unattested(subject, state)
            if missing:
                return Decision(
                    Outcome.DENY,
                    reason="; ".join(missing),
                    subject=subject,
                    state=state,
                    policy=policy,
                    denied=tuple(denied),
                    warned=tuple(warned),
                    audited=tuple(audited),
                    waived=tuple(waived),
                    state_problem=problem,
                    namespace_labels=labels_note,
                )
        return Decision(
            Outcome.DENY if denied else Outcome.ALLOW,
            subject=subject,
            state=state,
            policy=policy,
            denied=tuple(denied),
            warned=tuple(warned),
            audited=tuple(audited),
            waived=tuple(waived),
            extra_warnings=extra,
            state_problem=problem,
            namespace_labels=labels_note,
        )

    def _with_labels(self, state: EnforcementState, policy: Policy, namespace: str) -> tuple[Policy, str]:
        """The namespace's exact Pod Security level when the bundle selects levels by label and
        its labels are known; otherwise ``policy`` as is, at the strictest level that could apply."""
        if self.namespaces is None or policy.label_levels is None or not namespace:
            return policy, ""
        labels = self.namespaces.lookup(namespace)
        if labels.labels is None:
            return policy, f"unknown: {labels.unknown_because}"
        return self._by_labels.policy(state, policy, namespace, labels), "known"


def _with_warning(d: Decision, note: str) -> Decision:
    from dataclasses import replace

    return replace(d, extra_warnings=(_cut(note), *d.extra_warnings))


def _unattested(subject: Subject, state: EnforcementState) -> list[str]:
    """Images that are not pinned by digest, or whose digest has no passing gate attestation."""
    from dutyguard.rules.workload.imageref import ImageReferenceError, parse_image

    index = state.attestations
    assert index is not None
    problems: list[str] = []
    for image in subject.images:
        try:
            ref = parse_image(image)
        except ImageReferenceError:
            problems.append(f"image {_cut(image, 120)!r} is not a valid image reference")
            continue
        if ref.digest is None:
            problems.append(f"image {_cut(image, 120)!r} is not pinned by digest (attestations name digests)")
        elif index.passing(ref.digest) is None:
            problems.append(f"image {ref.name}@{ref.digest} has no passing gate attestation")
    return problems


def _gk(request: AdmissionRequest) -> str:
    g = request.kind.group
    return f"{g}/{request.kind.kind}" if g else request.kind.kind


# --- the object --------------------------------------------------------------------------------


def admitted_object(request: AdmissionRequest, doc: Mapping[str, Any]) -> K8sObject:
    """The request's object as the gate would read it from a manifest.

    The API server always sends ``apiVersion``/``kind``; when a hand-built request omits them
    they are taken from the request. The namespace is the request's when the object has none
    (objects created with ``kubectl -n`` carry it only in the request). Only shallow copies are
    made; the parsed body is never mutated.
    """
    out = dict(doc)
    kind = out.get("kind")
    if kind is None:
        out["kind"] = request.kind.kind
    elif kind != request.kind.kind:
        raise _Refused(f"the object's kind {_cut(repr(kind), 80)} is not the request's {request.kind.kind!r}")
    if out.get("apiVersion") is None:
        out["apiVersion"] = request.kind.api_version
    meta = jv.as_map(out.get("metadata"))
    if meta is None:
        if out.get("metadata") is not None:
            raise _Refused("the object's metadata is not a mapping")
        meta = {}
    ns = jv.as_str(meta.get("namespace"))
    if request.namespace and not ns:
        meta = {**meta, "namespace": request.namespace}
    elif request.namespace and ns != request.namespace:
        raise _Refused(f"the object's namespace {ns!r} is not the request's {request.namespace!r}")
    if not jv.as_str(meta.get("name")) and request.name:
        meta = {**meta, "name": request.name}
    out["metadata"] = meta
    source = f"admission request {request.uid}"
    objs = objects_from_value(out, source, {}, None, DEFAULT_LIMITS)
    if len(objs) != 1:
        raise _Refused("the object is not a Kubernetes object with apiVersion and kind")
    return objs[0]


def object_text(obj: K8sObject, subject: Subject) -> Sequence[Resource]:
    """The object as text, for the rules the gate runs on every file's text (secrets).

    JSON with a line break after every item (:func:`text_of`): a manifest written that way is
    scanned identically by the gate, and line-oriented patterns see one key/value pair per line,
    as in YAML. The name is the object's identity, so a secret found again in the same workload
    keeps its fingerprint.
    """
    from dutyguard.sources.interface import InputFile
    from dutyguard.sources.text import TextSource

    text = text_of(obj.doc)
    name = f"{subject.kind}/{subject.namespace or '-'}/{subject.name or '-'}.json"
    return TextSource().load(InputFile(name=name, data=text, size=len(text), origin="file"), DEFAULT_LIMITS)


def text_of(doc: Mapping[str, Any]) -> bytes:
    """The text the secret rules read: compact JSON with a newline after each comma.

    The C encoder (``indent`` would switch to the pure-Python one, several times slower).
    """
    return json.dumps(doc, ensure_ascii=False, separators=(",\n", ": ")).encode("utf-8", "surrogatepass")


class _Refused(DutyguardError):
    """The object contradicts the request; denied with this message."""


def subject_of(obj: K8sObject, cluster: str) -> Subject:
    from dutyguard.rules.workload.imageref import ImageReferenceError, parse_image

    labels = _labels(obj)
    images: list[str] = []
    digests: list[str] = []
    for c in obj.containers():
        image = jv.as_str(c.spec.get("image"))
        if image is None:
            continue
        images.append(image)
        try:
            ref = parse_image(image)
        except ImageReferenceError:
            continue
        if ref.digest is not None:
            digests.append(ref.digest)
    owner_kind, owner_name = workload_owner(obj)
    app = next((labels[k] for k in APP_LABELS if labels.get(k)), "")
    return Subject(
        namespace=obj.namespace or "",
        kind=obj.kind,
        name=obj.name or "",
        app=app,
        labels=labels,
        images=tuple(images),
        image_digests=tuple(dict.fromkeys(digests)),
        cluster=cluster,
        owner_kind=owner_kind,
        owner_name=owner_name,
    )


def _labels(obj: K8sObject) -> dict[str, str]:
    """The pod's labels (the template's for a workload), falling back to the object's own."""
    out: dict[str, str] = {}
    for source in (jv.as_map(obj.metadata.get("labels")), _template_labels(obj)):
        if source:
            out.update({k: v for k, v in source.items() if isinstance(v, str)})
    return out


def _template_labels(obj: K8sObject) -> jv.JSONMap | None:
    p = obj.pod_meta_path
    if p is None or obj.kind == "Pod":
        return None
    return jv.as_map(jv.get(obj.doc, (*p, "labels")))


def workload_owner(obj: K8sObject) -> tuple[str, str]:
    """The top-level controller of an object, from its controller ownerReference.

    A ReplicaSet's pods name the ReplicaSet, whose name is the Deployment's plus ``-`` and the
    ``pod-template-hash`` label; a CronJob's Job names the CronJob. Ownership is what the
    creator wrote, so it is only used to *find* the workload an exception may cover, never to
    relax anything by itself.
    """
    refs = jv.as_list(obj.metadata.get("ownerReferences")) or ()
    for ref in refs:
        m = jv.as_map(ref)
        if m is None or m.get("controller") is not True:
            continue
        kind, name = jv.as_str(m.get("kind")) or "", jv.as_str(m.get("name")) or ""
        if kind == "ReplicaSet":
            labels = jv.as_map(obj.metadata.get("labels")) or {}
            h = jv.as_str(labels.get("pod-template-hash"))
            if h and name.endswith("-" + h):
                return "Deployment", name[: -len(h) - 1]
        return kind, name
    return "", ""


def _pod_template(kind: str, doc: Mapping[str, Any]) -> tuple[object, dict[str, object]]:
    spec_path = POD_SPEC_PATHS[kind]
    meta_path = (*spec_path[:-1], "metadata")
    annotations = jv.as_map(jv.get(doc, (*meta_path, "annotations"))) or {}
    security = {
        k: v for k, v in annotations.items() if any(k.startswith(p) for p in SECURITY_ANNOTATION_PREFIXES)
    }
    return jv.get(doc, spec_path), security


def significant_update(kind: str, new: Mapping[str, Any], old: Mapping[str, Any]) -> bool:
    """Whether an UPDATE changes anything a rule reads: the pod spec or its security annotations.

    Stricter than pod-security-admission (which compares only images and seccomp annotations):
    any change to the spec is evaluated.
    """
    if kind not in POD_SPEC_PATHS:
        return True
    return _pod_template(kind, new) != _pod_template(kind, old)


# --- the response ------------------------------------------------------------------------------


def _cut(text: str, limit: int = WARNING_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _by_rule(findings: Sequence[Finding]) -> dict[str, list[Finding]]:
    out: dict[str, list[Finding]] = {}
    for f in findings:
        out.setdefault(f.rule_id, []).append(f)
    return out


def _what(d: Decision) -> str:
    s = d.subject
    if s is None:
        return "the request"
    where = f"{s.namespace}/{s.name}" if s.namespace else s.name
    return f"{s.kind} {where or '(unnamed)'}"


def deny_message(d: Decision) -> str:
    """What the user sees in ``kubectl``: the rules, the fields and how to fix them."""
    parts: list[str] = []
    state = d.state
    if d.denied and state is not None and d.policy is not None:
        rules = _by_rule(d.denied)
        parts.append(
            f"dutyguard denied {_what(d)} under {state.label} (Pod Security {d.policy.pss_level.value}): "
            f"{len(d.denied)} finding(s) in {len(rules)} rule(s)"
        )
        for i, (rule_id, found) in enumerate(rules.items()):
            if i == MAX_DENIED_RULES_SHOWN:
                parts.append(f"... and {len(rules) - i} more rule(s); run `dutyguard scan` on the manifest")
                break
            fields = ", ".join(dict.fromkeys(f.location.field or "(whole object)" for f in found))
            head = found[0]
            more = f" (+{len(found) - 1} more)" if len(found) > 1 else ""
            parts.append(
                f"[{rule_id}] ({head.severity.value}) {fields}: {head.message}{more}. Fix: {head.remediation}"
            )
    if d.reason:
        parts.append(f"dutyguard denied {_what(d)}: {d.reason}")
    note = _labels_unknown(d)
    if note:
        parts.append(note)
    for err in d.errors:
        parts.append(f"error: {err}")
    return _cut_message("\n".join(parts) or f"dutyguard denied {_what(d)}")


def _cut_message(text: str) -> str:
    return text if len(text) <= MESSAGE_CHARS else text[: MESSAGE_CHARS - 1] + "…"


def warnings_of(d: Decision) -> tuple[str, ...]:
    """One warning per rule, each within Kubernetes' 120 characters, at most ``MAX_WARNINGS``."""
    out: list[str] = list(d.extra_warnings)
    note = _labels_unknown(d)
    if note:
        out.append(_cut(note))
    for f, w in d.waived:
        until = f" until {w.expires.date().isoformat()}"
        out.append(_cut(f"[{f.rule_id}] waived by exception {w.exception_id}{until}: {f.message}"))
    rules = _by_rule(d.warned)
    for rule_id, found in rules.items():
        more = f" (+{len(found) - 1})" if len(found) > 1 else ""
        out.append(_cut(f"[{rule_id}]{more} {found[0].message}"))
    if len(out) > MAX_WARNINGS:
        rest = len(out) - (MAX_WARNINGS - 1)
        out = [
            *out[: MAX_WARNINGS - 1],
            f"dutyguard: {rest} more warning(s); run `dutyguard scan` on the manifest",
        ]
    return tuple(out)


def audit_annotations(d: Decision) -> dict[str, str]:
    """Keys the API server prefixes with the webhook name (qualified names, ≤ 63 characters)."""
    out = {"decision": d.outcome.value}
    if d.state is not None:
        out["policy"] = d.state.short_label
        out["policy-signed"] = "true" if d.state.signed else "false"
    if d.state_problem:
        out["state-problem"] = _cut(d.state_problem, 500)
    if d.denied:
        out["denied-rules"] = ",".join(_by_rule(d.denied))
    if d.waived:
        out["exceptions"] = ",".join(d.exception_ids)
    if d.reason and (d.outcome is not Outcome.ALLOW or d.state_problem):
        out["reason"] = _cut(d.reason, 500)
    if d.namespace_labels:
        out["namespace-labels"] = _cut(d.namespace_labels, 500)
    return out


def _labels_unknown(d: Decision) -> str:
    if not d.namespace_labels.startswith("unknown") or d.policy is None:
        return ""
    why = d.namespace_labels.removeprefix("unknown: ")
    return f"dutyguard: Pod Security {d.policy.pss_level.value}, the strictest that could apply: {why}"


def response_for(uid: str, d: Decision) -> AdmissionResponse:
    annotations = audit_annotations(d)
    if not d.allowed:
        return AdmissionResponse(
            uid=uid,
            allowed=False,
            message=deny_message(d),
            code=403,
            reason="Forbidden",
            audit_annotations=annotations,
        )
    return AdmissionResponse(uid=uid, allowed=True, warnings=warnings_of(d), audit_annotations=annotations)


def now_utc() -> datetime:
    from datetime import UTC

    return datetime.now(UTC)
