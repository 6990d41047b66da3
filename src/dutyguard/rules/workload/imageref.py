"""Container image references and registry allow-lists, parsed the way the container runtime does.

A reference is ``[registry/]path[:tag][@digest]`` (the grammar of distribution/reference, which
Docker, containerd and the kubelet share). Parsing is strict: anything the runtime would refuse, or
could read differently from us, is an :class:`ImageReferenceError`, and rules report it instead of
guessing. A lenient parser here would be a bypass: a reference we misread is a registry we did not
check.

Normalisation (what ``docker pull`` does):

- the first path component is a registry only if it contains ``.`` or ``:``, is ``localhost``, or
  has an upper-case letter; otherwise the registry is Docker Hub, ``docker.io``;
- ``index.docker.io`` is the legacy name of ``docker.io``;
- a Docker Hub name of one component is an official image: ``nginx`` is ``docker.io/library/nginx``;
- registry hosts compare case-insensitively; a port is part of the registry (``host`` and
  ``host:443`` are different registries, as they are different image names);
- a digest pins the content; a tag next to a digest is ignored by the runtime;
- no tag and no digest means the tag ``latest``.

CRI-O may be configured to resolve short names (``nginx``) through other search registries; we read
them as Docker Hub, like containerd and Docker. Write fully-qualified names where that matters.

An allow-list entry is ``[*.]host[:port][/path]``: the registry host (``*.`` admits any subdomain,
not the domain itself) and an optional repository prefix that matches whole path components only,
so ``ghcr.io/acme`` admits ``ghcr.io/acme/app`` but never ``ghcr.io/acme-evil/app``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass

from dutyguard.errors import ConfigError, DutyguardError

DOCKER_HUB = "docker.io"
_LEGACY_HUB = "index.docker.io"
_OFFICIAL_NAMESPACE = "library"

MAX_REFERENCE_LENGTH = 1024
"""Longest reference we parse at all (the name part may be at most 255 characters)."""
_MAX_NAME_LENGTH = 255

_PATH_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_DOMAIN_NAME = re.compile(
    r"(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9])(?:\.(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9]))*"
)
_IPV6 = re.compile(r"\[[A-Fa-f0-9:]+\]")
_PORT = re.compile(r"[0-9]{1,5}")
# go-digest only accepts the algorithms it has registered, each with its exact length.
_DIGEST_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}
_HEX = re.compile(r"[a-f0-9]+")


class ImageReferenceError(DutyguardError, ValueError):
    """A string is not an image reference the container runtime would accept unambiguously."""


@dataclass(frozen=True, slots=True)
class ImageRef:
    """A parsed, normalised image reference."""

    registry: str
    """Lower-case ``host[:port]``; ``docker.io`` for Docker Hub."""
    repository: str
    """The path inside the registry (``library/nginx``)."""
    tag: str | None
    digest: str | None
    explicit_registry: bool
    """Whether the reference named its registry (``nginx`` did not: Docker Hub is implied)."""

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.repository}"

    @property
    def pinned(self) -> bool:
        """Whether the content is fixed by a digest (tags can be moved)."""
        return self.digest is not None

    @property
    def effective_tag(self) -> str | None:
        """The tag the runtime resolves (``latest`` when none is written), or ``None`` with a digest."""
        if self.digest is not None:
            return None
        return self.tag or "latest"

    @property
    def last_component(self) -> str:
        return self.repository.rsplit("/", 1)[-1]

    def __str__(self) -> str:
        out = self.name
        if self.tag is not None:
            out += f":{self.tag}"
        if self.digest is not None:
            out += f"@{self.digest}"
        return out


def _valid_host(host: str) -> bool:
    """``host[:port]``: a DNS name or a bracketed IPv6 address, with an optional port."""
    if host.startswith("["):
        end = host.find("]")
        if end < 0 or not _IPV6.fullmatch(host[: end + 1]):
            return False
        rest = host[end + 1 :]
        return rest == "" or (rest.startswith(":") and _PORT.fullmatch(rest[1:]) is not None)
    name, sep, port = host.partition(":")
    if sep and _PORT.fullmatch(port) is None:
        return False
    return _DOMAIN_NAME.fullmatch(name) is not None


def _valid_path(path: str) -> bool:
    return all(_PATH_COMPONENT.fullmatch(part) for part in path.split("/"))


def _split_registry(name: str) -> tuple[str | None, str]:
    """Docker's splitDockerDomain: which leading component, if any, is a registry."""
    first, sep, rest = name.partition("/")
    if not sep:
        return None, name
    if "." in first or ":" in first or first == "localhost" or first.lower() != first:
        return first, rest
    return None, name


def _normalise_registry(host: str) -> str:
    host = host.lower()
    return DOCKER_HUB if host == _LEGACY_HUB else host


def parse_image(text: object) -> ImageRef:
    """Parse a container ``image`` field; raises :class:`ImageReferenceError` with the reason."""
    if not isinstance(text, str):
        raise ImageReferenceError(f"image is a {type(text).__name__}, not a string")
    return _parse(text)


