"""A circuit breaker per service instance (seed troubleshooting: "check circuit breaker").

Defaults from SEED-FACTS: a sliding window of the last 10 calls, judged once it holds at
least 5; it opens at >= 50 % failures, stays open 30 s, then lets 3 trial calls through
(half-open): all 3 succeed -> closed, any fails -> open again. Time is passed in.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from domain.exceptions import InvalidValue


class CircuitState(StrEnum):
    CLOSED = "CLOSED"
    OPEN = "OPEN"
    HALF_OPEN = "HALF_OPEN"


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    """The breaker's settings."""

    window: int = 10
    minimum_calls: int = 5
    failure_rate_threshold: float = 0.5
    open_seconds: float = 30.0
    half_open_calls: int = 3

    def __post_init__(self) -> None:
        if self.window < 1:
            raise InvalidValue("window", self.window, "must be >= 1")
        if not 1 <= self.minimum_calls <= self.window:
            raise InvalidValue("minimum_calls", self.minimum_calls, "must be 1..window")
        if not 0 < self.failure_rate_threshold <= 1:
            raise InvalidValue("failure_rate_threshold", self.failure_rate_threshold,
                               "must be in (0, 1]")
        if self.open_seconds <= 0:
            raise InvalidValue("open_seconds", self.open_seconds, "must be > 0")
        if self.half_open_calls < 1:
            raise InvalidValue("half_open_calls", self.half_open_calls, "must be >= 1")


@dataclass
class CircuitBreaker:
    """The state machine; `allow` before a call, `record` after it."""

    config: BreakerConfig = field(default_factory=BreakerConfig)
    state: CircuitState = CircuitState.CLOSED
    opened_at: datetime | None = None
    outcomes: deque[bool] = field(default_factory=deque)
    trials_started: int = 0
    trials_succeeded: int = 0
    transitions: list[CircuitState] = field(default_factory=list)

    def drain_transitions(self) -> list[CircuitState]:
        """The states entered since the last call, oldest first (to record them)."""
        entered, self.transitions = self.transitions, []
        return entered

    def current_state(self, now: datetime) -> CircuitState:
        """OPEN turns HALF_OPEN by itself once the open period is over."""
        if self.state == CircuitState.OPEN and self.opened_at is not None \
                and now - self.opened_at >= timedelta(seconds=self.config.open_seconds):
            self.state = CircuitState.HALF_OPEN
            self.trials_started = 0
            self.trials_succeeded = 0
            self.transitions.append(self.state)
        return self.state

    def allow(self, now: datetime) -> bool:
        """Whether a call may go to this instance now (a half-open trial counts as taken)."""
        state = self.current_state(now)
        if state == CircuitState.CLOSED:
            return True
        if state == CircuitState.HALF_OPEN and self.trials_started < self.config.half_open_calls:
            self.trials_started += 1
            return True
        return False

    def give_back_trial(self) -> None:
        """A half-open trial slot was taken but no call was made."""
        if self.state == CircuitState.HALF_OPEN and self.trials_started > self.trials_succeeded:
            self.trials_started -= 1

    def would_allow(self, now: datetime) -> bool:
        """Like `allow`, without taking a half-open trial slot (for ranking instances)."""
        state = self.current_state(now)
        return state == CircuitState.CLOSED or (
            state == CircuitState.HALF_OPEN and self.trials_started < self.config.half_open_calls)

    def record(self, success: bool, now: datetime) -> CircuitState:
        """Counts an outcome; returns the state after it."""
        state = self.current_state(now)
        if state == CircuitState.HALF_OPEN:
            if not success:
                self._open(now)
            else:
                self.trials_succeeded += 1
                if self.trials_succeeded >= self.config.half_open_calls:
                    self.state = CircuitState.CLOSED
                    self.outcomes.clear()
                    self.transitions.append(self.state)
            return self.state
        if state == CircuitState.OPEN:
            return self.state  # a late answer from before it opened changes nothing
        self.outcomes.append(success)
        while len(self.outcomes) > self.config.window:
            self.outcomes.popleft()
        if len(self.outcomes) >= self.config.minimum_calls:
            failures = sum(1 for ok in self.outcomes if not ok)
            if failures / len(self.outcomes) >= self.config.failure_rate_threshold:
                self._open(now)
        return self.state

    def _open(self, now: datetime) -> None:
        self.state = CircuitState.OPEN
        self.opened_at = now
        self.transitions.append(self.state)
        self.outcomes.clear()
        self.trials_started = 0
        self.trials_succeeded = 0
