"""Request latency middleware, and the metrics read from the database at scrape time."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.feed import EventReader
from api.ports import ProjectionControl
from application.metrics import REQUEST_LATENCY
from application.relay.tracking import relay_status

log = logging.getLogger(__name__)


class LatencyMiddleware:
    """Observes every HTTP request's duration by method, route template and status."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            REQUEST_LATENCY.labels(scope["method"], template, str(status)).observe(
                time.perf_counter() - started)


class StoreCollector(Collector):
    """Events appended to the store (by every process) and each projection's position/lag
    (the event relay's too, as projection="relay")."""

    def __init__(self, reader: EventReader, projections: ProjectionControl) -> None:
        self.reader = reader
        self.projections = projections

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("wes_database_up", "1 when the event store answered the scrape.")
        try:
            head = self.reader.head()
            statuses = [*self.projections.statuses(), relay_status(self.reader.workflows)]
        except Exception as e:  # a scrape must not fail because the database is down
            log.debug("metrics: database unavailable: %s", e)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield CounterMetricFamily("wes_events_appended",
                                  "Events appended to the event store (its latest position).",
                                  value=head)
        position = GaugeMetricFamily("wes_projection_position",
                                     "Last global position a projection applied.",
                                     labels=["projection"])
        lag_events = GaugeMetricFamily("wes_projection_lag_events",
                                       "Events a projection is behind the store.",
                                       labels=["projection"])
        lag_seconds = GaugeMetricFamily("wes_projection_lag_seconds",
                                        "Age of the oldest event a projection has not applied.",
                                        labels=["projection"])
        for s in statuses:
            position.add_metric([s.name], s.position or 0)
            lag_events.add_metric([s.name], s.lag_events)
            if s.lag_seconds is not None:
                lag_seconds.add_metric([s.name], s.lag_seconds)
        yield position
        yield lag_events
        yield lag_seconds
