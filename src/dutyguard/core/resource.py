"""What sources produce and rules consume.

A resource knows how to turn a path inside itself into a :class:`Location` and what makes it
the same thing across runs (its identity, used for fingerprints). Concrete resource types live
with the source that makes them (``dutyguard.sources.*``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

from dutyguard.core.model import JSONPath, Location, render_path

if TYPE_CHECKING:
    from dutyguard.core.rule import Violation


class Resource(ABC):
    """Base of every resource type. Implementations are immutable."""

    __slots__ = ()

    @property
    @abstractmethod
    def source(self) -> str:
        """Display name of the input this came from (a path, ``-``, an AdmissionReview uid)."""

    @abstractmethod
    def locate(self, path: JSONPath, container: str | None = None) -> Location:
        """The location of ``path`` (or its closest existing parent) inside this resource."""

    @abstractmethod
    def identity(self) -> tuple[str, ...]:
        """What names this resource independently of line numbers (for fingerprints)."""

    @property
    def namespace(self) -> str | None:
        """The Kubernetes namespace this resource declares, if any (selects its Pod Security level)."""
        return None

    def fingerprint_parts(self, violation: Violation) -> tuple[str, ...]:
        """What distinguishes one violation from another inside this resource.

        The default (field path, container, key) suits structured documents; resources whose
        paths shift when lines are inserted (Dockerfile instructions, text lines) override it
        to use only ``violation.key``.
        """
        return (render_path(violation.path), violation.container or "", violation.key)
