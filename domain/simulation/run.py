"""The simulation: recorded arrivals through a release policy, on a virtual clock.

It uses the engine's own rules, not a model of them: every workflow is a real `Workflow`
aggregate, moved by `decisions.next_action` as a worker moves it (its retries and their
backoff are the step's `RetryPolicy`, compensation runs in reverse completion order), and
waveless release is `waveless.plan_batch` per lane, timed as the release loop times it
(a lane's next batch after its adapted interval; a lane held back only by WIP caps stays
due; an idle loop ticks at its idle pace). What is modelled:

- each call holds an engine thread (at most `engine_concurrency` calls at once, as many as
  the engine was seen running), a slot of its service's WIP cap, if any, and a place at
  the service (its observed concurrency, unbounded when a cap or the engine bound it);
  a call that finds none waits, first by priority, then by when it became ready;
- a call's duration and outcome are one draw from that operation's observed calls;
- between becoming ready and the next start saved, a draw of the observed dispatch gaps;
  after a waveless release, a draw of those observed after a release (a worker claims the
  released work), which are longer than those of a worker going on with its workflow.
Events the aggregates record are dropped as they are made (nothing is stored).
"""

from __future__ import annotations

import heapq
import random
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from math import ceil
from typing import Any
from uuid import UUID

from domain import decisions as d
from domain.enums import WorkflowPriority
from domain.load import LoadMetrics
from domain.simulation.clock import VirtualClock
from domain.simulation.kpis import Record, kpis, wip_series
from domain.simulation.model import FORWARD, UNDO, Arrival, Observed, Outcome, Policy
from domain.step import StepExecution, StepResult
from domain.waveless import (
    DEFAULT_AGEING_MS,
    DEFAULT_INTERVAL_MS,
    MIN_INTERVAL_MS,
    BatchPlan,
    Candidate,
    adapt_interval,
    plan_batch,
    release_order,
)
from domain.workflow import Workflow
from domain.workflow_error import WorkflowError

DEFAULT_STEP_ESTIMATE_MS = 200.0  # as the release loop, for a service never seen
RECENT_LANE_SECONDS = 60.0
LOAD_WINDOW_SECONDS = 60.0
MIN_LOAD_CALLS = 5


class SimulationLimit(Exception):
    """The run went past its bound on simulated events or wall time."""


@dataclass
class _Call:
    """A call waiting for an engine thread, a cap slot and a place at its service."""

    wf: Workflow
    action: d.RunStep | d.CompensateStep
    service: str
    operation: str
    kind: str


@dataclass
class Result:
    """A simulated run: KPIs, WIP per service over time, and the run's own numbers."""

    kpis: dict[str, Any]
    wip: dict[str, list[dict[str, float]]]
    events: int
    simulated_seconds: float


