"""Advisory-lock keys keep the values they had before they were all named by `lock_key`.

During a rolling upgrade an old process and a new one must compute the same integers for
the same lock, or two waveless leaders, two active projectors or two appends sharing
positions could run at once. The expected integers below were printed by the derivations as
they stood before `application.locks` (the leader lock and the event log's keys in
application/persistence.py, the projection keys in projections/locks.py); the derivations
are also restated here and compared over many names."""

from __future__ import annotations

import hashlib
import zlib

import pytest

from application.locks import (
    PROJECTION_LOCK_CLASS,
    LockKey,
    LockKind,
    LockRole,
    lock_key,
    projection_lock_key,
)

NAMES = [f"{schema}.{table}" for schema in ("public", "wes_demo", "s" * 63)
         for table in ("wes_events", "wes_snapshots", "stored_events", "é-ü")] + \
        [f"n{i}" for i in range(200)]

# Printed by the code of the parent commit (`LeaderLock(conninfo, name)._key`).
LEADER = {
    "wes-waveless-release:public": 6200702918709266780,
    "wes-waveless-release:wes_demo": 7281631354293550196,
}
# Table -> (marker class, allocation key, setup key), as the recorder computed them.
EVENT_LOG = {
    "public.wes_events": (1372771046, -8099285004024573271, 1056519786700531290),
    "public.wes_snapshots": (1074146126, 1673117774207252019, 4879369939424828270),
    "wes_demo.wes_events": (184418190, 6832503282157639833, 8871206245731509166),
    "wes_demo.wes_snapshots": (221894331, -8769716106236026251, -7494452043629845570),
}
# (schema, projection or "relay" or "*", role) -> object id (the class is "WESP").
PROJECTION = {
    ("public", "progress", "active"): 1866466790, ("public", "progress", "presence"): 386146219,
    ("public", "progress", "rebuild"): 1659108811, ("public", "load", "active"): 1525074713,
    ("public", "load", "presence"): 2029795528, ("public", "load", "rebuild"): 1339339912,
    ("public", "audit", "active"): 426615891, ("public", "audit", "presence"): 795287557,
    ("public", "audit", "rebuild"): 1495177065, ("public", "relay", "active"): 2132256937,
    ("public", "relay", "presence"): 1216512867, ("public", "*", "setup"): 350904640,
    ("wes_demo", "progress", "active"): 1166496640,
    ("wes_demo", "progress", "presence"): 648777100,
    ("wes_demo", "progress", "rebuild"): 1184431856, ("wes_demo", "load", "active"): 424938846,
    ("wes_demo", "load", "presence"): 902022461, ("wes_demo", "load", "rebuild"): 657445501,
    ("wes_demo", "audit", "active"): 1905705638, ("wes_demo", "audit", "presence"): 1652365675,
    ("wes_demo", "audit", "rebuild"): 337734300, ("wes_demo", "relay", "active"): 401395292,
    ("wes_demo", "relay", "presence"): 93895181, ("wes_demo", "*", "setup"): 1948459989,
}


def sha256_bigint(text: str, offset: int) -> int:
    digest = hashlib.sha256(text.encode()).digest()
    return int.from_bytes(digest[offset:offset + 8], "big", signed=True)


def crc31(text: str) -> int:
    return zlib.crc32(text.encode()) & 0x7FFFFFFF


class TestLockKeysKeepTheirValues:
    @pytest.mark.parametrize("name", sorted(LEADER))
    def test_the_waveless_leader_lock_is_the_same_bigint(self, name: str) -> None:
        assert lock_key(LockKind.LEADER, name) == LockKey(None, LEADER[name])
        assert lock_key(LockKind.LEADER, name).params == (LEADER[name],)

    @pytest.mark.parametrize("table", sorted(EVENT_LOG))
    def test_the_event_logs_locks_are_the_same(self, table: str) -> None:
        marker_class, allocation, setup = EVENT_LOG[table]
        assert lock_key(LockKind.APPEND_ALLOCATION, table) == LockKey(None, allocation)
        assert lock_key(LockKind.EVENT_LOG_SETUP, table) == LockKey(None, setup)
        for position, object_id in ((1, 1), (12345, 12345), (2**31 - 1, 2**31 - 1),
                                    (2**31, 0), (2**31 + 7, 7), (5 * 2**31 + 9, 9)):
            key = lock_key(LockKind.APPEND_MARKER, table, position)
            assert key == LockKey(marker_class, object_id)
            assert key.params == (marker_class, object_id)

    @pytest.mark.parametrize(("schema", "name", "role"), sorted(PROJECTION))
    def test_the_projection_and_relay_locks_are_the_same_pair(self, schema: str, name: str,
                                                              role: str) -> None:
        key = projection_lock_key(schema, name, LockRole(role))
        assert key == LockKey(0x57455350, PROJECTION[schema, name, role])
        assert key.params == (0x57455350, PROJECTION[schema, name, role])

    @pytest.mark.parametrize("name", NAMES)
    def test_every_derivation_is_the_one_each_lock_had(self, name: str) -> None:
        # LeaderLock: sha256(name)[:8]; the recorder: sha256("wes-allocate:" + table), its
        # first 8 bytes for the allocation and the next 8 for the setup, and crc32(table)
        # for the markers; projections/locks.py: ("WESP", crc32("schema/name/role")).
        assert lock_key(LockKind.LEADER, name).object_id == sha256_bigint(name, 0)
        assert lock_key(LockKind.APPEND_ALLOCATION, name).object_id == \
            sha256_bigint(f"wes-allocate:{name}", 0)
        assert lock_key(LockKind.EVENT_LOG_SETUP, name).object_id == \
            sha256_bigint(f"wes-allocate:{name}", 8)
        assert lock_key(LockKind.APPEND_MARKER, name, 2**40 + 3).params == (crc31(name), 3)
        for role in LockRole:
            assert projection_lock_key("public", name, role).params == \
                (PROJECTION_LOCK_CLASS, crc31(f"public/{name}/{role.value}"))


class TestLockKeyNaming:
    def test_bigint_and_two_int_keys_take_their_own_arguments(self) -> None:
        assert LockKey(None, 5).literal().as_string() == "5"
        assert LockKey(7, 9).literal().as_string() == "7, 9"

    def test_only_a_marker_is_named_by_a_number(self) -> None:
        with pytest.raises(ValueError, match="named by its name alone"):
            lock_key(LockKind.LEADER, "wes-waveless-release:public", 3)
