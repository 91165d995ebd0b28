"""Validate and coerce request parameters against the SDK's own typed definitions (stripe.params).

Each params class is a TypedDict whose annotations are mostly forward references (strings) to
nested TypedDicts of the same module, so the annotations are parsed here by hand rather than
with typing.get_type_hints (which fails on names imported only for type checking).
"""

from __future__ import annotations

import functools
import importlib
import re
import sys
import typing
from dataclasses import dataclass, field
from typing import Any, ForwardRef, Literal

from stripe._request_options import RequestOptions

from app.sandbox.wire import StripeError

# Request options travel as headers (Idempotency-Key, Stripe-Account, ...), never as parameters.
REQUEST_OPTION_KEYS = frozenset(RequestOptions.__annotations__)


@dataclass(eq=False)
class Spec:
    kind: Literal["str", "int", "float", "bool", "any", "enum", "list", "dict", "obj", "union"]
    values: tuple[Any, ...] = ()  # enum members
    item: Spec | None = None  # list / dict element
    members: tuple[Spec, ...] = ()  # union members
    cls: type | None = None  # obj: the TypedDict
    fields: dict[str, Spec] = field(default_factory=dict)
    required: frozenset[str] = frozenset()
    resolved: bool = False


def _is_typeddict(target: Any) -> bool:
    # typing_extensions.TypedDict classes are not recognised by typing.is_typeddict on 3.11.
    return isinstance(target, type) and issubclass(target, dict) and hasattr(target, "__required_keys__")


_SCALARS = {"str": "str", "int": "int", "float": "float", "bool": "bool", "Any": "any", "object": "any"}
_TOKEN = re.compile(
    r"\s*(?:(?P<name>[A-Za-z_][A-Za-z0-9_.]*)|(?P<str>'[^']*'|\"[^\"]*\")|(?P<num>-?\d+)|(?P<punct>[\[\],|]))"
)


class _AnnotationParser:
    """Recursive-descent parser for annotation strings such as "Literal['']|List[FooParamsItem]"."""

    def __init__(self, text: str, module: Any) -> None:
        self.tokens: list[tuple[str, str]] = []
        position = 0
        text = text.strip()
        while position < len(text):
            match = _TOKEN.match(text, position)
            if match is None:
                raise ValueError(f"cannot parse annotation {text!r}")
            kind = match.lastgroup or "punct"
            self.tokens.append((kind, match.group(kind)))
            position = match.end()
        self.index = 0
        self.module = module

    def peek(self) -> str | None:
        return self.tokens[self.index][1] if self.index < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def union(self) -> Spec:
        members = [self.atom()]
        while self.peek() == "|":
            self.take()
            members.append(self.atom())
        return _union(members)

    def arguments(self) -> list[Spec]:
        args: list[Spec] = []
        if self.peek() != "[":
            return args
        self.take()
        while True:
            args.append(self.union())
            token = self.take()[1]
            if token == "]":
                return args
            if token != ",":
                raise ValueError("malformed annotation")

    def atom(self) -> Spec:
        kind, text = self.take()
        if kind == "str":
            return Spec("enum", values=(text[1:-1],))
        if kind == "num":
            return Spec("enum", values=(int(text),))
        name = text.rsplit(".", 1)[-1]
        args = self.arguments()
        if name == "Literal":
            return Spec("enum", values=tuple(v for a in args for v in a.values))
        if name in {"NotRequired", "Required", "Optional"}:
            return args[0]
        if name == "None":
            return Spec("enum", values=(None,))
        if name in {"List", "list", "Sequence"}:
            return Spec("list", item=args[0] if args else Spec("any"))
        if name in {"Dict", "dict", "Mapping", "UntypedStripeObject"}:
            return Spec("dict", item=args[-1] if args else Spec("any"))
        if name in _SCALARS:
            return Spec(_SCALARS[name])  # type: ignore[arg-type]
        target = getattr(self.module, name, None)
        if isinstance(target, type) and _is_typeddict(target):
            return _object_spec(target)
        return Spec("any")


def _union(members: list[Spec]) -> Spec:
    """The SDK types enums as `Literal[...] | str` for forward compatibility; Stripe itself
    accepts only the listed values, so the catch-all `str` is dropped beside a string enum."""
    has_enum = any(m.kind == "enum" and any(isinstance(v, str) and v for v in m.values) for m in members)
    if has_enum:
        members = [m for m in members if m.kind != "str"]
    enums = [m for m in members if m.kind == "enum"]
    if len(enums) > 1:
        merged = Spec("enum", values=tuple(v for m in enums for v in m.values))
        members = [merged, *(m for m in members if m.kind != "enum")]
    return members[0] if len(members) == 1 else Spec("union", members=tuple(members))


def _spec_from_annotation(annotation: Any, module: Any) -> Spec:
    if isinstance(annotation, ForwardRef):
        annotation = annotation.__forward_arg__
    if isinstance(annotation, str):
        return _AnnotationParser(annotation, module).union()
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.NotRequired, typing.Required):
        return _spec_from_annotation(args[0], module)
    if origin is list:
        return Spec("list", item=_spec_from_annotation(args[0], module))
    if origin is dict:
        return Spec("dict", item=_spec_from_annotation(args[1], module))
    if origin is typing.Union:
        return _union([_spec_from_annotation(a, module) for a in args])
    if origin is Literal:
        return Spec("enum", values=args)
    if annotation is type(None):
        return Spec("enum", values=(None,))
    if isinstance(annotation, type):
        if _is_typeddict(annotation):
            return _object_spec(annotation)
        if annotation.__name__ in _SCALARS:
            return Spec(_SCALARS[annotation.__name__])  # type: ignore[arg-type]
    return Spec("any")


