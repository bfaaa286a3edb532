"""The relay's position and lag appear with the projections: `GET /v1/projections`,
`/metrics` and `wes projections status`, whether the relay runs or not."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from application.relay.envelope import Naming
from application.relay.jetstream import NatsJetStreamSink
from application.relay.relay import Relay
from application.settings import RelaySettings
from cli.main import app as wes
from tests.e2e import api_support
from tests.e2e.api_support import start_caller_driven
from tests.support.nats_server import NatsServer
from tests.support.waiting import wait_for

api = api_support.api
read_models = api_support.read_models


@pytest.fixture
def relay(app) -> Iterator[Relay]:
    broker = NatsServer()
    broker.start()
    settings = RelaySettings(nats_url=broker.url, stream=f"S{uuid.uuid4().hex[:8]}".upper())
    runner = Relay(app, NatsJetStreamSink(settings), Naming(), idle_wait=0.2)
    stop = threading.Event()
    thread = threading.Thread(target=runner.run, args=(stop,), daemon=True)
    thread.start()
    yield runner
    stop.set()
    thread.join(15)
    broker.close()


def relay_row(api: TestClient) -> dict:
    return next(s for s in api.get("/v1/projections").json()["items"] if s["name"] == "relay")


class TestRelayStatus:
    def test_a_running_relay_shows_its_position_in_the_api_and_the_metrics(
            self, api: TestClient, relay: Relay) -> None:
        started = start_caller_driven(api)
        wait_for(lambda: relay_row(api)["position"] >= started["position"], 20,
                 message="the relay row to reach the start")
        row = relay_row(api)
        assert row["state"] == "running"
        assert row["lag_events"] == row["head"] - row["position"]
        text = api.get("/metrics").text
        assert 'wes_projection_position{projection="relay"}' in text
        assert 'wes_projection_lag_events{projection="relay"}' in text

    def test_a_relay_that_never_ran_is_stopped_and_lags_by_the_whole_store(
            self, api: TestClient) -> None:
        started = start_caller_driven(api)
        row = relay_row(api)
        assert (row["state"], row["position"]) == ("stopped", 0)
        assert row["lag_events"] == row["head"] >= started["position"]

    def test_the_cli_lists_the_relay_with_the_projections(
            self, db, app, relay: Relay, monkeypatch: pytest.MonkeyPatch) -> None:
        app.ensure_builtin_definitions()
        head = app.recorder.max_notification_id() or 0
        wait_for(lambda: (relay.position or 0) >= head, 20, message="the relay to catch up")
        monkeypatch.setenv("DATABASE_URL", db.dsn)
        monkeypatch.setenv("WES_SCHEMA", db.schema)
        result = CliRunner().invoke(wes, ["projections", "status", "--json"])
        assert result.exit_code == 0, result.output
        rows = {r["name"]: r for r in json.loads(result.stdout)}
        assert rows["relay"]["state"] == "running"
        wait_for(lambda: json.loads(CliRunner().invoke(
            wes, ["projections", "status", "--json"]).stdout)[-1]["position"] >= head, 10,
            message="the tracking row to reach the head")
        table = CliRunner().invoke(wes, ["projections", "status"])
        assert "relay" in table.stdout
