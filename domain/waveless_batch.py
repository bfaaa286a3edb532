"""WavelessBatch: one released batch, recorded with its members (seed section 6)."""

from __future__ import annotations

import uuid
from datetime import datetime

from eventsourcing.domain import Aggregate


class WavelessBatch(Aggregate):
    """A batch of waveless workflows released together."""

    class Released(Aggregate.Created):
        """The batch: its members in release order, and the settings it was cut with."""

        members: list[str]
        batch_size: int
        interval_ms: int
        candidates: int
        load_score: float | None

    def __init__(self, members: list[str], batch_size: int, interval_ms: int, candidates: int,
                 load_score: float | None) -> None:
        self.members = list(members)
        self.batch_size = batch_size
        self.interval_ms = interval_ms
        self.candidates = candidates
        self.load_score = load_score

    @classmethod
    def release(cls, batch_id: uuid.UUID, members: list[uuid.UUID], *, batch_size: int,
                interval_ms: int, candidates: int, load_score: float | None,
                now: datetime) -> WavelessBatch:
        return cls._create(cls.Released, id=batch_id, timestamp=now,
                           members=[str(m) for m in members], batch_size=batch_size,
                           interval_ms=interval_ms, candidates=candidates, load_score=load_score)
