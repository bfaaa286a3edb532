"""`wes bench` still runs end to end (a tiny smoke run: no assertion on any time)."""

from __future__ import annotations

import json

import pytest
from rich.console import Console

from bench import clusters, runner
from bench.report import to_json

TINY = runner.Sizes(seconds=0.2, rounds=1, sagas=8, rebuild_events=1_100, replay_samples=3,
                     whatif_orders=200)


def test_every_figure_is_measured_with_its_baseline_and_written_as_json() -> None:
    result = runner.run(console=Console(quiet=True), sizes=TINY)
    assert result.failures == []
    data = json.loads(to_json(result.machine, result.figures, quick=True))
    assert [f["name"] for f in data["figures"]] == list(runner.ORDER)
    no_clusters = clusters.unavailable_reason()
    for figure in data["figures"]:
        assert {"name", "value", "unit", "baseline", "ratio", "target"} <= figure.keys()
        if figure["name"] in ("engine_split", "api_standby") and no_clusters:
            assert no_clusters in figure["note"]  # said so, not made up
            continue
        assert figure["value"] is not None, figure["note"]
        assert figure["baseline"] is not None and figure["baseline"] > 0, figure
        assert figure["ratio"] == figure["value"] / figure["baseline"]
    assert data["machine"]["cpus"] and data["machine"]["postgresql"]


def test_only_measures_the_figures_asked_for_and_the_engine_the_api_needs() -> None:
    result = runner.run(console=Console(quiet=True), sizes=TINY, only=["replay", "api"])
    assert result.failures == []
    assert [f.name for f in result.figures] == ["engine", "lag", "api", "replay"]
    assert all(f.value is not None for f in result.figures)


def test_only_rejects_an_unknown_figure_before_measuring_anything() -> None:
    with pytest.raises(ValueError, match=r"latency.*known: commands"):
        runner.run(console=Console(quiet=True), sizes=TINY, only=["latency"])


def test_the_second_server_figures_stand_beside_the_single_server_ones() -> None:
    if clusters.unavailable_reason() is not None:
        pytest.skip(clusters.unavailable_reason() or "")
    result = runner.run(console=Console(quiet=True), sizes=TINY,
                        only=["engine_split", "api_standby"])
    assert result.failures == []
    split, standby = result.figures
    assert (split.name, standby.name) == ("engine_split", "api_standby")
    assert split.value and split.baseline and split.details["completed"] == TINY.sagas
    assert standby.value and standby.baseline
    assert standby.details["standby_transactions"] > 0  # the standby did answer
    assert standby.details["non_200_responses"] == 0
