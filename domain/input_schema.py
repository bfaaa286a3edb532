"""Input schemas: a JSON Schema subset that a definition may declare for its workflow input.

Our own small validator rather than the `jsonschema` package: the subset is small, a schema
must be refused at registration when it uses a keyword we do not enforce (a definition must
never quietly mean less than it says), and errors must name the field as the API shows it
(`input.items[0].quantity`). Pure: no I/O, no remote `$ref`, no regular expressions.

Keywords: `type` (a name or a list of names: object, array, string, integer, number,
boolean, null), `properties`, `required`, `additionalProperties` (boolean or schema),
`dependentRequired`, `items`, `minItems`/`maxItems`, `enum`, `const`,
`minimum`/`maximum`, `exclusiveMinimum`/`exclusiveMaximum`, `minLength`/`maxLength`;
annotations (`title`, `description`, `default`, `examples`, `$schema`, `$comment`) are
allowed and ignored.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from domain.exceptions import DomainError, InvalidDefinition

TYPES = ("object", "array", "string", "integer", "number", "boolean", "null")
_ANNOTATIONS = frozenset(("title", "description", "default", "examples", "$schema", "$comment"))
_NUMBER_BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
_COUNTS = ("minLength", "maxLength", "minItems", "maxItems")
KEYWORDS = frozenset(("type", "properties", "required", "additionalProperties",
                      "dependentRequired", "items", "enum", "const", *_NUMBER_BOUNDS,
                      *_COUNTS)) | _ANNOTATIONS
MAX_DEPTH = 16


class InvalidInput(DomainError, ValueError):
    """A workflow input does not fit its definition's input schema; `field` names where."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


def check_schema(schema: Any, field: str = "input_schema", depth: int = 0) -> None:
    """Refuses a schema outside the subset (unknown keyword, wrong shape), naming the field."""
    _check_is_schema(schema, field, depth)
    _check_type_keyword(schema.get("type"), field)
    _check_object_keywords(schema, field, depth)
    if "items" in schema:
        check_schema(schema["items"], f"{field}.items", depth + 1)
    _check_value_keywords(schema, field)


