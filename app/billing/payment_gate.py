"""The PaymentGate the subscriptions domain asks before starting a paid subscription."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from app.customers.models import Customer
from app.subscriptions.service import Config


class CheckoutPaymentGate:
    """With Stripe connected, a paid subscription waits for Checkout unless a card is on file.

    Checkout is what the caller asks for by sending checkoutOptions. Without them the
    subscription starts at once and Stripe bills it by invoice (`send_invoice`, see the
    sync): the choice of sales-led, invoiced customers. It remembers the configuration it
    was asked about: that is what Checkout must sell.
    """

    def __init__(self, offers_checkout: bool) -> None:
        self.offers_checkout = offers_checkout
        self.config: Config | None = None

    async def requires_payment(self, session: AsyncSession, customer: Customer, config: Config) -> bool:
        if customer.has_payment_method:
            return False
        if not self.offers_checkout:
            return False
        self.config = config
        return True