@functools.cache
def _object_spec(cls: type) -> Spec:
    # Fields are filled in lazily: nested classes can refer back to their parents.
    return Spec("obj", cls=cls)


def _resolve(spec: Spec) -> Spec:
    if spec.resolved or spec.cls is None:
        return spec
    cls = spec.cls
    module = sys.modules[cls.__module__]
    annotations: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        annotations.update(getattr(klass, "__annotations__", {}))
    spec.fields = {
        name: _spec_from_annotation(annotation, module)
        for name, annotation in annotations.items()
        if name not in REQUEST_OPTION_KEYS
    }
    spec.required = frozenset(getattr(cls, "__required_keys__", frozenset())) - REQUEST_OPTION_KEYS
    spec.resolved = True
    return spec


@functools.cache
def params_class(dotted: str) -> type:
    """'CustomerCreateParams' or 'checkout.SessionCreateParams' -> the class in stripe.params."""
    namespace, _, name = dotted.rpartition(".")
    module = importlib.import_module("stripe.params" + (f".{namespace}" if namespace else ""))
    return getattr(module, name)


def validate(dotted: str, raw: dict[str, Any]) -> dict[str, Any]:
    """Raw parsed parameters -> typed values, or a StripeError like Stripe's."""
    spec = _object_spec(params_class(dotted))
    return _coerce_object(spec, raw, "")


def _param_name(prefix: str, key: str) -> str:
    return f"{prefix}[{key}]" if prefix else key


def _coerce_object(spec: Spec, value: Any, prefix: str) -> dict[str, Any]:
    spec = _resolve(spec)
    if not isinstance(value, dict):
        raise StripeError(
            400,
            f"Invalid object: {prefix} must be a hash",
            code="parameter_invalid_hash",
            param=prefix or None,
        )
    result: dict[str, Any] = {}
    for key, item in value.items():
        name = _param_name(prefix, key)
        child = spec.fields.get(key)
        if child is None:
            raise StripeError(
                400, f"Received unknown parameter: {name}", code="parameter_unknown", param=name
            )
        result[key] = _coerce(child, item, name)
    for key in sorted(spec.required - value.keys()):
        name = _param_name(prefix, key)
        raise StripeError(400, f"Missing required param: {name}.", code="parameter_missing", param=name)
    return result


def _invalid(kind: str, label: str, value: Any, name: str) -> StripeError:
    shown = value if isinstance(value, str) else "{...}"
    return StripeError(400, f"Invalid {label}: {shown}", code=f"parameter_invalid_{kind}", param=name)


def _coerce(spec: Spec, value: Any, name: str) -> Any:
    kind = spec.kind
    if kind == "union":
        # Literal[''] members mean "unset" and are tried first; otherwise the first fit wins.
        errors: list[StripeError] = []
        for member in sorted(spec.members, key=lambda m: m.kind != "enum"):
            try:
                return _coerce(member, value, name)
            except StripeError as error:
                errors.append(error)
        raise next((e for e in reversed(errors) if e.code != "parameter_invalid_empty"), errors[-1])
    if kind == "any":
        return value
    if kind == "obj":
        return _coerce_object(spec, value, name)
    if kind == "dict":
        if not isinstance(value, dict):
            raise _invalid("hash", "hash", value, name)
        assert spec.item is not None
        return {k: _coerce(spec.item, v, _param_name(name, k)) for k, v in value.items()}
    if kind == "list":
        assert spec.item is not None
        if isinstance(value, dict) and all(k.isdigit() for k in value):
            items = [value[k] for k in sorted(value, key=int)]
        elif isinstance(value, list):
            items = value
        else:
            raise _invalid("array", "array", value, name)
        return [_coerce(spec.item, v, f"{name}[{i}]") for i, v in enumerate(items)]
    if isinstance(value, dict):
        raise _invalid("string" if kind in {"str", "enum"} else kind, "value", value, name)
    if kind == "str":
        return value
    if kind == "enum":
        if value in spec.values:
            return value
        if value == "" and "" not in spec.values:
            raise StripeError(
                400,
                f"You passed an empty string for '{name}'. We assume empty values are an attempt to unset a parameter; however '{name}' cannot be unset.",
                code="parameter_invalid_empty",
                param=name,
            )
        choices = ", ".join(str(v) for v in spec.values if v not in ("", None))
        raise StripeError(
            400, f"Invalid {name}: must be one of {choices}", code="parameter_invalid_string", param=name
        )
    if kind == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
            return int(value)
        raise _invalid("integer", "integer", value, name)
    if kind == "float":
        try:
            return float(value)
        except ValueError:
            raise _invalid("float", "decimal", value, name) from None
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if value in ("true", "false"):
            return value == "true"
        raise _invalid("boolean", "boolean", value, name)
    return value
