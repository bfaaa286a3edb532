"""The NATS JetStream sink: one stream, one message per event, appended exactly once.

Every publish carries `Nats-Msg-Id` (the event's id: JetStream drops a repeat within its
duplicate window) and `Nats-Expected-Last-Sequence` (JetStream stores the message only if
the stream's last sequence is the one given). A batch is pipelined with the sequences
predicted from the last one seen; the first message whose prediction is wrong (another
relay got there first, a message from a timed-out attempt landed late) is refused, and so
is every one after it, so the stream only ever grows by the next event in store order.

When the stream cannot tell where it stopped (its last message was removed) the relay
resumes from its tracking row, which may lag the stream: the first events it sends may be
held already. Those are sent one at a time, and a leading run of duplicate acks for
messages at or before the stream's last sequence counts as stored; the first message that
is new carries the stream's last sequence (a removed message keeps it) and pipelining
resumes after it. A duplicate anywhere else is still a failure.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import nats
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError, NotFoundError

from application.relay.envelope import CONTENT_TYPE, Outgoing
from application.relay.sink import SinkUnavailable
from application.settings import RelaySettings

log = logging.getLogger(__name__)

POSITION_HEADER = "Wes-Position"
_RETENTION = {"limits": RetentionPolicy.LIMITS, "interest": RetentionPolicy.INTEREST,
              "workqueue": RetentionPolicy.WORK_QUEUE}
# What a broker that is down, restarting or refusing raises (nats-py's own errors include
# its time-outs and JetStream API errors).
_BROKER_ERRORS = (NatsError, OSError, asyncio.TimeoutError, ConnectionError)


def redact(url: str) -> str:
    """The URL(s) without user, password or token (`nats://***@host:4222`)."""
    shown = []
    for one in url.split(","):
        parts = urlsplit(one.strip())
        if parts.username is not None or parts.password is not None:
            host = parts.hostname or ""
            netloc = f"***@{host}" + (f":{parts.port}" if parts.port else "")
            parts = parts._replace(netloc=netloc)
        shown.append(urlunsplit(parts))
    return ",".join(shown)


@dataclass(frozen=True)
class _Sent:
    """A batch published and not yet acknowledged."""

    events: Sequence[Outgoing]
    futures: list[asyncio.Future[Any]]
    base: int  # the stream's sequence it expects before its first message


class NatsJetStreamSink:
    """Publishes to the JetStream stream `settings.stream` (created if missing)."""

    def __init__(self, settings: RelaySettings, *, connect_timeout: float = 2.0,
                 ack_timeout: float = 10.0) -> None:
        self.settings = settings
        self.connect_timeout = connect_timeout
        self.ack_timeout = ack_timeout
        self._nc: Any = None
        self._js: JetStreamContext | None = None
        self._last_sequence = 0  # the stream's, as the last ack said
        self._next_sequence = 0  # after the messages sent so far
        self._lost_track = True  # until resume_point has read where the stream ends
        # Resumed from the tracking row: leading events may be in the stream already.
        self._may_hold = False

    def describe(self) -> str:
        return f"nats {redact(self.settings.nats_url)} stream {self.settings.stream}"

    async def open(self) -> None:
        servers = [url.strip() for url in self.settings.nats_url.split(",") if url.strip()]
        try:
            # No reconnection inside the client: the relay decides what to do after a
            # failure (reconnect, then ask the stream where it stopped).
            # (nats-py reads max_reconnect_attempts=0 as "no limit" while connecting.)
            self._nc = await asyncio.wait_for(nats.connect(
                servers=servers, name="wes-relay", allow_reconnect=False,
                connect_timeout=self.connect_timeout, max_reconnect_attempts=1,
                reconnect_time_wait=0, error_cb=self._on_error,
                disconnected_cb=self._on_disconnected), 2 * self.connect_timeout * len(servers))
            self._js = self._nc.jetstream(timeout=self.ack_timeout)
            await self._ensure_stream()
        except _BROKER_ERRORS as e:
            await self.close()
            raise SinkUnavailable(f"{self.describe()}: {_describe(e)}") from None

    async def _ensure_stream(self) -> None:
        js = self._jetstream()
        s = self.settings
        try:
            await js.stream_info(s.stream)
            return
        except NotFoundError:
            pass
        config = StreamConfig(name=s.stream, subjects=[f"{s.subject_prefix}.>"],
                              retention=_RETENTION[s.retention], num_replicas=s.replicas,
                              storage=StorageType.FILE,
                              description="WES Orchestrator domain events (wes relay)")
        try:
            await js.add_stream(config)
            log.info("created stream", extra={"stream": s.stream, "retention": s.retention,
                                              "replicas": s.replicas})
        except BadRequestError:
            await js.stream_info(s.stream)  # another relay created it meanwhile

    async def resume_point(self) -> int | None:
        js = self._jetstream()
        try:
            info = await js.stream_info(self.settings.stream)
            last = info.state.last_seq
            self._last_sequence = self._next_sequence = last
            self._lost_track = False
            self._may_hold = False
            if last == 0:
                return 0
            try:
                message = await js.get_msg(self.settings.stream, seq=last)
            except NotFoundError:
                self._may_hold = True
                return None  # removed (retention, or deleted): the stream cannot tell
        except _BROKER_ERRORS as e:
            raise SinkUnavailable(f"{self.describe()}: {_describe(e)}") from None
        return _position_of(message.headers, message.data)

    async def send(self, events: Sequence[Outgoing]) -> _Sent:
        """Publishes without waiting for the acks, each message expecting the sequence the
        one before it will get: the next batch may be sent before this one's acks."""
        js = self._jetstream()
        if self._lost_track:
            raise SinkUnavailable(f"{self.describe()}: a batch failed; ask where the stream "
                                  "ends (resume_point) before sending again")
        held = 0
        try:
            if self._may_hold:
                held = await self._skip_held(events)
            if held:
                log.info("events re-sent after a resume from the tracking row were in the "
                         "stream already", extra={"held": held,
                                                  "position": events[held - 1].position})
            events = events[held:]
        except _BROKER_ERRORS as e:
            self._lost_track = True
            raise SinkUnavailable(f"{self.describe()}: {_describe(e)}") from None
        base = self._next_sequence
        futures: list[asyncio.Future[Any]] = []
        try:
            for offset, event in enumerate(events):
                futures.append(await js.publish_async(
                    event.subject, event.body, headers=self._headers(event, base + offset)))
        except _BROKER_ERRORS as e:
            for future in futures:
                future.cancel()
            self._lost_track = True
            raise SinkUnavailable(f"{self.describe()}: {_describe(e)}") from None
        self._next_sequence = base + len(events)
        return _Sent(events, futures, base)

    async def _skip_held(self, events: Sequence[Outgoing]) -> int:
        """Publishes the events one by one, each acked before the next, while JetStream
        answers that it holds them already; returns how many it held. The first one it
        stores ends the search (later ones are pipelined again)."""
        js = self._jetstream()
        for held, event in enumerate(events):
            ack = await js.publish(event.subject, event.body, timeout=self.ack_timeout,
                                   headers=self._headers(event, self._next_sequence))
            if ack.stream != self.settings.stream:
                raise SinkUnavailable(f"{self.describe()}: message for position "
                                      f"{event.position} landed in stream {ack.stream}")
            if ack.duplicate and 0 < ack.seq <= self._last_sequence:
                continue  # re-sent after a resume from the tracking row: stored already
            self._may_hold = False
            if ack.duplicate or ack.seq != self._last_sequence + 1:
                raise SinkUnavailable(
                    f"{self.describe()}: message for position {event.position} landed as "
                    f"#{ack.seq} (duplicate={ack.duplicate}), expected "
                    f"#{self._last_sequence + 1}")
            self._last_sequence = self._next_sequence = ack.seq
            return held + 1
        return len(events)

    def _headers(self, event: Outgoing, expected_last: int) -> dict[str, str]:
        return {"Nats-Msg-Id": event.event_id,
                "Nats-Expected-Last-Sequence": str(expected_last),
                "Content-Type": CONTENT_TYPE,
                POSITION_HEADER: str(event.position)}

    async def confirm(self, sent: _Sent) -> int:
        """Waits for a sent batch's acks; raises unless every message landed where it was
        expected. Returns the stream's sequence after the batch."""
        try:
            self._check(sent, await asyncio.wait_for(
                asyncio.gather(*sent.futures, return_exceptions=True), self.ack_timeout))
        except _BROKER_ERRORS as e:
            for future in sent.futures:
                future.cancel()
            self._lost_track = True
            raise SinkUnavailable(f"{self.describe()}: {_describe(e)}") from None
        except SinkUnavailable:
            self._lost_track = True  # and every batch sent after this one fails too
            raise
        self._last_sequence = sent.base + len(sent.events)
        return self._last_sequence

    def _check(self, sent: _Sent, acks: Sequence[Any]) -> None:
        for offset, ack in enumerate(acks):
            expected = sent.base + offset + 1
            position = sent.events[offset].position
            if isinstance(ack, BaseException):
                raise SinkUnavailable(f"{self.describe()}: message for position {position} "
                                      f"refused: {_describe(ack)}")
            if ack.duplicate or ack.seq != expected or ack.stream != self.settings.stream:
                raise SinkUnavailable(
                    f"{self.describe()}: message for position {position} landed as "
                    f"{ack.stream} #{ack.seq} (duplicate={ack.duplicate}), expected #{expected}")

    async def publish(self, events: Sequence[Outgoing]) -> int:
        return await self.confirm(await self.send(events))

    async def close(self) -> None:
        nc, self._nc, self._js = self._nc, None, None
        if nc is not None:
            try:
                await asyncio.wait_for(nc.close(), self.connect_timeout)
            except Exception as e:  # closing a dead connection: nothing left to do
                log.debug("closing the NATS connection: %s", _describe(e))

    def _jetstream(self) -> JetStreamContext:
        if self._js is None:
            raise SinkUnavailable(f"{self.describe()}: not connected")
        return self._js

    async def _on_error(self, error: Exception) -> None:
        # nats-py's default callback logs the error, whose text may name the server URL.
        log.debug("NATS connection error", extra={"error": _describe(error),
                                                    "target": self.describe()})

    async def _on_disconnected(self) -> None:
        log.info("NATS disconnected", extra={"target": self.describe()})


