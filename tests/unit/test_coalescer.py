"""api.batching.Coalescer: lookups in flight together go out as one fetch, each answered
with its own row, and none joins a fetch that was already sent."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

import pytest

from api.batching import MAX_BATCH, Coalescer


class Table:
    """A fetch over a dict that records every call (the keys it was asked for)."""

    def __init__(self, rows: Mapping[int, str]) -> None:
        self.rows = dict(rows)
        self.calls: list[list[int]] = []
        self.gate: asyncio.Event | None = None
        self.fail: Exception | None = None

    async def fetch(self, keys: Sequence[int]) -> dict[int, str]:
        self.calls.append(list(keys))
        if self.gate is not None:
            await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        return {k: self.rows[k] for k in keys if k in self.rows}


def test_lookups_started_together_are_one_fetch_each_answered_with_its_own_row() -> None:
    table = Table({1: "one", 2: "two", 3: "three"})

    async def main() -> list[str | None]:
        rows = Coalescer(table.fetch)
        return list(await asyncio.gather(*(rows.get(k) for k in (1, 2, 1, 4, 3))))

    assert asyncio.run(main()) == ["one", "two", "one", None, "three"]
    assert table.calls == [[1, 2, 4, 3]]  # each key asked for once


def test_a_lookup_alone_is_answered_at_once() -> None:
    table = Table({1: "one"})

    async def main() -> tuple[str | None, str | None]:
        rows = Coalescer(table.fetch)
        return await rows.get(1), await rows.get(2)

    assert asyncio.run(main()) == ("one", None)
    assert table.calls == [[1], [2]]


def test_a_lookup_never_joins_a_fetch_already_sent() -> None:
    """A request waits for its own writes before it looks up: a fetch sent before that
    could miss them, so a later lookup goes in a fetch of its own."""
    table = Table({1: "old"})

    async def main() -> tuple[str | None, str | None]:
        rows = Coalescer(table.fetch)
        table.gate = asyncio.Event()
        first = asyncio.ensure_future(rows.get(1))
        while not table.calls:  # the first fetch is on its way
            await asyncio.sleep(0)
        table.rows[1] = "new"  # written, then looked up by a second request
        second = asyncio.ensure_future(rows.get(1))
        await asyncio.sleep(0)
        table.gate.set()
        return await first, await second

    _, second = asyncio.run(main())
    assert second == "new"
    assert table.calls == [[1], [1]]


def test_a_failed_fetch_fails_its_lookups_only() -> None:
    table = Table({1: "one"})

    async def main() -> str | None:
        rows = Coalescer(table.fetch)
        table.fail = ConnectionError("server closed the connection")
        results = await asyncio.gather(rows.get(1), rows.get(2), return_exceptions=True)
        assert all(isinstance(r, ConnectionError) for r in results)
        table.fail = None
        return await rows.get(1)

    assert asyncio.run(main()) == "one"


def test_a_cancelled_lookup_leaves_the_others_answered() -> None:
    table = Table({1: "one", 2: "two"})

    async def main() -> str | None:
        rows = Coalescer(table.fetch)
        table.gate = asyncio.Event()
        gone = asyncio.ensure_future(rows.get(1))
        kept = asyncio.ensure_future(rows.get(2))
        while not table.calls:
            await asyncio.sleep(0)
        gone.cancel()  # the client went away
        table.gate.set()
        with pytest.raises(asyncio.CancelledError):
            await gone
        return await kept

    assert asyncio.run(main()) == "two"


def test_many_lookups_are_split_into_bounded_fetches() -> None:
    table = Table({k: str(k) for k in range(MAX_BATCH + 10)})

    async def main() -> list[str | None]:
        rows = Coalescer(table.fetch)
        return list(await asyncio.gather(*(rows.get(k) for k in range(MAX_BATCH + 10))))

    assert asyncio.run(main()) == [str(k) for k in range(MAX_BATCH + 10)]
    assert [len(c) for c in table.calls] == [MAX_BATCH, 10]
