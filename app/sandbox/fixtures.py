"""Blank objects with the full shape of Stripe's official example objects (fixtures3.json).

Every field of the example is kept. Example values are not state, so they are neutralised using
the SDK's own resource annotations: a field the SDK types as Optional becomes null, a list
becomes empty, a number 0, a nested object is neutralised field by field; strings and booleans
(enums such as `tax_exempt: "none"`, flags such as `livemode: false`) keep the example's value.
Resources then overlay their state on the blank.
"""

from __future__ import annotations

import functools
import importlib
import json
import typing
from pathlib import Path
from typing import Any

import msgspec
from stripe._object_classes import OBJECT_CLASSES

FIXTURES_PATH = Path(__file__).resolve().parent / "fixtures3.json"


@functools.cache
def examples() -> dict[str, Any]:
    return json.loads(FIXTURES_PATH.read_text())["resources"]


def _resource_class(object_type: str) -> type | None:
    location = OBJECT_CLASSES.get(object_type)
    if location is None:
        return None
    module_name, class_name = location
    return getattr(importlib.import_module(module_name), class_name, None)


def _annotations(cls: type | None) -> dict[str, Any]:
    if cls is None:
        return {}
    merged: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        merged.update(getattr(klass, "__annotations__", {}))
    return merged


def _is_optional(annotation: Any) -> bool:
    if isinstance(annotation, str):
        return annotation.startswith("Optional[") or "None" in annotation
    return typing.get_origin(annotation) is typing.Union and type(None) in typing.get_args(annotation)


def _nested_class(annotation: Any) -> type | None:
    return annotation if isinstance(annotation, type) else None


# Nested objects whose mere presence is state (a discount applied, a pending update, an error).
_ABSENT_UNLESS_SET = frozenset(
    {
        "after_expiration",
        "billing_cycle_anchor_config",
        "billing_thresholds",
        "destination",
        "discount",
        "flow",
        "from_invoice",
        "last_finalization_error",
        "last_payment_error",
        "last_setup_error",
        "next_action",
        "parent",
        "pause_collection",
        "pending_invoice_item_interval",
        "pending_update",
        "shipping",
        "shipping_cost",
        "shipping_details",
        "transfer_data",
        "transform_quantity",
        "custom_unit_amount",
        "tiers",
        "flat_amount",
        "recurring",
        "custom_text",
        "payment_method_configuration_details",
        "currency_options",
        "currency_conversion",
        "package_dimensions",
    }
)


def _neutral(value: Any, cls: type | None) -> Any:
    if not isinstance(value, dict):
        return value
    annotations = _annotations(cls)
    result: dict[str, Any] = {}
    for key, item in value.items():
        annotation = annotations.get(key)
        optional = annotation is not None and _is_optional(annotation)
        if key in {"id", "object", "livemode"}:
            result[key] = item
        elif isinstance(item, list):
            result[key] = []
        elif isinstance(item, dict) and item.get("object") == "list":
            result[key] = {"object": "list", "data": [], "has_more": False, "url": item.get("url", "")}
        elif isinstance(item, dict):
            if key in _ABSENT_UNLESS_SET or (optional and ("id" in item or "object" in item)):
                result[key] = None
            else:
                nested = _nested_class(annotation) if not optional else _optional_member(annotation)
                result[key] = _neutral(item, nested) if nested is not None else {}
        elif optional or item is None:
            result[key] = None
        elif isinstance(item, bool | str):
            result[key] = item
        elif isinstance(item, int | float):
            result[key] = 0
        else:
            result[key] = item
    return result


def _optional_member(annotation: Any) -> type | None:
    for member in typing.get_args(annotation):
        if isinstance(member, type) and member is not type(None):
            return member
    return None


@functools.cache
def _blank_encoded(object_type: str) -> bytes:
    example = examples().get(object_type)
    if example is None:
        raise KeyError(f"no example object for {object_type!r}")
    return msgspec.json.encode(_neutral(example, _resource_class(object_type)))


def blank(object_type: str) -> dict[str, Any]:
    """A fresh neutral object of this type (a new copy on every call)."""
    return msgspec.json.decode(_blank_encoded(object_type))


def shaped(object_type: str, **state: Any) -> dict[str, Any]:
    obj = blank(object_type)
    obj.update(state)
    return obj


def missing_fields(example: Any, actual: Any, path: str = "") -> list[str]:
    """Fields of the example that an actual object lacks, recursively (for conformance checks)."""
    missing: list[str] = []
    if isinstance(example, dict) and isinstance(actual, dict):
        if "object" in example and "object" in actual and example["object"] != actual["object"]:
            return []  # a different kind of object in a polymorphic slot (an event's data.object)
        for key, value in example.items():
            where = f"{path}.{key}" if path else key
            if key not in actual:
                missing.append(where)
            elif isinstance(value, dict) and value.get("object") != "list" and key != "metadata":
                missing.extend(missing_fields(value, actual[key], where))
    return missing
