"""Deploy-time enforcement: a Kubernetes validating admission webhook on the gate's decision core.

Public interface:

``dutyguard.admission.review``
    ``read_review(bytes, limits)`` (bounded, strict ``admission.k8s.io/v1`` parsing) ->
    ``AdmissionRequest``; ``AdmissionResponse``; ``ReviewError`` (carries the HTTP status and,
    when known, the uid).
``dutyguard.admission.decide``
    ``Decider(registry, fail_mode, cluster).decide(request, view) -> Decision``: the object through
    a ``dutyguard.core.evaluate.Evaluator`` (one per verified state) with the gate's registry, then deny / warn / audit and
    exceptions; ``response_for(uid, decision)``.
``dutyguard.admission.state``
    ``EnforcementState``, ``StateProvider`` / ``StateView``, ``FailMode``, ``builtin_state()``.
``dutyguard.admission.signed``
    ``SignedStateProvider`` (pull, verify with ``dutyguard.trust``, cache, refresh, expiry),
    ``HttpFetch``, ``AdmissionExceptions`` (the gate's exception matcher per request context).
``dutyguard.admission.app`` / ``serve``
    the raw ASGI app (``/validate``, ``/healthz``, ``/readyz``, ``/metrics``); ``assemble(WebhookConfig)``
    and ``serve`` (uvicorn over ``tls.ReloadingTLS``).
``dutyguard.admission.namespaces``
    ``NamespaceWatcher`` (``--namespace-labels``: list + watch namespaces, bounded, fail closed) and
    its ``NamespaceCache``; ``Decider(namespaces=...)`` evaluates label-selected Pod Security levels
    exactly when a namespace's labels are known, the strictest that could apply otherwise.
``dutyguard.admission.attestations``
    the optional image rule's index: ``load_index(DIR)`` (``--state`` mode) and
    ``PulledAttestations`` (pulled with the state, every entry verified, refused as a whole,
    last verified set kept and cached).
``dutyguard.admission.audit``
    ``AuditShipper``: batched decisions to the control plane, off the request path; a batch
    keeps its id on every retry; 401/403 hold the spool, malformed batches are dropped loudly.
``dutyguard.admission.journal``
    ``--spool-dir``: must-send decisions journaled before ``record`` returns, the batch in flight
    saved before its first POST and resent with its id after a crash; one process per directory.
``dutyguard.admission.manifest`` / ``certs``
    the Kubernetes objects that run the webhook; a CA and serving certificate.

See docs/admission.md.
"""
