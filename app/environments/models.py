from __future__ import annotations

from typing import Any

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import TimestampedBase


class Environment(TimestampedBase):
    """An isolated world (e.g. production, staging): every other row belongs to exactly one."""

    __tablename__ = "environments"
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    # Only a SHA-256 of the server key is kept; the key itself is shown once at creation.
    server_key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    server_key_hint: Mapped[str] = mapped_column(String(16))
    publishable_key: Mapped[str] = mapped_column(String(64), unique=True)
    # Origins allowed to embed this environment's widgets (frame-ancestors).
    allowed_origins: Mapped[list[Any]] = mapped_column(default=list)
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
