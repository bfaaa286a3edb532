"""Runs the suite: every figure on a throw-away database, printed and written as JSON."""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.table import Table

from application import database
from application.database import Database
from bench import pg
from bench.report import Figure, fmt, machine

ORDER = ("commands", "engine", "rebuild", "lag", "api", "replay", "engine_split",
         "api_standby", "relay", "whatif")
TARGETS = {"commands": ("commands/s", "ratio >= 0.6"), "engine": ("sagas/s", "value >= 200"),
           "rebuild": ("events/s", "ratio >= 0.5, flat memory"),
           "lag": ("ms (p99)", "p99 <= 100 ms"),
           "api": ("requests/s", "ratio >= 0.5, p99 <= 25 ms"),
           "replay": ("ms (p99)", "p99 <= 50 ms"),
           "engine_split": ("sagas/s", "ratio >= 1.0"),
           "api_standby": ("requests/s", "ratio >= 0.8"),
           "relay": ("events/s", "ratio >= 1 (keeps up with the engine), lag p99 <= 250 ms"),
           "whatif": ("s", "a day of 15,000 orders < 10 s")}


@dataclass(frozen=True)
class Sizes:
    """How long and how much: `--quick` is a smoke run for CI, not a measurement."""

    seconds: float
    rounds: int
    sagas: int
    rebuild_events: int
    replay_samples: int
    whatif_orders: int = 15_000

    @classmethod
    def of(cls, quick: bool) -> Sizes:
        if quick:
            return cls(seconds=0.6, rounds=1, sagas=60, rebuild_events=5_500, replay_samples=10,
                       whatif_orders=500)
        return cls(seconds=3.0, rounds=3, sagas=2000, rebuild_events=200_000, replay_samples=50)


@dataclass
class Result:
    machine: dict[str, Any]
    figures: list[Figure]
    failures: list[str]


def run(quick: bool = False, console: Console | None = None, sizes: Sizes | None = None,
        only: Collection[str] = ()) -> Result:
    """Measures every figure (or those in `only`; `engine` and `lag` come from one run, which
    `api` needs for its workflows); a figure whose part is missing is reported as not available."""
    console = console or Console(stderr=True)
    sizes = sizes or Sizes.of(quick)
    wanted = _wanted(only)
    with pg.throwaway_database() as db:
        version, settings = pg.server_facts(db)
        info = machine(version, settings)
        m = _Measuring(db, console, wanted)
        from bench import commands, engine, replay

        m.one("commands", lambda: commands.measure(m.schema("commands"), seconds=sizes.seconds,
                                                   rounds=sizes.rounds))
        ids = []
        if wanted & {"engine", "lag"} and (ran := m.attempt(("engine", "lag"), lambda: engine.measure(
                m.schema("engine"), sagas=sizes.sagas, seconds=sizes.seconds))):
            m.found["engine"], m.found["lag"], ids = ran
        m.one("rebuild", lambda: _rebuild(m.schema("rebuild"), sizes))
        if ids:
            m.one("api", lambda: _api(db.with_schema("engine"), ids, sizes))
        m.one("replay", lambda: replay.measure(m.schema("replay"), samples=sizes.replay_samples))
        if wanted & {"engine_split", "api_standby"} and (pair := m.attempt(
                ("engine_split", "api_standby"), lambda: _split(m.schema("split"), sizes, m.found,
                                                                settings))):
            m.found["engine_split"], m.found["api_standby"] = pair
        m.one("relay", lambda: _relay(m.schema("relay"), sizes))
        m.one("whatif", lambda: _whatif(sizes))
    figures = [m.found.get(name) or Figure.unavailable(name, *TARGETS[name], "not measured")
               for name in ORDER if name in wanted]
    return Result(info, figures, m.failures)


