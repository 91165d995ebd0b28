"""Operator accounts: argon2id passwords, bootstrap from settings, rate-limited sign-in."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging

import anyio.to_thread
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.admin.models import LoginFailure, Operator
from app.core.errors import Conflict, InvalidRequest, TollgateError, Unauthorized
from app.db import Database, utcnow
from app.settings import Settings

logger = logging.getLogger("tollgate.admin")

# argon2-cffi's defaults are RFC 9106's "second recommended" argon2id parameters.
_hasher = PasswordHasher()
# Verified against when the email is unknown, so both answers take the same time.
_DUMMY_HASH = _hasher.hash("tollgate-no-such-operator")

MAX_FAILURES = 5
FAILURE_WINDOW = dt.timedelta(minutes=15)
MIN_PASSWORD_LENGTH = 10


class TooManyAttempts(TollgateError):
    status_code = 429
    code = "too_many_login_attempts"


def normalize_email(email: str) -> str:
    return email.strip().lower()


def session_fingerprint(operator: Operator) -> str:
    """Changes whenever the password does, so a new password signs out every other session."""
    return hashlib.sha256(operator.password_hash.encode()).hexdigest()[:16]


async def hash_password(password: str) -> str:
    # Hashing is deliberately slow (tens of ms): keep it off the event loop.
    return await anyio.to_thread.run_sync(_hasher.hash, password)


async def _verify(password_hash: str, password: str) -> bool:
    def check() -> bool:
        try:
            return _hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    return await anyio.to_thread.run_sync(check)


def _check_new_credentials(email: str, password: str) -> None:
    if "@" not in email or len(email) > 320:
        raise InvalidRequest("Enter a valid email address.", code="invalid_email", param="email")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidRequest(
            f"Passwords are at least {MIN_PASSWORD_LENGTH} characters.",
            code="password_too_short",
            param="password",
        )


async def add_operator(session: AsyncSession, email: str, password: str) -> Operator:
    email = normalize_email(email)
    _check_new_credentials(email, password)
    if await session.scalar(select(Operator.pk).where(Operator.email == email)) is not None:
        raise Conflict(f"An operator '{email}' exists already.", code="operator_exists", param="email")
    operator = Operator(email=email, password_hash=await hash_password(password))
    session.add(operator)
    await session.flush()
    return operator


async def create_operator(database: Database, email: str, password: str) -> Operator:
    """For `tollgate admin create-user`: a new operator, committed."""
    async with database.session() as session:
        return await add_operator(session, email, password)


async def ensure_bootstrap_operator(database: Database, settings: Settings) -> bool:
    """On start-up: create the operator of TOLLGATE_ADMIN_EMAIL/PASSWORD if no operator exists yet.

    Returns whether one was created. The variables are only a bootstrap: once any operator
    exists they are ignored, so changing them later cannot silently reset a password.
    """
    if not settings.admin_email or not settings.admin_password:
        return False
    try:
        async with database.session() as session:
            if await session.scalar(select(func.count()).select_from(Operator)):
                return False
            await add_operator(session, settings.admin_email, settings.admin_password)
    except IntegrityError:
        return False  # another process starting at the same moment created it
    logger.info("created the first operator from TOLLGATE_ADMIN_EMAIL")
    return True


async def sign_in(session: AsyncSession, email: str, password: str, client_ip: str) -> Operator:
    """The operator these credentials belong to; Unauthorized or TooManyAttempts otherwise.

    Failures are stored in the database so the limit holds across every web process.
    """
    email = normalize_email(email)[:320]
    client_ip = client_ip[:64]
    since = utcnow() - FAILURE_WINDOW
    failures = await session.scalar(
        select(func.count()).where(
            LoginFailure.email == email, LoginFailure.client_ip == client_ip, LoginFailure.failed_at > since
        )
    )
    if (failures or 0) >= MAX_FAILURES:
        raise TooManyAttempts(
            "Too many failed sign-in attempts. Wait 15 minutes and try again.",
            extra={"retry_after": int(FAILURE_WINDOW.total_seconds())},
        )
    operator = await session.scalar(select(Operator).where(Operator.email == email))
    valid = await _verify(operator.password_hash if operator else _DUMMY_HASH, password)
    if operator is None or not valid or not operator.is_active:
        # Expired failures of every key go: the table only ever holds the last 15 minutes.
        await session.execute(delete(LoginFailure).where(LoginFailure.failed_at <= since))
        session.add(LoginFailure(email=email, client_ip=client_ip))
        await session.flush()
        raise Unauthorized("The email or password is not right.", code="invalid_credentials")
    if _hasher.check_needs_rehash(operator.password_hash):
        operator.password_hash = await hash_password(password)
    await session.execute(
        delete(LoginFailure).where(LoginFailure.email == email, LoginFailure.client_ip == client_ip)
    )
    operator.last_login_at = utcnow()
    await session.flush()
    return operator


async def operator_for_session(session: AsyncSession, operator_pk: int, fingerprint: str) -> Operator | None:
    """The signed-in operator, or None if the account was disabled or its password changed."""
    operator = await session.get(Operator, operator_pk)
    if operator is None or not operator.is_active or session_fingerprint(operator) != fingerprint:
        return None
    return operator
