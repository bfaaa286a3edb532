"""The library internals we override, pinned: the installed `eventsourcing` is a version
they were verified against, every private name we override or call still exists with the
signature we expect, and the overrides that need no database (the fold without the
runtime-protocol check, the fast deep copy, the snapshot codec built on `__base_init__`)
give what the library's own path gives on the same input. docs/library-overrides.md
lists them all and says what to do on an upgrade; the database-backed comparisons are in
tests/integration/test_library_overrides.py."""

from __future__ import annotations

import copy
import importlib.metadata
import inspect
from collections.abc import Callable
from typing import Any

import eventsourcing.application as es_application
import pytest
from eventsourcing.application import Application, ProcessingEvent, Repository, project_aggregate
from eventsourcing.domain import (
    Aggregate,
    BaseAggregate,
    CanInitAggregate,
    CanMutateAggregate,
    CanMutateProtocol,
    CanSnapshotAggregate,
    OriginatorVersionError,
    Snapshot,
)
from eventsourcing.persistence import (
    JSONTranscoder,
    ListenNotifySubscription,
    Mapper,
    Subscription,
    find_id_convertor,
)
from eventsourcing.postgres import (
    PostgresApplicationRecorder,
    PostgresDatastore,
    PostgresFactory,
    PostgresSubscription,
    PostgresTrackingRecorder,
)
from psycopg_pool import ConnectionPool

from application.event_log import WesApplicationRecorder
from application.log_following import WesSubscription
from application.repository import LatestInOneReadRepository
from application.workflows import Workflows, fold
from domain.step import StepExecution
from domain.workflow import Workflow
from projections.aggregates import created, mutate
from projections.generations import GenerationalView
from tests.support.override_history import aggregate_classes, dump, record_history

# The versions these overrides were verified against (pyproject.toml pins the same range).
VERIFIED_FROM = (9, 5, 6)
VERIFIED_BELOW = (9, 6)
DOC = "docs/library-overrides.md"


def _version(text: str) -> tuple[int, ...]:
    parts = []
    for part in text.split(".")[:3]:
        digits = "".join(c for c in part if c.isdigit()) or "0"
        parts.append(int(digits))
    return tuple(parts)


class TestLibraryVersion:
    def test_the_installed_eventsourcing_is_one_the_overrides_were_verified_against(self):
        installed = importlib.metadata.version("eventsourcing")
        assert VERIFIED_FROM <= _version(installed) < VERIFIED_BELOW, (
            f"eventsourcing {installed} is outside the range the overrides of its internals "
            f"were verified for (>= {'.'.join(map(str, VERIFIED_FROM))}, < "
            f"{'.'.join(map(str, VERIFIED_BELOW))}): go through {DOC} override by override "
            f"before widening the pin")


def _params(func: Callable[..., Any]) -> list[tuple[str, str]]:
    return [(p.name, p.kind.name) for p in inspect.signature(func).parameters.values()]


P, VAR, KW, VARKW = "POSITIONAL_OR_KEYWORD", "VAR_POSITIONAL", "KEYWORD_ONLY", "VAR_KEYWORD"

