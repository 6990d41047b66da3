"""Trust in published state: DSSE envelopes, the keyring, the runner's verifier, attestations.

Public interface:

``dutyguard.trust.dsse``
    ``pae``, ``Envelope``, ``sign_envelope``, ``parse_envelope``, ``verify_envelope``.
``dutyguard.trust.keys``
    ``TrustedKey`` (a public key and its validity window), ``Keyring``, ``load_trust(specs)``.
``dutyguard.trust.state``
    ``PublishedBundle``, ``ExceptionSnapshot``, ``sign_bundle``, ``sign_snapshot`` (the control
    plane's side); ``TrustedState`` (the runner's side), ``StateFile``, ``default_state_file()``,
    ``BUNDLE_FILE`` / ``SNAPSHOT_FILE`` (the names ``state pull`` saves).
``dutyguard.trust.attest``
    ``Subject``, ``GatePredicate``, ``GateAttestation``, ``sign_attestation``, ``verify_attestation``.
``dutyguard.trust.errors``
    one error class per check, each with a stable ``check`` name.
"""
