"""RetryPolicy: the exact numbers of SEED-FACTS, the cap, and the values it refuses."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.exceptions import InvalidValue
from domain.retry_policy import RetryPolicy


class TestPresets:
    def test_default_waits_1s_2s_4s_for_its_3_retries(self) -> None:
        policy = RetryPolicy.default()

        assert policy.max_retries == 3
        assert [policy.calculate_delay(n) for n in range(3)] == [1000, 2000, 4000]

    def test_default_stops_at_its_10s_maximum(self) -> None:
        policy = RetryPolicy.default()

        assert [policy.calculate_delay(n) for n in range(3, 6)] == [8000, 10000, 10000]

    def test_aggressive_grows_by_half_up_to_5s(self) -> None:
        policy = RetryPolicy.aggressive()

        assert [policy.calculate_delay(n) for n in range(7)] == [
            500, 750, 1125, 1688, 2531, 3797, 5000]

    def test_conservative_triples_up_to_20s(self) -> None:
        policy = RetryPolicy.conservative()

        assert [policy.calculate_delay(n) for n in range(4)] == [2000, 6000, 18000, 20000]

    def test_may_retry_while_the_count_is_below_max_retries(self) -> None:
        policy = RetryPolicy.default()

        assert [policy.can_retry(n) for n in range(5)] == [True, True, True, False, False]

    @pytest.mark.parametrize(("name", "expected"), [
        ("default", RetryPolicy(3, 1000, 10000, 2.0)),
        ("aggressive", RetryPolicy(5, 500, 5000, 1.5)),
        ("CONSERVATIVE", RetryPolicy(2, 2000, 20000, 3.0)),
    ])
    def test_named_policies(self, name: str, expected: RetryPolicy) -> None:
        assert RetryPolicy.from_value(name) == expected

    def test_no_policy_means_the_default(self) -> None:
        assert RetryPolicy.from_value(None) == RetryPolicy.default()


class TestCalculateDelay:
    def test_guides_custom_example_second_retry_is_18000_ms(self) -> None:
        policy = RetryPolicy(5, 2000, 30000, 3.0, True)

        assert policy.calculate_delay(2) == 18000

    def test_without_exponential_backoff_every_delay_is_the_initial_delay(self) -> None:
        policy = RetryPolicy(5, 2000, 30000, 3.0, exponential=False)

        assert {policy.calculate_delay(n) for n in range(6)} == {2000}

    def test_a_huge_retry_number_is_capped_without_overflow(self) -> None:
        assert RetryPolicy(5, 2000, 30000, 3.0).calculate_delay(100_000) == 30000

    def test_a_negative_retry_number_is_refused(self) -> None:
        with pytest.raises(InvalidValue, match="retry_number"):
            RetryPolicy.default().calculate_delay(-1)

    def test_custom_fields_with_defaults_for_the_rest(self) -> None:
        policy = RetryPolicy.from_value({"max_retries": 5, "initial_delay_ms": 2000,
                                         "max_delay_ms": 30000, "multiplier": 3.0})

        assert policy == RetryPolicy(5, 2000, 30000, 3.0, True)

    @given(
        initial=st.integers(min_value=0, max_value=600_000),
        headroom=st.integers(min_value=0, max_value=3_600_000),
        multiplier=st.floats(min_value=1.0, max_value=100.0, allow_nan=False),
        exponential=st.booleans(),
        retry_number=st.integers(min_value=0, max_value=5_000),
    )
    def test_delay_is_never_above_max_nor_below_initial(
        self, initial: int, headroom: int, multiplier: float, exponential: bool,
        retry_number: int,
    ) -> None:
        policy = RetryPolicy(3, initial, initial + headroom, multiplier, exponential)

        delay = policy.calculate_delay(retry_number)

        assert initial <= delay <= policy.max_delay_ms
        assert isinstance(delay, int)

    @given(
        initial=st.integers(min_value=1, max_value=10_000),
        headroom=st.integers(min_value=0, max_value=1_000_000),
        multiplier=st.floats(min_value=1.0, max_value=10.0, allow_nan=False),
        retry_number=st.integers(min_value=0, max_value=200),
    )
    def test_delays_never_shrink_from_one_retry_to_the_next(
        self, initial: int, headroom: int, multiplier: float, retry_number: int,
    ) -> None:
        policy = RetryPolicy(3, initial, initial + headroom, multiplier)

        assert policy.calculate_delay(retry_number) <= policy.calculate_delay(retry_number + 1)


class TestInvalidPolicies:
    @pytest.mark.parametrize(("fields", "field"), [
        ({"max_retries": -1}, "max_retries"),
        ({"multiplier": 0.5}, "multiplier"),
        ({"multiplier": float("nan")}, "multiplier"),
        ({"initial_delay_ms": 5000, "max_delay_ms": 1000}, "max_delay_ms"),
        ({"initial_delay_ms": -1}, "initial_delay_ms"),
    ])
    def test_out_of_range_values_are_refused(self, fields: dict[str, Any], field: str) -> None:
        with pytest.raises(InvalidValue) as refused:
            RetryPolicy(**fields)

        assert refused.value.field == field
        assert f"invalid {field}=" in str(refused.value)

    def test_an_unknown_named_policy_is_refused_naming_the_known_ones(self) -> None:
        with pytest.raises(InvalidValue, match="unknown policy") as refused:
            RetryPolicy.from_value("turbo")

        assert refused.value.field == "retry_policy"
        assert "aggressive" in str(refused.value)

    def test_unknown_custom_fields_are_refused(self) -> None:
        with pytest.raises(InvalidValue, match="unknown fields"):
            RetryPolicy.from_value({"max_retries": 2, "jitter": True})

    def test_exponential_must_be_a_boolean_not_a_truthy_string(self) -> None:
        with pytest.raises(InvalidValue, match="invalid exponential='false'"):
            RetryPolicy.from_value({"exponential": "false"})

    def test_non_numeric_custom_fields_are_refused(self) -> None:
        with pytest.raises(InvalidValue, match="retry_policy"):
            RetryPolicy.from_value({"initial_delay_ms": "soon"})
