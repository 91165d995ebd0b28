"""Environments and their keys."""

from __future__ import annotations

import re
import time

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import Conflict, InvalidRequest, Unauthorized
from app.core.keys import hash_key, key_hint, new_publishable_key, new_server_key
from app.environments.models import Environment
from app.fastread import FastReader

SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


class EnvironmentRef(msgspec.Struct, frozen=True):
    """What a request knows about the environment its key belongs to."""

    pk: int
    slug: str


class CreatedEnvironment(msgspec.Struct, rename="camel"):
    environment_id: str
    name: str
    server_key: str
    publishable_key: str


async def create_environment(session: AsyncSession, slug: str, name: str | None = None) -> CreatedEnvironment:
    if not SLUG_RE.match(slug):
        raise InvalidRequest(
            "Environment names are lower-case letters, digits and dashes.", code="invalid_slug"
        )
    if await session.scalar(select(Environment.pk).where(Environment.slug == slug)) is not None:
        raise Conflict(f"Environment '{slug}' exists already.", code="environment_exists")
    server_key, publishable_key = new_server_key(), new_publishable_key()
    session.add(
        Environment(
            slug=slug,
            name=name or slug.capitalize(),
            server_key_hash=hash_key(server_key),
            server_key_hint=key_hint(server_key),
            publishable_key=publishable_key,
        )
    )
    await session.flush()
    return CreatedEnvironment(slug, name or slug.capitalize(), server_key, publishable_key)


async def rotate_server_key(session: AsyncSession, slug: str) -> str:
    env = await session.scalar(select(Environment).where(Environment.slug == slug))
    if env is None:
        raise InvalidRequest(f"No environment '{slug}'.", code="environment_not_found")
    server_key = new_server_key()
    env.server_key_hash = hash_key(server_key)
    env.server_key_hint = key_hint(server_key)
    _key_cache.clear()
    return server_key


# hash -> (environment, cached until). Keys are looked up on every API call; a short TTL
# bounds how long a rotated key keeps working in other processes.
_key_cache: dict[str, tuple[EnvironmentRef, float]] = {}
_KEY_CACHE_SECONDS = 30.0


async def environment_for_server_key(reader: FastReader, key: str | None) -> EnvironmentRef:
    if not key:
        raise Unauthorized(
            "Send your environment's server key in the X-API-KEY header.", code="missing_api_key"
        )
    digest = hash_key(key)
    cached = _key_cache.get(digest)
    now = time.monotonic()
    if cached is not None and cached[1] > now:
        return cached[0]
    row = await reader.one(
        "SELECT pk, slug FROM environments WHERE server_key_hash = :digest", {"digest": digest}
    )
    if row is None:
        raise Unauthorized("The API key is not valid.", code="invalid_api_key")
    ref = EnvironmentRef(pk=row[0], slug=row[1])
    _key_cache[digest] = (ref, now + _KEY_CACHE_SECONDS)
    return ref


async def environment_for_publishable_key(session: AsyncSession, key: str | None) -> EnvironmentRef:
    if not key:
        raise Unauthorized("A publishable key is required.", code="missing_publishable_key")
    row = (
        await session.execute(
            select(Environment.pk, Environment.slug).where(Environment.publishable_key == key)
        )
    ).first()
    if row is None:
        raise Unauthorized("The publishable key is not valid.", code="invalid_publishable_key")
    return EnvironmentRef(pk=row.pk, slug=row.slug)


class EnvironmentOut(msgspec.Struct, rename="camel"):
    id: str
    name: str
    publishable_key: str
    server_key_hint: str
    allowed_origins: list[str]


class EnvironmentUpdate(msgspec.Struct, rename="camel", forbid_unknown_fields=True, kw_only=True):
    name: str | msgspec.UnsetType = msgspec.UNSET
    # Origins allowed to embed this environment's widgets, e.g. "https://app.example.com".
    allowed_origins: list[str] | msgspec.UnsetType = msgspec.UNSET


_ORIGIN_RE = re.compile(r"^https?://[A-Za-z0-9.-]+(:\d{1,5})?$")


def _environment_out(env: Environment) -> EnvironmentOut:
    return EnvironmentOut(
        id=env.slug,
        name=env.name,
        publishable_key=env.publishable_key,
        server_key_hint=env.server_key_hint,
        allowed_origins=list(env.allowed_origins),
    )


async def get_environment(session: AsyncSession, ref: EnvironmentRef) -> EnvironmentOut:
    env = await session.get_one(Environment, ref.pk)
    return _environment_out(env)


async def update_environment(
    session: AsyncSession, ref: EnvironmentRef, data: EnvironmentUpdate
) -> EnvironmentOut:
    env = await session.get_one(Environment, ref.pk)
    if not isinstance(data.name, msgspec.UnsetType):
        if not 1 <= len(data.name) <= 200:
            raise InvalidRequest("A name is 1 to 200 characters.", code="invalid_name", param="name")
        env.name = data.name
    if not isinstance(data.allowed_origins, msgspec.UnsetType):
        origins: list[str] = []
        for index, origin in enumerate(data.allowed_origins):
            cleaned = origin.strip().rstrip("/")
            if not _ORIGIN_RE.match(cleaned):
                raise InvalidRequest(
                    f"'{origin}' is not an origin: scheme, host and optional port, e.g. https://app.example.com.",
                    code="invalid_origin",
                    param=f"allowedOrigins[{index}]",
                )
            if cleaned not in origins:
                origins.append(cleaned)
        if len(origins) > 50:
            raise InvalidRequest("At most 50 origins.", code="too_many_origins", param="allowedOrigins")
        env.allowed_origins = origins
    await session.flush()
    return _environment_out(env)
