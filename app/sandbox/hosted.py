"""The sandbox's own web pages: Checkout, Billing Portal, OAuth consent, and the dashboard.

Plain server-rendered forms (no scripts): every action is a POST followed by a redirect.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode

import jinja2
import msgspec

from app.sandbox.core import Ctx
from app.sandbox.resources import billing, checkout, customers
from app.sandbox.resources.catalog import automatic_tax_percent
from app.sandbox.resources.platform import ensure_account
from app.sandbox.webhooks import PLATFORM_LINK_KIND
from app.sandbox.wire import StripeError
from app.settings import PROJECT_ROOT

if TYPE_CHECKING:
    from app.sandbox.server import Response, Sandbox

OAUTH_ACCOUNT = "_oauth"  # authorization codes live outside every account until exchanged
OAUTH_CODE_KIND = "_oauth_code"
CURRENCY_SYMBOLS = {"usd": "$", "eur": "€", "gbp": "£", "jpy": "¥", "cad": "CA$", "aud": "A$"}
ZERO_DECIMAL = {"jpy", "krw", "vnd", "clp"}
SCOPE_PERMISSIONS = {
    "read_write": [
        "View and change your products, prices, coupons and tax settings",
        "View and change your customers and their payment methods",
        "Create and manage subscriptions, invoices, Checkout and Billing Portal sessions",
        "Manage your webhook endpoints and read your events",
    ],
    "read_only": [
        "View your products, prices and coupons",
        "View your customers, subscriptions and invoices",
        "Read your events",
    ],
}


def money(amount: int | None, currency: str | None) -> str:
    if amount is None:
        return "—"
    code = (currency or "usd").lower()
    value = amount if code in ZERO_DECIMAL else amount / 100
    text = f"{abs(value):,.0f}" if code in ZERO_DECIMAL else f"{abs(value):,.2f}"
    sign = "-" if amount < 0 else ""
    symbol = CURRENCY_SYMBOLS.get(code)
    return f"{sign}{symbol}{text}" if symbol else f"{sign}{text} {code.upper()}"


def when(timestamp: int | None) -> str:
    from datetime import UTC, datetime

    if not timestamp:
        return "—"
    return datetime.fromtimestamp(timestamp, UTC).strftime("%d %b %Y %H:%M UTC")


class Hosted:
    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(PROJECT_ROOT / "templates"),
            autoescape=jinja2.select_autoescape(["html"]),
            undefined=jinja2.ChainableUndefined,
        )
        self.env.filters["money"] = money
        self.env.filters["when"] = when
        self.env.globals["base"] = sandbox.public_url

    # -- plumbing -----------------------------------------------------------------------------
    def _html(self, template: str, status: int = 200, **context: Any) -> Response:
        from app.sandbox.server import Response

        body = self.env.get_template(f"sandbox/{template}").render(**context)
        return Response(status, body.encode(), "text/html; charset=utf-8", {"Cache-Control": "no-store"})

    def _redirect(self, location: str) -> Response:
        from app.sandbox.server import Response

        return Response(303, b"", "text/plain", {"Location": location})

    def _message(self, status: int, title: str, message: str) -> Response:
        return self._html("message.html", status, title=title, message=message)

    def _ctx_for(self, object_id: str, kind: str) -> tuple[Ctx, dict[str, Any]] | None:
        located = self.sandbox.store.locate(object_id)
        if located is None or located[1] != kind:
            return None
        ctx = Ctx(self.sandbox, located[0], request_id=None)
        obj = ctx.find(kind, object_id)
        return (ctx, obj) if obj is not None else None

    def _run(self, ctx: Ctx, action: Any) -> Any:
        """Run a page action as one transaction, like an API request."""
        store = self.sandbox.store
        with store.lock:
            try:
                result = action()
            except BaseException:
                store.rollback()
                raise
            store.commit()
        return result

    def page(self, method: str, path: str, query: str, body: bytes) -> Response:
        parts = [p for p in path.split("/") if p]
        form = (
            dict(parse_qsl(body.decode(errors="replace"), keep_blank_values=True)) if method == "POST" else {}
        )
        args = dict(parse_qsl(query, keep_blank_values=True))
        if not parts:
            return self._redirect(f"{self.sandbox.public_url}/dashboard")
        head = parts[0]
        if head == "checkout" and len(parts) >= 2:
            return self.checkout_page(method, parts[1], parts[2:], form)
        if head == "portal" and len(parts) >= 2:
            return self.portal_page(method, parts[1], parts[2:], form)
        if head == "oauth" and parts[1:] == ["authorize"]:
            return self.oauth_page(method, args, form)
        if head == "dashboard" and method == "GET":
            # /dashboard/{id}, and Stripe-style links such as /dashboard/test/customers/{id}.
            return self.dashboard(parts[-1] if len(parts) > 1 else None)
        return self._message(404, "Not found", f"The sandbox has no page at {path}.")

    # -- Checkout -----------------------------------------------------------------------------
    def checkout_page(self, method: str, session_id: str, rest: list[str], form: dict[str, str]) -> Response:
        found = self._ctx_for(session_id, "checkout.session")
        if found is None:
            return self._message(404, "Checkout session not found", "This Checkout link is not valid.")
        ctx, session = found
        if rest == ["cancel"]:
            return self._redirect(session.get("cancel_url") or self.sandbox.public_url)
        if session["status"] != "open":
            return self._message(
                410, "Checkout session closed", f"This Checkout session is {session['status']}."
            )
        error = None
        if method == "POST":
            try:
                completed = self._run(ctx, lambda: checkout.complete_session(ctx, session, form))
            except StripeError as failure:
                error = failure.message
                session = ctx.get("checkout.session", session_id)
            else:
                return self._redirect(checkout.success_redirect(completed))
        customer = ctx.find("customer", session.get("customer"))
        country = (
            form.get("address_country") or ((customer or {}).get("address") or {}).get("country") or ""
        ).upper() or None
        totals = checkout.session_totals(ctx, session, country)
        tax_percent = automatic_tax_percent(ctx, country) if session["automatic_tax"]["enabled"] else None
        data = session.get("_subscription_data") or {}
        return self._html(
            "checkout.html",
            402 if error else 200,
            session=session,
            lines=session["_line_items"],
            customer=customer,
            totals=totals,
            tax_enabled=session["automatic_tax"]["enabled"],
            tax_known=tax_percent is not None and country is not None,
            trial_days=data.get("trial_period_days"),
            card_optional=checkout.card_optional(ctx, session),
            error=error,
            form=form,
            business=self.sandbox.account_name(ctx.account) or "Sandbox business",
        )

    # -- Billing Portal -----------------------------------------------------------------------
    def portal_page(self, method: str, session_id: str, rest: list[str], form: dict[str, str]) -> Response:
        found = self._ctx_for(session_id, "billing_portal.session")
        if found is None:
            return self._message(404, "Portal session not found", "This Billing Portal link is not valid.")
        ctx, session = found
        config = ctx.get("billing_portal.configuration", session["configuration"])
        features = config["features"]
        customer_id = session["customer"]
        error = None
        if method == "POST":
            try:
                self._run(ctx, lambda: self._portal_action(ctx, features, customer_id, rest, form))
            except StripeError as failure:
                error = failure.message
            except PermissionError as refused:
                return self._message(403, "Not allowed", str(refused))
            else:
                return self._redirect(f"{self.sandbox.public_url}/portal/{session_id}")
        customer = ctx.get("customer", customer_id)
        subscriptions = [
            s
            for s in ctx.all("subscription")
            if s["customer"] == customer_id and s["status"] != "incomplete_expired"
        ]
        invoices = [i for i in ctx.all("invoice") if i["customer"] == customer_id and i["status"] != "draft"]
        pm = ctx.find("payment_method", customer["invoice_settings"].get("default_payment_method"))
        tax_ids = [t for t in ctx.all("tax_id") if t["customer"] == customer_id]
        switch_prices = []
        for entry in features["subscription_update"].get("products") or []:
            for price_id in entry.get("prices") or []:
                price = ctx.find("price", price_id)
                product = ctx.find("product", entry["product"])
                if price and product and price["active"]:
                    switch_prices.append({"price": price, "product": product})
        products = {p["id"]: p for p in ctx.all("product")}
        return self._html(
            "portal.html",
            400 if error else 200,
            session=session,
            config=config,
            features=features,
            customer=customer,
            subscriptions=subscriptions,
            invoices=invoices,
            payment_method=pm,
            tax_ids=tax_ids,
            switch_prices=switch_prices,
            products=products,
            error=error,
            business=self.sandbox.account_name(ctx.account) or "Sandbox business",
        )

    def _portal_action(
        self, ctx: Ctx, features: dict[str, Any], customer_id: str, rest: list[str], form: dict[str, str]
    ) -> None:
        if rest == ["customer"]:
            update = features["customer_update"]
            if not update["enabled"]:
                raise PermissionError("This portal does not allow changing customer details.")
            allowed = set(update["allowed_updates"])
            params: dict[str, Any] = {}
            for name in ("email", "phone", "name"):
                if name in allowed and name in form:
                    params[name] = form[name].strip()
            if "address" in allowed and "address_country" in form:
                params["address"] = {
                    k: form.get(f"address_{k}", "").strip()
                    for k in ("line1", "line2", "city", "postal_code", "state", "country")
                }
                params["address"]["country"] = params["address"]["country"].upper()
            customers.update_customer(ctx, params, {"id": customer_id})
            if "tax_id" in allowed and form.get("tax_id_value", "").strip():
                customers.create_tax_id(
                    ctx,
                    {"type": form.get("tax_id_type") or "eu_vat", "value": form["tax_id_value"].strip()},
                    {"id": customer_id},
                )
            return
        if rest == ["payment_method"]:
            if not features["payment_method_update"]["enabled"]:
                raise PermissionError("This portal does not allow updating the payment method.")
            pm = customers.card_payment_method(
                ctx,
                form.get("card_number", ""),
                exp_month=int(form.get("exp_month") or 12),
                exp_year=int(form.get("exp_year") or 2034),
            )
            customers.attach_payment_method(ctx, {"customer": customer_id}, {"id": pm["id"]})
            customers.update_customer(
                ctx, {"invoice_settings": {"default_payment_method": pm["id"]}}, {"id": customer_id}
            )
            for subscription in ctx.all("subscription"):
                if subscription["customer"] == customer_id and subscription.get("default_payment_method"):
                    billing.update_subscription(
                        ctx, {"default_payment_method": pm["id"]}, {"id": subscription["id"]}
                    )
            return
        if len(rest) == 3 and rest[0] == "subscriptions":
            subscription = ctx.get("subscription", rest[1])
            if subscription["customer"] != customer_id:
                raise PermissionError("This subscription belongs to another customer.")
            if rest[2] == "cancel":
                cancel = features["subscription_cancel"]
                if not cancel["enabled"]:
                    raise PermissionError("This portal does not allow cancelling subscriptions.")
                details = {"feedback": form["feedback"]} if form.get("feedback") else {}
                if cancel["mode"] == "immediately":
                    billing.cancel_subscription(
                        ctx,
                        {
                            "prorate": cancel["proration_behavior"] == "create_prorations",
                            "cancellation_details": details,
                        },
                        {"id": subscription["id"]},
                    )
                else:
                    billing.update_subscription(
                        ctx,
                        {"cancel_at_period_end": True, "cancellation_details": details},
                        {"id": subscription["id"]},
                    )
                return
            if rest[2] == "renew":
                if not features["subscription_cancel"]["enabled"]:
                    raise PermissionError("This portal does not allow changing cancellations.")
                billing.update_subscription(ctx, {"cancel_at_period_end": False}, {"id": subscription["id"]})
                return
            if rest[2] == "switch":
                update = features["subscription_update"]
                if not update["enabled"]:
                    raise PermissionError("This portal does not allow switching plans.")
                allowed_prices = {
                    p for entry in update.get("products") or [] for p in entry.get("prices") or []
                }
                price_id = form.get("price", "")
                if price_id not in allowed_prices:
                    raise PermissionError("That plan is not offered in this portal.")
                item = subscription["items"]["data"][0]
                billing.update_subscription(
                    ctx,
                    {
                        "items": [{"id": item["id"], "price": price_id}],
                        "proration_behavior": update["proration_behavior"],
                    },
                    {"id": subscription["id"]},
                )
                return
        raise PermissionError("Unknown portal action.")

    # -- OAuth ("Connect with Stripe") --------------------------------------------------------
    def oauth_page(self, method: str, args: dict[str, str], form: dict[str, str]) -> Response:
        params = form if method == "POST" else args
        redirect_uri = params.get("redirect_uri", "")
        client_id = params.get("client_id", "")
        scope = params.get("scope") or "read_write"
        state = params.get("state", "")
        if not client_id or not redirect_uri.startswith(("http://", "https://")):
            return self._message(
                400, "Invalid request", "An OAuth link needs a client_id and an http(s) redirect_uri."
            )
        if scope not in SCOPE_PERMISSIONS:
            return self._message(
                400, "Invalid scope", f"Unknown scope {scope!r}: use read_write or read_only."
            )
        if method == "GET":
            return self._html(
                "oauth.html",
                client_id=client_id,
                redirect_uri=redirect_uri,
                scope=scope,
                state=state,
                permissions=SCOPE_PERMISSIONS[scope],
                suggested_name=args.get("stripe_user[business_name]", ""),
                email=args.get("stripe_user[email]", ""),
            )
        separator = "&" if "?" in redirect_uri else "?"
        if form.get("decision") != "approve":
            query = urlencode(
                {
                    "error": "access_denied",
                    "error_description": "The user denied your request",
                    "state": state,
                }
            )
            return self._redirect(f"{redirect_uri}{separator}{query}")
        code = "ac_" + secrets.token_urlsafe(24)
        key = "sk_test_" + secrets.token_urlsafe(32)
        store = self.sandbox.store
        with store.lock:
            store.put(
                OAUTH_ACCOUNT,
                OAUTH_CODE_KIND,
                {
                    "id": code,
                    "client_id": client_id,
                    "scope": scope,
                    "key": key,
                    "business_name": form.get("business_name") or "Sandbox connected account",
                    "email": form.get("email") or None,
                    "used": False,
                    "created": self.sandbox.now(),
                },
            )
            store.commit()
        query = urlencode({"code": code, "scope": scope, "state": state})
        return self._redirect(f"{redirect_uri}{separator}{query}")

    def oauth_api(self, path: str, headers: dict[str, str], body: bytes) -> Response:
        from app.sandbox.server import account_for_key, json_response

        form = dict(parse_qsl(body.decode(errors="replace"), keep_blank_values=True))
        try:
            _, platform_account = self.sandbox.authenticate(headers)
        except StripeError as error:
            secret = form.get("client_secret", "")
            if not secret.startswith("sk_test_"):
                return json_response(401, {"error": "invalid_client", "error_description": error.message})
            platform_account = account_for_key(secret)
        store = self.sandbox.store
        if path == "/oauth/deauthorize":
            connected = form.get("stripe_user_id", "")
            with store.lock:
                for connection in store.list(platform_account, "_connection"):
                    if connection["connected"] == connected:
                        store.delete(platform_account, connection["id"])
                        store.delete(connected, f"plat:{connected}:{platform_account}")
                        store.commit()
                        return json_response(200, {"stripe_user_id": connected})
            return json_response(
                400, {"error": "invalid_client", "error_description": f"No such account: {connected}"}
            )
        if form.get("grant_type") != "authorization_code":
            return json_response(
                400,
                {
                    "error": "unsupported_grant_type",
                    "error_description": "Only grant_type=authorization_code is supported by the sandbox.",
                },
            )
        code = form.get("code", "")
        with store.lock:
            record = store.get(OAUTH_ACCOUNT, code, OAUTH_CODE_KIND)
            if record is None or record["used"] or record["created"] + 300 < self.sandbox.now():
                return json_response(
                    400,
                    {
                        "error": "invalid_grant",
                        "error_description": f"Authorization code does not exist: {code}",
                    },
                )
            record["used"] = True
            store.put(OAUTH_ACCOUNT, OAUTH_CODE_KIND, record)
            connected = account_for_key(record["key"])
            ensure_account(
                self.sandbox, connected, business_name=record["business_name"], email=record["email"]
            )
            store.put(
                platform_account,
                "_connection",
                {
                    "id": f"conn:{platform_account}:{connected}",
                    "connected": connected,
                    "created": self.sandbox.now(),
                },
            )
            link = {"id": f"plat:{connected}:{platform_account}", "platform": platform_account}
            store.put(connected, PLATFORM_LINK_KIND, link)
            store.commit()
        return json_response(
            200,
            {
                "access_token": record["key"],
                "livemode": False,
                "refresh_token": "rt_" + secrets.token_urlsafe(24),
                "scope": record["scope"],
                "stripe_publishable_key": "pk_test_" + secrets.token_urlsafe(24),
                "stripe_user_id": connected,
                "token_type": "bearer",
            },
        )

    # -- dashboard ----------------------------------------------------------------------------
    def dashboard(self, object_id: str | None) -> Response:
        store = self.sandbox.store
        if object_id is None:
            accounts = []
            for account in sorted(a for a in store.accounts() if a.startswith("acct_")):
                recent = []
                for kind in (
                    "customer",
                    "subscription",
                    "invoice",
                    "product",
                    "price",
                    "checkout.session",
                    "event",
                ):
                    recent.extend(store.list(account, kind)[:5])
                accounts.append({"id": account, "name": self.sandbox.account_name(account), "recent": recent})
            return self._html("dashboard_index.html", accounts=accounts)
        located = store.locate(object_id)
        if located is None or located[1].startswith("_"):
            return self._message(404, "No such object", f"The sandbox has no object {object_id}.")
        account, kind = located
        obj = store.get(account, object_id)
        assert obj is not None
        from app.sandbox.server import public

        obj = public(obj)
        related = []
        if kind != "event":
            for other_kind in (
                "customer",
                "subscription",
                "subscription_item",
                "invoice",
                "invoiceitem",
                "payment_method",
                "checkout.session",
                "price",
                "product",
                "setup_intent",
                "tax_id",
                "discount",
            ):
                if other_kind == kind:
                    continue
                for other in store.list(account, other_kind):
                    if object_id in _referenced_ids(other):
                        related.append(other)
            for value in _referenced_ids(obj):
                target = store.locate(value)
                if target and target[0] == account and not target[1].startswith("_") and value != object_id:
                    referenced = store.get(account, value)
                    if referenced and referenced not in related:
                        related.append(referenced)
        events = (
            [e for e in store.list(account, "event") if (e["data"]["object"] or {}).get("id") == object_id][
                :50
            ]
            if kind != "event"
            else []
        )
        fields = [(k, v) for k, v in obj.items()]
        return self._html(
            "dashboard_object.html",
            obj=obj,
            kind=kind,
            account=account,
            account_name=self.sandbox.account_name(account),
            fields=fields,
            related=related[:100],
            events=events,
            pretty=msgspec.json.format(msgspec.json.encode(obj), indent=2).decode(),
        )


def _referenced_ids(obj: Any) -> set[str]:
    """Every string in an object that looks like a Stripe id (for "related objects")."""
    found: set[str] = set()
    stack = [obj]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
        elif isinstance(value, str) and "_" in value and len(value) < 80 and " " not in value:
            found.add(value)
    return found
