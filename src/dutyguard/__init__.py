"""dutyguard: security controls automated everywhere, owned by Security."""

__version__ = "0.1.0"
