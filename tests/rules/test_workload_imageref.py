"""Image reference parsing and registry allow-lists: the helper a registry policy stands on."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dutyguard.errors import ConfigError
from dutyguard.rules.workload.imageref import (
    ImageRef,
    ImageReferenceError,
    RegistryPattern,
    allowed_by,
    parse_allow_list,
    parse_image,
    parse_registry_pattern,
)

SHA = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("text", "registry", "repository", "tag", "digest", "explicit"),
    [
        # Docker Hub: implied registry, official images under library/
        ("nginx", "docker.io", "library/nginx", None, None, False),
        ("nginx:1.25", "docker.io", "library/nginx", "1.25", None, False),
        ("bitnami/redis:7.2", "docker.io", "bitnami/redis", "7.2", None, False),
        ("docker.io/nginx", "docker.io", "library/nginx", None, None, True),
        ("index.docker.io/library/nginx:1", "docker.io", "library/nginx", "1", None, True),
        ("DOCKER.IO/nginx", "docker.io", "library/nginx", None, None, True),
        # a first component with '.', ':' or 'localhost' is a registry; a port is not a tag
        ("ghcr.io/acme/app:v1", "ghcr.io", "acme/app", "v1", None, True),
        ("registry.example.com:5000/team/app", "registry.example.com:5000", "team/app", None, None, True),
        (
            "registry.example.com:5000/team/app:2.0",
            "registry.example.com:5000",
            "team/app",
            "2.0",
            None,
            True,
        ),
        ("localhost/app", "localhost", "app", None, None, True),
        ("localhost:5000/app:dev", "localhost:5000", "app", "dev", None, True),
        ("[::1]:5000/app", "[::1]:5000", "app", None, None, True),
        # an upper-case first component is a registry too (Docker's rule)
        ("Registry/app", "registry", "app", None, None, True),
        # digests, with and without a tag
        (f"nginx@{SHA}", "docker.io", "library/nginx", None, SHA, False),
        (f"ghcr.io/acme/app:1.2@{SHA}", "ghcr.io", "acme/app", "1.2", SHA, True),
        ("a.io/x@sha512:" + "0" * 128, "a.io", "x", None, "sha512:" + "0" * 128, True),
        # separators inside path components
        ("quay.io/a_b/c__d/e-f.g:t_1.2-3", "quay.io", "a_b/c__d/e-f.g", "t_1.2-3", None, True),
    ],
)
def test_parse_image(
    text: str, registry: str, repository: str, tag: str | None, digest: str | None, explicit: bool
) -> None:
    ref = parse_image(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest, ref.explicit_registry) == (
        registry,
        repository,
        tag,
        digest,
        explicit,
    )


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (None, "not a string"),
        (42, "not a string"),
        ("", "empty"),
        (" nginx", "whitespace"),
        ("nginx\n", "whitespace"),
        ("ngi nx", "whitespace"),
        ("nginx\x00", "whitespace or control"),
        ("Nginx", "invalid repository"),  # upper case in the path (single component: not a registry)
        ("docker.io/Library/nginx", "invalid repository"),
        ("a.io/-x", "invalid repository"),
        ("a.io/x-", "invalid repository"),
        ("a.io/x___y", "invalid repository"),
        ("a.io//x", "invalid repository"),
        ("a.io/x/", "invalid repository"),
        ("nginx:", "invalid tag"),
        ("nginx:-x", "invalid tag"),
        ("nginx:" + "a" * 129, "invalid tag"),
        ("nginx@sha256:123456", "64 lower-case hex"),  # the short digests of Checkov's examples
        ("nginx@sha256:" + "A" * 64, "64 lower-case hex"),
        ("nginx@md5:" + "a" * 32, "unsupported digest"),
        ("nginx@" + "a" * 64, "unsupported digest"),
        ("nginx@sha256:" + "a" * 64 + "@sha256:" + "a" * 64, "64 lower-case hex"),
        ("-bad.io/x", "invalid registry"),
        ("bad.io:port/x", "invalid registry"),
        ("bad.io:123456/x", "invalid registry"),
        ("[zz]:5/x", "invalid registry"),
        (":1.0", "no name"),
        ("a" * 300, "longer than 255"),
        ("a" * 2000, "longer than 1024"),
    ],
)
def test_invalid_references_are_refused(text: object, reason: str) -> None:
    with pytest.raises(ImageReferenceError, match=reason):
        parse_image(text)


def test_tag_and_latest_semantics() -> None:
    assert parse_image("nginx").effective_tag == "latest"
    assert parse_image("nginx:latest").effective_tag == "latest"
    assert parse_image("nginx:LATEST").effective_tag == "LATEST"  # tags are case-sensitive
    assert parse_image(f"nginx:latest@{SHA}").effective_tag is None  # the digest wins
    assert parse_image(f"nginx@{SHA}").pinned
    assert not parse_image("nginx:1.25").pinned


@given(
    registry=st.sampled_from(["", "docker.io/", "ghcr.io/", "reg.example.com:5000/", "localhost/"]),
    path=st.lists(
        st.from_regex(r"[a-z0-9]{1,8}(?:[._-][a-z0-9]{1,8})?", fullmatch=True), min_size=1, max_size=4
    ),
    tag=st.one_of(st.none(), st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True)),
    digest=st.one_of(st.none(), st.from_regex(r"[a-f0-9]{64}", fullmatch=True)),
)
def test_str_round_trips(registry: str, path: list[str], tag: str | None, digest: str | None) -> None:
    text = registry + "/".join(path) + (f":{tag}" if tag else "") + (f"@sha256:{digest}" if digest else "")
    ref = parse_image(text)
    assert parse_image(str(ref)) == ImageRef(
        ref.registry, ref.repository, ref.tag, ref.digest, explicit_registry=True
    )
    assert ref.tag == tag
    assert ref.digest == (f"sha256:{digest}" if digest else None)


@given(st.text(max_size=300))
def test_arbitrary_text_parses_or_is_refused(text: str) -> None:
    try:
        ref = parse_image(text)
    except ImageReferenceError:
        return
    assert ref.registry == ref.registry.lower()
    assert "/" in ref.repository or ref.registry != "docker.io"


# --- allow-lists ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "pattern"),
    [
        ("ghcr.io", RegistryPattern("ghcr.io")),
        ("GHCR.io/", RegistryPattern("ghcr.io")),
        ("ghcr.io/acme", RegistryPattern("ghcr.io", "acme")),
        ("ghcr.io/acme/", RegistryPattern("ghcr.io", "acme")),
        ("registry.example.com:5000/team/sub", RegistryPattern("registry.example.com:5000", "team/sub")),
        ("index.docker.io/library", RegistryPattern("docker.io", "library")),
        ("*.dkr.ecr.eu-west-1.amazonaws.com", RegistryPattern("*.dkr.ecr.eu-west-1.amazonaws.com")),
        ("localhost:5000", RegistryPattern("localhost:5000")),
    ],
)
def test_parse_registry_pattern(entry: str, pattern: RegistryPattern) -> None:
    assert parse_registry_pattern(entry) == pattern


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ("", "empty"),
        ("nginx", "not a registry host"),  # a bare name is a Docker Hub repository, not a registry
        ("library/nginx", "not a registry host"),
        ("https://ghcr.io", "without a scheme"),
        (f"ghcr.io/acme/app@{SHA}", "not an image"),
        ("ghcr.io/Acme", "invalid repository prefix"),
        ("ghcr.io/acme/*", "invalid repository prefix"),
        ("*.a.io:x", "not a registry host"),
        ("*.io", "wildcard needs a domain name"),  # a whole top-level domain is no allow-list
        ("*.localhost", "wildcard needs a domain name"),
        ("*.[::1]", "wildcard needs a domain name"),
        ("ghcr .io", "not an image"),
    ],
)
def test_bad_allow_list_entries_are_config_errors(entry: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=reason):
        parse_registry_pattern(entry)


@pytest.mark.parametrize(
    ("allow", "image", "allowed"),
    [
        (["ghcr.io"], "ghcr.io/anyone/app:1", True),
        (["ghcr.io"], "ghcr.io.evil.com/app:1", False),  # a prefix of the host is not the host
        (["ghcr.io"], "evilghcr.io/app:1", False),
        (["ghcr.io"], "ghcr.io:443/app:1", False),  # a port makes a different image name
        (["ghcr.io/acme"], "ghcr.io/acme/app:1", True),
        (["ghcr.io/acme"], "ghcr.io/acme:1", True),
        (["ghcr.io/acme"], "ghcr.io/acme-evil/app:1", False),  # whole components only
        (["ghcr.io/acme"], "ghcr.io/acmeco/app:1", False),
        (["ghcr.io/acme/team"], "ghcr.io/acme/app:1", False),
        (["docker.io"], "nginx:1.25", True),  # short names are Docker Hub
        (["docker.io/library"], "nginx:1.25", True),
        (["docker.io/library"], "bitnami/redis:7", False),
        (["docker.io/bitnami"], "bitnami/redis:7", True),
        (["index.docker.io"], "docker.io/bitnami/redis:7", True),
        (["registry.example.com"], "nginx", False),  # not qualified: Docker Hub, not ours
        (["*.example.com"], "a.example.com/x", True),
        (["*.example.com"], "a.b.example.com/x", True),
        (["*.example.com"], "example.com/x", False),  # the wildcard needs a subdomain
        (["*.example.com"], "evilexample.com/x", False),
        (["*.example.com"], "a.example.com:5000/x", False),
        (["*.example.com:5000"], "a.example.com:5000/x", True),
        (["*.dkr.ecr.eu-west-1.amazonaws.com/team"], "1234.dkr.ecr.eu-west-1.amazonaws.com/team/app:1", True),
        (
            ["*.dkr.ecr.eu-west-1.amazonaws.com/team"],
            "1234.dkr.ecr.eu-west-1.amazonaws.com/other/app:1",
            False,
        ),
        (["localhost:5000"], "localhost:5000/app", True),
        (["localhost:5000"], "localhost/app", False),
        (["quay.io", "ghcr.io/acme"], "ghcr.io/acme/x", True),
        (["quay.io", "ghcr.io/acme"], "gcr.io/acme/x", False),
    ],
)
def test_allow_list_matching(allow: list[str], image: str, allowed: bool) -> None:
    assert (allowed_by(parse_image(image), parse_allow_list(allow)) is not None) is allowed


def test_allow_list_parse_names_the_bad_entry() -> None:
    with pytest.raises(ConfigError, match="'nginx'"):
        parse_allow_list(["ghcr.io", "nginx"])
