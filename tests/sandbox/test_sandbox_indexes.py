"""Per-customer work reads a per-customer index, not the whole account, and stays correct.

Subscription creates (their first invoice collects the customer's pending invoice items) and
`GET /v1/subscriptions?customer=` used to scan every object of the account. These tests pin
the behaviour the index must keep: after restarts, rolled-back requests and deletions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import stripe

from app.sandbox.store import Store
from tests.support.sandbox import running_sandbox


def _monthly_price(client: stripe.StripeClient) -> Any:
    return client.v1.prices.create(
        params={
            "currency": "usd",
            "unit_amount": 500,
            "recurring": {"interval": "month"},
            "product_data": {"name": "P"},
        }
    )


def _subscribe(client: stripe.StripeClient, customer: str, price: str) -> Any:
    return client.v1.subscriptions.create(
        params={
            "customer": customer,
            "items": [{"price": price}],
            "collection_method": "send_invoice",
            "days_until_due": 30,
        }
    )


def test_pending_invoice_items_go_to_their_customers_first_invoice_only(tmp_path: Path) -> None:
    key = "sk_test_index_after_restart"
    with running_sandbox(tmp_path / "sandbox.db") as sb:
        client = sb.client(key)
        price = _monthly_price(client)
        ann, bob = (client.v1.customers.create(params={"name": n}) for n in ("Ann", "Bob"))
        ann_item = client.v1.invoice_items.create(
            params={"customer": ann.id, "amount": 700, "currency": "usd"}
        )
        bob_item = client.v1.invoice_items.create(
            params={"customer": bob.id, "amount": 900, "currency": "usd"}
        )
        sub = _subscribe(client, ann.id, price.id)
        invoice = client.v1.invoices.retrieve(str(sub.latest_invoice))
        assert invoice.amount_due == 500 + 700
        assert client.v1.invoice_items.retrieve(ann_item.id).invoice == invoice.id
        assert client.v1.invoice_items.retrieve(bob_item.id).invoice is None
    # After a restart the index is rebuilt from the stored objects.
    with running_sandbox(tmp_path / "sandbox.db") as sb:
        client = sb.client(key)
        assert [s.id for s in client.v1.subscriptions.list(params={"customer": ann.id}).data] == [sub.id]
        assert client.v1.subscriptions.list(params={"customer": bob.id}).data == []
        later = _subscribe(client, bob.id, price.id)
        assert client.v1.invoices.retrieve(str(later.latest_invoice)).amount_due == 500 + 900


def test_list_by_customer_is_newest_first_and_forgets_deleted_customers() -> None:
    with running_sandbox() as sb:
        client = sb.client()
        price = _monthly_price(client)
        customer = client.v1.customers.create(params={"name": "Many"})
        made = [_subscribe(client, customer.id, price.id).id for _ in range(3)]
        listed = client.v1.subscriptions.list(params={"customer": customer.id, "limit": 2})
        assert [s.id for s in listed.data] == made[::-1][:2] and listed.has_more
        client.v1.customers.delete(customer.id)
        assert client.v1.subscriptions.list(params={"customer": customer.id}).data == []
        statuses = client.v1.subscriptions.list(params={"customer": customer.id, "status": "all"}).data
        assert {s.status for s in statuses} == {"canceled"}


def test_a_rolled_back_write_leaves_the_index_as_it_was() -> None:
    store = Store(None)
    store.put("acct", "invoiceitem", {"id": "ii_1", "object": "invoiceitem", "customer": "cus_a"})
    store.commit()
    store.put("acct", "invoiceitem", {"id": "ii_1", "object": "invoiceitem", "customer": "cus_b"})
    store.put("acct", "invoiceitem", {"id": "ii_2", "object": "invoiceitem", "customer": "cus_b"})
    assert store.customer_ids("acct", "invoiceitem", "cus_b") == ["ii_2", "ii_1"]
    store.rollback()
    assert store.customer_ids("acct", "invoiceitem", "cus_a") == ["ii_1"]
    assert store.customer_ids("acct", "invoiceitem", "cus_b") == []
