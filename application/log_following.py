"""Following the event log live: the subscription, and the NOTIFY sent after appends.

Both belong to `WesApplicationRecorder` (application/event_log.py, whose notes say how a
read never passes over an append in flight); they hold no SQL of their own beyond LISTEN,
UNLISTEN and the NOTIFY statement the recorder renders.
"""

from __future__ import annotations

import contextlib
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any, cast

import psycopg
from eventsourcing.persistence import ShutDown
from eventsourcing.postgres import PostgresDatastore, PostgresSubscription
from psycopg.sql import SQL, Identifier

from application.pool import listening

if TYPE_CHECKING:
    from application.event_log import WesApplicationRecorder


class WesSubscription(PostgresSubscription):
    """The library's LISTEN/NOTIFY subscription, reading with `select_committed`: when an
    append still in flight stops a read, it waits for exactly that append to end.

    It also reads once more as soon as its LISTEN has taken effect. The library starts the
    first read and the LISTEN in two threads, so an append that commits after that read but
    before the LISTEN sends a NOTIFY nobody hears, and the subscription would not see it
    until some later append (a projector once sat 10 s short of a workflow's first event).
    """

    def _listen(self) -> None:
        try:
            datastore = self._recorder.datastore
            with listening(datastore), datastore.get_connection() as conn:
                conn.execute(SQL("LISTEN {0}").format(Identifier(self._recorder.channel_name)))
                if not conn.autocommit:
                    conn.commit()  # LISTEN takes effect at commit
                # From here on every append is heard; read what committed before.
                self._has_been_notified.set()
                try:
                    while not self._has_been_stopped and not self._thread_error:
                        for _ in conn.notifies(timeout=0.1, stop_after=1):
                            self._has_been_notified.set()
                finally:
                    unlisten(conn)
        except BaseException as e:
            if self._thread_error is None:
                self._thread_error = e
            self.stop()

    def _pull(self) -> None:
        recorder = cast("WesApplicationRecorder", self._recorder)
        while not self._has_been_stopped:
            self._has_been_notified.clear()
            notifications, blocked = recorder.select_committed(
                (self._last_notification_id or 0) + 1, self._select_limit, topics=self._topics)
            if notifications:
                try:
                    self._notifications_queue.put(notifications)
                except ShutDown:
                    break
                self._last_notification_id = notifications[-1].id
            if blocked is not None:
                recorder.wait_for_append(blocked, lambda: self._has_been_stopped)
            elif len(notifications) < self._select_limit:
                break


def unlisten(conn: psycopg.Connection[Any]) -> None:
    """Stops listening before the connection goes back to the pool: a pooled connection
    still LISTENing would pile up notifications nobody reads."""
    if not conn.closed:
        with contextlib.suppress(psycopg.Error):
            conn.execute("UNLISTEN *")


class Notifier:
    """Sends the NOTIFY for appends after they commit, from one thread, one per burst."""

    def __init__(self, datastore: PostgresDatastore, statement: str) -> None:
        self._datastore = datastore
        self._statement = statement
        self._pending = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def wake(self) -> None:
        self._pending.set()
        if self._thread is None or not self._thread.is_alive():
            with self._lock:
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(
                        target=_send_notifications, name="wes-notify", daemon=True,
                        args=(weakref.ref(self._datastore), self._pending, self._statement))
                    self._thread.start()


# After a NOTIFY, commits within this long share the next one. Each NOTIFY is a transaction
# of its own; under the engine's load one per append was 7 of a saga's 25 transactions.
# The first commit after a quiet spell is still announced at once.
NOTIFY_COALESCE_SECONDS = 0.003


def _send_notifications(datastore_ref: weakref.ref[PostgresDatastore], pending: threading.Event,
                        statement: str) -> None:
    # Holds the datastore only weakly, and ends when its pool is closed.
    while True:
        woken = pending.wait(1.0)
        datastore = datastore_ref()
        if datastore is None or datastore.pool.closed:
            return
        if woken:
            pending.clear()  # commits from now on get a NOTIFY of their own
            try:
                with datastore.get_connection() as conn:
                    conn.execute(statement)
            except Exception:
                if datastore.pool.closed:
                    return
                pending.set()
                time.sleep(0.1)
            else:
                time.sleep(NOTIFY_COALESCE_SECONDS)
        del datastore
