"""Rendering console pages: one URL answers with the full page or, for htmx, a fragment.

- no HX-Request: the whole page in the admin layout;
- HX-Request aimed at `#main` (boosted links and forms): the page's content, plus the
  sidebar swapped out-of-band so the active section and environment stay right;
- HX-Request aimed at another element whose name is a block of the template (e.g. the
  `results` of a list being searched): just that block.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlencode

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from litestar import Request, Response
from litestar.enums import MediaType
from litestar.utils.scope.state import ScopeState

from app.admin.security import security_headers
from app.core.money import format_amount
from app.settings import PROJECT_ROOT

HTMX_VERSION = "2.0.11"


def _money(amount: int | None, currency: str | None) -> str:
    if amount is None:
        return "—"
    return format_amount(amount, currency or "usd") if currency else str(amount)


def _when(value: dt.datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else "—"


def _label(value: Any) -> str:
    """BILLING_PERIOD -> Billing period."""
    text = str(getattr(value, "value", value) or "")
    return text.replace("_", " ").capitalize()


_GROUPS = {"charges": "Price line", "entitlements": "Entitlement line"}
_NAMES = {
    "charges": "Prices",
    "entitlements": "Entitlements",
    "compatibleAddonIds": "Compatible add-ons",
    "apiKey": "API key",
}


def _field_label(param: str) -> str:
    """An error's field for people: `charges[0].amount` -> "Price line 1, amount", `meterType` -> "Meter type"."""
    parts = []
    for piece in param.split("."):
        match = re.fullmatch(r"(\w+)\[(\d+)\]", piece)
        if match:
            parts.append(f"{_GROUPS.get(match[1], match[1])} {int(match[2]) + 1}")
        else:
            words = _NAMES.get(piece) or re.sub(r"(?<!^)([A-Z])", r" \1", piece).lower()
            parts.append(words[:1].upper() + words[1:] if not parts else words)
    return ", ".join(parts)


def _build_environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(PROJECT_ROOT / "templates"),
        autoescape=select_autoescape(default=True),
        undefined=StrictUndefined,  # a misspelt variable fails the test instead of rendering blank
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        money=_money,
        when=_when,
        label=_label,
        field_label=_field_label,
        urlpart=lambda v: quote(str(v), safe=""),
    )
    env.globals.update(htmx_version=HTMX_VERSION, urlencode=urlencode)
    return env


templates = _build_environment()


def is_htmx(request: Request[Any, Any, Any]) -> bool:
    return request.headers.get("hx-request") == "true"


def csrf_token(request: Request[Any, Any, Any]) -> str:
    token = ScopeState.from_scope(request.scope).csrf_token
    return token if isinstance(token, str) else ""


def html_response(
    content: str, status_code: int = 200, headers: Mapping[str, str] | None = None
) -> Response[str]:
    return Response(
        content,
        status_code=status_code,
        media_type=MediaType.HTML,
        headers={**security_headers(), "Vary": "HX-Request, HX-Target", **(headers or {})},
    )


def render(
    request: Request[Any, Any, Any],
    template_name: str,
    context: Mapping[str, Any],
    *,
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
) -> Response[str]:
    template = templates.get_template(template_name)
    target = request.headers.get("hx-target") if is_htmx(request) else None
    variables = {
        "csrf_token": csrf_token(request),
        "layout": "layouts/admin_fragment.html" if target == "main" else "layouts/admin.html",
        **context,
    }
    if target and target != "main" and target in template.blocks:
        body = "".join(template.blocks[target](template.new_context(variables)))
    else:
        body = template.render(variables)
    return html_response(body, status_code, headers)


def redirect(request: Request[Any, Any, Any], location: str) -> Response[str]:
    """After a successful POST: a 303 for browsers; for htmx, a client-side visit into #main."""
    if is_htmx(request):
        return html_response("", 200, {"HX-Location": json.dumps({"path": location, "target": "#main"})})
    return Response(
        "", status_code=303, headers={**security_headers(), "Location": location}, media_type=MediaType.HTML
    )
