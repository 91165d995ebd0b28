"""The /admin router: session and CSRF middleware, sign-in gate, HTML error pages, screens.

Everything is attached to this router, so /api/v1 and the widgets are untouched by it.
"""

from __future__ import annotations

from litestar import Router
from litestar.di import Provide

from app.admin.context import provide_base_context, provide_context
from app.admin.errors import ADMIN_EXCEPTION_HANDLERS, require_sign_in
from app.admin.security import ADMIN_PATH, AdminCSRFMiddleware, AdminSessionMiddleware
from app.admin.views.access import ACCESS_HANDLERS
from app.admin.views.catalog import CouponController, FeatureController, ProductController
from app.admin.views.customers import CustomerController
from app.admin.views.dashboard import dashboard, not_found_page
from app.admin.views.environments import EnvironmentController
from app.admin.views.integrations import SettingsController
from app.admin.views.priced import AddonController, PlanController
from app.admin.views.subscriptions import SubscriptionController
from app.admin.views.sync import SyncController
from app.admin.views.webhooks import WebhookEventController

admin_router = Router(
    path=ADMIN_PATH,
    route_handlers=[
        *ACCESS_HANDLERS,
        dashboard,
        EnvironmentController,
        FeatureController,
        ProductController,
        PlanController,
        AddonController,
        CouponController,
        CustomerController,
        SubscriptionController,
        SyncController,
        SettingsController,
        WebhookEventController,
        not_found_page,
    ],
    # The session is read by the CSRF-protected handlers, so it wraps them (listed first = outermost).
    middleware=[AdminSessionMiddleware, AdminCSRFMiddleware],
    dependencies={
        "base_context": Provide(provide_base_context),
        "ctx": Provide(provide_context),
    },
    before_request=require_sign_in,
    exception_handlers=ADMIN_EXCEPTION_HANDLERS,
    include_in_schema=False,
)
