"""Read a Federation from YAML or a dict, turning every problem into one clear `SpecError`."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import ValidationError

from red.errors import SpecError
from red.spec.model import API_VERSION, KIND, Federation, FederationSpec

M = TypeVar("M", Federation, FederationSpec)

_FIXES = {
    "missing": "required field is missing",
}


def _unknown_field(loc: tuple[int | str, ...]) -> str:
    """`unknown field`, the closest real field if one is close, and the command that lists them all."""
    from red.spec.fields import did_you_mean, fields_of, model_at

    parent = model_at(loc[:-1])
    hint = did_you_mean(str(loc[-1]), list(fields_of(parent))) if parent is not None and loc else None
    where = _path(tuple(p for p in loc[:-1] if not isinstance(p, int))) if len(loc) > 1 else ""
    listing = f"`red explain {where}` lists the fields" if where else "`red explain` lists the fields"
    return f"unknown field; did you mean {hint!r}? ({listing})" if hint else f"unknown field; {listing}"


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not out:
            out = str(part)
        else:
            out += f".{part}"
    return out or "(top level)"


def format_validation_error(err: ValidationError, prefix: str = "") -> list[str]:
    """One line per problem: `field.path: what is wrong and how to fix it`."""
    lines: list[str] = []
    for e in err.errors():
        loc = tuple(e["loc"])
        path = _path(((prefix,) if prefix else ()) + loc)
        kind = e["type"]
        msg = str(e["msg"]).removeprefix("Value error, ")
        if kind == "extra_forbidden":
            msg = _unknown_field(((prefix,) if prefix else ()) + loc)
        elif kind == "literal_error" and loc == ("apiVersion",):
            msg = f"must be {API_VERSION!r} (got {e.get('input')!r})"
        elif kind == "literal_error" and loc == ("kind",):
            msg = f"must be {KIND!r} (got {e.get('input')!r}); this file does not describe a Red Federation"
        elif kind in _FIXES:
            msg = _FIXES[kind]
        elif "input" in e and kind not in ("value_error", "assertion_error") and not isinstance(
            e["input"], dict | list
        ):
            msg = f"{msg} (got {e['input']!r})"
        for line in msg.splitlines():  # a cross-field check reports all its problems, one per line
            if line.startswith("spec."):
                lines.append(line)  # cross-field messages already name their fields
            else:
                lines.append(f"{path}: {line}")
    return lines


def _without_unknown_fields(data: Any, err: ValidationError) -> Any | None:
    """`data` less its unknown fields when those are the only problems, else None.

    Pydantic runs the cross-field checks only on otherwise valid input, so a typo would hide them.
    Dropping an unknown field changes nothing else, so a second pass without them finds the rest.
    """
    errors = err.errors()
    if not errors or any(e["type"] != "extra_forbidden" for e in errors):
        return None
    pruned = copy.deepcopy(data)
    for e in errors:
        *parents, key = e["loc"]
        node = pruned
        for part in parents:
            node = node[part]
        node.pop(key, None)
    return pruned


def _validate_all(model: type[M], data: Any, context: dict[str, Any], source: str, prefix: str = "") -> M:
    """Validate, reporting every problem: field errors and, behind unknown fields, cross-field ones."""
    try:
        return model.model_validate(data, context=context)
    except ValidationError as err:
        problems = format_validation_error(err, prefix)
        pruned = _without_unknown_fields(data, err)
        if pruned is not None:
            try:
                model.model_validate(pruned, context=context)
            except ValidationError as rest:
                problems += format_validation_error(rest, prefix)
        raise _raise(problems, source) from None


def _raise(problems: list[str], source: str) -> SpecError:
    head = f"{source}: invalid Federation" if len(problems) > 1 else f"{source}: {problems[0]}"
    body = "\n".join(f"  - {p}" for p in problems) if len(problems) > 1 else ""
    return SpecError(head + ("\n" + body if body else ""), problems)


def federation_from_dict(
    data: Any, *, source: str = "<object>", check_registry: bool = True
) -> Federation:
    """Validate a whole Federation object. `check_registry` checks schema/algorithm/task names too."""
    if not isinstance(data, dict):
        raise SpecError(
            f"{source}: expected a mapping with apiVersion, kind, metadata and spec "
            f"(got {type(data).__name__})"
        )
    return _validate_all(Federation, data, {"check_registry": check_registry}, source)


def spec_from_dict(data: Any, *, source: str = "spec", check_registry: bool = False) -> FederationSpec:
    """Validate only a `spec` mapping (what the operator reads from a custom resource)."""
    return _validate_all(FederationSpec, data or {}, {"check_registry": check_registry}, source, prefix="spec")


def load_federation(path: str | Path, *, check_registry: bool = True) -> Federation:
    """Read and validate a Federation YAML file. Raises `SpecError` with the file and field named."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as err:
        raise SpecError(f"{p}: cannot read the file ({err.strerror}); check the path") from None
    return federation_from_yaml(text, source=str(p), check_registry=check_registry)


def federation_from_yaml(text: str, *, source: str = "<stdin>", check_registry: bool = True) -> Federation:
    """Validate a Federation given as YAML text (a file's content, or stdin for `red validate -`)."""
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as err:
        where = ""
        mark = getattr(err, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise SpecError(f"{source}: malformed YAML{where}: {problem}; fix the syntax and try again") from None
    if not docs:
        raise SpecError(f"{source}: the file is empty; it must hold one Federation object")
    feds = [d for d in docs if isinstance(d, dict) and d.get("kind") == KIND]
    if len(docs) > 1 and len(feds) == 1:
        docs = feds
    if len(docs) > 1:
        raise SpecError(f"{source}: holds {len(docs)} YAML documents; put one Federation per file")
    return federation_from_dict(docs[0], source=source, check_registry=check_registry)
