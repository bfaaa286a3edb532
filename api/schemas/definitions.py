"""Definitions and their steps (API.md "Definitions and steps")."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from api.schemas.common import INT32, Identifier, JsonObject, Name, Text
from domain.enums import CompensationStrategy, WorkflowType

Millis = Annotated[int, Field(ge=1, le=INT32)]


class RetryPolicyIn(BaseModel):
    """A custom retry policy: delay(n) = min(initial x multiplier^n, max)."""

    model_config = ConfigDict(extra="forbid")

    max_retries: int = Field(3, ge=0, le=100)
    initial_delay_ms: int = Field(1000, ge=0, le=86_400_000)
    max_delay_ms: int = Field(10000, ge=0, le=86_400_000)
    multiplier: float = Field(2.0, ge=1.0, le=100.0)
    exponential: bool = True


class CompensationIn(BaseModel):
    """How a completed step is undone."""

    model_config = ConfigDict(extra="forbid")

    strategy: CompensationStrategy = CompensationStrategy.REVERSE_OPERATION
    operation: Identifier | None = Field(
        None, description="Required for REVERSE_OPERATION and CUSTOM; DELETE_CREATED "
                          "defaults to `delete`, RESTORE_STATE to `restore`.")
    parameters: JsonObject = Field(default_factory=dict,
                                   description="Request body; may hold `${...}` references.")
    snapshot: JsonObject | None = None
    idempotent: bool = True
    max_retries: int = Field(3, ge=0, le=100)
    timeout_ms: Millis = 5000


class StepIn(BaseModel):
    """One step; steps run in list order."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "step_id": "reserve-inventory", "name": "Reserve Inventory",
        "service": "inventory-service", "operation": "reserve",
        "input": {"orderId": "${input.orderId}"}, "timeout_ms": 5000,
        "retry_policy": "default",
        "compensation": {"strategy": "REVERSE_OPERATION", "operation": "release",
                         "parameters": {"reservationId":
                                        "${steps.reserve-inventory.reservationId}"}},
    }]})

    step_id: Identifier
    name: Text | None = None
    service: Identifier
    operation: Identifier
    input: JsonObject = Field(
        default_factory=dict,
        description="The request body. A string `${input.x}` is replaced by the workflow "
                    "input's `x`, `${steps.<step_id>.y}` by an earlier step's output field "
                    "(types kept); inside longer strings they are interpolated as text. "
                    "`{\"$first\": [a, b, ...]}` is the first alternative whose references all "
                    "resolve; the alternative `{\"$omit\": true}` leaves the field out.")
    timeout_ms: Millis = 5000
    retry_policy: Literal["default", "aggressive", "conservative"] | RetryPolicyIn = "default"
    compensation: CompensationIn | None = None

    def to_domain_dict(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True, mode="json")


INPUT_SCHEMA_DOC = (
    "A JSON Schema the workflow input must fit, checked at start (a start that does not "
    "fit is a 422 naming the field, e.g. `input.items[0].quantity`). The subset: `type`, "
    "`properties`, `required`, `additionalProperties`, `dependentRequired`, `items`, "
    "`minItems`/`maxItems`, `enum`, `const`, `minimum`/`maximum`, "
    "`exclusiveMinimum`/`exclusiveMaximum`, `minLength`/`maxLength`, and annotations; any "
    "other keyword is refused (422) when the definition is registered.")


class DefinitionIn(BaseModel):
    """A definition version to register."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "name": "pick-and-pack", "version": 1, "type": "PICKING",
        "description": "Pick, then pack.",
        "steps": [
            {"step_id": "pick", "service": "warehouse-service", "operation": "pick",
             "input": {"orderId": "${input.orderId}"},
             "compensation": {"operation": "return-to-stock",
                              "parameters": {"orderId": "${input.orderId}"}}},
            {"step_id": "pack", "service": "packing-service", "operation": "pack",
             "input": {"orderId": "${input.orderId}"}},
        ],
    }]})

    name: Name
    version: int = Field(1, ge=1, le=1_000_000)
    type: WorkflowType = WorkflowType.ORDER_FULFILLMENT
    description: Text = ""
    steps: list[StepIn] = Field(min_length=1, max_length=200)
    input_schema: JsonObject | None = Field(None, description=INPUT_SCHEMA_DOC)

    def to_domain_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "version": self.version,
                                "type": self.type.value, "description": self.description,
                                "steps": [s.to_domain_dict() for s in self.steps]}
        if self.input_schema is not None:
            data["input_schema"] = self.input_schema
        return data


class RetryPolicyOut(BaseModel):
    max_retries: int
    initial_delay_ms: int
    max_delay_ms: int
    multiplier: float
    exponential: bool


class CompensationOut(BaseModel):
    """A step's compensation action."""

    step_id: str
    service: str
    operation: str
    strategy: CompensationStrategy
    parameters: dict[str, Any]
    snapshot: dict[str, Any] | None = None
    idempotent: bool
    max_retries: int
    timeout_ms: int


class StepOut(BaseModel):
    """A step as registered (defaults filled in)."""

    step_id: str
    name: str
    service: str
    operation: str
    execution_order: int
    input: dict[str, Any]
    timeout_ms: int
    retry_policy: RetryPolicyOut
    compensation: CompensationOut | None


class DefinitionOut(BaseModel):
    """A registered definition version."""

    name: str
    version: int
    type: WorkflowType
    description: str
    steps: list[StepOut]
    input_schema: dict[str, Any] | None = Field(None, description=INPUT_SCHEMA_DOC)
    versions: list[int] = Field(default_factory=list,
                                description="Every registered version of this name.")


class DefinitionRegistered(BaseModel):
    """The answer to registering a definition."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"name": "pick-and-pack", "version": 1, "created": True, "position": 17}]})

    name: str
    version: int
    created: bool = Field(description="False when this exact version was already registered.")
    position: int | None
