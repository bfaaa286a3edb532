"""What the engine observed in a window, from the workflows' events: arrivals, each
operation's calls (duration from start saved to outcome saved, and how they ended), the
dispatch gaps (those after a waveless release apart: a worker must claim the released work
first), capped services' slot hand-offs, when the release loop's first batch came, and the
concurrency that was seen; and what actually happened."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from application.workflows import fold
from domain.enums import ErrorType
from domain.simulation.kpis import Record
from domain.simulation.model import FORWARD, UNDO, Arrival, Observed, OperationModel, Outcome
from domain.workflow import Workflow

_TERMINAL = {"COMPLETED", "COMPENSATED", "CANCELLED", "COMPENSATION_FAILED", "FAILED"}


@dataclass
class Recorded:
    """A window's observations and what happened in it."""

    observed: Observed
    records: list[Record]
    spans: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    waveless: int = 0


def extract(events_by_workflow: Iterable[tuple[UUID, list[Any]]], start: datetime,
            end: datetime, *, recorded_caps: Mapping[str, int] | None = None) -> Recorded:
    """Folds each workflow's events (arrivals in [start, end)) into observations."""
    caps = dict(recorded_caps or {})
    arrivals: list[Arrival] = []
    records: list[Record] = []
    operations: dict[tuple[str, str, str], OperationModel] = {}
    output_keys: dict[tuple[str, str], set[str]] = {}
    dispatch: list[float] = []
    release_gaps: list[float] = []
    spans: dict[str, list[tuple[float, float]]] = {}
    steps_cache: dict[tuple[str, int], tuple[Any, ...]] = {}
    capped_calls: dict[str, list[tuple[float, float, float]]] = {}
    waveless = 0
    first_release: datetime | None = None
    for workflow_id, events in events_by_workflow:
        if not events or not isinstance(events[0], Workflow.Created):
            continue
        created = events[0]
        if not (start <= created.timestamp < end) or created.driven_by != "engine":
            continue
        wf: Workflow = fold(None, events)
        lane = None
        if wf.waveless is not None:
            lane = (int(wf.waveless["batch_size"]), int(wf.waveless["interval_ms"]))
            waveless += 1
        key = (created.definition_id, created.definition_version)
        steps = steps_cache.setdefault(key, tuple(created.steps))
        arrivals.append(Arrival(workflow_id, created.timestamp, created.priority,
                                created.workflow_type, created.definition_id, steps,
                                dict(created.input),
                                datetime.fromisoformat(created.cut_off) if created.cut_off
                                else None, lane))
        status = str(wf.status)
        records.append(Record(created.timestamp, wf.started_at,
                              wf.finished_at if status in _TERMINAL else None, status,
                              wf.cut_off))
        _calls(events, wf, start, caps, operations, output_keys, (dispatch, release_gaps), spans,
               capped_calls)
        first_release = _first_release(events, first_release)
    service_peaks = {service: _most_at_once(s) for service, s in spans.items()}
    every = [span for s in spans.values() for span in s]
    arrivals.sort(key=lambda a: (a.at, str(a.workflow_id)))
    observed = Observed(start, end, arrivals, operations, dispatch, _most_at_once(every),
                        service_peaks, {k: tuple(sorted(v)) for k, v in output_keys.items()},
                        {service: _handoffs(calls, caps[service])
                         for service, calls in capped_calls.items()},
                        (first_release - start).total_seconds() if first_release else None,
                        release_gaps)
    return Recorded(observed, records, spans, waveless)


def _first_release(events: list[Any], first: datetime | None) -> datetime | None:
    """The earlier of `first` and this workflow's release in a batch, if it was released."""
    for e in events:
        if type(e).__name__ == "ReleasedInBatch":
            return e.timestamp if first is None or e.timestamp < first else first
    return first


