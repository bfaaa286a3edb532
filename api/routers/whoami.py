"""`GET /v1/whoami`: the caller's role, so a client (the console) shows only what it may do."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from api.access import Reader
from api.components import components_of
from api.errors import responses

router = APIRouter(prefix="/v1", tags=["console"])


class WhoAmI(BaseModel):
    """The role the presented key has, and the name audit records give its caller."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"role": "operator", "actor": "api-key:3f2a9c1d", "keys_required": True}]})

    role: Literal["reader", "operator", "admin"]
    actor: str = Field(description="How audit records name this caller.")
    keys_required: bool = Field(description="False when the server has no API keys "
                                            "(every request is allowed, as admin).")


@router.get("/whoami", response_model=WhoAmI, responses=responses(403),
            summary="The caller's role")
async def whoami(who: Reader, request: Request) -> WhoAmI:
    """The role of the key sent (401 without a valid one while keys are configured)."""
    return WhoAmI(role=who.role.label, actor=who.actor,  # type: ignore[arg-type]
                  keys_required=components_of(request).keys.enabled)
