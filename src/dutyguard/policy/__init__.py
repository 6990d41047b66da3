"""Security-owned policy as code: the ``PolicyBundle`` document.

Public interface (what the CLI, the gate and the server use):

``dutyguard.policy.parse``
    ``load_bundle(path, registry)``, ``parse_bundle_text(text, source, registry)`` (YAML, with
    line numbers), ``parse_bundle(value, source, registry)`` (a JSON value, e.g. the payload of
    a signed bundle), each raising :class:`~dutyguard.policy.errors.PolicyBundleError` that lists
    every problem by field path and line; ``lint_bundle(bundle, source)`` for the checks against
    the shipped governance data (approver roles).
``dutyguard.policy.model``
    ``PolicyBundle`` (``digest``, ``canonical_json()``, ``to_policy(stage, source)``), ``Stage``,
    ``StageActions``, ``BundleScope``, ``PodSecurity``, ``ExceptionPolicy``.

The document format is described in ``docs/policy-and-exceptions.md`` and published as the JSON
Schema ``dutyguard/data/policy-bundle.schema.json``.
"""
