"""RetryPolicy: how often and how late a failed step is tried again (seed section 11)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Self

from domain.exceptions import InvalidValue


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff: delay(n) = min(initial * multiplier**n, max), n 0-based."""

    max_retries: int = 3
    initial_delay_ms: int = 1000
    max_delay_ms: int = 10000
    multiplier: float = 2.0
    exponential: bool = True

    def __deepcopy__(self, memo: dict[int, Any]) -> Self:
        # Immutable: an aggregate's deep copy (the repository's cache) can share it.
        return self

    def __post_init__(self) -> None:
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int):
            raise InvalidValue("max_retries", self.max_retries, "must be an integer")
        if self.max_retries < 0:
            raise InvalidValue("max_retries", self.max_retries, "must be >= 0")
        if self.initial_delay_ms < 0:
            raise InvalidValue("initial_delay_ms", self.initial_delay_ms, "must be >= 0")
        if self.max_delay_ms < self.initial_delay_ms:
            raise InvalidValue(
                "max_delay_ms", self.max_delay_ms, "must be >= initial_delay_ms"
            )
        if not math.isfinite(self.multiplier) or self.multiplier < 1:
            raise InvalidValue("multiplier", self.multiplier, "must be >= 1")
        if not isinstance(self.exponential, bool):
            raise InvalidValue("exponential", self.exponential, "must be true or false")

    @classmethod
    def default(cls) -> RetryPolicy:
        return cls(3, 1000, 10000, 2.0)

    @classmethod
    def aggressive(cls) -> RetryPolicy:
        return cls(5, 500, 5000, 1.5)

    @classmethod
    def conservative(cls) -> RetryPolicy:
        return cls(2, 2000, 20000, 3.0)

    def calculate_delay(self, retry_number: int) -> int:
        """Delay in ms before retry `retry_number` (0 = first retry); never above max."""
        if retry_number < 0:
            raise InvalidValue("retry_number", retry_number, "must be >= 0")
        if not self.exponential:
            return min(self.initial_delay_ms, self.max_delay_ms)
        # Cap the exponent's growth before computing: 3.0**10_000 would overflow a float.
        delay = float(self.initial_delay_ms)
        for _ in range(retry_number):
            delay *= self.multiplier
            if delay >= self.max_delay_ms:
                return self.max_delay_ms
        return min(round(delay), self.max_delay_ms)

    def can_retry(self, retries_so_far: int) -> bool:
        """A step may be retried while its retry count is below max_retries."""
        return retries_so_far < self.max_retries

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_value(cls, value: str | Mapping[str, Any] | RetryPolicy | None) -> RetryPolicy:
        """Accepts a named policy ("default", "aggressive", "conservative") or custom fields."""
        if value is None:
            return cls.default()
        if isinstance(value, RetryPolicy):
            return value
        if isinstance(value, str):
            try:
                return NAMED_POLICIES[value.lower()]()
            except KeyError:
                raise InvalidValue(
                    "retry_policy", value, f"unknown policy; known: {sorted(NAMED_POLICIES)}"
                ) from None
        if isinstance(value, Mapping):
            unknown = set(value) - {
                "max_retries", "initial_delay_ms", "max_delay_ms", "multiplier", "exponential"
            }
            if unknown:
                raise InvalidValue("retry_policy", sorted(unknown), "unknown fields")
            defaults = cls.default()
            try:
                return cls(
                    max_retries=value.get("max_retries", defaults.max_retries),
                    initial_delay_ms=int(value.get("initial_delay_ms", defaults.initial_delay_ms)),
                    max_delay_ms=int(value.get("max_delay_ms", defaults.max_delay_ms)),
                    multiplier=float(value.get("multiplier", defaults.multiplier)),
                    exponential=value.get("exponential", True),
                )
            except (TypeError, ValueError) as e:
                if isinstance(e, InvalidValue):
                    raise
                raise InvalidValue("retry_policy", dict(value), str(e)) from None
        raise InvalidValue("retry_policy", value, "must be a policy name or an object")


NAMED_POLICIES = {
    "default": RetryPolicy.default,
    "aggressive": RetryPolicy.aggressive,
    "conservative": RetryPolicy.conservative,
}