class Simulation:
    """One run of one policy over one window's observations."""

    def __init__(self, observed: Observed, policy: Policy, rng: random.Random, *,
                 recorded_caps: Mapping[str, int] | None = None, max_events: int | None = None,
                 deadline: Callable[[], bool] | None = None) -> None:
        self.observed = observed
        self.observed_caps = dict(recorded_caps or {})
        self.policy = policy
        self.rng = rng
        self.max_events = max_events
        self.deadline = deadline
        self.clock = VirtualClock(observed.start)
        self.caps = dict(policy.wip_caps or {})
        self.ageing_ms = policy.ageing_ms if policy.ageing_ms is not None else DEFAULT_AGEING_MS
        self.cutoff_urgency_ms = policy.cutoff_urgency_ms
        lanes = [a.lane for a in observed.arrivals if a.lane is not None]
        self.loop_interval_ms = policy.interval_ms or (
            _most_common([lane[1] for lane in lanes]) if lanes else DEFAULT_INTERVAL_MS)
        self.engine_limit = max(observed.engine_concurrency, 1)
        self.engine_busy = 0
        self.in_flight: dict[str, int] = {}
        self.service_limit = dict(observed.service_concurrency)
        self.waiting: dict[str, list[tuple[int, float, int, _Call]]] = {}
        self.handing: dict[str, int] = {}  # freed places on their way to a woken waiter
        self._seq = 0
        self.pending: dict[UUID, Workflow] = {}  # waveless, waiting for release
        self.candidates: dict[UUID, Candidate] = {}
        self.lanes: dict[UUID, tuple[int, int]] = {}
        self.lane_due: dict[tuple[int, int], float] = {}
        self.lane_seen: dict[tuple[int, int], float] = {}
        self.round_at: float | None = None  # the next release round, if one is scheduled
        # The loop ran before the window began: its rounds keep the phase of the first batch
        # it released in the window. Without one, they are taken to fall on the window's start.
        self.last_round = observed.first_release_s or 0.0
        self.idle_ms = adapt_interval(self.loop_interval_ms, 0) if policy.adaptive \
            else self.loop_interval_ms
        self.records: dict[UUID, Record] = {}
        self.arrived: dict[UUID, Arrival] = {}
        self.spans: dict[str, list[tuple[float, float]]] = {}
        self.recent: dict[str, deque[tuple[float, bool]]] = {}
        self._scores: dict[tuple[int, float], float] = {}
        self.batches = 0
        self._estimates = {s: observed.mean_ms(s) for s, _, _ in observed.operations}
        self._templates: dict[tuple[str, ...], Workflow] = {}
        self._outputs: dict[tuple[str, str], dict[str, Any]] = {}

    # ------------------------------------------------------------------ running

    def run(self) -> Result:
        for arrival in self.observed.arrivals:
            self.clock.at(self.clock.offset(arrival.at), self._arrive, arrival)
        finished = self.clock.run(max_events=self.max_events, deadline=self.deadline)
        if not finished:
            raise SimulationLimit(
                f"stopped after {self.clock.events_run} simulated events "
                f"({self.clock.t:.0f} s of simulated time)")
        records = [self.records[a.workflow_id] for a in self.observed.arrivals]
        end = max([self.clock.t, self.clock.offset(self.observed.end)])
        return Result(kpis(records, self.observed.start), wip_series(self.spans, end),
                      self.clock.events_run, round(self.clock.t, 3))

    # ------------------------------------------------------------------ arrivals

    def _arrive(self, arrival: Arrival) -> None:
        now = self.clock.now
        wf = self._workflow(arrival, now)
        self.arrived[wf.id] = arrival
        self.records[wf.id] = Record(arrival.at, None, None, str(wf.status), arrival.cut_off)
        if arrival.lane is None:
            self._drive(wf)
            return
        lane = (self.policy.batch_size or arrival.lane[0],
                self.policy.interval_ms or arrival.lane[1])
        wf.enable_waveless(now, *lane)
        wf.collect_events()
        self.pending[wf.id] = wf
        self.lanes[wf.id] = lane
        self.candidates[wf.id] = self._candidate(wf, arrival)
        if self.round_at is None:
            # The loop ticks at its idle pace while nothing waits: the next tick.
            pace = self._idle_pace() / 1000
            ticks = max(ceil((self.clock.t - self.last_round) / pace - 1e-9), 0)
            self._schedule_round(self.last_round + ticks * pace)

    def _workflow(self, arrival: Arrival, now: datetime) -> Workflow:
        """A real aggregate in the state its Created event gives it. The first of each
        definition is created (and validated) by `Workflow.create`; later ones are copies
        of it with their own identity, which is all their Created events differ in."""
        key = (arrival.definition_id, *(f"{s.get('step_id')}:{s.get('service')}:{s.get('operation')}"
                                        for s in arrival.steps))
        template = self._templates.get(key)
        if template is None:
            template = Workflow.create(steps=arrival.steps, now=now,
                                       workflow_type=arrival.workflow_type,
                                       definition_id=arrival.definition_id,
                                       input=dict(arrival.input))
            template.collect_events()
            self._templates[key] = template
        wf = object.__new__(Workflow)
        # Top-level containers are fresh, steps fresh from their (immutable) specs; the
        # rest (enums, strings, times, None) is immutable and shared.
        wf.__dict__.update({k: (v.copy() if isinstance(v, list | dict | set) else v)
                            for k, v in template.__dict__.items()})
        wf.steps = {sid: StepExecution(spec=st.spec) for sid, st in template.steps.items()}
        wf._id = arrival.workflow_id
        wf._created_on = wf._modified_on = now
        wf.created_at = now
        wf.priority = WorkflowPriority(arrival.priority)
        wf.input = dict(arrival.input)
        wf.cut_off = arrival.cut_off
        wf.correlation_id = f"whatif-{arrival.workflow_id}"
        return wf

    def _candidate(self, wf: Workflow, arrival: Arrival) -> Candidate:
        services = [s.spec.service for s in wf.steps.values()]
        expected = sum(self._estimates.get(s) or DEFAULT_STEP_ESTIMATE_MS for s in services)
        return Candidate(wf.id, wf.priority, arrival.at, services[0] if services else None,
                         arrival.cut_off, expected)

    # ------------------------------------------------------------------ release

    def _schedule_round(self, t: float) -> None:
        if self.round_at is not None and self.round_at <= t:
            return
        self.round_at = t
        self.clock.at(t, self._round, t)

    def _idle_pace(self) -> float:
        recent = [lane[1] for lane, seen in self.lane_seen.items()
                  if self.clock.t - seen < RECENT_LANE_SECONDS]
        return float(min([self.idle_ms, *recent]))

    def _round(self, scheduled: float) -> None:
        """One round of the release loop (application/waveless.Releaser.release_once)."""
        if self.round_at != scheduled:
            return  # superseded by an earlier round
        self.round_at = None
        tick = self.clock.t
        self.last_round = tick
        now = self.clock.now
        if not self.pending:
            return  # idle: the next arrival schedules the next tick
        load = self._load() if self.policy.adaptive else (None, None)
        in_flight = dict(self.in_flight)
        still: dict[tuple[int, int], float] = {}  # lane -> seconds until it is due again
        for lane, candidates in self._lanes(now).items():
            wait = self._round_of_lane(lane, candidates, tick, now, load, in_flight)
            if wait is not None:
                still[lane] = wait
        self.lane_due = {lane: due for lane, due in self.lane_due.items() if due > tick}
        if not self.pending:
            return
        wake_ms = min(min(still.values()) * 1000, self.loop_interval_ms) if still \
            else self._idle_pace()
        self._schedule_round(tick + max(ceil(wake_ms - 1e-3), MIN_INTERVAL_MS) / 1000)

    def _lanes(self, now: datetime) -> dict[tuple[int, int], list[Candidate]]:
        """The waiting workflows by lane (batch size and interval), in release order."""
        lanes: dict[tuple[int, int], list[Candidate]] = {}
        for c in release_order(list(self.candidates.values()), now, self.ageing_ms,
                               self.cutoff_urgency_ms):
            lanes.setdefault(self.lanes[c.workflow_id], []).append(c)
        return lanes

    def _round_of_lane(self, lane: tuple[int, int], candidates: list[Candidate], tick: float,
                       now: datetime, load: tuple[float | None, float | None],
                       in_flight: dict[str, int]) -> float | None:
        """Plans and releases one lane's batch if the lane is due; returns the seconds until
        it is due again while work in it waits (None: nothing waits)."""
        self.lane_seen[lane] = tick
        due = self.lane_due.get(lane, tick)
        if due > tick + 1e-6:
            return due - tick
        score, error_rate = load
        plan = plan_batch(candidates, now, batch_size=lane[0], interval_ms=lane[1],
                          load_score=score, error_rate=error_rate, in_flight=in_flight,
                          wip_caps=self.caps, ageing_ms=self.ageing_ms,
                          cutoff_urgency_ms=self.cutoff_urgency_ms)
        interval = max(plan.interval_ms if self.policy.adaptive else lane[1],
                       MIN_INTERVAL_MS) / 1000
        if plan.released or plan.paused_reason or not plan.held_back_only_by_caps:
            self.lane_due[lane] = tick + interval
        if plan.released:
            self._release(plan, now, in_flight)
        return interval if plan.waiting else None

    def _release(self, plan: BatchPlan, now: datetime, in_flight: dict[str, int]) -> None:
        """Releases a planned batch and drives each of its workflows."""
        self.batches += 1
        batch_id = f"whatif-batch-{self.batches}"
        for position, c in enumerate(plan.released, start=1):
            if c.first_service is not None:
                in_flight[c.first_service] = in_flight.get(c.first_service, 0) + 1
            wf = self.pending.pop(c.workflow_id)
            del self.candidates[c.workflow_id]
            wf.release_in_batch(now, batch_id, position)
            # Released and started, its work item waits for a worker to claim it: the
            # first call starts after an observed release -> first start gap.
            self.clock.after(self._release_gap(), self._drive, wf)

    def _load(self) -> tuple[float | None, float | None]:
        """The worst service's load score and error rate, as the engine would observe them
        (no reported cpu or memory: in-flight calls and recent failures)."""
        score = errors = None
        for service, calls in self.recent.items():
            while calls and self.clock.t - calls[0][0] > LOAD_WINDOW_SECONDS:
                calls.popleft()
            failed = sum(1 for _, ok in calls if not ok)
            rate = failed / len(calls) if calls else 0.0
            busy = self.in_flight.get(service, 0)
            counted = rate if len(calls) >= MIN_LOAD_CALLS else 0.0
            s = self._scores.get((busy, counted))
            if s is None:
                s = LoadMetrics(service, service, 0.0, 0.0, busy, busy, 0.0, counted).load_score
                self._scores[(busy, counted)] = s
            score = s if score is None else max(score, s)
            if len(calls) >= MIN_LOAD_CALLS:
                errors = rate if errors is None else max(errors, rate)
        return score, errors

    # ------------------------------------------------------------------ the engine

    def _drive(self, wf: Workflow) -> None:
        """What a worker does with a claimed workflow, until it must wait."""
        while True:
            now = self.clock.now
            match d.next_action(wf, now):
                case d.Start():
                    wf.start(now, actor="engine")
                case d.Complete():
                    wf.complete(now)
                case d.Fail(step_id=step_id):
                    wf.fail_failed_step(step_id, now)
                case d.StartCompensation():
                    wf.compensate(now, reason=wf.cancel_reason or "failed")
                case d.CompleteCompensation():
                    wf.complete_compensation(now)
                case d.Wait(at=at):
                    wf.collect_events()
                    self.clock.at(self.clock.offset(at) + self._gap(), self._drive, wf)
                    return
                case d.RunStep() | d.CompensateStep() as action:
                    wf.collect_events()
                    self._request(wf, action)
                    return
                case d.Idle():
                    wf.collect_events()
                    self._finish(wf)
                    return
                case action:  # timeouts and resumptions need a lost worker, not simulated
                    raise AssertionError(f"unexpected action {action} in a simulation")

    def _finish(self, wf: Workflow) -> None:
        arrival = self.arrived[wf.id]
        self.records[wf.id] = Record(arrival.at, wf.started_at, wf.finished_at or self.clock.now,
                                     str(wf.status), arrival.cut_off)

    def _gap(self) -> float:
        gaps = self.observed.dispatch_ms
        return gaps[int(self.rng.random() * len(gaps))] / 1000 if gaps else 0.0

    def _release_gap(self) -> float:
        gaps = self.observed.release_dispatch_ms
        return gaps[int(self.rng.random() * len(gaps))] / 1000 if gaps else self._gap()

    def _handoff(self, service: str) -> float:
        """How long a freed place takes to reach a waiting call: as observed for a capped
        service, else a dispatch gap."""
        seen = self.observed.handoff_ms.get(service)
        if seen:
            return seen[int(self.rng.random() * len(seen))] / 1000
        return self._gap()

    def _request(self, wf: Workflow, action: d.RunStep | d.CompensateStep) -> None:
        step_id = action.step_id
        if isinstance(action, d.RunStep):
            spec = wf.step(step_id).spec
            call = _Call(wf, action, spec.service, spec.operation, FORWARD)
        else:
            undo = wf.get_compensation_action(step_id)
            call = _Call(wf, action, undo.service, undo.operation, UNDO)
        if self._can_start(call.service):
            self._start(call)
            return
        self._seq += 1
        heapq.heappush(self.waiting.setdefault(call.service, []),
                       (wf.priority.rank, self.clock.t, self._seq, call))

    def _can_start(self, service: str, handing: bool = False) -> bool:
        """Whether a call of `service` finds a thread, a cap slot and a place; `handing`:
        whether one more is free besides those already on their way to woken waiters."""
        promised = self.handing.get(service, 0) if handing else 0
        if self.engine_busy + (sum(self.handing.values()) if handing else 0) >= self.engine_limit:
            return False
        busy = self.in_flight.get(service, 0) + promised
        cap = self.caps.get(service)
        if cap is not None and busy >= cap:
            return False
        limit = self._service_limit(service)
        return limit is None or busy < limit

    def _service_limit(self, service: str) -> int | None:
        """The service's own concurrency: what was observed, unless a cap (of what ran or
        of this policy) or the engine's threads were what bound it."""
        seen = self.service_limit.get(service)
        if seen is None or seen >= self.engine_limit:
            return None
        if service in self.caps and seen >= self.caps[service]:
            return None
        if service in self.observed_caps and seen >= self.observed_caps[service]:
            return None
        return seen

    def _start(self, call: _Call, delay: float = 0.0) -> None:
        """Takes the call's engine thread and service place now; the start is saved after
        `delay` (a woken waiter is claimed again first)."""
        self.engine_busy += 1
        self.in_flight[call.service] = self.in_flight.get(call.service, 0) + 1
        if delay > 0:
            self.clock.after(delay, self._begin, call)
        else:
            self._begin(call)

    def _begin(self, call: _Call) -> None:
        now = self.clock.now
        wf, step_id = call.wf, call.action.step_id
        outcome = self._draw(call)
        if call.kind == FORWARD:
            wf.start_step(step_id, now)
        else:
            wf.start_step_compensation(step_id, now)
        wf.collect_events()
        self.clock.after(outcome.duration_ms / 1000, self._complete, call, outcome,
                         self.clock.t)

    def _draw(self, call: _Call) -> Outcome:
        model = self.observed.model(call.service, call.operation, call.kind)
        if model is None and call.kind == UNDO:
            # Never seen undone in the window: as long as its service's steps, successful.
            forward = [m for (s, _, k), m in self.observed.operations.items()
                       if s == call.service and k == FORWARD and m.outcomes]
            if forward:
                return Outcome(forward[0].draw(self.rng).duration_ms)
            return Outcome(0.0)
        if model is None:
            return Outcome(DEFAULT_STEP_ESTIMATE_MS)
        return model.draw(self.rng)

    def _complete(self, call: _Call, outcome: Outcome, began: float) -> None:
        now = self.clock.now
        wf, step_id = call.wf, call.action.step_id
        self.engine_busy -= 1
        self.in_flight[call.service] -= 1
        self.spans.setdefault(call.service, []).append((began, self.clock.t))
        self.recent.setdefault(call.service, deque()).append((self.clock.t, outcome.ok))
        attempt = call.action.attempt
        if call.kind == FORWARD:
            if outcome.ok:
                wf.record_step_result(step_id, StepResult(step_id, self._output(call),
                                                          int(outcome.duration_ms)),
                                      now, attempt=attempt)
            else:
                wf.handle_step_failure(step_id, self._error(call, outcome, now), now,
                                       attempt=attempt, duration_ms=int(outcome.duration_ms))
        elif outcome.ok:
            wf.mark_step_compensated(step_id, now, {}, attempt=attempt)
        else:
            wf.handle_compensation_failure(step_id, self._error(call, outcome, now), now,
                                           attempt=attempt)
        self._dispatch_waiting()
        self.clock.after(self._gap(), self._drive, wf)

    def _output(self, call: _Call) -> dict[str, Any]:
        """An output with the fields later steps refer to (their values do not matter)."""
        key = (call.service, call.operation)
        found = self._outputs.get(key)
        if found is None:
            found = {k: f"sim-{k}" for k in self.observed.output_keys.get(key, ())}
            self._outputs[key] = found
        return found

    @staticmethod
    def _error(call: _Call, outcome: Outcome, now: datetime) -> WorkflowError:
        return WorkflowError.create(call.action.step_id, call.service,
                                    outcome.error_code or "ERROR",
                                    f"simulated {outcome.error_code}",
                                    outcome.error_type or "INTERNAL_ERROR",
                                    outcome.recoverable, occurred_at=now)

    def _dispatch_waiting(self) -> None:
        """A place freed: the most urgent waiting call that could start is handed it (as
        the engine hands a freed slot to one held work item). It starts after the observed
        hand-off time, if the place is still free then: a call that became ready meanwhile
        may take it first, as a worker that just finished the previous step does."""
        best: tuple[int, float, int, _Call] | None = None
        for service, queue in self.waiting.items():
            # A place already handed to a woken waiter is not handed again: otherwise
            # every completion elsewhere during a hand-off would wake one more waiter for
            # the same place, and the quickest of their draws would take it.
            if queue and (best is None or queue[0] < best) and self._can_start(service, True):
                best = queue[0]
        if best is None:
            return
        service = best[3].service
        heapq.heappop(self.waiting[service])
        self.handing[service] = self.handing.get(service, 0) + 1
        self.clock.after(self._handoff(service), self._woken, best)

    def _woken(self, entry: tuple[int, float, int, _Call]) -> None:
        call = entry[3]
        self.handing[call.service] -= 1
        if self._can_start(call.service):
            self._start(call)
            self._dispatch_waiting()  # more room than this call needs: hand on
        else:
            heapq.heappush(self.waiting.setdefault(call.service, []), entry)


def simulate(observed: Observed, policy: Policy, rng: random.Random, *,
             recorded_caps: Mapping[str, int] | None = None, max_events: int | None = None,
             deadline: Callable[[], bool] | None = None) -> Result:
    """Runs `policy` over `observed`; `recorded_caps` are the caps that ran when it was
    recorded (a service's observed concurrency is not its own limit where they bound it)."""
    return Simulation(observed, policy, rng, recorded_caps=recorded_caps, max_events=max_events,
                      deadline=deadline).run()


def _most_common(values: list[int]) -> int:
    counts: dict[int, int] = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    return max(counts, key=lambda v: (counts[v], -v))


