"""Coalescing concurrent reads by key into one statement (the API's hottest lookups).

Under load many requests for single rows are in flight at once; one `WHERE id = ANY(...)`
statement for all of those that reached their read in the same event-loop iteration costs
one round trip and one pass through the driver instead of one each. A request only joins a
statement that has not been sent yet, so it still reads a snapshot taken after its own
checks and waits (read-your-writes is unchanged); alone, it waits for nothing but the end
of the current loop iteration.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

MAX_BATCH = 500  # bounds the statement's array; more waiting keys go in further statements


class Coalescer(Generic[K, V]):
    """`get(key)` answers `fetch(keys)[key]` (None when absent), with the keys requested
    in one loop iteration fetched together. Use it from one event loop only."""

    def __init__(self, fetch: Callable[[Sequence[K]], Awaitable[Mapping[K, V]]]) -> None:
        self._fetch = fetch
        self._waiting: list[tuple[K, asyncio.Future[V | None]]] = []
        self._flushing = False
        self._running: set[asyncio.Task[None]] = set()  # strong references until done

    async def get(self, key: K) -> V | None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[V | None] = loop.create_future()
        self._waiting.append((key, future))
        if not self._flushing:
            self._flushing = True
            # After the callbacks already queued: the requests that arrived together.
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        self._flushing = False
        waiting, self._waiting = self._waiting, []
        for start in range(0, len(waiting), MAX_BATCH):
            task = asyncio.ensure_future(self._answer(waiting[start:start + MAX_BATCH]))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _answer(self, batch: list[tuple[K, asyncio.Future[V | None]]]) -> None:
        try:
            found = await self._fetch(list(dict.fromkeys(key for key, _ in batch)))
        except Exception as e:
            for _, future in batch:
                if not future.done():  # a request cancelled meanwhile (client gone)
                    future.set_exception(e)
            return
        except BaseException:  # cancelled (shutdown): so are the requests waiting on it
            for _, future in batch:
                future.cancel()
            raise
        for key, future in batch:
            if not future.done():
                future.set_result(found.get(key))