# (library name, the callable, its parameters as we rely on them)
PINNED_SIGNATURES: list[tuple[str, Callable[..., Any], list[tuple[str, str]]]] = [
    ("Application.save", Application.save, [("self", P), ("objs", VAR), ("kwargs", VARKW)]),
    ("Application._record", Application._record, [("self", P), ("processing_event", P)]),
    ("Application._take_snapshots", Application._take_snapshots,
     [("self", P), ("processing_event", P)]),
    ("Application._notify", Application._notify, [("self", P), ("recordings", P)]),
    ("Application.take_snapshot", Application.take_snapshot,
     [("self", P), ("aggregate_id", P), ("version", P), ("projector_func", P)]),
    ("Application.construct_repository", Application.construct_repository, [("self", P)]),
    ("ProcessingEvent.__init__", ProcessingEvent.__init__, [("self", P), ("tracking", P)]),
    ("project_aggregate", project_aggregate, [("aggregate", P), ("domain_events", P)]),
    ("Repository.__init__", Repository.__init__,
     [("self", P), ("event_store", P), ("snapshot_store", KW), ("cache_maxsize", KW),
      ("fastforward", KW), ("fastforward_skipping", KW), ("deepcopy_from_cache", KW)]),
    ("Repository.get", Repository.get,
     [("self", P), ("aggregate_id", P), ("version", KW), ("projector_func", KW),
      ("fastforward_skipping", KW), ("deepcopy_from_cache", KW)]),
    ("Repository._reconstruct_aggregate", Repository._reconstruct_aggregate,
     [("self", P), ("aggregate_id", P), ("version", P), ("projector_func", P)]),
    ("BaseAggregate.__base_init__", BaseAggregate.__base_init__,
     [("self", P), ("originator_id", P), ("originator_version", P), ("timestamp", P)]),
    ("BaseAggregate._create", BaseAggregate._create,
     [("event_class", P), ("id", KW), ("kwargs", VARKW)]),
    ("CanSnapshotAggregate.take", CanSnapshotAggregate.take, [("aggregate", P)]),
    ("CanSnapshotAggregate.mutate", CanSnapshotAggregate.mutate, [("self", P), ("_", P)]),
    ("Mapper.to_domain_event", Mapper.to_domain_event, [("self", P), ("stored_event", P)]),
    ("find_id_convertor", find_id_convertor,
     [("domain_event_cls", P), ("originator_id_cls", P)]),
    ("Subscription.__init__", Subscription.__init__,
     [("self", P), ("recorder", P), ("gt", P), ("topics", P)]),
    ("PostgresSubscription._listen", PostgresSubscription._listen, [("self", P)]),
    ("ListenNotifySubscription._pull", ListenNotifySubscription._pull, [("self", P)]),
    ("ListenNotifySubscription._loop_on_pull", ListenNotifySubscription._loop_on_pull,
     [("self", P)]),
    ("PostgresApplicationRecorder.__init__", PostgresApplicationRecorder.__init__,
     [("self", P), ("datastore", P), ("events_table_name", KW)]),
    ("PostgresApplicationRecorder._create_table", PostgresApplicationRecorder._create_table,
     [("self", P), ("curs", P)]),
    ("PostgresApplicationRecorder.insert_events", PostgresApplicationRecorder.insert_events,
     [("self", P), ("stored_events", P), ("kwargs", VARKW)]),
    ("PostgresApplicationRecorder.select_events", PostgresApplicationRecorder.select_events,
     [("self", P), ("originator_id", P), ("gt", KW), ("lte", KW), ("desc", KW),
      ("limit", KW)]),
    ("PostgresApplicationRecorder.select_notifications",
     PostgresApplicationRecorder.select_notifications,
     [("self", P), ("start", P), ("limit", P), ("stop", P), ("topics", P),
      ("inclusive_of_start", KW)]),
    ("PostgresApplicationRecorder.subscribe", PostgresApplicationRecorder.subscribe,
     [("self", P), ("gt", P), ("topics", P)]),
    ("PostgresTrackingRecorder.__init__", PostgresTrackingRecorder.__init__,
     [("self", P), ("datastore", P), ("tracking_table_name", KW), ("kwargs", VARKW)]),
    ("PostgresTrackingRecorder.insert_tracking", PostgresTrackingRecorder.insert_tracking,
     [("self", P), ("tracking", P)]),
    ("PostgresTrackingRecorder.max_tracking_id", PostgresTrackingRecorder.max_tracking_id,
     [("self", P), ("application_name", P)]),
    ("PostgresTrackingRecorder.create_table", PostgresTrackingRecorder.create_table,
     [("self", P)]),
    ("PostgresFactory.tracking_recorder", PostgresFactory.tracking_recorder,
     [("self", P), ("tracking_recorder_class", P)]),
]


