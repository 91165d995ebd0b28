"""The PaymentGate the subscriptions domain asks before starting a paid subscription."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from app.billing.schemas import CheckoutOptions
from app.core.errors import InvalidRequest
from app.customers.models import Customer
from app.subscriptions.service import Config


class CheckoutPaymentGate:
    """With Stripe connected, a paid subscription waits for payment unless a card is on file.

    It remembers the configuration it was asked about: that is what Checkout must sell.
    """

    def __init__(self, options: CheckoutOptions | None) -> None:
        self.options = options
        self.config: Config | None = None

    async def requires_payment(self, session: AsyncSession, customer: Customer, config: Config) -> bool:
        if customer.has_payment_method:
            return False
        if self.options is None:
            raise InvalidRequest(
                "This customer has no payment method: send checkoutOptions (successUrl, cancelUrl) so "
                "Tollgate can open a Stripe Checkout page for the payment.",
                code="checkout_options_required",
                param="checkoutOptions",
            )
        self.config = config
        return True