def _calls(events: list[Any], wf: Workflow, start: datetime, caps: Mapping[str, int],
           operations: dict[tuple[str, str, str], OperationModel],
           output_keys: dict[tuple[str, str], set[str]],
           dispatch: tuple[list[float], list[float]], spans: dict[str, list[tuple[float, float]]],
           capped_calls: dict[str, list[tuple[float, float, float]]]) -> None:
    """Every call of one workflow: its model sample, its span, the gap before it (into
    `dispatch[1]` after a waveless release, else into `dispatch[0]`)."""
    ready: datetime | None = None  # when the workflow could next start a call
    released = False  # ready since a waveless batch started it: a worker must claim it
    running: dict[tuple[str, str], tuple[datetime, str, str, datetime | None]] = {}
    for e in events:
        kind = type(e).__name__
        released = released or kind == "ReleasedInBatch"
        ready = _ready_after(e, kind, ready)
        started = _call_started(e, kind, wf)
        if started is not None:
            direction, service, operation = started
            running[(e.step_id, direction)] = (e.timestamp, service, operation, ready)
            _gap(dispatch[1] if released else dispatch[0], ready, e.timestamp, service in caps)
            released = False
        direction = _ENDS.get(kind)
        if direction is None:
            continue
        began = running.pop((e.step_id, direction), None)
        if began is None:
            continue  # a failure before the start (unresolvable input): no call
        operations.setdefault((began[1], began[2], direction), OperationModel()).outcomes \
            .append(_outcome(e, began[0]))
        if kind == "StepExecuted":
            output_keys.setdefault((began[1], began[2]), set()).update(e.output)
        _span(spans, capped_calls, caps, began, e.timestamp, start)


# The events that end a call, and which way the call went.
_ENDS = {"StepExecuted": FORWARD, "StepFailed": FORWARD,
         "StepCompensated": UNDO, "StepCompensationFailed": UNDO}


def _ready_after(e: Any, kind: str, ready: datetime | None) -> datetime | None:
    """When the workflow could next start a call, after event `e`."""
    if kind in ("Started", "StepExecuted", "StepCompensated", "Failed"):
        return e.timestamp
    if kind == "StepRetryScheduled":
        return e.due_at
    if kind == "StepCompensationFailed":
        return e.retry_at
    return ready


def _call_started(e: Any, kind: str, wf: Workflow) -> tuple[str, str, str] | None:
    """(direction, service, operation) of the call that event `e` starts, if it starts one."""
    if kind == "StepStarted":
        spec = wf.step(e.step_id).spec
        return FORWARD, spec.service, spec.operation
    if kind == "StepCompensationStarted":
        undo = wf.step(e.step_id).spec.compensation
        if undo is not None:
            return UNDO, undo.service, undo.operation
    return None


def _span(spans: dict[str, list[tuple[float, float]]],
          capped_calls: dict[str, list[tuple[float, float, float]]], caps: Mapping[str, int],
          began: tuple[datetime, str, str, datetime | None], ended: datetime,
          start: datetime) -> None:
    a, b = (began[0] - start).total_seconds(), (ended - start).total_seconds()
    spans.setdefault(began[1], []).append((a, b))
    if began[1] in caps:
        ready = (began[3] - start).total_seconds() if began[3] is not None else a
        capped_calls.setdefault(began[1], []).append((ready, a, b))


def _handoffs(calls: list[tuple[float, float, float]], cap: int) -> list[float]:
    """How long a capped service's freed slot took to reach a call that was waiting for it
    (the slot's previous call's outcome saved -> this call's start saved), in ms. Each start
    takes the slot freed earliest that no start took yet (the cap's `cap` slots are free
    before the first call): with more than one slot, the latest outcome before a start is
    not the slot it took, and pairing them would make hand-offs look shorter."""
    edges = sorted([(end, 0, 0.0) for _, _, end in calls]
                   + [(began, 1, ready) for ready, began, _ in calls])
    freed: deque[float | None] = deque([None] * cap)  # None: free since before the window
    found = []
    for at, starts, ready in edges:
        if not starts:
            freed.append(at)
            continue
        slot = freed.popleft() if freed else None
        if slot is not None and ready < slot:
            found.append((at - slot) * 1000)
    return found


def _gap(dispatch: list[float], ready: datetime | None, started: datetime, capped: bool) -> None:
    # A capped service's gaps include waiting for a slot, which the simulation models
    # itself: only gaps of uncapped services measure the engine's own dispatch time.
    if ready is not None and not capped:
        dispatch.append(max((started - ready).total_seconds() * 1000, 0.0))


def _outcome(event: Any, began: datetime) -> Outcome:
    duration = max((event.timestamp - began).total_seconds() * 1000, 0.0)
    error = getattr(event, "error", None)
    if not error:
        return Outcome(duration)
    return Outcome(duration, str(error.get("code") or "ERROR"),
                   ErrorType(error.get("error_type") or "INTERNAL_ERROR"),
                   bool(error.get("recoverable")))


def _most_at_once(spans: list[tuple[float, float]]) -> int:
    edges = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans])
    best = level = 0
    for _, change in edges:
        level += change
        best = max(best, level)
    return best