class TestPinnedNames:
    @pytest.mark.parametrize(("name", "func", "expected"), PINNED_SIGNATURES,
                             ids=[name for name, _, _ in PINNED_SIGNATURES])
    def test_a_library_name_we_override_or_call_keeps_its_signature(self, name, func, expected):
        assert _params(func) == expected, (
            f"the library's {name} changed its signature: see {DOC} before upgrading")

    @pytest.mark.parametrize(("ours", "library", "name"), [
        (Workflows, Application, "save"),
        (Workflows, Application, "_take_snapshots"),
        (Workflows, Application, "construct_repository"),
        (LatestInOneReadRepository, Repository, "_reconstruct_aggregate"),
        (WesSubscription, PostgresSubscription, "_listen"),
        (WesSubscription, ListenNotifySubscription, "_pull"),
        (WesApplicationRecorder, PostgresApplicationRecorder, "_create_table"),
        (WesApplicationRecorder, PostgresApplicationRecorder, "insert_events"),
        (WesApplicationRecorder, PostgresApplicationRecorder, "select_events"),
        (WesApplicationRecorder, PostgresApplicationRecorder, "select_notifications"),
        (WesApplicationRecorder, PostgresApplicationRecorder, "subscribe"),
        (GenerationalView, PostgresTrackingRecorder, "__init__"),
        (GenerationalView, PostgresTrackingRecorder, "create_table"),
        (GenerationalView, PostgresTrackingRecorder, "insert_tracking"),
        (Workflow.Snapshot, CanSnapshotAggregate, "take"),
        (Workflow.Snapshot, CanSnapshotAggregate, "mutate"),
    ])
    def test_each_override_replaces_a_method_the_library_still_defines(self, ours, library,
                                                                       name):
        assert issubclass(ours, library)
        assert name in vars(ours), f"{ours.__qualname__} no longer overrides {name}"
        inherited = next(c for c in ours.__mro__[1:] if name in vars(c))
        assert inherited.__module__.startswith("eventsourcing.") and (
            issubclass(library, inherited) or issubclass(inherited, library)), (
            f"the library no longer defines {name} where {ours.__qualname__} expects it")
        # The override accepts the parameters the library passes.
        assert _params(getattr(ours, name)) == _params(getattr(inherited, name))

    def test_our_save_calls_the_library_steps_it_keeps_and_skips_only_a_no_op(self):
        # `Workflows.save` runs `_record`, `_take_snapshots` and `_notify` as the library's
        # save does; it skips the deprecated `notify`, which does nothing unless overridden.
        assert Workflows._record is Application._record
        assert Workflows._notify is Application._notify
        assert Workflows.notify is Application.notify
        assert inspect.getsource(Application.notify).rstrip().endswith('"""')

    def test_the_processing_event_and_the_mapper_have_the_attributes_we_fill_in(self):
        processing: ProcessingEvent[Any] = ProcessingEvent()
        assert (processing.tracking, processing.events, processing.aggregates,
                processing.saved_kwargs) == (None, [], {}, {})
        transcoder = JSONTranscoder()
        assert transcoder.names == {}  # `_FastDecoder` reads transcodings by name from it
        mapper = Mapper(transcoder)
        assert (mapper.transcoder, mapper.cipher, mapper.compressor) == (transcoder, None,
                                                                          None)

    def test_the_aggregate_cache_copies_through_copy_deepcopy(self):
        # Our `__deepcopy__` methods are what the cache's `deepcopy(aggregate)` runs.
        assert es_application.deepcopy is copy.deepcopy
        assert "deepcopy(aggregate)" in inspect.getsource(Repository.get)

    def test_the_factory_builds_a_view_with_the_arguments_our_view_takes(self):
        # `GenerationalView.__init__` drops the tracking table name the factory proposes.
        source = inspect.getsource(PostgresFactory.tracking_recorder)
        assert "datastore=self.datastore" in source
        assert "tracking_table_name=tracking_table_name" in source

    def test_the_datastore_pool_pre_pings_with_the_check_we_replace(self):
        # `check_now_and_then` swaps the pool's `_check`, which psycopg_pool takes only in
        # its constructor: it must be there, set to `check_connection` when pre-pinging.
        assert "check" in inspect.signature(ConnectionPool.__init__).parameters
        assert "ConnectionPool.check_connection if pre_ping" in inspect.getsource(
            PostgresDatastore.__init__)


def _recorded() -> tuple[dict[Any, list[Any]], dict[Any, BaseAggregate[Any]]]:
    """The history's events per aggregate and the aggregates as they were saved."""
    events: dict[Any, list[Any]] = {}
    in_hand: dict[Any, BaseAggregate[Any]] = {}

    def save(*objs: Any, **_: Any) -> None:
        for obj in objs:
            events.setdefault(obj.id, []).extend(obj.collect_events())
            in_hand[obj.id] = obj

    record_history(save)
    return events, in_hand


class TestFoldWithoutProtocolChecks:
    def test_fold_gives_the_aggregate_project_aggregate_gives(self):
        events, in_hand = _recorded()
        for aggregate_id, stream in events.items():
            ours, library = fold(None, stream), project_aggregate(None, stream)
            assert dump(ours) == dump(library) == dump(in_hand[aggregate_id])
            assert ours == library

    def test_the_check_fold_skips_would_pass_for_every_event(self):
        # `project_aggregate` only adds `assert isinstance(event, CanMutateProtocol)`.
        events, _ = _recorded()
        for stream in events.values():
            assert all(isinstance(event, CanMutateProtocol) for event in stream)
        assert "isinstance(domain_event, CanMutateProtocol)" in inspect.getsource(
            project_aggregate)