@functools.lru_cache(maxsize=4096)
def _parse(text: str) -> ImageRef:
    # Cached: every image rule reads the same references (failures are not cached, and are rare).
    if not text:
        raise ImageReferenceError("image is empty")
    if len(text) > MAX_REFERENCE_LENGTH:
        raise ImageReferenceError(f"image reference longer than {MAX_REFERENCE_LENGTH} characters")
    if text != text.strip() or any(ch.isspace() or not ch.isprintable() for ch in text):
        raise ImageReferenceError("image reference contains whitespace or control characters")

    rest, at, digest = text.partition("@")
    if at:
        algorithm, sep, encoded = digest.partition(":")
        expected = _DIGEST_LENGTHS.get(algorithm)
        if not sep or expected is None:
            raise ImageReferenceError(f"unsupported digest algorithm {algorithm!r}")
        if len(encoded) != expected or _HEX.fullmatch(encoded) is None:
            raise ImageReferenceError(f"{algorithm} digest must be {expected} lower-case hex characters")
    else:
        digest = ""

    # A tag is a ':' after the last '/': an earlier ':' belongs to a registry port.
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    tag: str | None = None
    name = rest
    if colon > slash:
        name, tag = rest[:colon], rest[colon + 1 :]
        if _TAG.fullmatch(tag) is None:
            raise ImageReferenceError(f"invalid tag {tag!r}")
    if not name:
        raise ImageReferenceError("image reference has no name")
    if len(name) > _MAX_NAME_LENGTH:
        raise ImageReferenceError(f"image name longer than {_MAX_NAME_LENGTH} characters")

    host, path = _split_registry(name)
    if host is not None and not _valid_host(host):
        raise ImageReferenceError(f"invalid registry host {host!r}")
    if not _valid_path(path):
        raise ImageReferenceError(
            f"invalid repository name {path!r} (lower-case letters, digits, separators)"
        )

    registry = _normalise_registry(host) if host is not None else DOCKER_HUB
    if registry == DOCKER_HUB and "/" not in path:
        path = f"{_OFFICIAL_NAMESPACE}/{path}"
    return ImageRef(
        registry=registry,
        repository=path,
        tag=tag,
        digest=digest or None,
        explicit_registry=host is not None,
    )


@dataclass(frozen=True, slots=True)
class RegistryPattern:
    """One allow-list entry."""

    host: str
    """Lower-case ``host[:port]``, or ``*.domain[:port]`` for any subdomain."""
    path: str = ""
    """Repository prefix, whole components, no leading or trailing slash (empty: any)."""

    def matches(self, ref: ImageRef) -> bool:
        if self.host.startswith("*."):
            domain, _, port = self.host[2:].partition(":")
            ref_name, _, ref_port = ref.registry.partition(":")
            # At least one more label: "*.example.com" is not "example.com" nor "evilexample.com".
            if ref_port != port or not ref_name.endswith("." + domain):
                return False
        elif ref.registry != self.host:
            return False
        if not self.path:
            return True
        return ref.repository == self.path or ref.repository.startswith(self.path + "/")

    def __str__(self) -> str:
        return f"{self.host}/{self.path}" if self.path else self.host


def parse_registry_pattern(entry: str) -> RegistryPattern:
    """Parse an allow-list entry; raises :class:`ConfigError` naming the entry."""
    if not isinstance(entry, str):
        raise ConfigError(f"allowed registry {entry!r} is not a string")
    text = entry.strip().rstrip("/")
    if not text or len(text) > MAX_REFERENCE_LENGTH:
        raise ConfigError(f"allowed registry {entry!r} is empty or too long")
    if "://" in text:
        raise ConfigError(f"allowed registry {entry!r}: write the registry host without a scheme")
    if "@" in text or any(ch.isspace() for ch in text):
        raise ConfigError(f"allowed registry {entry!r}: a registry or repository prefix, not an image")
    host, _, path = text.partition("/")
    wildcard = host.startswith("*.")
    bare = host[2:] if wildcard else host
    if wildcard and (bare.startswith("[") or "." not in bare.partition(":")[0]):
        raise ConfigError(f"allowed registry {entry!r}: a wildcard needs a domain name (*.example.com)")
    if not _valid_host(bare) or not ("." in bare or ":" in bare or bare == "localhost"):
        raise ConfigError(
            f"allowed registry {entry!r}: {host!r} is not a registry host "
            f"(Docker Hub organisations are written {DOCKER_HUB}/<organisation>)"
        )
    if "*" in path or (path and not _valid_path(path)):
        raise ConfigError(f"allowed registry {entry!r}: invalid repository prefix {path!r}")
    norm = bare.lower() if wildcard else _normalise_registry(bare)
    return RegistryPattern(host=f"*.{norm}" if wildcard else norm, path=path)


@functools.lru_cache(maxsize=64)
def _parse_allow_list(entries: tuple[str, ...]) -> tuple[RegistryPattern, ...]:
    return tuple(parse_registry_pattern(e) for e in entries)


def parse_allow_list(entries: Iterable[str]) -> tuple[RegistryPattern, ...]:
    """Every entry parsed (cached: policies are immutable and evaluated once per resource)."""
    return _parse_allow_list(tuple(entries))


def allowed_by(ref: ImageRef, patterns: Iterable[RegistryPattern]) -> RegistryPattern | None:
    """The first pattern admitting ``ref``, or ``None``."""
    for pattern in patterns:
        if pattern.matches(ref):
            return pattern
    return None
