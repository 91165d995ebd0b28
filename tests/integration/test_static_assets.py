"""/static: compressed once, cached by version, revalidated by ETag, nothing outside static/."""

from __future__ import annotations

import gzip
import re

from litestar import Litestar
from litestar.contrib.jinja import JinjaTemplateEngine
from litestar.testing import AsyncTestClient

from app.main import create_app
from app.settings import PROJECT_ROOT, Settings


async def test_static_files_are_gzipped_cached_and_revalidated(client: AsyncTestClient[Litestar]) -> None:
    raw = (PROJECT_ROOT / "static" / "tollgate.js").read_bytes()
    # httpx asks for gzip and decodes: the body is the file, the wire carried far fewer bytes.
    packed = await client.get("/static/tollgate.js", headers={"accept-encoding": "gzip"})
    assert packed.status_code == 200 and packed.content == raw
    assert packed.headers["content-encoding"] == "gzip"
    assert int(packed.headers["content-length"]) == len(gzip.compress(raw, 9, mtime=0)) < len(raw) / 2
    assert packed.headers["cache-control"] == "public, max-age=3600"
    plain = await client.get("/static/tollgate.js", headers={"accept-encoding": "identity"})
    assert "content-encoding" not in plain.headers and plain.content == raw
    again = await client.get("/static/tollgate.js", headers={"if-none-match": packed.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    assert (await client.get("/static/../app/settings.py")).status_code == 404
    assert (await client.get("/static/nope.js")).status_code == 404


async def test_widget_pages_link_their_assets_by_version(client: AsyncTestClient[Litestar]) -> None:
    page = await client.get("/widgets/paywall", params={"publishable-key": "tg_pk_nope"})
    links = re.findall(r'(?:href|src)="(/static/[^"]+)"', page.text)
    assert links and all(re.search(r"\?v=[0-9a-f]{10}$", link) for link in links), links
    asset = await client.get(links[0])
    assert asset.status_code == 200
    assert asset.headers["cache-control"] == "public, max-age=31536000, immutable"


async def test_widget_pages_preload_their_stylesheet_and_frame_script(
    client: AsyncTestClient[Litestar],
) -> None:
    page = await client.get("/widgets/paywall", params={"publishable-key": "tg_pk_nope"})
    links = dict(re.findall(r"<(/static/[^>]+)>; rel=preload; as=(\w+)", page.headers["link"]))
    css = re.search(r'<link rel="stylesheet" href="([^"]+)"', page.text)
    script = re.search(r'<script src="(/static/widgets/frame.js[^"]+)"', page.text)
    assert css and script
    # The same versioned URLs as the page's own tags, so the preloaded responses are used.
    assert links == {css.group(1): "style", script.group(1): "script"}
    # An htmx fragment has no head to preload for.
    fragment = await client.get(
        "/widgets/paywall", params={"publishable-key": "tg_pk_nope"}, headers={"hx-request": "true"}
    )
    assert "link" not in fragment.headers


async def test_widget_templates_are_compiled_before_the_first_request(settings: Settings) -> None:
    app = create_app(settings)
    engine = app.template_engine
    assert isinstance(engine, JinjaTemplateEngine)

    def compiled() -> set[str]:
        cache = engine.engine.cache
        return {key[1] for key in cache} if cache is not None else set()

    assert "widgets/paywall.html" not in compiled()
    async with AsyncTestClient(app):  # startup, no request yet
        assert {"widgets/paywall.html", "widgets/_paywall_body.html", "widgets/portal.html"} <= compiled()
