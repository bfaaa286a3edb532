"""Input mapping: step inputs may refer to the workflow input and earlier steps' outputs.

Syntax (documented in the README): a string value `"${input.orderId}"` is replaced by that
value with its type kept; `"${steps.reserve-inventory.reservationId}"` by a field of an
earlier step's output; references embedded in a longer string are interpolated as text
(`"order-${input.orderId}"`). Paths descend through objects with dots.

Fallbacks: an object `{"$first": [a, b, ...]}` stands for the first alternative whose every
reference resolves (alternatives are templates themselves, e.g. a literal `[]`); the
alternative `{"$omit": true}` leaves the field out of the enclosing object (or the element
out of the enclosing list). When no alternative resolves, the reference is unresolved as
usual.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from domain.exceptions import InvalidDefinition

_REFERENCE = re.compile(r"\$\{([^}]*)\}")
FIRST = "$first"
OMIT = "$omit"


class _Omitted:
    """The value of an `{"$omit": true}` alternative: left out of its container."""


_OMITTED = _Omitted()


class UnresolvedReference(LookupError):
    """A reference names a value that is not there (yet)."""


def references(template: Any) -> list[str]:
    """Every `${...}` expression inside a (nested) input template."""
    found: list[str] = []
    if isinstance(template, str):
        found.extend(m.group(1).strip() for m in _REFERENCE.finditer(template))
    elif isinstance(template, Mapping):
        for value in template.values():
            found.extend(references(value))
    elif isinstance(template, Sequence) and not isinstance(template, bytes | bytearray):
        for value in template:
            found.extend(references(value))
    return found


def _strings(template: Any) -> list[str]:
    if isinstance(template, str):
        return [template]
    if isinstance(template, Mapping):
        return [t for value in template.values() for t in _strings(value)]
    if isinstance(template, list | tuple):
        return [t for value in template for t in _strings(value)]
    return []


def _check_fallbacks(field: str, template: Any) -> None:
    """`$first` holds a non-empty list; `{"$omit": true}` only as one of its alternatives."""
    if isinstance(template, Mapping):
        if FIRST in template:
            alternatives = template[FIRST]
            if len(template) != 1 or not isinstance(alternatives, list | tuple) \
                    or not alternatives:
                raise InvalidDefinition(field, f"{FIRST!r} must be the only key, holding a "
                                               "non-empty list of alternatives")
            for alternative in alternatives:
                if not _is_omit(alternative):
                    _check_fallbacks(field, alternative)
            return
        if OMIT in template:
            raise InvalidDefinition(field, f"{{{OMIT!r}: true}} is only allowed as an "
                                           f"alternative of {FIRST!r}")
        for value in template.values():
            _check_fallbacks(field, value)
    elif isinstance(template, list | tuple):
        for value in template:
            _check_fallbacks(field, value)


def _is_omit(template: Any) -> bool:
    return isinstance(template, Mapping) and len(template) == 1 and template.get(OMIT) is True


def check_references(field: str, template: Any, step_id: str, earlier_steps: Sequence[str],
                     later_steps: Sequence[str], *, allow_self: bool = False) -> None:
    """Rejects references to unknown roots, to the step itself or to later steps (a cycle),
    and malformed fallbacks.

    A compensation may refer to its own step's output (`allow_self`): it runs afterwards."""
    _check_fallbacks(field, template)
    for text in _strings(template):
        if "${" in _REFERENCE.sub("", text):
            raise InvalidDefinition(field, f"{text!r} has an unclosed '${{' reference")
    for expression in references(template):
        parts = expression.split(".")
        root = parts[0]
        if any(not part for part in parts):
            raise InvalidDefinition(field, f"reference ${{{expression}}} has an empty path part")
        if root == "input":
            continue
        if root != "steps" or len(parts) < 2 or not parts[1]:
            raise InvalidDefinition(
                field, f"reference ${{{expression}}} must start with 'input.' or 'steps.<step_id>'"
            )
        target = parts[1]
        if (target == step_id and not allow_self) or target in later_steps:
            raise InvalidDefinition(
                field,
                f"reference ${{{expression}}} points at step {target!r}, which does not run "
                f"before {step_id!r}: input mappings must not form a cycle",
            )
        if target not in earlier_steps and target != step_id:
            raise InvalidDefinition(field, f"reference ${{{expression}}} names unknown step {target!r}")


def resolve(template: Any, workflow_input: Mapping[str, Any],
            outputs: Mapping[str, Mapping[str, Any]]) -> Any:
    """Substitutes references with values from the workflow input and step outputs."""
    value = _resolve(template, workflow_input, outputs)
    return {} if value is _OMITTED else value


def _resolve(template: Any, workflow_input: Mapping[str, Any],
             outputs: Mapping[str, Mapping[str, Any]]) -> Any:
    if isinstance(template, Mapping) and FIRST in template:
        unresolved: list[str] = []
        for alternative in template[FIRST]:
            if _is_omit(alternative):
                return _OMITTED
            try:
                return _resolve(alternative, workflow_input, outputs)
            except UnresolvedReference as e:
                unresolved.append(str(e))
        raise UnresolvedReference(f"no alternative of {FIRST} resolves: {'; '.join(unresolved)}")
    if isinstance(template, str):
        whole = _REFERENCE.fullmatch(template)
        if whole:
            return _lookup(whole.group(1).strip(), workflow_input, outputs)
        return _REFERENCE.sub(
            lambda m: str(_lookup(m.group(1).strip(), workflow_input, outputs)), template
        )
    if isinstance(template, Mapping):
        resolved = {k: _resolve(v, workflow_input, outputs) for k, v in template.items()}
        return {k: v for k, v in resolved.items() if v is not _OMITTED}
    if isinstance(template, list | tuple):
        items = [_resolve(v, workflow_input, outputs) for v in template]
        return [v for v in items if v is not _OMITTED]
    return template


def _lookup(expression: str, workflow_input: Mapping[str, Any],
            outputs: Mapping[str, Mapping[str, Any]]) -> Any:
    parts = expression.split(".")
    if parts[0] == "input":
        value: Any = workflow_input
        path = parts[1:]
    elif parts[0] == "steps" and len(parts) >= 2:
        if parts[1] not in outputs:
            raise UnresolvedReference(f"${{{expression}}}: step {parts[1]!r} has no output")
        value = outputs[parts[1]]
        path = parts[2:]
        if path and path[0] == "output" and "output" not in value:
            path = path[1:]
    else:
        raise UnresolvedReference(f"${{{expression}}}: unknown root")
    for key in path:
        if isinstance(value, Mapping) and key in value:
            value = value[key]
        else:
            raise UnresolvedReference(f"${{{expression}}}: no {key!r}")
    return value
