"""The model's fields by path: what `red explain` prints and where "did you mean" finds its suggestions.

    red explain spec.resources        # like `kubectl explain federation.spec.resources`

Paths use the YAML (camelCase) names. A list field's items are reached through the list's name
(`spec.cluster.nodePools.tolerations`); the `federation.` prefix kubectl uses is accepted.
"""

from __future__ import annotations

import difflib
import typing
from collections.abc import Sequence
from typing import Any, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from red.errors import SpecError
from red.spec.model import Federation, Model


def _inner_model(tp: Any) -> type[BaseModel] | None:
    """The model a field holds, directly, optionally, or as list items."""
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp
    for arg in get_args(tp):
        if get_origin(arg) is typing.Annotated:
            arg = get_args(arg)[0]
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def fields_of(model: type[BaseModel]) -> dict[str, FieldInfo]:
    """YAML name -> field, in declaration order."""
    return {(f.alias or name): f for name, f in model.model_fields.items()}


def model_at(path: Sequence[str | int], root: type[BaseModel] = Federation) -> type[BaseModel] | None:
    """The model at a validation error's location (list indices skipped), or None if it is not a model."""
    model: type[BaseModel] | None = root
    for part in path:
        if model is None:
            return None
        if isinstance(part, int):
            continue
        field = fields_of(model).get(part)
        model = _inner_model(field.annotation) if field is not None else None
    return model


def did_you_mean(key: str, candidates: Sequence[str]) -> str | None:
    """The closest candidate to a misspelt key (case-insensitive), or None when none is close."""
    lowered = {c.lower(): c for c in candidates}
    close = difflib.get_close_matches(key.lower(), list(lowered), n=1, cutoff=0.7)
    return lowered[close[0]] if close else None


def _path_parts(path: str) -> list[str]:
    parts = [p.removesuffix("[]") for p in path.strip().strip(".").split(".") if p]
    if parts and parts[0].lower() in ("federation", "federations", "fed"):
        parts = parts[1:]
    if parts and parts[0] not in fields_of(Federation):
        parts = ["spec", *parts]  # `red explain resources` means spec.resources
    return parts


def _yaml(default: str) -> str:
    """The reference's `repr` default, as a user would write it in YAML."""
    return {"False": "false", "True": "true"}.get(default.strip("`"), default.strip("`"))


def explain(path: str = "spec") -> str:
    """The fields at `path`, one per line with type, default and meaning (from the model)."""
    from red.spec.reference import _default, _type_name

    parts = _path_parts(path) or ["spec"]
    model: type[BaseModel] = Federation
    for i, part in enumerate(parts):
        fields = fields_of(model)
        if part not in fields:
            where = ".".join(parts[:i]) or "a Federation"
            hint = did_you_mean(part, list(fields))
            fix = f"did you mean {hint!r}? " if hint else ""
            raise SpecError(f"{where} has no field {part!r}; {fix}fields: {', '.join(fields)}")
        inner = _inner_model(fields[part].annotation)
        if inner is None:
            f = fields[part]
            default = _default(f)
            return (
                f"FIELD: {'.'.join(parts)} ({_type_name(f.annotation)})"
                + (f", default {_yaml(default)}" if default and default != "required" else "")
                + f"\n  {(f.description or '').strip()}\n"
            )
        model = inner
    rows = []
    for name, f in fields_of(model).items():
        default = _default(f)
        inner = _inner_model(f.annotation)
        doc = f.description or (inner.__doc__ or "" if inner is not None and inner.__doc__ != Model.__doc__ else "")
        rows.append((name, _type_name(f.annotation), default, doc.strip().splitlines()[0] if doc.strip() else ""))
    width = max(len(r[0]) for r in rows)
    twidth = max(len(r[1]) for r in rows)
    lines = [f"FIELDS of {'.'.join(parts)}:"]
    for name, tp, default, desc in rows:
        extra = "(required)" if default == "required" else f"(default {_yaml(default)})" if default else ""
        lines.append(f"  {name:<{width}}  {tp:<{twidth}}  {' '.join(x for x in (desc, extra) if x)}".rstrip())
    return "\n".join(lines) + "\n"
