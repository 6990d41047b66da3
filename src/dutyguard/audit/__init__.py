"""The tamper-evident audit trail (placeholder docstring, completed below as the package lands)."""
