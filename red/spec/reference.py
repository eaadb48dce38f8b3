"""Generate the spec reference (Markdown) from the model, so the docs cannot drift from the code.

    python -m red.spec.reference > docs/spec-reference.md
"""

from __future__ import annotations

import sys
import types
import typing
from typing import Any, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from red.spec.model import FederationSpec


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is typing.Annotated:
        return _type_name(get_args(tp)[0])
    if origin in (typing.Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        return " | ".join(_type_name(a) for a in args)
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if origin in (list, tuple):
        return f"list[{', '.join(_type_name(a) for a in get_args(tp))}]"
    if origin is dict:
        return "map"
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return "object"
    return getattr(tp, "__name__", str(tp))


def _default(f: FieldInfo) -> str:
    if f.default is not PydanticUndefined:
        return "" if f.default is None else f"`{f.default!r}`".replace("'", '"')
    if f.default_factory is not None:
        try:
            value = f.default_factory()  # type: ignore[call-arg]
        except TypeError:
            return ""
        if isinstance(value, BaseModel):
            return ""
        return f"`{value!r}`" if value not in ({}, []) else ""
    return "required"


def _rows(model: type[BaseModel], prefix: str) -> list[str]:
    rows: list[str] = []
    for name, f in model.model_fields.items():
        key = f"{prefix}.{f.alias or name}"
        tp = f.annotation
        rows.append(f"| `{key}` | {_type_name(tp)} | {_default(f)} | {(f.description or '').strip()} |")
        inner = [a for a in (get_args(tp) or (tp,)) if isinstance(a, type) and issubclass(a, BaseModel)]
        if get_origin(tp) is list and inner:
            rows.extend(_rows(inner[0], key + "[]"))
        elif inner:
            rows.extend(_rows(inner[0], key))
    return rows


def render() -> str:
    head = [
        "# Federation spec reference",
        "",
        "Generated from `red/spec/model.py` by `python -m red.spec.reference`; a test fails when it drifts.",
        "Fields are camelCase in YAML. `spec.cluster` is read only by the Kubernetes operator.",
        "",
        "| field | type | default | meaning |",
        "|---|---|---|---|",
    ]
    return "\n".join(head + _rows(FederationSpec, "spec")) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
