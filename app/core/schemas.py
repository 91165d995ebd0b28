"""Field types shared by the request and response Structs of every domain."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

# Ids chosen by the API user (features, plans, customers, ...): readable in URLs and logs.
RefId = Annotated[str, msgspec.Meta(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:@-]*$")]
CustomerRefId = Annotated[
    str, msgspec.Meta(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:@|+-]*$")
]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Description = Annotated[str, msgspec.Meta(max_length=2000)]
Metadata = Annotated[dict[str, str], msgspec.Meta(max_length=50)]
MinorUnits = Annotated[int, msgspec.Meta(ge=0, le=99_999_999_999)]
Quantity = Annotated[int, msgspec.Meta(ge=0, le=1_000_000_000)]
CurrencyCode = Annotated[str, msgspec.Meta(min_length=3, max_length=3, pattern=r"^[A-Za-z]{3}$")]


class ApiStruct(msgspec.Struct, rename="camel", forbid_unknown_fields=True, kw_only=True):
    """Request bodies: camelCase, and an unknown field is an error rather than silently ignored."""


class OutStruct(msgspec.Struct, rename="camel", kw_only=True):
    """Response bodies: camelCase."""


def unset_fields(struct: msgspec.Struct) -> dict[str, Any]:
    """The fields a PATCH body actually sent (UNSET ones left out)."""
    return {
        f: getattr(struct, f) for f in struct.__struct_fields__ if getattr(struct, f) is not msgspec.UNSET
    }
