"""Who is signed in and which environment they are looking at, for every console page."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlencode

import msgspec
from litestar import Request
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.admin.auth import operator_for_session
from app.admin.security import ADMIN_PATH
from app.core.errors import NotFound
from app.environments.models import Environment
from app.environments.service import EnvironmentRef

# Keys of the (encrypted) session cookie.
SESSION_OPERATOR = "op"
SESSION_FINGERPRINT = "fp"
SESSION_EXPIRES = "exp"
SESSION_ENV = "env"
SESSION_FLASH = "flash"


class LoginRequired(Exception):
    """Raised when a page needs a signed-in operator; answered with a redirect to the login page."""


class NoEnvironment(Exception):
    """Raised when no environment exists yet; answered with a redirect to create one."""


class EnvironmentChoice(msgspec.Struct, frozen=True):
    slug: str
    name: str


class AdminContext(msgspec.Struct, kw_only=True):
    operator_email: str
    environments: list[EnvironmentChoice]
    env: EnvironmentRef | None = None
    env_name: str = ""
    flash: str | None = None
    flash_is_error: bool = False

    @property
    def env_ref(self) -> EnvironmentRef:
        assert self.env is not None, "this page is only built with an environment"
        return self.env

    def url(self, path: str, **query: Any) -> str:
        """A console URL that names the environment it is about (so two tabs cannot mix them up)."""
        params = {k: v for k, v in query.items() if v not in (None, "")}
        if self.env is not None:
            params = {"env": self.env.slug, **params}
        return path + ("?" + urlencode(params) if params else "")


def signed_in_operator_pk(request: Request[Any, Any, Any]) -> int | None:
    session = request.session
    operator_pk = session.get(SESSION_OPERATOR)
    expires = session.get(SESSION_EXPIRES)
    if not isinstance(operator_pk, int) or not isinstance(expires, int | float) or expires < time.time():
        return None
    return operator_pk


def safe_next(target: str | None) -> str:
    """Only a path inside the console: never another site (`//evil`, `/\\evil`, `https://...`)."""
    if not target or "\\" in target or any(ch in target for ch in "\r\n"):
        return ADMIN_PATH
    if target == ADMIN_PATH or target.startswith((ADMIN_PATH + "/", ADMIN_PATH + "?")):
        return target
    return ADMIN_PATH


async def provide_base_context(request: Request[Any, Any, Any], db_session: AsyncSession) -> AdminContext:
    operator_pk = signed_in_operator_pk(request)
    if operator_pk is None:
        raise LoginRequired
    operator = await operator_for_session(
        db_session, operator_pk, str(request.session.get(SESSION_FINGERPRINT))
    )
    if operator is None:
        request.clear_session()
        raise LoginRequired
    rows = (
        await db_session.execute(
            select(Environment.pk, Environment.slug, Environment.name).order_by(Environment.pk)
        )
    ).all()
    notice = request.session.pop(SESSION_FLASH, None) if SESSION_FLASH in request.session else None
    context = AdminContext(
        operator_email=operator.email,
        environments=[EnvironmentChoice(slug=r.slug, name=r.name) for r in rows],
        flash=str(notice["text"]) if isinstance(notice, dict) else None,
        flash_is_error=isinstance(notice, dict) and bool(notice.get("error")),
    )
    wanted = request.query_params.get("env") or request.session.get(SESSION_ENV)
    chosen = next((r for r in rows if r.slug == wanted), None)
    if chosen is None and request.query_params.get("env"):
        raise NotFound(
            f"There is no environment '{request.query_params['env']}'.", code="environment_not_found"
        )
    chosen = chosen or (rows[0] if rows else None)
    if chosen is not None:
        context.env = EnvironmentRef(pk=chosen.pk, slug=chosen.slug)
        context.env_name = chosen.name
        if request.session.get(SESSION_ENV) != chosen.slug:
            request.session[SESSION_ENV] = chosen.slug
    return context


async def provide_context(base_context: AdminContext) -> AdminContext:
    """The context of pages that show one environment's data."""
    if base_context.env is None:
        raise NoEnvironment
    return base_context


def flash(request: Request[Any, Any, Any], message: str, *, error: bool = False) -> None:
    """A one-line notice shown on the next page ("Plan published", or why it was not)."""
    request.session[SESSION_FLASH] = {"text": message, "error": error}
