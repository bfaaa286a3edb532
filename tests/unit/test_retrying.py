"""The engine's retry helper: doubling waits, bounded tries, the last error raised."""

from __future__ import annotations

import pytest

from application.engine.retrying import Backoff, retry


class Flaky:
    """Fails with the given errors in turn, then answers."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"


class TestBackoff:
    def test_waits_double_up_to_the_ceiling(self) -> None:
        backoff = Backoff(0.1, 0.5)
        assert [backoff.next() for _ in range(5)] == [0.1, 0.2, 0.4, 0.5, 0.5]

    def test_a_reset_starts_again_from_the_first_wait(self) -> None:
        backoff = Backoff(0.1, 5.0)
        for _ in range(3):
            backoff.next()
        backoff.reset()
        assert backoff.next() == 0.1


class TestRetry:
    def test_answers_once_a_try_succeeds(self) -> None:
        action = Flaky(ConnectionError(), ConnectionError())
        waited: list[BaseException] = []

        def no_wait(error: BaseException) -> float:
            waited.append(error)
            return 0.0

        assert retry(action, on=(ConnectionError,), attempts=3, delay=no_wait) == "done"
        assert action.calls == 3 and len(waited) == 2

    def test_raises_the_last_error_when_the_tries_run_out(self) -> None:
        last = ConnectionError("third")
        action = Flaky(ConnectionError("first"), ConnectionError("second"), last)
        with pytest.raises(ConnectionError) as raised:
            retry(action, on=(ConnectionError,), attempts=3, delay=lambda e: 0.0)
        assert raised.value is last and action.calls == 3

    def test_an_error_it_does_not_retry_goes_straight_to_the_caller(self) -> None:
        action = Flaky(KeyError("no"))
        with pytest.raises(KeyError):
            retry(action, on=(ConnectionError,), attempts=5, delay=lambda e: 0.0)
        assert action.calls == 1

    def test_stops_after_a_wait_when_told_to(self) -> None:
        action = Flaky(ConnectionError(), ConnectionError())
        with pytest.raises(ConnectionError):
            retry(action, on=(ConnectionError,), attempts=5, delay=lambda e: 0.0,
                  stopped=lambda: True)
        assert action.calls == 1

    def test_needs_at_least_one_try(self) -> None:
        with pytest.raises(ValueError):
            retry(Flaky(), on=(ConnectionError,), attempts=0, delay=lambda e: 0.0)
