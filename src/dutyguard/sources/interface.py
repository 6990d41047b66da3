"""The source interface: bytes of one input in, resources out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from dutyguard.core.resource import Resource
from dutyguard.errors import DutyguardError, InputError, LimitExceeded
from dutyguard.limits import Limits


@dataclass(frozen=True, slots=True)
class InputFile:
    """One input, already read (bounded): ``data`` holds at most the read limit, ``size`` the true size."""

    name: str
    data: bytes
    size: int = -1
    origin: str = "file"
    """``file``, ``stdin``, ``kustomize`` (rendered output) or ``kustomize-member`` (a file a
    kustomization renders: read for secrets, not as a manifest on its own)."""

    def check_size(self, limit: int, what: str) -> None:
        if max(self.size, len(self.data)) > limit:
            raise LimitExceeded(self.name, f"larger than {limit} bytes, the limit for {what}")

    @property
    def is_binary(self) -> bool:
        return b"\x00" in self.data[:8192]

    def text(self) -> str:
        """Strict UTF-8 (a BOM is allowed): files we parse must be text, not a guess."""
        try:
            return self.data.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise InputError(self.name, f"not valid UTF-8 (byte {e.start})") from None


class Source(ABC):
    """Implementations write ``_load``; ``load`` turns any failure into an :class:`InputError`."""

    name: ClassVar[str]

    @abstractmethod
    def accepts(self, filename: str) -> bool:
        """Whether a file of this name is this source's input (by name only: content is untrusted)."""

    def wants(self, f: InputFile) -> bool:
        """Whether to read this input. Stdin and rendered kustomizations are manifests by default."""
        if f.origin in ("stdin", "kustomize"):
            return self.reads_streams
        return self.accepts(f.name)

    reads_streams: ClassVar[bool] = False
    """Whether stdin / rendered output is this source's input (true for manifests and secrets)."""

    produces: ClassVar[type[Resource] | None] = None
    """The resource type this source makes. A scan skips a source when no enabled rule reads its
    type (a secrets-only scan never parses YAML); ``None`` means "always read"."""

    @abstractmethod
    def _load(self, f: InputFile, limits: Limits) -> Sequence[Resource]: ...

    def load(self, f: InputFile, limits: Limits) -> Sequence[Resource]:
        try:
            return self._load(f, limits)
        except DutyguardError:
            raise
        except (ValueError, TypeError, KeyError, IndexError, RecursionError, MemoryError) as e:
            raise InputError(f.name, f"could not be read as {self.name} ({type(e).__name__}: {e})") from e
