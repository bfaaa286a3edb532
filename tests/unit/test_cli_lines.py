"""The terminal lines of `wes replay`, `wes demo` and `wes workflows watch`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from cli.lines import ELLIPSIS, event_line, fit, stamp, summary

WORDS = st.lists(st.text(alphabet="abcdefghijklmnopqrstuvwxyz_-:=0123456789", min_size=1,
                         max_size=30), max_size=12)


class TestFit:
    @given(WORDS, st.integers(min_value=1, max_value=100))
    def test_never_longer_than_the_room_and_never_cuts_a_word(self, words, room):
        line = fit(words, room)
        assert len(line) <= room
        shown = [w for w in line.split() if w != ELLIPSIS]
        assert shown == words[:len(shown)]  # whole words, in order, from the first

    @given(WORDS, st.integers(min_value=1, max_value=100))
    def test_marks_what_it_left_out(self, words, room):
        line = fit(words, room)
        complete = line == " ".join(words)
        assert complete or line.endswith(ELLIPSIS) or line == "" or \
            len(line) + 2 > room

    def test_keeps_everything_that_fits(self):
        assert fit(["pick-items", "ITEM_NOT_FOUND"], 25) == "pick-items ITEM_NOT_FOUND"
        assert fit(["pick-items", "ITEM_NOT_FOUND"], 24) == "pick-items …"


class TestStamp:
    def test_is_full_utc_to_the_millisecond(self):
        when = datetime(2026, 12, 1, 23, 42, 58, 123456, tzinfo=timezone(timedelta(hours=2)))
        assert stamp(when) == "2026-12-01T21:42:58.123Z"
        assert stamp(when.isoformat()) == "2026-12-01T21:42:58.123Z"


class TestEventLine:
    def test_a_failure_names_its_step_and_code_first(self):
        data = {"step_id": "pack-items", "attempt": 2, "error": {
            "code": "PACKING_STATION_UNAVAILABLE", "message": "station 4 is down",
            "recoverable": True}}
        words = summary("StepFailed", data)
        assert words[:3] == ["pack-items", "PACKING_STATION_UNAVAILABLE", "recoverable"]
        line = event_line(12, datetime(2026, 12, 1, tzinfo=UTC), "StepFailed", data, room=80,
                          type_width=12)
        assert len(line) <= 80
        assert line.split()[:5] == ["12", "2026-12-01T00:00:00.000Z", "StepFailed",
                                    "pack-items", "PACKING_STATION_UNAVAILABLE"]