class TestProjectionFold:
    """`projections.aggregates.created` / `mutate`: a projection's fold of a Created event
    and of every later one, against the library's `event.mutate` on the same events."""

    def test_the_projection_fold_gives_the_library_aggregate_after_every_event(self):
        events, in_hand = _recorded()
        folded = 0
        for aggregate_id, stream in events.items():
            if not isinstance(in_hand[aggregate_id], Workflow):
                continue
            library: Any = None
            ours: Any = None
            for event in stream:
                library = event.mutate(library)
                if isinstance(event, Workflow.Created):
                    ours = created(event)
                else:
                    mutate(event, ours)
                assert dump(ours) == dump(library)
                folded += 1
            assert dump(ours) == dump(in_hand[aggregate_id])
        assert folded > 100

    def test_an_event_out_of_turn_is_refused_as_the_library_refuses_it(self):
        events, in_hand = _recorded()
        stream = next(s for i, s in events.items() if isinstance(in_hand[i], Workflow))
        ours, library = created(stream[0]), stream[0].mutate(None)
        with pytest.raises(OriginatorVersionError):
            mutate(stream[2], ours)
        with pytest.raises(OriginatorVersionError):
            stream[2].mutate(library)
        assert dump(ours) == dump(library)  # nothing applied on either path

    def test_the_library_steps_the_projection_fold_leaves_out_do_nothing_for_a_workflow(self):
        # `created` skips resolving the topic (it checks it is Workflow's) and picking
        # keyword arguments for `__init__`, which a Workflow does not take; `mutate` skips
        # the id check, which the cache's lookup by that id makes.
        assert list(inspect.signature(Workflow.__init__).parameters) == ["self"]
        init = inspect.getsource(CanInitAggregate.mutate)
        for step in ("resolve_topic(self.originator_topic)", "agg.__base_init__(**base_kwargs)",
                     "agg.__init__(**init_kwargs)", "self.apply(agg)"):
            assert step in init, f"CanInitAggregate.mutate changed: see {DOC}"
        later = inspect.getsource(CanMutateAggregate.mutate)
        for step in ("self.originator_id != aggregate.id", "aggregate.version + 1",
                     "self.apply(aggregate)", "aggregate.version = self.originator_version",
                     "aggregate.modified_on = self.timestamp"):
            assert step in later, f"CanMutateAggregate.mutate changed: see {DOC}"


class TestFastDeepCopy:
    def test_our_deepcopy_equals_the_generic_one(self, monkeypatch):
        _, in_hand = _recorded()
        ours = {k: copy.deepcopy(v) for k, v in in_hand.items()}
        # The generic path: what `copy.deepcopy` does without our `__deepcopy__` methods.
        monkeypatch.delattr(Workflow, "__deepcopy__")
        monkeypatch.delattr(StepExecution, "__deepcopy__")
        generic = {k: copy.deepcopy(v) for k, v in in_hand.items()}
        for aggregate_id, aggregate in in_hand.items():
            assert dump(ours[aggregate_id]) == dump(generic[aggregate_id]) == dump(aggregate)


class TestSnapshotCodec:
    def test_our_workflow_snapshot_restores_what_the_library_snapshot_restores(self):
        _, in_hand = _recorded()
        for aggregate in in_hand.values():
            if not isinstance(aggregate, Workflow):
                continue
            ours = Workflow.Snapshot.take(aggregate).mutate(None)
            library = Snapshot.take(aggregate).mutate(None)  # the library's __dict__ copy
            assert dump(ours) == dump(library)
            assert set(vars(ours)) == set(vars(library))

    def test_base_init_sets_what_the_library_sets_for_a_created_aggregate(self):
        # `Workflow.from_snapshot_state` builds a workflow with `__base_init__`, as the
        # library's Created event does: the same private attributes, the same values.
        events, in_hand = _recorded()
        for aggregate_id, aggregate in in_hand.items():
            if not isinstance(aggregate, Workflow):
                continue
            created = events[aggregate_id][0].mutate(None)
            shell = object.__new__(Workflow)
            shell.__base_init__(aggregate_id, 1, created.created_on)
            base = {k: v for k, v in vars(created).items() if k.startswith("_")}
            assert dump(vars(shell)) == dump(base)
            restored = Workflow.from_snapshot_state(aggregate.id, aggregate.version,
                                                    aggregate.snapshot_state())
            assert dump(restored) == dump(aggregate)

    @pytest.mark.parametrize("cls", aggregate_classes(), ids=lambda c: c.__name__)
    def test_only_the_workflow_has_a_snapshot_class_of_its_own(self, cls):
        # The others (SystemLoad is snapshotted too) use the library's Snapshot unchanged.
        expected = Workflow.Snapshot if cls is Workflow else None
        assert vars(cls).get("Snapshot") is expected
        assert cls is Workflow or cls.Snapshot is Aggregate.Snapshot
