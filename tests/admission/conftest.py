from __future__ import annotations

from collections.abc import Iterator

import pytest

from dutyguard.admission.certs import CertFiles, make_certs
from tests.admission.support import SwitchableProvider, Webhook, default_app

# The control plane's own fixtures (a demo organisation on SQLite and PostgreSQL), for the tests
# that run the webhook against the real server.
from tests.server.conftest import clock, org, runtime  # noqa: F401


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertFiles:
    return make_certs(tmp_path_factory.mktemp("tls"), extra_names=("localhost", "127.0.0.1"))


@pytest.fixture(scope="session")
def provider() -> SwitchableProvider:
    return SwitchableProvider()


@pytest.fixture(scope="session")
def webhook(certs: CertFiles, provider: SwitchableProvider) -> Iterator[Webhook]:
    """One HTTPS webhook for the session; tests that change its state restore the default."""
    hook = Webhook(default_app(provider), certs)
    yield hook
    hook.close()


@pytest.fixture
def default_state(provider: SwitchableProvider) -> Iterator[SwitchableProvider]:
    from dutyguard.admission.state import builtin_state

    provider.set_state(builtin_state())
    yield provider
    provider.set_state(builtin_state())
