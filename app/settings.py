"""Environment variables -> one typed Settings object.

Every knob Tollgate has is read here and nowhere else, so the README's configuration table
and this file can be checked against each other.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import msgspec

PROJECT_ROOT = Path(__file__).resolve().parent.parent
VAR_DIR = PROJECT_ROOT / "var"


class Settings(msgspec.Struct, kw_only=True, frozen=True):
    database_url: str
    secret: str
    host: str = "127.0.0.1"
    port: int = 8000
    public_url: str = "http://127.0.0.1:8000"
    # Run the sync / lifecycle worker inside the web process (the one-machine default).
    embedded_worker: bool = True
    # Mount the built-in Stripe sandbox under /sandbox/stripe (Sandbox mode out of the box).
    embedded_sandbox: bool = True
    log_level: str = "INFO"
    admin_email: str | None = None
    admin_password: str | None = None
    stripe_connect_client_id: str | None = None
    # The platform's secret key: "Connect with Stripe" exchanges authorization codes with it.
    stripe_connect_secret_key: str | None = None
    # Where Sandbox mode reaches the sandbox (default: the one mounted in this server).
    stripe_sandbox_url: str | None = None
    # Test and Live mode talk to Stripe itself unless this points elsewhere (tests, proxies).
    stripe_api_base: str | None = None
    var_dir: str = str(VAR_DIR)
    # Bodies above this size are refused with 413 before they are parsed.
    max_body_bytes: int = 2 * 1024 * 1024
    # Stripe requests per second for all sync workers together, however many processes
    # (Stripe allows 25/s in test mode, 100/s live): a token bucket row in the database.
    stripe_rate_limit: float = 20.0
    # How long a sync worker owns the entities it claimed; a killed worker's claims expire then.
    sync_claim_seconds: int = 120

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def sandbox_api_base(self) -> str:
        return self.stripe_sandbox_url or f"{self.public_url}/sandbox/stripe"


def _secret_from_var_dir(var_dir: Path) -> str:
    """The master secret, generated once into var/ when TOLLGATE_SECRET is not set."""
    path = var_dir / "secret.key"
    if path.exists():
        return path.read_text().strip()
    var_dir.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(48)
    # Created with owner-only permissions: it signs tokens and encrypts Stripe keys.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value)
    return value


def _flag(value: str | None, default: bool) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    env = dict(os.environ if environ is None else environ)
    var_dir = Path(env.get("TOLLGATE_VAR_DIR", str(VAR_DIR)))
    host = env.get("TOLLGATE_HOST", "127.0.0.1")
    port = int(env.get("TOLLGATE_PORT", "8000"))
    database_url = env.get("TOLLGATE_DATABASE_URL") or f"sqlite+aiosqlite:///{var_dir / 'tollgate.db'}"
    if database_url.startswith("sqlite") and "///" in database_url:
        Path(database_url.split("///", 1)[1]).parent.mkdir(parents=True, exist_ok=True)
    if database_url.startswith("postgresql://"):
        database_url = "postgresql+asyncpg://" + database_url.removeprefix("postgresql://")
    return Settings(
        database_url=database_url,
        secret=env.get("TOLLGATE_SECRET") or _secret_from_var_dir(var_dir),
        host=host,
        port=port,
        public_url=(env.get("TOLLGATE_PUBLIC_URL") or f"http://{host}:{port}").rstrip("/"),
        embedded_worker=_flag(env.get("TOLLGATE_EMBEDDED_WORKER"), True),
        embedded_sandbox=_flag(env.get("TOLLGATE_EMBEDDED_SANDBOX"), True),
        log_level=env.get("TOLLGATE_LOG_LEVEL", "INFO"),
        admin_email=env.get("TOLLGATE_ADMIN_EMAIL") or None,
        admin_password=env.get("TOLLGATE_ADMIN_PASSWORD") or None,
        stripe_connect_client_id=env.get("TOLLGATE_STRIPE_CONNECT_CLIENT_ID") or None,
        stripe_connect_secret_key=env.get("TOLLGATE_STRIPE_CONNECT_SECRET_KEY") or None,
        stripe_sandbox_url=(env.get("TOLLGATE_STRIPE_SANDBOX_URL") or "").rstrip("/") or None,
        stripe_api_base=(env.get("TOLLGATE_STRIPE_API_BASE") or "").rstrip("/") or None,
        var_dir=str(var_dir),
        stripe_rate_limit=float(env.get("TOLLGATE_STRIPE_RATE_LIMIT") or 20.0),
        sync_claim_seconds=int(env.get("TOLLGATE_SYNC_CLAIM_SECONDS") or 120),
    )
