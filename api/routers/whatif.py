"""`/v1/whatif`: how other release policies would have served a recorded window."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body

from api.access import Operator
from api.components import ComponentsDep, QueryPortsDep
from api.errors import PROBLEM_JSON, TYPE_PREFIX, ApiProblem, responses
from api.schemas.whatif import PolicyIn, WhatIfIn, WhatIfOut
from application.whatif.service import (
    WhatIfError,
    WhatIfRequest,
    progress_ids,
    run,
)
from domain.simulation.model import Policy

router = APIRouter(prefix="/v1/whatif", tags=["whatif"])
TOO_LARGE = {413: {"description": "Beyond the run's bounds", "content": {PROBLEM_JSON: {
    "schema": {"$ref": "#/components/schemas/Problem"},
    "example": {"type": TYPE_PREFIX + "whatif", "title": "What-if not possible", "status": 413,
                "detail": "more than 50000 workflows in the window; narrow it"}}}}}


def _policy(p: PolicyIn) -> Policy:
    return Policy(p.name, p.batch_size, p.interval_ms, p.wip_caps, p.ageing_ms, p.adaptive,
                  p.cutoff_urgency_ms)


@router.post("", response_model=WhatIfOut, response_model_by_alias=True,
             responses={**responses(403), **TOO_LARGE}, summary="Replay a window through other policies")
def whatif(c: ComponentsDep, _: Operator, views: QueryPortsDep,
           body: Annotated[WhatIfIn, Body()]) -> WhatIfOut:
    """Simulates the workflows created in [from, to) — arrivals as they came, services as
    the engine observed them in that window — under the policy that actually ran
    (`calibration`: its KPIs against what happened, within a stated tolerance) and under
    each policy given. Records nothing. 422 for an empty window, one without waveless work
    or an invalid policy; 413 beyond the run's bounds (window, workflows, time)."""
    try:
        request = WhatIfRequest(body.start, body.end,
                                [_policy(p) for p in body.policies], body.seed,
                                _policy(body.actual) if body.actual else None)
        report = run(c.workflows, progress_ids(views.progress), request, c.whatif)
    except WhatIfError as e:
        raise ApiProblem(e.status, "whatif", "What-if not possible", str(e),
                         field=e.field) from None
    return WhatIfOut.model_validate(report)
