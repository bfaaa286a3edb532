"""What the relay needs from a broker: where it stopped, and an ordered, exactly-once append."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from application.relay.envelope import Outgoing


class SinkUnavailable(Exception):
    """The broker is down, refused, or answered something else than expected: the relay
    backs off, reconnects and asks the sink again where it stopped."""


class Sink(Protocol):
    """A broker destination that can tell the last event it holds.

    A sink must never hold an event twice nor out of order, even when another relay (one
    that lost its lock) or a retry publishes the same events: `publish` appends only if
    the destination still ends where this sink last saw it, and raises otherwise. After
    any failure it sends nothing more until `resume_point` has been asked again.
    """

    def describe(self) -> str:
        """Where it publishes, without credentials (for logs and status)."""
        ...

    async def open(self) -> None:
        """Connects and creates the destination if missing (raises SinkUnavailable)."""
        ...

    async def resume_point(self) -> int | None:
        """The global position of the last event the destination holds (0: it never held
        any), or None when it cannot tell (its last message was removed)."""
        ...

    async def send(self, events: Sequence[Outgoing]) -> Any:
        """Starts appending the events in order, after those sent before (the relay sends
        the next batch while the broker acknowledges this one); raises SinkUnavailable.
        After `resume_point` said None, the first events may be held already: those count
        as appended, not as a failure."""
        ...

    async def confirm(self, sent: Any) -> int:
        """Waits until a sent batch is in, all of it, or raises SinkUnavailable (some may
        be in then: ask `resume_point` again); returns the destination's sequence after it.
        Batches are confirmed in the order they were sent."""
        ...

    async def publish(self, events: Sequence[Outgoing]) -> int:
        """`send` and `confirm` one batch."""
        ...

    async def close(self) -> None:
        """Disconnects; never raises."""
        ...
