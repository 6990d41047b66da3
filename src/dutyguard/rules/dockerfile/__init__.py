"""Dockerfile rules (pack ``dockerfile``): how an image is built, checked before it is built.

Every rule reads the parsed :class:`~dutyguard.sources.dockerfile.Dockerfile`: stages, instructions
with ARG/ENV substitution applied, and RUN text split into simple commands. Rules therefore match
*commands* (``sudo`` as a program, ``-k`` as an option of curl), never substrings of a line, and a
finding points at the physical line of the offending command, even inside a continued RUN or a heredoc.

The rules live by theme: ``image`` (base images, registries, the ``# syntax`` frontend), ``users``
(the final USER, sudo, file modes, privileged build steps), ``secrets``, ``remote`` (ADD of URLs,
downloads piped into interpreters), ``verification`` (TLS and package signatures), ``packages``
(package managers) and ``hygiene`` (health check, SSH, what BuildKit refuses). The helpers they share
are in the private modules: ``_base`` (metadata), ``_instructions`` (which instructions to look at),
``_commands`` (commands in context, their options) and ``_managers`` (package managers).

Decisions that differ from peers (Checkov, Trivy, hadolint), each also asserted in the tests:

- Image-level rules (USER, HEALTHCHECK, EXPOSE, package caches) look at the final stage and the
  stages it is built ``FROM``: a builder stage whose files are only copied out does not shape the
  image's user, ports or leftover caches. ``USER`` set in a parent stage is inherited.
- ``ARG NAME value`` declares two build arguments without defaults (BuildKit's reading): it sets
  nothing, so it is not reported as setting ``NAME``. Checkov's regexes report it.
- A RUN whose quoting is broken (an unterminated quote) is a shell syntax error: nothing after the
  broken quote runs, so nothing there is reported.
- Secrets: names are matched by tokens (``DB_PASSWORD``, ``API_KEY``, ``GITHUB_TOKEN``, but not
  ``PASSWORD_FILE``, ``TOKEN_URL``, ``GPG_KEY``); an ARG without a default is still reported (its
  value lands in the image history and provenance) at a lower severity, like BuildKit's own check.
  Every stage is checked: a literal secret in a builder stage is still in the Dockerfile and the cache.
- ``sudo`` is reported where it is a command (also behind ``env``/``xargs`` and inside ``sh -c``),
  not where it is text (``echo "use sudo"``), as hadolint does and unlike Checkov's substring match.
- ``update`` left alone is reported for the package managers whose ``update`` refreshes an index
  (apt, apk) and for ``zypper refresh``; ``yum``/``dnf update`` upgrades packages and stands alone.
"""

from __future__ import annotations

from dutyguard.core.rule import AnyRule
from dutyguard.rules.dockerfile._base import PACK
from dutyguard.rules.dockerfile.hygiene import InvalidInstruction, NoHealthcheck, SshPort, SshServer
from dutyguard.rules.dockerfile.image import UnpinnedBaseImage, UntrustedFrontend, UntrustedRegistry
from dutyguard.rules.dockerfile.packages import (
    AptInstallRecommends,
    InstallMissingYes,
    PackageCacheLeft,
    PackageUpdateAlone,
    PackageUpgrade,
    UnpinnedPackages,
)
from dutyguard.rules.dockerfile.remote import AddInsteadOfCopy, AddRemoteSource, PipeToShell
from dutyguard.rules.dockerfile.secrets import (
    PasswordInImage,
    SecretFileCopied,
    SecretInEnvOrArg,
    secret_name,
)
from dutyguard.rules.dockerfile.users import InsecureBuildStep, RootUser, Sudo, UnsafeFilePermissions
from dutyguard.rules.dockerfile.verification import TlsVerificationDisabled, UnverifiedPackages

__all__ = ["PACK", "rules", "secret_name"]


def rules() -> list[AnyRule]:
    return [
        RootUser(),
        UnpinnedBaseImage(),
        UntrustedRegistry(),
        UntrustedFrontend(),
        AddRemoteSource(),
        AddInsteadOfCopy(),
        SecretInEnvOrArg(),
        SecretFileCopied(),
        PasswordInImage(),
        PipeToShell(),
        Sudo(),
        UnsafeFilePermissions(),
        InsecureBuildStep(),
        TlsVerificationDisabled(),
        UnverifiedPackages(),
        NoHealthcheck(),
        SshPort(),
        SshServer(),
        InstallMissingYes(),
        AptInstallRecommends(),
        PackageCacheLeft(),
        PackageUpgrade(),
        PackageUpdateAlone(),
        UnpinnedPackages(),
        InvalidInstruction(),
    ]