def _position_of(headers: dict[str, str] | None, body: bytes | None) -> int:
    """The global position a relayed message carries (header, else the CloudEvent)."""
    if headers and POSITION_HEADER in headers:
        return int(headers[POSITION_HEADER])
    try:
        return int(json.loads(body or b"")["position"])
    except (ValueError, KeyError, TypeError) as e:
        raise SinkUnavailable(f"the stream's last message is not a relayed event: {e}") from None


def _describe(error: BaseException) -> str:
    """An error's type and text, with any URL's credentials masked."""
    text = str(error) or type(error).__name__
    for word in text.split():
        if "://" in word and "@" in word:
            text = text.replace(word, redact(word.strip("'\"(),")))
    return f"{type(error).__name__}: {text}"


async def first_sequence_after(js: JetStreamContext, stream: str, position: int,
                               subjects: str = ">") -> int:
    """The stream sequence to start a consumer at to get the events after global
    `position`: a binary search on the messages' Wes-Position header (the stream is in
    position order), a few direct reads however long the stream."""
    state = (await js.stream_info(stream)).state
    low, high = state.first_seq, state.last_seq + 1
    while low < high:
        middle = (low + high) // 2
        try:  # the message at `middle`, or the next one if that one was removed
            message = await js.get_msg(stream, seq=middle, subject=subjects, next=True)
        except NotFoundError:
            high = middle
            continue
        if _position_of(message.headers, message.data) > position:
            high = middle
        else:
            low = (message.seq or middle) + 1
    return low
