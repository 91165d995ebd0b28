""" "Connect with Stripe": start, the sandbox's consent page, the callback, and its refusals."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.billing.oauth import verify_state
from app.main import create_app
from app.settings import Settings
from tests.conftest import ApiEnv, problem_code
from tests.support.billing import browse, path_of, query_of
from tests.support.sandbox import new_test_key

RETURN_URL = "https://host.example/settings/stripe?tab=billing"


@pytest.fixture(scope="session")
def connect_settings(settings: Settings) -> Settings:
    return msgspec.structs.replace(
        settings, stripe_connect_client_id="ca_tollgate_test", stripe_connect_secret_key=new_test_key()
    )


@pytest.fixture(scope="session")
async def connect_client(connect_settings: Settings) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(app=create_app(connect_settings)) as client:
        yield client


@pytest.fixture
def connect_api(api: ApiEnv, connect_client: AsyncTestClient[Litestar]) -> ApiEnv:
    return ApiEnv(connect_client, api.created)


async def _consent(connect_api: ApiEnv, mode: str, decision: str = "approve") -> str:
    """Start, approve on the sandbox's page, come back through the callback: where we end up."""
    started = await connect_api.ok(
        "get", f"/integrations/stripe/oauth/start?mode={mode}&returnUrl={RETURN_URL}"
    )
    authorize = started["url"]
    args = query_of(authorize)
    assert args["client_id"] == "ca_tollgate_test" and args["scope"] == "read_write"
    assert args["redirect_uri"] == "http://testserver.local/integrations/stripe/oauth/callback"
    page = await browse("GET", authorize)
    assert page.status_code == 200
    consent = await browse(
        "POST", authorize.split("?")[0], data={**args, "decision": decision, "business_name": "Oauth Ltd"}
    )
    assert consent.status_code in (302, 303)
    assert urlsplit(consent.headers["location"]).path == "/integrations/stripe/oauth/callback"
    back = await connect_api.client.get(path_of(consent.headers["location"]), follow_redirects=False)
    assert back.status_code == 303, back.text
    return back.headers["location"]


async def test_connect_with_stripe(connect_api: ApiEnv, connect_settings: Settings) -> None:
    location = await _consent(connect_api, "TEST")
    assert location.startswith("https://host.example/settings/stripe?tab=billing&")
    result = query_of(location)
    assert result["stripeConnected"] == "true"
    integration = await connect_api.ok("get", "/integrations/stripe")
    assert integration["integrationId"] == result["integrationId"]
    assert integration["mode"] == "TEST" and integration["status"] == "ACTIVE"
    assert integration["accountName"] == "Oauth Ltd"
    assert integration["webhookEndpointId"].startswith("we_")


async def test_denied_wrong_mode_and_bad_state(connect_api: ApiEnv, connect_settings: Settings) -> None:
    denied = query_of(await _consent(connect_api, "TEST", decision="deny"))
    assert denied["stripeConnected"] == "false" and denied["error"] == "access_denied"
    # The sandbox only issues test keys: a Live connection is refused like a pasted test key.
    wrong = query_of(await _consent(connect_api, "LIVE"))
    assert wrong == {"tab": "billing", "stripeConnected": "false", "error": "stripe_key_mode_mismatch"}
    assert (await connect_api.get("/integrations/stripe")).status_code == 404

    started = await connect_api.ok(
        "get", f"/integrations/stripe/oauth/start?mode=TEST&returnUrl={RETURN_URL}"
    )
    state = started["state"]
    assert verify_state(connect_settings, state) is not None
    assert verify_state(connect_settings, state, now=started_expiry(started) + 1) is None, "states expire"
    tampered = state[:-2] + ("AA" if not state.endswith("AA") else "BB")
    for bad in (tampered, "nonsense", ""):
        response = await connect_api.client.get(
            "/integrations/stripe/oauth/callback", params={"code": "ac_x", "state": bad}
        )
        assert response.status_code == 400


def started_expiry(started: dict) -> float:
    from datetime import datetime

    return datetime.fromisoformat(started["expiresAt"].replace("Z", "+00:00")).timestamp()


async def test_start_refusals(api: ApiEnv, connect_api: ApiEnv) -> None:
    unconfigured = await api.get(f"/integrations/stripe/oauth/start?mode=TEST&returnUrl={RETURN_URL}")
    assert unconfigured.status_code == 422 and problem_code(unconfigured) == "stripe_connect_not_configured"
    sandbox = await connect_api.get(f"/integrations/stripe/oauth/start?mode=SANDBOX&returnUrl={RETURN_URL}")
    assert sandbox.status_code == 400 and problem_code(sandbox) == "invalid_mode"
    bad_return = await connect_api.get("/integrations/stripe/oauth/start?mode=TEST&returnUrl=ftp://x")
    assert bad_return.status_code == 400
    no_key = await connect_api.client.get(
        f"/api/v1/integrations/stripe/oauth/start?mode=TEST&returnUrl={RETURN_URL}"
    )
    assert no_key.status_code == 401
