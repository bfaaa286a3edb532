"""The waveless release loop: admits PENDING waveless workflows batch by batch.

The one releasing process (a PostgreSQL advisory lock elects it among all workers) asks
the read models which waveless workflows wait and loads each from its events. Workflows
that recorded the same batch size and interval when they were enabled form a *lane*; each
lane gets its own batches at its own interval. For a lane that is due it plans a batch
with `domain.waveless.plan_batch` (priority, ageing, least slack, WIP caps shared by all
lanes, load-adapted size and interval) and records, in ONE transaction, a WavelessBatch
with its members and each member's ReleasedInBatch + Started. A workflow can never be admitted
twice: releasing checks it is still PENDING, and optimistic concurrency rejects a second
writer. Workflows left waiting record why (only when the reason changes); workflows that
can no longer make their cut-off are flagged late.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from math import ceil
from uuid import UUID

from eventsourcing.persistence import IntegrityError

from application.errors import WorkflowNotFound
from application.locks import LeaderLock
from application.work_queue import WorkItem
from application.workflows import Workflows, utc_now
from domain.decisions import wakeup_at
from domain.enums import StepStatus, WorkflowStatus
from domain.exceptions import InvalidValue
from domain.waveless import (
    DEFAULT_AGEING_MS,
    DEFAULT_BATCH_SIZE,
    DEFAULT_INTERVAL_MS,
    MIN_INTERVAL_MS,
    BatchPlan,
    Candidate,
    adapt_interval,
    check_cutoff_urgency,
    plan_batch,
    release_order,
)
from domain.waveless_batch import WavelessBatch
from domain.workflow import Workflow

log = logging.getLogger(__name__)

DEFAULT_STEP_ESTIMATE_MS = 200.0
RECENT_LANE_SECONDS = 60.0  # an idle loop still wakes at the pace of lanes seen this recently


@dataclass(frozen=True)
class WavelessSettings:
    """Release settings (README "Waveless release rules")."""

    batch_size: int = DEFAULT_BATCH_SIZE
    interval_ms: int = DEFAULT_INTERVAL_MS
    ageing_ms: int = DEFAULT_AGEING_MS
    wip_caps: Mapping[str, int] = field(default_factory=dict)
    adaptive: bool = True
    cutoff_urgency_ms: int | None = None  # None or 0: priority before slack to cut-off

    def __post_init__(self) -> None:
        check_cutoff_urgency(self.cutoff_urgency_ms)
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) \
                or self.batch_size < 1:
            raise InvalidValue("batch_size", self.batch_size, "must be an integer >= 1")
        if self.interval_ms < MIN_INTERVAL_MS:
            raise InvalidValue("interval_ms", self.interval_ms, f"must be >= {MIN_INTERVAL_MS}")
        for service, cap in self.wip_caps.items():
            if isinstance(cap, bool) or not isinstance(cap, int) or cap < 0:
                raise InvalidValue(f"wip_caps[{service}]", cap, "must be an integer >= 0")


@dataclass
class LoadSignals:
    """What the release loop reads from the read models (or the balancer) each round."""

    pending: Callable[[], Sequence[UUID]]
    in_flight: Callable[[], Mapping[str, int]] = dict
    step_estimate_ms: Callable[[str], float | None] = lambda service: None
    load: Callable[[], tuple[float | None, float | None]] = lambda: (None, None)


class Releaser:
    """Runs `release_once` every interval while it holds the leader lock."""

    def __init__(self, app: Workflows, signals: LoadSignals,
                 settings: WavelessSettings | None = None, *, leader_lock: LeaderLock | None = None,
                 clock: Callable[[], datetime] = utc_now,
                 timer: Callable[[], float] = time.monotonic) -> None:
        self.app = app
        self.signals = signals
        self.settings = settings or WavelessSettings()
        self.leader_lock = leader_lock
        self.clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.interval_ms = self.settings.interval_ms
        self.timer = timer
        self._due: dict[tuple[int, int], float] = {}  # lane -> its next batch (timer seconds)
        self._seen: dict[tuple[int, int], float] = {}  # lane -> when it last had work waiting

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="wes-waveless", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        if self.leader_lock is not None:
            self.leader_lock.release()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if self.leader_lock is None or self.leader_lock.acquire():
                    self.release_once(due_only=True)
            except Exception:
                log.exception("waveless release failed")
            self._stop.wait(self.interval_ms / 1000)

    def release_once(self, *, due_only: bool = False) -> BatchPlan:
        """One round: plans a batch for each lane of waiting workflows (those that share a
        batch size and interval, as recorded when they were enabled) and records it. With
        `due_only`, only lanes whose interval has passed since their last batch. Returns
        the lanes' plans merged; `interval_ms` becomes the time until the next round."""
        now = self.clock()
        tick = self.timer()  # lanes are timed on a monotonic clock: a wall clock can jump
        waiting = self._waiting()
        score, error_rate = self.signals.load() if self.settings.adaptive else (None, None)
        in_flight = dict(self.signals.in_flight())
        plans: list[BatchPlan] = []
        still_waiting: dict[tuple[int, int], float] = {}  # lane -> seconds until it is due
        for lane, candidates in self._lanes(waiting, now).items():
            self._seen[lane] = tick
            due = self._due.get(lane, tick)
            if due_only and due > tick + 1e-6:  # (a microsecond: float rounding)
                still_waiting[lane] = due - tick
                continue
            plan = plan_batch(
                candidates, now, batch_size=lane[0], interval_ms=lane[1], load_score=score,
                error_rate=error_rate, in_flight=in_flight, wip_caps=self.settings.wip_caps,
                ageing_ms=self.settings.ageing_ms,
                cutoff_urgency_ms=self.settings.cutoff_urgency_ms,
            )
            interval = self._schedule(lane, plan, tick)
            for released in plan.released:
                if released.first_service is not None:
                    in_flight[released.first_service] = in_flight.get(released.first_service, 0) + 1
            self._apply(plan, waiting, score, now)
            plans.append(plan)
            if plan.waiting:
                still_waiting[lane] = interval
        # A lane whose interval has passed is as good as new: forget it.
        self._due = {lane: due for lane, due in self._due.items() if due > tick}
        self._seen = {lane: seen for lane, seen in self._seen.items()
                      if tick - seen < RECENT_LANE_SECONDS}
        self.interval_ms = self._next_round_ms(still_waiting)
        return _merged(plans, self.interval_ms, self.settings.batch_size)

    def _waiting(self) -> dict[UUID, Workflow]:
        """The waveless workflows still PENDING, loaded from their events."""
        waiting: dict[UUID, Workflow] = {}
        for workflow_id in self.signals.pending():
            try:
                wf = self.app.get_workflow(workflow_id)
            except WorkflowNotFound:
                continue
            if wf.status == WorkflowStatus.PENDING and wf.waveless is not None:
                waiting[wf.id] = wf
        return waiting

    def _lanes(self, waiting: Mapping[UUID, Workflow],
               now: datetime) -> dict[tuple[int, int], list[Candidate]]:
        """The waiting workflows by lane, each lane in release order. Lanes come in the
        order of their first workflow in the global release order, so that WIP caps, which
        all lanes share, go to the most urgent work first."""
        lanes: dict[tuple[int, int], list[Candidate]] = {}
        for candidate in release_order([self._candidate(wf) for wf in waiting.values()], now,
                                       self.settings.ageing_ms,
                                       self.settings.cutoff_urgency_ms):
            lanes.setdefault(self._lane(waiting[candidate.workflow_id]), []).append(candidate)
        return lanes

    def _schedule(self, lane: tuple[int, int], plan: BatchPlan, tick: float) -> float:
        """Sets when the lane's next batch is due; returns its interval in seconds."""
        interval = max(plan.interval_ms if self.settings.adaptive else lane[1],
                       MIN_INTERVAL_MS) / 1000
        if plan.released or plan.paused_reason or not plan.held_back_only_by_caps:
            self._due[lane] = tick + interval
        # else: held back only by WIP caps, the lane stays due, so that it competes for
        # the next free slot in every round (in release order) instead of waiting out its
        # interval while a faster lane takes each slot as it frees.
        return interval

    def _next_round_ms(self, still_waiting: Mapping[tuple[int, int], float]) -> int:
        """Milliseconds until the next round."""
        if still_waiting:
            # Wake when the next lane with work is due, or after the configured interval
            # at the latest, to pick up workflows of a new setting.
            wake_ms = min(min(still_waiting.values()) * 1000, self.settings.interval_ms)
        else:
            # Nothing waits: the idle interval, or a recent lane's shorter one, so that its
            # next workflow does not wait for the default pace.
            idle = (adapt_interval(self.settings.interval_ms, 0) if self.settings.adaptive
                    else self.settings.interval_ms)
            wake_ms = min([idle, *(lane[1] for lane in self._seen)])
        return max(ceil(wake_ms - 1e-3), MIN_INTERVAL_MS)  # (float rounding again)

    def _lane(self, wf: Workflow) -> tuple[int, int]:
        recorded = wf.waveless or {}
        return (recorded.get("batch_size") or self.settings.batch_size,
                recorded.get("interval_ms") or self.settings.interval_ms)

    def _apply(self, plan: BatchPlan, waiting: Mapping[UUID, Workflow], score: float | None,
               now: datetime) -> None:
        """Records a lane's batch, and why each of its others waits (when that changed)."""
        if plan.released:
            self._record_batch(plan, [waiting[c.workflow_id] for c in plan.released], score, now)
        late = {c.workflow_id: c for c in plan.late}
        for workflow_id, reason in plan.waiting.items():
            wf = waiting[workflow_id]
            changed = wf.note_waiting(now, reason)
            if workflow_id in late and not wf.late:
                candidate = late[workflow_id]
                wf.mark_late(now, now + timedelta(milliseconds=candidate.expected_remaining_ms))
                changed = True
            if changed:
                self._save_quietly(wf, now)

    def _candidate(self, wf: Workflow) -> Candidate:
        remaining = [s for s in wf.steps.values()
                     if s.status not in (StepStatus.COMPLETED, StepStatus.SKIPPED)]
        expected = sum(self.signals.step_estimate_ms(s.spec.service) or DEFAULT_STEP_ESTIMATE_MS
                       for s in remaining)
        return Candidate(wf.id, wf.priority, wf.created_at,
                         remaining[0].spec.service if remaining else None, wf.cut_off, expected)

    def _record_batch(self, plan: BatchPlan, members: list[Workflow], score: float | None,
                      now: datetime, *, retry: bool = True) -> None:
        batch = WavelessBatch.release(
            uuid.uuid4(), [m.id for m in members], batch_size=plan.batch_size, interval_ms=plan.interval_ms,
            candidates=len(plan.order), load_score=score, now=now)
        for position, wf in enumerate(members, start=1):
            wf.release_in_batch(now, str(batch.id), position)
        work = [WorkItem(wf.id, wakeup_at(wf, now), wf.priority.rank) for wf in members]
        try:
            self.app.save(batch, *members, work=work)
        except IntegrityError:
            # Someone changed a member meanwhile (cancelled it, say): retry once on fresh
            # state with those still waiting; the batch records only those that went.
            if retry:
                self._release_individually(plan, [m.id for m in members], score, now)
            return
        log.info("waveless batch released", extra={"batch_id": str(batch.id),
                                                   "members": len(members)})

    def _release_individually(self, plan: BatchPlan, ids: list[UUID], score: float | None,
                              now: datetime) -> None:
        released = []
        for workflow_id in ids:
            try:
                wf = self.app.get_workflow(workflow_id)
            except WorkflowNotFound:
                continue
            if wf.status == WorkflowStatus.PENDING and wf.waveless is not None:
                released.append(wf)
        if released:
            self._record_batch(plan, released, score, now, retry=False)

    def _save_quietly(self, wf: Workflow, now: datetime) -> None:
        try:
            self.app.save_workflow(wf, now)
        except Exception as e:  # a waiting note is advisory: the next round writes it again
            log.debug("waiting note not saved", extra={"workflow_id": str(wf.id), "error": str(e)})


def _merged(plans: Sequence[BatchPlan], interval_ms: int, default_size: int) -> BatchPlan:
    """One round's lane plans as one (batch size: what the round could release in all)."""
    if len(plans) == 1:
        return replace(plans[0], interval_ms=interval_ms)
    return BatchPlan(
        released=tuple(c for p in plans for c in p.released),
        waiting={k: v for p in plans for k, v in p.waiting.items()},
        late=tuple(c for p in plans for c in p.late),
        batch_size=sum(p.batch_size for p in plans) if plans else default_size,
        interval_ms=interval_ms,
        paused_reason=next((p.paused_reason for p in plans if p.paused_reason), None),
        order=tuple(w for p in plans for w in p.order),
    )
