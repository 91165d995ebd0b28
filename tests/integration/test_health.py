from __future__ import annotations

from tests.conftest import ApiEnv, problem_code


async def test_health_and_unknown_route(api: ApiEnv) -> None:
    response = await api.client.get("/healthz")
    assert response.json() == {"status": "ok"}
    missing = await api.get("/no-such-thing")
    assert missing.status_code == 404
    assert problem_code(missing) == "route_not_found"