def _wanted(only: Collection[str]) -> set[str]:
    unknown = set(only) - set(ORDER)
    if unknown:
        raise ValueError(f"unknown figure(s): {', '.join(sorted(unknown))}; known: {', '.join(ORDER)}")
    wanted = set(only or ORDER)
    if wanted & {"engine", "lag", "api"}:
        wanted |= {"engine", "lag"}  # one run measures both, and makes the api's workflows
    return wanted


class _Measuring:
    """One run's figures so far and its failures; a part that fails or is missing is
    reported, and the others still run."""

    def __init__(self, db: Database, console: Console, wanted: set[str]) -> None:
        self.db = db
        self.console = console
        self.wanted = wanted
        self.found: dict[str, Figure] = {}
        self.failures: list[str] = []

    def schema(self, name: str) -> Database:
        scoped = self.db.with_schema(name)
        database.ensure_database(scoped)
        return scoped

    def one(self, name: str, measure: Callable[[], Figure]) -> None:
        """Measures the figure `name`, if wanted."""
        if name in self.wanted and (figure := self.attempt((name,), measure)):
            self.found[name] = figure

    def attempt(self, names: tuple[str, ...], measure: Callable[[], Any]) -> Any:
        self.console.print(f"[dim]measuring {', '.join(names)} ...[/dim]")
        began = time.perf_counter()
        try:
            result = measure()
        except ImportError as e:
            for name in names:
                self.found[name] = Figure.unavailable(name, *TARGETS[name], f"{e.name} is missing")
            return None
        except Exception as e:
            self.failures.append(f"{'/'.join(names)}: {type(e).__name__}: {e}")
            self.console.print(traceback.format_exc(), markup=False, highlight=False)
            for name in names:
                self.found[name] = Figure.unavailable(name, *TARGETS[name], f"failed: {e}")
            return None
        self.console.print(f"[dim]  done in {time.perf_counter() - began:.1f} s[/dim]")
        return result


def _rebuild(db: Database, sizes: Sizes) -> Figure:
    from bench import rebuild

    return rebuild.measure(db, events=sizes.rebuild_events)


def _split(db: Database, sizes: Sizes, found: dict[str, Figure],
           settings: dict[str, str]) -> tuple[Figure, Figure]:
    from bench import scaling

    single = found.get("engine")
    return scaling.measure(db, sagas=sizes.sagas, seconds=sizes.seconds, rounds=sizes.rounds,
                           single_server_rate=single.value if single else None,
                           server_settings=settings)


def _relay(db: Database, sizes: Sizes) -> Figure:
    from bench import relay

    return relay.measure(db, sagas=sizes.sagas)


def _whatif(sizes: Sizes) -> Figure:
    from bench import whatif

    return whatif.measure(orders=sizes.whatif_orders)


def _api(db: Database, ids: list[Any], sizes: Sizes) -> Figure:
    from bench import api

    return api.measure(db, ids, seconds=sizes.seconds, rounds=sizes.rounds)


def table(result: Result) -> Table:
    """The figures as a table: value, baseline from the same run, ratio, target."""
    t = Table(title="WES Orchestrator benchmark", title_justify="left")
    for column in ("figure", "value", "baseline", "ratio", "target", "met"):
        t.add_column(column)
    for f in result.figures:
        if f.value is None:
            t.add_row(f.name, f.note, "", "", f.target, "")
            continue
        t.add_row(f.name, fmt(f.value, f.unit), fmt(f.baseline),
                  f"{f.ratio:.2f}x" if f.ratio is not None else "—", f.target,
                  "yes" if f.met else "no")
    return t


def baselines(result: Result) -> list[str]:
    """What each baseline is (the table's footnotes)."""
    return [f"{f.name}: {f.baseline_name}" for f in result.figures if f.baseline_name]


def machine_line(info: dict[str, Any]) -> str:
    return (f"{info['cpus']} CPUs ({info['cpu_model']}), {info['memory_gb']} GB, {info['os']}, "
            f"Python {info['python']}, PostgreSQL {info['postgresql']} "
            f"(synchronous_commit={info['postgresql_settings'].get('synchronous_commit')})")
