"""Liveness, readiness and Prometheus metrics (no API key needed)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from api.components import ComponentsDep
from api.schemas.operations import Health, ProjectionReadiness, Readiness

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Health, summary="Liveness")
def healthz() -> Health:
    """The process is up and answering."""
    return Health()


@router.get("/readyz", response_model=Readiness, summary="Readiness",
            responses={503: {"model": Readiness, "description": "Not ready"}})
def readyz(c: ComponentsDep) -> JSONResponse:
    """Ready when the database answers and every projection is within its lag limits
    (`ready_max_lag_events`, `ready_max_lag_seconds`)."""
    projections: list[ProjectionReadiness] = []
    try:
        c.reader.head()
        database_ok = True
        for s in c.queries.projections.statuses():
            lag_seconds = getattr(s, "lag_seconds", None)
            ready = s.lag_events <= c.config.ready_max_lag_events and (
                lag_seconds is None or lag_seconds <= c.config.ready_max_lag_seconds)
            projections.append(ProjectionReadiness(name=s.name, lag_events=s.lag_events,
                                                   lag_seconds=lag_seconds, ready=ready))
    except Exception:  # any failure to reach the database means not ready
        database_ok = False
    ready = database_ok and all(p.ready for p in projections)
    body = Readiness(status="ready" if ready else "not ready",
                     database="ok" if database_ok else "unavailable", projections=projections)
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if ready else 503)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response,
            responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}},
                             "description": "Prometheus text exposition format."}})
def metrics(request: Request) -> Response:
    """Request latencies, steps run, events appended, projection position and lag."""
    body = generate_latest(REGISTRY) + generate_latest(request.app.state.metrics_registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
