"""`wes workflows ...` and `wes definitions ...` against a real `wes serve` (one per module,
with API keys), their `--json` output parsed, their failures one line on stderr."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from application.database import Database
from cli.background import free_port
from cli.lines import stamp
from tests.e2e.cli_support import (
    KEYS,
    Served,
    base_env,
    module_schema,
    one_line_failure,
    serving,
    wes,
)

ITEMS = [{"sku": "SKU-1", "quantity": 1}]


@pytest.fixture(scope="module")
def served(server: Database) -> Iterator[Served]:
    with serving(module_schema(server), WES_API_KEYS=KEYS) as running:
        yield running


@pytest.fixture(scope="module")
def env(served: Served) -> dict[str, str]:
    """A `wes` environment on the module's server with the admin key."""
    return base_env(None, WES_URL=served.url, WES_API_KEY="admin-key")


@pytest.fixture(scope="module")
def api(served: Served) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served.url, timeout=15,
                      headers={"Authorization": "Bearer admin-key"}) as client:
        yield client


def run_json(env: dict[str, str], *args: str) -> Any:
    result = wes(*args, "--json", env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def order(**extra: Any) -> dict[str, Any]:
    return {"orderId": f"ORD-{uuid.uuid4().hex[:8]}", "items": ITEMS, **extra}


def caller_driven(api: httpx.Client) -> str:
    """A workflow no worker touches: it stays EXECUTING until told otherwise."""
    response = api.post("/v1/workflows", json={"definition": "order-fulfillment",
                                               "driven_by": "caller", "input": order()})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def row(api: httpx.Client, workflow_id: str, position: int) -> dict[str, Any]:
    response = api.get(f"/v1/workflows/{workflow_id}", params={"min_position": position})
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


class TestStart:
    def test_prints_the_new_id(self, env, api):
        result = wes("workflows", "start", "order-fulfillment", "--input",
                     json.dumps(order()), env=env)
        assert result.returncode == 0, result.stderr
        workflow_id = result.stdout.strip()
        assert str(uuid.UUID(workflow_id)) == workflow_id
        assert api.get(f"/v1/workflows/{workflow_id}/history").status_code == 200

    def test_json_answers_id_and_position_with_the_options_recorded(self, env, api):
        body = order()
        started = run_json(env, "workflows", "start", "order-fulfillment", "--input",
                           json.dumps(body), "--priority", "high", "--correlation-id",
                           "corr-cli-1")
        assert set(started) == {"id", "position"} and started["position"] > 0
        progress = row(api, started["id"], started["position"])
        assert (progress["priority"], progress["correlation_id"], progress["triggered_by"]
                ) == ("HIGH", "corr-cli-1", "cli")

    def test_input_from_a_file(self, env, api, tmp_path: Path):
        body = order()
        path = tmp_path / "input.json"
        path.write_text(json.dumps(body))
        started = run_json(env, "workflows", "start", "order-fulfillment", "--input",
                           f"@{path}")
        history = api.get(f"/v1/workflows/{started['id']}/history").json()["items"]
        assert history[0]["data"]["input"] == body

    def test_waveless_start_waits_pending(self, env, api):
        started = run_json(env, "workflows", "start", "order-fulfillment", "--input",
                           json.dumps(order()), "--waveless")
        events = api.get(f"/v1/workflows/{started['id']}/history").json()["items"]
        assert "WavelessEnabled" in [e["event_type"] for e in events]

    @pytest.mark.parametrize(("args", "expected"), [
        (["no-such-definition"], "404"),
        (["order-fulfillment", "--input", "{not json"], "--input is not JSON"),
        (["order-fulfillment", "--input", "[1]"], "must be a JSON object"),
        (["order-fulfillment", "--version", "99"], "404"),
        (["order-fulfillment", "--priority", "SOON"], "422"),
        # The definition's input schema: the field that does not fit is named.
        (["order-fulfillment", "--input", '{"sku": "SKU-1", "quantity": 1}'], "input.orderId"),
        (["order-fulfillment", "--input", '{"orderId": "O-1", "items": [{"sku": "S", '
          '"quantity": 0}]}'], "input.items[0].quantity"),
    ])
    def test_refusals_are_one_line_and_start_nothing(self, env, api, args, expected):
        correlation = f"refused-{uuid.uuid4().hex[:8]}"
        line = one_line_failure(wes("workflows", "start", *args, "--correlation-id",
                                    correlation, env=env))
        assert expected in line
        head = api.get("/v1/events", params={"limit": 1}).json()["head"]
        assert api.get("/v1/workflows", params={"correlation_id": correlation,
                                                "min_position": head}).json()["items"] == []


@pytest.fixture(scope="module")
def started(env) -> list[dict[str, Any]]:
    """Three workflows under one correlation id, HIGH, LOW, HIGH."""
    correlation = f"corr-{uuid.uuid4().hex[:6]}"
    return [run_json(env, "workflows", "start", "order-fulfillment", "--input",
                     json.dumps(order()), "--correlation-id", correlation,
                     "--priority", priority) | {"correlation_id": correlation}
            for priority in ("HIGH", "LOW", "HIGH")]


class TestListAndShow:
    def test_list_filters_by_correlation_id_and_priority(self, env, api, started):
        correlation = started[0]["correlation_id"]
        row(api, started[-1]["id"], max(s["position"] for s in started))
        page = run_json(env, "workflows", "list", "--correlation-id", correlation)
        assert {w["id"] for w in page["items"]} == {s["id"] for s in started}
        high = run_json(env, "workflows", "list", "--correlation-id", correlation,
                        "--priority", "high")
        assert {w["id"] for w in high["items"]} == {started[0]["id"], started[2]["id"]}

    def test_list_pages_with_cursor_and_all(self, env, api, started):
        correlation = started[0]["correlation_id"]
        row(api, started[-1]["id"], max(s["position"] for s in started))
        first = run_json(env, "workflows", "list", "--correlation-id", correlation,
                         "--limit", "2")
        assert len(first["items"]) == 2 and first["next_cursor"]
        rest = run_json(env, "workflows", "list", "--correlation-id", correlation,
                        "--limit", "2", "--cursor", first["next_cursor"])
        assert len(rest["items"]) == 1 and rest["next_cursor"] is None
        every = run_json(env, "workflows", "list", "--correlation-id", correlation,
                         "--limit", "1", "--all")
        assert [w["id"] for w in every["items"]] == [
            w["id"] for w in first["items"] + rest["items"]]

    def test_list_filters_by_status_and_time(self, env, api, started):
        workflow_id = caller_driven(api)
        progress = row(api, workflow_id, api.get("/v1/events", params={"limit": 1}).json()
                       ["head"])
        executing = run_json(env, "workflows", "list", "--status", "EXECUTING", "--all")
        assert workflow_id in {w["id"] for w in executing["items"]}
        assert all(w["status"] == "EXECUTING" for w in executing["items"])
        later = run_json(env, "workflows", "list", "--created-after", progress["created_at"],
                         "--all")
        assert workflow_id in {w["id"] for w in later["items"]}
        assert not {s["id"] for s in started} & {w["id"] for w in later["items"]}

    def test_list_table_fits_80_columns(self, env, api, started):
        row(api, started[-1]["id"], max(s["position"] for s in started))
        result = wes("workflows", "list", "--correlation-id", started[0]["correlation_id"],
                     env=env)
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert all(len(line) <= 80 for line in lines), lines
        assert {s["id"] for s in started} <= {line.split()[0] for line in lines[1:]}

    def test_show_json_is_the_progress_row(self, env, api, started):
        progress = row(api, started[0]["id"], started[0]["position"])
        shown = run_json(env, "workflows", "show", started[0]["id"])
        assert shown["id"] == started[0]["id"]
        assert shown["definition"] == "order-fulfillment" and shown["priority"] == "HIGH"
        assert shown["created_at"] == progress["created_at"]

    def test_show_table_names_status_steps_and_full_times(self, env, api, started):
        progress = row(api, started[1]["id"], started[1]["position"])
        result = wes("workflows", "show", started[1]["id"], env=env)
        assert result.returncode == 0, result.stderr
        assert "reserve-inventory" in result.stdout and "LOW" in result.stdout
        assert stamp(progress["created_at"]) in result.stdout

    def test_show_of_an_unknown_workflow_is_a_404_line(self, env):
        line = one_line_failure(wes("workflows", "show", str(uuid.uuid4()), env=env))
        assert "404" in line and "not found" in line

    def test_a_malformed_id_is_refused_before_any_request(self, env):
        line = one_line_failure(wes("workflows", "show", "not-an-id", env=env))
        assert "not a workflow id" in line


class TestLifecycle:
    def test_pause_resume_cancel_retry(self, env, api):
        workflow_id = caller_driven(api)
        paused = run_json(env, "workflows", "pause", workflow_id, "--reason", "inspect bin")
        assert paused["id"] == workflow_id
        assert row(api, workflow_id, paused["position"])["status"] == "PAUSED"
        events = api.get(f"/v1/workflows/{workflow_id}/history").json()["items"]
        assert events[-1]["event_type"] == "Paused"
        assert events[-1]["data"]["reason"] == "inspect bin"
        resumed = run_json(env, "workflows", "resume", workflow_id)
        assert row(api, workflow_id, resumed["position"])["status"] == "EXECUTING"
        cancelled = run_json(env, "workflows", "cancel", workflow_id, "--reason", "re-plan")
        assert row(api, workflow_id, cancelled["position"])["status"] == "CANCELLED"
        retried = run_json(env, "workflows", "retry", workflow_id)
        assert row(api, workflow_id, retried["position"])["status"] == "EXECUTING"

    def test_cancel_with_compensation_is_recorded(self, env, api):
        workflow_id = caller_driven(api)
        result = wes("workflows", "cancel", workflow_id, "--compensate", env=env)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith(f"cancelled {workflow_id}")
        events = api.get(f"/v1/workflows/{workflow_id}/history").json()["items"]
        cancel = next(e for e in events if e["event_type"] == "Cancelled")
        assert cancel["data"]["compensate"] is True

    def test_an_invalid_transition_is_a_409_line_and_records_nothing(self, env, api):
        workflow_id = caller_driven(api)
        before = len(api.get(f"/v1/workflows/{workflow_id}/history").json()["items"])
        line = one_line_failure(wes("workflows", "resume", workflow_id, env=env))
        assert "409" in line and "EXECUTING" in line
        assert len(api.get(f"/v1/workflows/{workflow_id}/history").json()["items"]) == before

    def test_a_reader_key_may_not_pause(self, env, api):
        workflow_id = caller_driven(api)
        reader = {**env, "WES_API_KEY": "reader-key"}
        line = one_line_failure(wes("workflows", "pause", workflow_id, env=reader))
        assert "403" in line
        line = one_line_failure(wes("workflows", "pause", workflow_id, "--api-key", "nope",
                                    env={k: v for k, v in env.items() if k != "WES_API_KEY"}))
        assert "401" in line


class TestWatch:
    def test_follows_a_workflow_until_it_completes(self, env, api):
        started = run_json(env, "workflows", "start", "order-fulfillment", "--input",
                           json.dumps(order()))
        result = wes("workflows", "watch", started["id"], "--timeout", "60", env=env)
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert all(len(line) <= 80 for line in lines), lines
        assert "COMPLETED" in result.stdout and any(" Completed" in line for line in lines)

    def test_json_is_the_final_row_and_a_compensated_end_exits_non_zero(self, env, api,
                                                                          served):
        body = order()
        fault = api.post("/sim/faults", json={
            "service": "warehouse-service", "operation": "pick", "kind": "unrecoverable",
            "match": {"orderId": body["orderId"]}})
        assert fault.status_code in (200, 201), fault.text
        started = run_json(env, "workflows", "start", "order-fulfillment", "--input",
                           json.dumps(body))
        result = wes("workflows", "watch", started["id"], "--json", "--timeout", "60",
                     env=env)
        assert result.returncode == 1
        final = json.loads(result.stdout)
        assert final["id"] == started["id"] and final["status"] == "COMPENSATED"
        assert one_line_failure(result).endswith("ended COMPENSATED")

    def test_gives_up_after_its_timeout_with_one_line(self, env, api):
        workflow_id = caller_driven(api)
        line = one_line_failure(wes("workflows", "watch", workflow_id, "--timeout", "1",
                                    env=env))
        assert "still EXECUTING" in line


class TestDefinitions:
    def definition(self, name: str, version: int = 1) -> dict[str, Any]:
        return {"name": name, "version": version, "type": "PICKING", "steps": [
            {"step_id": "pick", "name": "Pick", "service": "warehouse-service",
             "operation": "pick", "input": {"orderId": "${input.orderId}"}}]}

    def test_list_and_show_the_built_in_definition(self, env):
        listed = run_json(env, "definitions", "list")
        assert "order-fulfillment" in {d["name"] for d in listed["items"]}
        shown = run_json(env, "definitions", "show", "order-fulfillment")
        assert [s["step_id"] for s in shown["steps"]] == [
            "reserve-inventory", "assign-robot", "pick-items", "pack-items"]
        table = wes("definitions", "show", "order-fulfillment", env=env)
        assert table.returncode == 0, table.stderr
        assert all(len(line) <= 80 for line in table.stdout.splitlines()), table.stdout
        assert "return-to-stock" in table.stdout

    def test_register_a_file_then_show_its_versions(self, env, tmp_path: Path):
        name = f"cli-pick-{uuid.uuid4().hex[:6]}"
        for version in (1, 2):
            path = tmp_path / f"v{version}.json"
            path.write_text(json.dumps(self.definition(name, version)))
            answer = run_json(env, "definitions", "register", str(path))
            assert (answer["name"], answer["version"], answer["created"]) == (
                name, version, True)
        again = wes("definitions", "register", str(path), env=env)
        assert again.returncode == 0 and "already registered" in again.stdout
        assert run_json(env, "definitions", "show", name)["versions"] == [1, 2]
        assert run_json(env, "definitions", "show", name, "--version", "1")["version"] == 1
        assert "404" in one_line_failure(wes("definitions", "show", name, "--version", "9",
                                             env=env))

    def test_register_needs_an_admin_key(self, env, tmp_path: Path):
        path = tmp_path / "d.json"
        path.write_text(json.dumps(self.definition(f"cli-x-{uuid.uuid4().hex[:6]}")))
        operator = {**env, "WES_API_KEY": "operator-key"}
        assert "403" in one_line_failure(wes("definitions", "register", str(path),
                                             env=operator))

    @pytest.mark.parametrize(("content", "expected"), [
        ("{nope", "is not JSON"),
        (json.dumps({"name": "x", "version": 1, "type": "PICKING", "steps": []}), "422"),
    ])
    def test_a_bad_file_is_one_line(self, env, tmp_path: Path, content, expected):
        path = tmp_path / "bad.json"
        path.write_text(content)
        assert expected in one_line_failure(wes("definitions", "register", str(path),
                                                env=env))

    def test_a_missing_file_is_one_line(self, env, tmp_path: Path):
        line = one_line_failure(wes("definitions", "register", str(tmp_path / "no.json"),
                                    env=env))
        assert "No such file" in line


class TestWithoutAServer:
    @pytest.mark.parametrize("args", [
        ["workflows", "list"], ["workflows", "show", str(uuid.UUID(int=1))],
        ["workflows", "start", "order-fulfillment"], ["definitions", "list"],
        ["workflows", "watch", str(uuid.UUID(int=1))],
    ])
    def test_an_unreachable_server_is_one_line(self, args):
        env = base_env(None, WES_URL=f"http://127.0.0.1:{free_port()}")
        line = one_line_failure(wes(*args, env=env))
        assert "cannot reach the server at" in line

    def test_url_option_wins_over_the_environment(self, served: Served):
        env = base_env(None, WES_URL=f"http://127.0.0.1:{free_port()}",
                       WES_API_KEY="reader-key")
        result = wes("definitions", "list", "--json", "--url", served.url, env=env)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["items"]
