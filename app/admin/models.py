"""Operators of this Tollgate instance and their failed sign-in attempts."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Index, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, BigIntPK, TimestampedBase, utcnow


class Operator(TimestampedBase):
    """A person who runs this instance: operators see every environment."""

    __tablename__ = "operators"
    email: Mapped[str] = mapped_column(String(320), unique=True)
    # argon2id hash in PHC string format (algorithm and cost are inside the string).
    password_hash: Mapped[str] = mapped_column(String(255))
    is_active: Mapped[bool] = mapped_column(default=True)
    last_login_at: Mapped[dt.datetime | None] = mapped_column()


class LoginFailure(Base):
    """One refused sign-in; counted per email and client address to rate-limit guessing."""

    __tablename__ = "operator_login_failures"
    __table_args__ = (Index("ix_operator_login_failures_key", "email", "client_ip", "failed_at"),)
    pk: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    client_ip: Mapped[str] = mapped_column(String(64))
    failed_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
