"""WorkflowDefinition: a named, versioned list of steps that workflows are started from."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from domain.enums import WorkflowType
from domain.exceptions import InvalidDefinition, InvalidValue
from domain.input_mapping import check_references
from domain.input_schema import check_schema, validate
from domain.step import StepSpec

_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


@dataclass(frozen=True, slots=True)
class WorkflowDefinition:
    """A definition version; running workflows keep the version they started with."""

    name: str
    version: int
    workflow_type: WorkflowType
    steps: tuple[StepSpec, ...]
    description: str = ""
    # A JSON Schema (domain.input_schema's subset) the workflow input must fit; None: any.
    input_schema: Mapping[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": self.name,
            "version": self.version,
            "type": self.workflow_type.value,
            "description": self.description,
            "steps": [s.to_dict() for s in self.steps],
        }
        # Only when declared: definitions registered before schemas existed compare equal.
        if self.input_schema is not None:
            data["input_schema"] = _thaw(self.input_schema)
        return data

    def check_input(self, workflow_input: Mapping[str, Any] | None) -> None:
        """Raises InvalidInput naming the field when the input does not fit the schema."""
        if self.input_schema is not None:
            validate(self.input_schema, dict(workflow_input or {}))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WorkflowDefinition:
        """Parses and validates the JSON shape of API.md; errors name the offending field."""
        if not isinstance(data, Mapping):
            raise InvalidDefinition("definition", "must be an object")
        name = data.get("name")
        if not isinstance(name, str) or not name or not set(name) <= _NAME_CHARS:
            raise InvalidDefinition("name", f"{name!r} must be non-empty letters, digits, - _ .")
        version = data.get("version", 1)
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise InvalidDefinition("version", f"{version!r} must be an integer >= 1")
        try:
            kind = WorkflowType(data.get("type", WorkflowType.ORDER_FULFILLMENT.value))
        except ValueError:
            raise InvalidDefinition(
                "type", f"{data.get('type')!r} is not one of {[t.value for t in WorkflowType]}"
            ) from None
        steps = data.get("steps")
        if not isinstance(steps, Sequence) or isinstance(steps, str):
            raise InvalidDefinition("steps", "must be a list of steps")
        schema = data.get("input_schema")
        if schema is not None:
            check_schema(schema)
        return cls(name, version, kind, tuple(validate_steps(steps)),
                   str(data.get("description", "")), _thaw(schema) if schema is not None else None)


def validate_steps(steps: Sequence[StepSpec | Mapping[str, Any]]) -> list[StepSpec]:
    """Parses steps in list order; rejects duplicates, bad policies and mapping cycles."""
    if not steps:
        raise InvalidDefinition("steps", "a workflow needs at least one step")
    specs: list[StepSpec] = []
    seen: set[str] = set()
    for index, raw in enumerate(steps):
        field = f"steps[{index}]"
        if isinstance(raw, StepSpec):
            spec = raw
        else:
            if not isinstance(raw, Mapping):
                raise InvalidDefinition(field, "must be an object")
            try:
                spec = StepSpec.from_dict(raw, execution_order=index + 1)
            except InvalidValue as e:
                raise InvalidDefinition(f"{field}.{_leaf(e.field)}",
                                        f"{e.value!r} {e.reason}") from None
        if spec.step_id in seen:
            raise InvalidDefinition(f"{field}.step_id", f"duplicate step id {spec.step_id!r}")
        seen.add(spec.step_id)
        if spec.compensation is not None and not spec.compensation.operation:
            raise InvalidDefinition(f"{field}.compensation.operation", "is required")
        specs.append(spec)
    ids = [s.step_id for s in specs]
    for index, spec in enumerate(specs):
        check_references(f"steps[{index}].input", dict(spec.input), spec.step_id,
                         ids[:index], ids[index + 1:])
        if spec.compensation is not None:
            check_references(f"steps[{index}].compensation.parameters",
                             dict(spec.compensation.parameters), spec.step_id,
                             ids[:index], ids[index + 1:], allow_self=True)
    return specs


def _thaw(value: Any) -> Any:
    """A plain (JSON-like) copy, so a definition never shares the caller's dicts."""
    if isinstance(value, Mapping):
        return {str(k): _thaw(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_thaw(v) for v in value]
    return value


def _leaf(field: str) -> str:
    # StepSpec names fields like "steps[reserve].timeout_ms"; keep the part after the step.
    return field.split("].", 1)[1] if "]." in field else field
