"""/static: files served gzip-compressed from memory, with cache headers.

A file is compressed once (per change of its mtime) and kept in memory: the assets are few
and small (the widget frame's CSS and scripts, tollgate.js, the console's). A URL carrying a
version (`?v=<content hash>`, as the widget pages link their assets) is cached for a year
(`immutable`); an unversioned one, such as the tollgate.js hosts embed, for an hour, then
revalidated with its ETag. Anything else falls through to Litestar's static files router.
"""

from __future__ import annotations

import gzip
import hashlib
import mimetypes
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from litestar import Router
from litestar.static_files import create_static_files_router

from app.settings import PROJECT_ROOT

STATIC_ROOT = (PROJECT_ROOT / "static").resolve()
MOUNT = "/static"
LONG = "public, max-age=31536000, immutable"
SHORT = "public, max-age=3600"
MIN_GZIP_BYTES = 500


@dataclass(frozen=True, slots=True)
class _Entry:
    mtime_ns: int
    raw: bytes
    gzipped: bytes | None
    etag: str
    media_type: str


_entries: dict[Path, _Entry] = {}


def _entry(path: Path) -> _Entry | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    cached = _entries.get(path)
    if cached is not None and cached.mtime_ns == stat.st_mtime_ns:
        return cached
    raw = path.read_bytes()
    media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    if media_type.startswith("text/") or media_type in ("application/javascript", "image/svg+xml"):
        media_type += "; charset=utf-8"
    entry = _Entry(
        stat.st_mtime_ns,
        raw,
        gzip.compress(raw, 9, mtime=0) if len(raw) >= MIN_GZIP_BYTES else None,
        '"' + hashlib.sha256(raw).hexdigest()[:20] + '"',
        media_type,
    )
    _entries[path] = entry
    return entry


def version(relative: str) -> str:
    """The content hash a page puts in an asset's URL (`?v=`), so it can be cached for good."""
    entry = _entry(STATIC_ROOT / relative)
    return entry.etag.strip('"')[:10] if entry else "0"


def _header(scope: Any, name: bytes) -> str:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return ""


class _Precompressed:
    """ASGI middleware of the static router: answers for files it knows, else passes on."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        relative = scope["path"].removeprefix(MOUNT).lstrip("/")
        path = (STATIC_ROOT / relative).resolve()
        entry = _entry(path) if path.is_relative_to(STATIC_ROOT) and path.is_file() else None
        if entry is None:
            await self.app(scope, receive, send)
            return
        versioned = b"v=" in scope.get("query_string", b"")
        headers = [
            (b"content-type", entry.media_type.encode()),
            (b"cache-control", (LONG if versioned else SHORT).encode()),
            (b"etag", entry.etag.encode()),
            (b"vary", b"Accept-Encoding"),
            (b"x-content-type-options", b"nosniff"),
        ]
        if _header(scope, b"if-none-match") == entry.etag:
            await send({"type": "http.response.start", "status": 304, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return
        body = entry.raw
        if entry.gzipped is not None and "gzip" in _header(scope, b"accept-encoding"):
            body = entry.gzipped
            headers.append((b"content-encoding", b"gzip"))
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})


def static_router() -> Router:
    return create_static_files_router(path=MOUNT, directories=[STATIC_ROOT], middleware=[_Precompressed])