def _check_is_schema(schema: Any, field: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise InvalidDefinition(field, f"nested deeper than {MAX_DEPTH} levels")
    if not isinstance(schema, Mapping):
        raise InvalidDefinition(field, "must be an object (a JSON Schema)")
    unknown = sorted(set(schema) - KEYWORDS)
    if unknown:
        raise InvalidDefinition(f"{field}.{unknown[0]}",
                                f"is not supported; supported keywords: {sorted(KEYWORDS)}")


def _check_type_keyword(kind: Any, field: str) -> None:
    if kind is None:
        return
    names = kind if isinstance(kind, list) else [kind]
    if not names or any(n not in TYPES for n in names) or len(set(names)) != len(names):
        raise InvalidDefinition(f"{field}.type", f"{kind!r} must be one of {list(TYPES)}"
                                                 " or a list of them")


def _check_object_keywords(schema: Mapping[str, Any], field: str, depth: int) -> None:
    """`properties`, `required`, `additionalProperties` and `dependentRequired`."""
    properties = schema.get("properties", {})
    if not isinstance(properties, Mapping):
        raise InvalidDefinition(f"{field}.properties", "must be an object of schemas")
    for name, sub in properties.items():
        check_schema(sub, f"{field}.properties.{name}", depth + 1)
    if not _string_list(schema.get("required", [])):
        raise InvalidDefinition(f"{field}.required", "must be a list of distinct names")
    additional = schema.get("additionalProperties", True)
    if not isinstance(additional, bool):
        check_schema(additional, f"{field}.additionalProperties", depth + 1)
    dependent = schema.get("dependentRequired", {})
    if not isinstance(dependent, Mapping) or not all(_string_list(v) for v in dependent.values()):
        raise InvalidDefinition(f"{field}.dependentRequired",
                                "must map names to lists of distinct names")


def _check_value_keywords(schema: Mapping[str, Any], field: str) -> None:
    """`enum`, the number bounds and the length and item counts."""
    if "enum" in schema and (not isinstance(schema["enum"], list) or not schema["enum"]):
        raise InvalidDefinition(f"{field}.enum", "must be a non-empty list")
    for bound in _NUMBER_BOUNDS:
        if bound in schema and not _is_number(schema[bound]):
            raise InvalidDefinition(f"{field}.{bound}", "must be a number")
    for count in _COUNTS:
        if count in schema and not (_is_integer(schema[count]) and schema[count] >= 0):
            raise InvalidDefinition(f"{field}.{count}", "must be an integer >= 0")


def validate(schema: Mapping[str, Any], value: Any, field: str = "input") -> None:
    """Raises InvalidInput naming the first place where `value` does not fit `schema`."""
    kind = schema.get("type")
    if kind is not None:
        names = kind if isinstance(kind, list) else [kind]
        if not any(_is_type(value, n) for n in names):
            raise InvalidInput(field, f"must be {' or '.join(names)}, not {_type_name(value)}")
    if "const" in schema and not _equal(value, schema["const"]):
        raise InvalidInput(field, f"must be {schema['const']!r}")
    if "enum" in schema and not any(_equal(value, option) for option in schema["enum"]):
        raise InvalidInput(field, f"{_short(value)} is not one of {schema['enum']!r}")
    if isinstance(value, Mapping):
        _validate_object(schema, value, field)
    elif isinstance(value, list):
        _validate_array(schema, value, field)
    elif isinstance(value, str):
        _bounds(field, len(value), schema.get("minLength"), schema.get("maxLength"),
                "characters")
    elif _is_number(value):
        _validate_number(schema, value, field)


def _validate_object(schema: Mapping[str, Any], value: Mapping[str, Any], field: str) -> None:
    _check_required(schema, value, field)
    properties = schema.get("properties", {})
    additional = schema.get("additionalProperties", True)
    for name, item in value.items():
        sub = properties.get(name)
        if sub is not None:
            validate(sub, item, f"{field}.{name}")
        elif additional is False:
            raise InvalidInput(f"{field}.{name}", "is not allowed here")
        elif isinstance(additional, Mapping):
            validate(additional, item, f"{field}.{name}")


def _check_required(schema: Mapping[str, Any], value: Mapping[str, Any], field: str) -> None:
    """`required`, then `dependentRequired`: a missing name is reported before its value
    is validated."""
    for name in schema.get("required", []):
        if name not in value:
            raise InvalidInput(f"{field}.{name}", "is required")
    for name, needs in schema.get("dependentRequired", {}).items():
        missing = next((other for other in needs if other not in value), None)
        if name in value and missing is not None:
            raise InvalidInput(f"{field}.{missing}", f"is required with {name!r}")


def _validate_array(schema: Mapping[str, Any], value: list[Any], field: str) -> None:
    _bounds(field, len(value), schema.get("minItems"), schema.get("maxItems"), "items")
    items = schema.get("items")
    if items is not None:
        for index, item in enumerate(value):
            validate(items, item, f"{field}[{index}]")


def _validate_number(schema: Mapping[str, Any], value: float, field: str) -> None:
    if "minimum" in schema and value < schema["minimum"]:
        raise InvalidInput(field, f"{value!r} is less than the minimum {schema['minimum']!r}")
    if "maximum" in schema and value > schema["maximum"]:
        raise InvalidInput(field, f"{value!r} is more than the maximum {schema['maximum']!r}")
    if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
        raise InvalidInput(field, f"{value!r} must be more than {schema['exclusiveMinimum']!r}")
    if "exclusiveMaximum" in schema and value >= schema["exclusiveMaximum"]:
        raise InvalidInput(field, f"{value!r} must be less than {schema['exclusiveMaximum']!r}")


def _bounds(field: str, size: int, low: int | None, high: int | None, unit: str) -> None:
    if low is not None and size < low:
        raise InvalidInput(field, f"has {size} {unit}, fewer than the {low} required")
    if high is not None and size > high:
        raise InvalidInput(field, f"has {size} {unit}, more than the {high} allowed")


def _is_type(value: Any, name: str) -> bool:
    if name == "object":
        return isinstance(value, Mapping)
    if name == "array":
        return isinstance(value, list)
    if name == "string":
        return isinstance(value, str)
    if name == "integer":  # JSON Schema: 1.0 is an integer too
        return _is_integer(value) or (_is_number(value) and float(value).is_integer())
    if name == "number":
        return _is_number(value)
    if name == "boolean":
        return isinstance(value, bool)
    return value is None


def _type_name(value: Any) -> str:
    return next((n for n in TYPES if n != "number" and _is_type(value, n)), "number")


def _is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value))


def _equal(value: Any, expected: Any) -> bool:
    # JSON equality: true is not 1, unlike in Python.
    if isinstance(value, bool) or isinstance(expected, bool):
        return isinstance(value, bool) and isinstance(expected, bool) and value == expected
    return bool(value == expected)


def _string_list(value: Any) -> bool:
    return (isinstance(value, Sequence) and not isinstance(value, str)
            and all(isinstance(v, str) for v in value) and len(set(value)) == len(value))


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
