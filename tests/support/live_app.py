"""Serve the real Tollgate app with uvicorn on 127.0.0.1 and a free port, in a background thread.

Its settings' `public_url` is that address, so an integration connected through it registers
a webhook endpoint the sandbox can actually deliver to.

    with live_app(settings) as app:
        httpx.put(f"{app.url}/api/v1/integrations/stripe", ...)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import msgspec

from app.main import create_app
from app.settings import Settings
from tests.support.sandbox import free_port, serve_asgi


@dataclass
class LiveApp:
    url: str
    settings: Settings


@contextlib.contextmanager
def live_app(settings: Settings, *, embedded_worker: bool = False) -> Iterator[LiveApp]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    served = msgspec.structs.replace(settings, public_url=url, port=port, embedded_worker=embedded_worker)
    with serve_asgi(create_app(served), port):
        yield LiveApp(url, served)
