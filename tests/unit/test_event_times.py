"""A workflow's events carry non-decreasing times in version order, whatever clock decided
them (replay at a point in time searches the stream by time)."""

from __future__ import annotations

from tests.unit.sagas import NOW, executing_workflow, ms


def test_an_event_decided_with_an_earlier_clock_is_stamped_with_the_latest_time_so_far() -> None:
    wf = executing_workflow()
    wf.pause(NOW + ms(5000), "aisle blocked", "operator")
    wf.resume(NOW + ms(1000), "operator")  # a process whose clock lags by four seconds
    times = [event.timestamp for event in wf.collect_events()]
    assert times == [NOW + ms(5000), NOW + ms(5000)]
    assert wf.modified_on == NOW + ms(5000)


def test_a_later_clock_is_taken_as_it_is() -> None:
    wf = executing_workflow()
    wf.pause(NOW + ms(2000), None, "operator")
    wf.resume(NOW + ms(3000), "operator")
    assert [e.timestamp for e in wf.collect_events()] == [NOW + ms(2000), NOW + ms(3000)]
