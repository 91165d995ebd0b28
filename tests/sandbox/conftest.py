"""One sandbox server for the sandbox tests; each test gets its own key, so its own account."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import stripe

from tests.support.sandbox import RunningSandbox, new_test_key
from tests.support.sandbox import stripe_sandbox as stripe_sandbox  # the shared fixture


@pytest.fixture(scope="session")
def sandbox_server(stripe_sandbox: RunningSandbox) -> RunningSandbox:
    return stripe_sandbox


@pytest.fixture
def api_key() -> str:
    return new_test_key()


@pytest.fixture
def client(sandbox_server: RunningSandbox, api_key: str) -> stripe.StripeClient:
    return sandbox_server.client(api_key)


@pytest.fixture
def control(sandbox_server: RunningSandbox) -> Iterator[object]:
    yield sandbox_server.control
    # Faults are server-wide: never leak them into the next test.
    sandbox_server.control.clear_faults()
    sandbox_server.control.rate_limit(None)
    sandbox_server.control.webhook_faults()
