"""The control plane server: settings, storage, API, authentication and authorization.

Layout (one module per concern; the app factory wires them):

- ``settings``: the frozen :class:`~dutyguard.server.settings.Settings` (flags and
  ``DUTYGUARD_*`` at the edge; insecure combinations refused);
- ``db``: engines for SQLite (WAL, ``BEGIN IMMEDIATE`` for writes) and PostgreSQL, and the
  Alembic migrations packaged in ``migrations/``;
- ``tables`` / ``store``: the tables on ``dutyguard.db.metadata`` and every query;
- ``tokens`` / ``auth``: API tokens (HMAC-SHA-256 of a 256-bit secret) and who is calling;
- ``authz``: the one module that decides every request (routes declare duties; default deny);
- ``auditing``: how every change and every refusal becomes an audit entry in its transaction;
- ``routes/``: one router per resource under ``/api/v1``; ``problems``: RFC 9457 errors;
- ``bootstrap``: the one-time admin token and the demo organisation;
- ``app``: ``create_app(settings)``.

Nothing is imported here, so importing the package costs nothing until the server is used.
"""
