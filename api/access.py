"""Who is calling, from the key headers, and the role checks routes depend on."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from api.auth import Role
from api.components import components_of
from api.errors import Forbidden, Unauthenticated


@dataclass(frozen=True)
class Principal:
    """Who is calling: their role, and a name for audit (`actor`)."""

    role: Role
    actor: str


def principal(request: Request) -> Principal:
    """The caller, from `Authorization: Bearer <key>` or `X-API-Key: <key>`. Every key
    header sent must hold a valid key (an empty or malformed one is refused too); with
    both, the lesser role applies."""
    c = components_of(request)
    if not c.keys.enabled:
        return Principal(Role.ADMIN, "api")
    presented: list[str] = []
    if "x-api-key" in request.headers:
        presented.append(request.headers["x-api-key"].strip())
    if "authorization" in request.headers:
        scheme, _, credentials = request.headers["authorization"].partition(" ")
        presented.append(credentials.strip() if scheme.lower() == "bearer" else "")
    if not presented:
        raise Unauthenticated("send an API key as 'Authorization: Bearer <key>' or "
                              "'X-API-Key: <key>'")
    roles = [c.keys.role_of(key) if key else None for key in presented]
    if None in roles:
        raise Unauthenticated("the API key is not valid")
    role = min(r for r in roles if r is not None)
    # A short fingerprint names the key in audit records without revealing it.
    fingerprint = hashlib.sha256(presented[0].encode()).hexdigest()[:8]
    return Principal(role, f"api-key:{fingerprint}")


class RoleCheck:
    """A dependency: the caller, if their role is at least `needed`. A class, so the
    OpenAPI document can tell the operations that check a role (`openapi_security`)."""

    def __init__(self, needed: Role) -> None:
        self.needed = needed

    async def __call__(self, request: Request) -> Principal:
        who = principal(request)
        if who.role < self.needed:
            raise Forbidden(who.role.label, self.needed.label)
        return who


Reader = Annotated[Principal, Depends(RoleCheck(Role.READER))]
Operator = Annotated[Principal, Depends(RoleCheck(Role.OPERATOR))]
Admin = Annotated[Principal, Depends(RoleCheck(Role.ADMIN))]
