from __future__ import annotations

from tests.conftest import ApiEnv, problem_code


async def test_allowed_origins_are_validated_and_per_environment(api: ApiEnv, other_api: ApiEnv) -> None:
    env = await api.ok("get", "/environment")
    assert env["id"] == api.created.environment_id
    assert env["publishableKey"] == api.created.publishable_key
    assert env["allowedOrigins"] == []
    assert "serverKey" not in env
    updated = await api.ok(
        "patch",
        "/environment",
        {"allowedOrigins": ["https://app.example.com/", "http://localhost:3000", "https://app.example.com"]},
    )
    assert updated["allowedOrigins"] == ["https://app.example.com", "http://localhost:3000"]
    bad = await api.patch(
        "/environment", {"allowedOrigins": ["https://ok.example.com", "javascript:alert(1)"]}
    )
    assert bad.status_code == 400
    assert problem_code(bad) == "invalid_origin"
    assert bad.json()["param"] == "allowedOrigins[1]"
    assert (await api.ok("get", "/environment"))["allowedOrigins"] == [
        "https://app.example.com",
        "http://localhost:3000",
    ]
    assert (await other_api.ok("get", "/environment"))["allowedOrigins"] == []
