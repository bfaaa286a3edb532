"""Asyncio connections for the read models' hot queries (the API's `GET /v1/workflows/{id}`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from eventsourcing.postgres import PostgresDatastore
from psycopg import AsyncConnection
from psycopg.rows import DictRow, dict_row
from psycopg.sql import Composed
from psycopg_pool import AsyncConnectionPool


class AsyncReadPool:
    """Connections on the event loop for the read models' hot queries (the API's).

    A query is one statement in autocommit: no BEGIN/ROLLBACK around it and no pre-ping
    before it, so it costs one round trip (the datastore's pool spends four: the ping,
    BEGIN, the query, ROLLBACK). Without the ping a connection the server dropped
    since its last use (a restart) fails its next query: the pool discards it and the read
    is retried on another connection. Open it in the event loop that will use it.
    """

    def __init__(self, datastore: PostgresDatastore, *, min_size: int = 1,
                 max_size: int | None = None) -> None:
        sync_pool = datastore.pool
        kwargs: dict[str, Any] = {**(sync_pool.kwargs or {}), "autocommit": True,
                                  "row_factory": dict_row}
        if sync_pool.get_password_func is not None:
            kwargs["password"] = sync_pool.get_password_func()
        self.pool: AsyncConnectionPool[AsyncConnection[DictRow]] = AsyncConnectionPool(
            sync_pool.conninfo, kwargs=kwargs,
            connection_class=AsyncConnection[DictRow],
            min_size=min_size, max_size=max_size or sync_pool.max_size,
            timeout=sync_pool.timeout, name=f"{sync_pool.name}-async", open=False,
        )

    async def open(self) -> None:
        """Starts connecting in the background; the first query waits for a connection."""
        await self.pool.open(wait=False)

    async def close(self) -> None:
        await self.pool.close()

    async def fetchall(self, query: Composed | bytes, params: Sequence[Any]) -> list[DictRow]:
        """The rows of one read-only statement (prepared on each connection).

        A connection found broken (the server closed it while it sat in the pool, e.g. a
        restart) is discarded by the pool and the read, safe to repeat, goes to the next
        one; after a restart every pooled connection is dead, hence up to one try per
        connection the pool may hold. Any other error, and PoolTimeout (no connection came
        in time), is raised at once.
        """
        tries = self.pool.max_size + 1
        for attempt in range(1, tries + 1):
            async with self.pool.connection() as conn:
                try:
                    cursor = await conn.execute(query, params, prepare=True)
                    return await cursor.fetchall()
                except psycopg.OperationalError:
                    if not conn.broken or attempt == tries:
                        raise
        raise AssertionError("unreachable: the last try returns or raises")
