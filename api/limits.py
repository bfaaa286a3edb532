"""Request size limit: a pure ASGI middleware that answers 413 before a body is parsed.

A declared `Content-Length` over the limit is refused before a byte of the body is read; a
body without one (chunked) is counted while it is read, and refused as soon as it passes the
limit: the app is told the client went away and whatever it answers is dropped, so nothing
is parsed or recorded.
"""

from __future__ import annotations

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import PROBLEM_JSON, TYPE_PREFIX


class BodyLimit:
    """Refuses HTTP request bodies above `max_bytes` with a 413 problem."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(scope, send, f"the request body has {declared} bytes")
            return
        guard = _Guard(self, scope, receive, send)
        await self.app(scope, guard.receive, guard.send)

    async def _refuse(self, scope: Scope, send: Send, detail: str) -> None:
        body = orjson.dumps({
            "type": TYPE_PREFIX + "body-too-large", "title": "Request body too large",
            "status": 413, "detail": f"{detail}; the limit is {self.max_bytes} bytes "
                                     "(WES_MAX_BODY_BYTES)",
            "instance": scope.get("path"), "limit": self.max_bytes,
        })
        await send({"type": "http.response.start", "status": 413, "headers": [
            (b"content-type", PROBLEM_JSON.encode()),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]})
        await send({"type": "http.response.body", "body": body})


class _Guard:
    """One request's body count: past the limit the app is told the client left, and a
    413 goes out unless the app already started its answer."""

    def __init__(self, limit: BodyLimit, scope: Scope, receive: Receive, send: Send) -> None:
        self.limit = limit
        self.scope = scope
        self._receive = receive
        self._send = send
        self.received = 0
        self.refused = False  # the body passed the limit: the app is told the client left
        self.answered = False  # ... and this middleware sent the 413
        self.started = False

    async def receive(self) -> Message:
        if self.refused:
            return {"type": "http.disconnect"}
        message = await self._receive()
        if message["type"] != "http.request":
            return message
        self.received += len(message.get("body", b""))
        if self.received <= self.limit.max_bytes:
            return message
        self.refused = True
        if not self.started:
            self.answered = True
            await self.limit._refuse(self.scope, self._send, "the request body has more "
                                     f"than {self.limit.max_bytes} bytes")
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        if self.answered:
            return  # the 413 went out; the app's answer to a cut-off body is dropped
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server refuses a malformed length itself
    return None
