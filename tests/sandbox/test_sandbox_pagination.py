"""List objects: envelope, newest first, limit / starting_after / ending_before, auto-paging."""

from __future__ import annotations

import stripe


def test_lists_page_newest_first(client: stripe.StripeClient) -> None:
    created = [client.v1.products.create(params={"name": f"P{n}"}).id for n in range(7)]
    newest_first = list(reversed(created))
    page = client.v1.products.list(params={"limit": 3})
    assert page["object"] == "list"
    assert page.url == "/v1/products"
    assert page.has_more is True
    assert [p.id for p in page.data] == newest_first[:3]
    after = client.v1.products.list(params={"limit": 3, "starting_after": page.data[-1].id})
    assert [p.id for p in after.data] == newest_first[3:6]
    last = client.v1.products.list(params={"limit": 3, "starting_after": after.data[-1].id})
    assert [p.id for p in last.data] == newest_first[6:]
    assert last.has_more is False
    before = client.v1.products.list(params={"limit": 2, "ending_before": after.data[0].id})
    assert [p.id for p in before.data] == newest_first[1:3]
    assert [p.id for p in client.v1.products.list(params={"limit": 2}).auto_paging_iter()] == newest_first


def test_list_filters(client: stripe.StripeClient) -> None:
    kept = client.v1.products.create(params={"name": "Kept"})
    archived = client.v1.products.create(params={"name": "Archived"})
    client.v1.products.update(archived.id, params={"active": False})
    assert [p.id for p in client.v1.products.list(params={"active": True}).data] == [kept.id]
    assert [p.id for p in client.v1.products.list(params={"active": False}).data] == [archived.id]
