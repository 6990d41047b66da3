"""The tamper-evident audit trail: hash-chained entries, signed Merkle checkpoints, offline verify.

Nothing is imported here (the modules below need SQLAlchemy or cryptography, and a scan must
not pay for them); import the module you need. The interface, as the server uses it:

``dutyguard.audit.entry``
    ``AuditEvent(actor, roles, action, object, outcome, state_digest=None, details={})`` —
    validated on construction (:class:`~dutyguard.audit.errors.AuditValueError`): no control
    characters, bounded lengths, ``details`` a mapping of canonical-JSON values (no floats), at
    most 16 KiB. ``Outcome`` = ``success`` | ``refused`` | ``failed``. ``AuditEntry(seq, ts,
    event, prev_hash, entry_hash)``; ``parse_leaf(bytes)`` decodes a leaf strictly.

``dutyguard.audit.tables``
    ``audit_entries``, ``audit_checkpoints`` on ``dutyguard.db.metadata``;
    ``append_only_ddl(dialect)`` / ``drop_append_only_ddl(dialect)`` — triggers refusing UPDATE,
    DELETE and TRUNCATE, plus (PostgreSQL) the chain-step function ``dutyguard_audit_append``;
    installed by ``metadata.create_all`` and executed by the Alembic migration that creates the
    tables; ``drop_append_function_ddl(dialect)`` removes the function. A connection checks once
    whether the function exists (and again after a failed call), so creating it later needs a
    reconnect to be used; dropping it fails one transaction, then appends go on without it.

``dutyguard.audit.log``
    ``append(conn, event, now) -> AuditEntry`` inside the caller's open transaction (the entry
    commits with the change it records). PostgreSQL: READ COMMITTED; ``append`` takes the chain's
    advisory lock (in the chain-step function when present: one round trip). SQLite: the transaction must have begun with ``BEGIN IMMEDIATE``.
    ``transaction(engine)`` opens such a transaction on a plain engine (WAL, ``synchronous=FULL``).
    ``maybe_checkpoint(conn, signer, every_n, now, max_age=None)`` / ``checkpoint(conn, signer, now)`` sign the
    head and Merkle root after verifying the entries they cover (``AuditIntegrityError`` if the
    stored chain was tampered with: fail closed). ``head``, ``entries(conn, after, limit)``,
    ``checkpoints``, ``latest_checkpoint``, ``prove_inclusion(conn, seq, size) -> InclusionProof``.

``dutyguard.audit.signing``
    ``Signer`` / ``Verifier`` (Ed25519; ``key_id`` = SHA-256 of the raw public key),
    ``load_or_create_key(path)`` (file 0600, created atomically; group/other-readable refused),
    ``load_public_key(path)``, ``parse_public_key(bytes)`` (PEM or ``ed25519:<base64>``).

``dutyguard.audit.checkpoint``
    ``Checkpoint(size, head, root, ts, key_id)``, ``SignedCheckpoint`` (``to_line`` /
    ``from_line`` / ``verify(keys)``), ``sign_checkpoint``.

``dutyguard.audit.export``
    ``export(conn, binary_out, now) -> ExportSummary``: header, checkpoints, entries, one
    canonical JSON line each (format in the module docstring and docs/audit.md).

``dutyguard.audit.verify``
    ``verify_export(path_or_binary_stream, trusted_keys, known=()) -> VerifyReport`` and
    ``verify_database(conn, trusted_keys, now, known=())``. ``VerifyReport.ok``,
    ``first_bad_seq``, ``problems`` (``Problem(kind, seq, last_seq, detail, line)`` with kind
    ``edited | deleted | inserted | reordered | truncated | rewritten | bad_checkpoint``),
    ``signed_size``, ``unsigned_entries``, ``to_json()`` for ``--format json``. Hostile files
    raise ``ExportFormatError`` / ``LimitExceeded`` (both ``InputError``) naming the line. The
    report types live in ``dutyguard.audit.report`` (re-exported by ``verify``); the second,
    diagnosing pass in the private ``_diagnose``.

``dutyguard.audit.merkle``
    RFC 6962/9162 hashing, ``Frontier``, inclusion and consistency proofs and their verifiers.

``dutyguard.audit.canonical``
    ``canonical_json(value) -> bytes`` (RFC 8785 for integers, strings, bools, null, arrays,
    objects), ``loads_strict(bytes)``.

There is deliberately no function that updates or deletes an entry, and no duty that could
call one.
"""
