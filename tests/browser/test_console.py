"""The operator console in a real headless Chromium against a real `wes serve`: the list and
its live updates, the timeline of a retried and of a compensated workflow, time travel,
pausing from the page, a reader's disabled controls, the what-if page against the real
endpoint, and every page with no request off 127.0.0.1 and no error in the browser console."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.browser.conftest import KEYS
from tests.browser.support import (
    Server,
    Watch,
    drive_step,
    event_types,
    inject_fault,
    pick_window,
    start_order,
    wait_for_status,
    window_of,
)

PAGES = ("workflows", "incidents", "load", "waveless", "projections", "throughput", "whatif")


def attempts(page: Any) -> list[tuple[str, str, str, str]]:
    """The timeline's step and compensation attempts, in the order the page lists them."""
    return [(li.get_attribute("data-kind"), li.get_attribute("data-step"),
             li.get_attribute("data-attempt"), li.get_attribute("data-outcome"))
            for li in page.locator('[data-testid="timeline"] li[data-kind="attempt"], '
                                   '[data-testid="timeline"] li[data-kind="compensation"]').all()]


def open_workflow(page: Any, wes: Server, workflow_id: str) -> None:
    page.goto(f"{wes.url}/ui/#/workflow/{workflow_id}")
    page.locator('[data-testid="timeline"]').wait_for()


class TestWorkflowList:
    def test_shows_a_started_workflow_and_updates_it_live_when_it_completes(
            self, wes: Server, watched: tuple[Any, Watch]) -> None:
        page, _ = watched
        page.goto(f"{wes.url}/ui/#/workflows")
        page.locator('[data-testid="live"][data-state="live"]').wait_for()
        page.evaluate("window.__notReloaded = true")
        with wes.client() as client:
            # Packing answers after 4 s, so the list shows the workflow before it completes.
            inject_fault(client, "latency", "ORD-LIST", operation="pack",
                         service="packing-service", latency_ms=4000)
            wid = start_order(client, "ORD-LIST")
            row = page.locator(f'[data-testid="rows"] tr[data-id="{wid}"]')
            row.wait_for()
            assert row.get_attribute("data-status") in ("PENDING", "EXECUTING")
            assert client.get(f"/v1/workflows/{wid}").json()["status"] != "COMPLETED"
            page.locator(f'[data-testid="rows"] tr[data-id="{wid}"][data-status="COMPLETED"]'
                         ).wait_for()
        assert page.evaluate("window.__notReloaded") is True

    def test_filters_by_status_and_finds_by_correlation_id(
            self, wes: Server, watched: tuple[Any, Watch]) -> None:
        page, _ = watched
        with wes.client() as client:
            wid = start_order(client, "ORD-FIND", driven_by="caller", correlation_id="corr-find-1")
        page.goto(f"{wes.url}/ui/#/workflows?status=COMPLETED")
        page.locator('[data-testid="live"][data-state="live"]').wait_for()  # rows are shown
        assert page.locator(f'tr[data-id="{wid}"]').count() == 0
        page.fill('[data-testid="search"]', "corr-find-1")
        page.press('[data-testid="search"]', "Enter")
        page.locator(f'[data-testid="rows"] tr[data-id="{wid}"]').wait_for()
        assert page.locator('[data-testid="rows"] tr[data-id]').count() == 1


class TestWorkflowTimeline:
    def test_shows_each_attempt_of_a_retried_workflow_in_order_with_its_backoff(
            self, wes: Server, watched: tuple[Any, Watch]) -> None:
        page, _ = watched
        with wes.client() as client:
            inject_fault(client, "recoverable", "ORD-RETRY")
            wid = start_order(client, "ORD-RETRY")
            wait_for_status(client, wid, "COMPLETED")
        open_workflow(page, wes, wid)
        assert attempts(page) == [
            ("attempt", "reserve-inventory", "1", "completed"),
            ("attempt", "assign-robot", "1", "completed"),
            ("attempt", "pick-items", "1", "failed"),
            ("attempt", "pick-items", "2", "completed"),
            ("attempt", "pack-items", "1", "completed")]
        failed = page.locator('li[data-step="pick-items"][data-attempt="1"]')
        assert "SERVICE_UNAVAILABLE" in failed.locator('[data-testid="attempt-error"]').inner_text()
        assert re.search(r"backoff \d", failed.locator('[data-testid="backoff"]').inner_text())
        assert page.locator('[data-testid="status"]').inner_text() == "COMPLETED"

    def test_shows_the_compensations_of_a_rejected_workflow_in_reverse_order(
            self, wes: Server, watched: tuple[Any, Watch]) -> None:
        page, _ = watched
        with wes.client() as client:
            inject_fault(client, "unrecoverable", "ORD-UNDO")
            wid = start_order(client, "ORD-UNDO")
            wait_for_status(client, wid, "COMPENSATED")
        open_workflow(page, wes, wid)
        assert attempts(page) == [
            ("attempt", "reserve-inventory", "1", "completed"),
            ("attempt", "assign-robot", "1", "completed"),
            ("attempt", "pick-items", "1", "failed"),
            ("compensation", "assign-robot", "1", "compensated"),
            ("compensation", "reserve-inventory", "1", "compensated")]
        milestones = page.locator('[data-testid="timeline"] li[data-kind="milestone"]')
        assert milestones.last.get_attribute("data-event") == "CompensationCompleted"
        audit = page.locator('[data-testid="audit"] tbody tr')
        assert audit.count() == len(event_types(wes.client(), wid))

    def test_time_travel_shows_the_state_as_of_an_earlier_version(
            self, wes: Server, watched: tuple[Any, Watch]) -> None:
        page, _ = watched
        with wes.client() as client:
            inject_fault(client, "recoverable", "ORD-TRAVEL")
            wid = start_order(client, "ORD-TRAVEL")
            wait_for_status(client, wid, "COMPLETED")
            failed_at = event_types(client, wid).index("StepFailed") + 1
        open_workflow(page, wes, wid)
        state = page.locator('[data-testid="state-status"]')
        assert state.inner_text() == "COMPLETED"
        page.select_option('[data-testid="version-picker"]', str(failed_at))
        page.locator('[data-testid="state"]', has_text=f"As of version {failed_at}").wait_for()
        assert state.inner_text() == "EXECUTING"
        steps = page.locator('[data-testid="state-steps"] tr[data-step]')
        assert {s.get_attribute("data-step"): s.get_attribute("data-status") for s in steps.all()
                } == {"reserve-inventory": "COMPLETED", "assign-robot": "COMPLETED",
                      "pick-items": "FAILED", "pack-items": "PENDING"}
        # The timeline dims what happened after that version.
        items = page.locator('[data-testid="timeline"] li').all()
        dimmed = {int(li.get_attribute("data-version")): "future" in li.get_attribute("class")
                  for li in items}
        assert any(dimmed.values())
        assert all(future == (version > failed_at) for version, future in dimmed.items())

    def test_time_travel_shows_the_state_as_of_a_moment(
            self, wes: Server, watched: tuple[Any, Watch]) -> None:
        page, _ = watched
        with wes.client() as client:
            inject_fault(client, "recoverable", "ORD-MOMENT")
            wid = start_order(client, "ORD-MOMENT")
            wait_for_status(client, wid, "COMPLETED")
            history = client.get(f"/v1/workflows/{wid}/history").json()["items"]
        scheduled = next(e for e in history if e["event_type"] == "StepRetryScheduled")
        open_workflow(page, wes, wid)
        # Half-way through the backoff before the second attempt at pick-items (1 s).
        page.evaluate("""([iso]) => {
            const d = new Date(new Date(iso).getTime() + 400);
            const local = new Date(d.getTime() - d.getTimezoneOffset() * 60000);
            document.querySelector('[data-testid="as-of-time"]').value =
                local.toISOString().slice(0, 23);
        }""", [scheduled["timestamp"]])
        page.click("text=As of time")
        page.locator('[data-testid="state"]', has_text=f"As of version {scheduled['version']}"
                     ).wait_for()
        assert page.locator('[data-testid="state-status"]').inner_text() == "EXECUTING"
        pick = page.locator('[data-testid="state-steps"] tr[data-step="pick-items"]')
        assert pick.get_attribute("data-status") == "PENDING"


class TestActions:
    def test_pause_from_the_page_is_recorded_and_shown_without_a_reload(
            self, wes: Server, watched: tuple[Any, Watch]) -> None:
        page, _ = watched
        with wes.client() as client:
            wid = start_order(client, "ORD-PAUSE", driven_by="caller")
            drive_step(client, wid, "reserve-inventory")
        open_workflow(page, wes, wid)
        page.evaluate("window.__notReloaded = true")
        page.click('[data-action="pause"]')
        page.locator('[data-testid="answer"] [data-outcome="ok"]').wait_for()
        page.locator('[data-testid="status"]', has_text="PAUSED").wait_for()
        page.locator('[data-testid="timeline"] li[data-event="Paused"]').wait_for()
        assert page.evaluate("window.__notReloaded") is True
        with wes.client() as client:
            assert event_types(client, wid)[-1] == "Paused"

    def test_a_refused_action_shows_the_reason_of_the_409(
            self, wes: Server, watched: tuple[Any, Watch]) -> None:
        page, watch = watched
        with wes.client() as client:
            wid = start_order(client, "ORD-409", driven_by="caller")
            before = event_types(client, wid)
        open_workflow(page, wes, wid)
        page.click('[data-action="resume"]')
        refused = page.locator('[data-testid="answer"] [data-outcome="refused"]')
        refused.wait_for()
        assert refused.get_attribute("data-status") == "409"
        assert "EXECUTING" in refused.inner_text()
        with wes.client() as client:
            assert event_types(client, wid) == before
        # Chromium reports every 4xx answer in the console; this one was asked for.
        watch.errors[:] = [e for e in watch.errors if "status of 409" not in e]


class TestKeys:
    def sign_in(self, page: Any, server: Server, role: str) -> None:
        page.goto(f"{server.url}/ui/#/workflows")
        page.locator('[data-testid="login"]').wait_for()
        page.fill("#login-key", KEYS[role])
        page.press("#login-key", "Enter")
        page.locator(f'[data-testid="role"][data-role="{role}"]').wait_for()

    def test_a_reader_cannot_pause_the_control_is_disabled_and_the_api_refuses(
            self, wes: Server, wes_with_keys: Server, watched: tuple[Any, Watch]) -> None:
        page, watch = watched
        with wes.client() as client:
            wid = start_order(client, "ORD-READER", driven_by="caller")
            before = event_types(client, wid)
        self.sign_in(page, wes_with_keys, "reader")
        open_workflow(page, wes_with_keys, wid)
        pause = page.locator('[data-action="pause"]')
        assert pause.is_disabled()
        assert "operator" in (pause.get_attribute("title") or "")
        with wes_with_keys.client(KEYS["reader"]) as reader:
            refused = reader.post(f"/v1/workflows/{wid}/pause")
        assert refused.status_code == 403, refused.text
        with wes.client() as client:
            assert event_types(client, wid) == before
        key_in_url = [u for u in watch.requests if KEYS["reader"] in u]
        assert key_in_url == []
        # The 401 that made the console ask for a key is expected in the console.
        watch.errors[:] = [e for e in watch.errors if "status of 401" not in e]

    def test_an_operator_may_pause(self, wes: Server, wes_with_keys: Server,
                                   watched: tuple[Any, Watch]) -> None:
        page, watch = watched
        with wes.client() as client:
            wid = start_order(client, "ORD-OPERATOR", driven_by="caller")
        self.sign_in(page, wes_with_keys, "operator")
        open_workflow(page, wes_with_keys, wid)
        page.click('[data-action="pause"]')
        page.locator('[data-testid="status"]', has_text="PAUSED").wait_for()
        with wes.client() as client:
            assert event_types(client, wid)[-1] == "Paused"
        watch.errors[:] = [e for e in watch.errors if "status of 401" not in e]


class TestEveryPage:
    @pytest.mark.parametrize("name", PAGES)
    def test_renders_with_no_request_off_localhost_and_no_console_error(
            self, wes: Server, watched: tuple[Any, Watch], name: str) -> None:
        page, watch = watched
        page.goto(f"{wes.url}/")
        page.locator('[data-testid="page-workflows"]').wait_for()
        page.goto(f"{wes.url}/ui/#/{name}")
        page.locator(f'[data-testid="page-{name}"]').wait_for()
        page.wait_for_timeout(1500)
        assert page.locator(f'[data-testid="page-{name}"] .error').count() == 0, \
            page.locator(f'[data-testid="page-{name}"]').inner_text()
        assert watch.requests, "the page made no request"

    @pytest.mark.parametrize(("path", "selector"), [("/docs", ".swagger-ui .info"),
                                                    ("/redoc", "h1")])
    def test_api_docs_render_from_installed_files(self, wes: Server, watched: tuple[Any, Watch],
                                                  path: str, selector: str) -> None:
        page, _ = watched
        page.goto(f"{wes.url}{path}")
        page.locator(selector).first.wait_for()
        assert "WES Orchestrator" in page.locator(selector).first.inner_text()


class TestWhoAmI:
    def test_answers_the_role_of_the_key_sent(self, wes: Server, wes_with_keys: Server) -> None:
        for role, key in KEYS.items():
            with wes_with_keys.client(key) as client:
                me = client.get("/v1/whoami")
            assert me.status_code == 200, me.text
            assert me.json()["role"] == role
            assert me.json()["keys_required"] is True
            assert me.json()["actor"].startswith("api-key:")
            assert key not in me.text
        with wes_with_keys.client() as anonymous:
            assert anonymous.get("/v1/whoami").status_code == 401
        with wes_with_keys.client("not-a-key") as wrong:
            assert wrong.get("/v1/whoami").status_code == 401
        with wes.client() as open_server:
            assert open_server.get("/v1/whoami").json() == {
                "role": "admin", "actor": "api", "keys_required": False}

    def test_the_console_itself_needs_no_key(self, wes_with_keys: Server) -> None:
        with wes_with_keys.client() as anonymous:
            root = anonymous.get("/", follow_redirects=True)
            assert root.status_code == 200
            assert 'src="/ui/static/app.js"' in root.text
            assert "default-src 'self'" in root.headers["content-security-policy"]
            assert anonymous.get("/ui/static/pages/workflow.js").status_code == 200
            assert anonymous.get("/v1/workflows").status_code == 401


class TestOperatorPages:
    def test_incidents_lists_a_failed_compensation_and_retries_it_in_bulk(
            self, wes: Server, watched: tuple[Any, Watch]) -> None:
        page, _ = watched
        with wes.client() as client:
            inject_fault(client, "unrecoverable", "ORD-STUCK")
            # Every compensation call of this order's robot fails, so compensation fails.
            inject_fault(client, "unrecoverable", "ORD-STUCK", operation="unassign",
                         service="robotics-service", count=None)
            wid = start_order(client, "ORD-STUCK")
            wait_for_status(client, wid, "COMPENSATION_FAILED", timeout=90)
        page.goto(f"{wes.url}/ui/#/incidents")
        section = page.locator('[data-testid="compensation-failed"]')
        section.locator(f'input[data-id="{wid}"]').check()
        assert page.locator('[data-testid="selected-count"]').inner_text() == "1"
        page.click('[data-action="bulk-retry-compensation"]')
        page.locator(f'[data-testid="bulk-answer"] li[data-id="{wid}"][data-outcome="ok"]').wait_for()
        with wes.client() as client:
            assert "CompensationRetried" in event_types(client, wid)

    def test_load_rebalances_on_request_and_lists_the_decision(
            self, wes: Server, watched: tuple[Any, Watch]) -> None:
        page, _ = watched
        with wes.client() as client:
            wait_for_status(client, start_order(client, "ORD-LOAD"), "COMPLETED")
        page.goto(f"{wes.url}/ui/#/load")
        page.locator('[data-service="warehouse-service"]').wait_for()
        page.click('[data-action="rebalance"]')
        page.locator('[data-testid="answer"] .ok', has_text="Rebalanced").wait_for()
        page.locator('[data-testid="decisions"] td', has_text="manual").first.wait_for()


class TestProjectionsPage:
    def test_an_admin_rebuilds_a_projection_and_sees_it_swapped_in(
            self, wes: Server, watched: tuple[Any, Watch]) -> None:
        page, _ = watched
        with wes.client() as client:
            before = next(p for p in client.get("/v1/projections").json()["items"]
                          if p["name"] == "audit")["generation"]
        page.goto(f"{wes.url}/ui/#/projections")
        page.locator('tr[data-name="audit"] [data-action="rebuild"]').click()
        page.locator('[data-testid="answer"]', has_text="audit: rebuilding").wait_for()
        # The page follows the rebuild until the new generation is live.
        page.locator('tr[data-name="audit"][data-state="running"] td:nth-child(7)',
                     has_text=str(before + 1)).wait_for(timeout=60_000)


def shown(value: float) -> str:
    """A number as the page's fmtNum writes it."""
    return str(int(value)) if float(value).is_integer() else f"{value:.2f}"


class TestThroughputPage:
    def test_the_kpis_are_the_servers_counts_of_the_workflows_finished(
            self, quiet_wes: Server, watched: tuple[Any, Watch]) -> None:
        page, watch = watched
        with quiet_wes.client() as client:
            # A schema of its own: these are the only workflows the window holds.
            inject_fault(client, "unrecoverable", "ORD-TP-UNDO")
            ids = [start_order(client, f"ORD-TP-{n}") for n in range(3)]
            undone = start_order(client, "ORD-TP-UNDO")
            for wid in ids:
                wait_for_status(client, wid, "COMPLETED")
            wait_for_status(client, undone, "COMPENSATED")
            # The audit read model may trail the progress one by a moment.
            counted = wait_for_counts(client, {"Completed": 3, "CompensationCompleted": 1})
        with page.expect_response("**/v1/audit/counts?*") as answered:
            page.goto(f"{quiet_wes.url}/ui/#/throughput")
        answer = answered.value.json()
        assert answer["totals"]["Completed"] == 3 and answer["bucket_seconds"] == 60
        # The compensated saga failed first (Failed), then undid its steps.
        assert answer["totals"] == {**counted, "Failed": 1,
                                    "MarkedLate": answer["totals"]["MarkedLate"]}
        page.locator('[data-kpi="completed"] b').wait_for()
        shown = {k: page.locator(f'[data-kpi="{k}"] b').inner_text()
                 for k in ("completed", "compensated", "failed", "compensation-rate", "late")}
        assert shown == {"completed": "3", "compensated": "1", "failed": "1",
                         "compensation-rate": "25.0 %",
                         "late": str(answer["totals"]["MarkedLate"])}
        # The last hour per minute: 60 buckets (61 when the minute turned in between).
        assert len(answer["buckets"]) in (60, 61)
        note = page.locator('[data-testid="page-throughput"] p.muted').inner_text()
        assert note.startswith("From the audit read model since") and "capped" not in note
        # One aggregate per refresh, no paging through the audit rows.
        assert [u for u in watch.requests if "/v1/audit?" in u or u.endswith("/v1/audit")] == []
        assert sum("/v1/audit/counts?" in u for u in watch.requests) == 1


def wait_for_counts(client: Any, expected: dict[str, int], timeout: float = 30.0
                    ) -> dict[str, int]:
    """The last hour's counts of these event types, once they reach `expected`."""
    deadline = time.monotonic() + timeout
    while True:
        after = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
        totals = client.get("/v1/audit/counts", params={
            "event_type": list(expected), "after": after, "bucket_seconds": 3600}
        ).json()["totals"]
        if totals == expected or time.monotonic() > deadline:
            assert totals == expected
            return dict(totals)
        time.sleep(0.2)


class TestWhatIf:
    """Against a server of its own (`quiet_wes`): the other tests' faults would pause
    waveless release on their error rate."""

    def test_shows_actual_calibration_and_two_policies_side_by_side_with_wip_per_service(
            self, quiet_wes: Server, watched: tuple[Any, Watch]) -> None:
        page, _ = watched
        with quiet_wes.client() as client:
            ids = [start_order(client, f"ORD-WHATIF-{n}", waveless=True,
                               priority=("HIGH", "NORMAL")[n % 2], waveless_batch_size=3,
                               waveless_interval_ms=500) for n in range(6)]
            for wid in ids:
                wait_for_status(client, wid, "COMPLETED")
            start, end = window_of(client, ids)
        page.goto(f"{quiet_wes.url}/ui/#/whatif")
        pick_window(page, start, end)
        page.fill('input[name="p1.name"]', "one batch of 6")
        page.fill('input[name="p1.batch_size"]', "6")
        page.fill('input[name="p1.interval_ms"]', "1000")
        page.fill('input[name="p1.cutoff_urgency_ms"]', "30000")
        page.fill('input[name="p2.name"]', "pick capped at 1")
        page.fill('input[name="p2.wip_caps"]', "warehouse-service=1")
        with page.expect_response("**/v1/whatif") as answered:
            page.click('[data-action="run"]')
        assert answered.value.status == 200, answered.value.text()
        sent, answer = answered.value.request.post_data_json, answered.value.json()
        assert [p["name"] for p in sent["policies"]] == ["one batch of 6", "pick capped at 1"]
        assert sent["policies"][0]["cutoff_urgency_ms"] == 30000
        assert "cutoff_urgency_ms" not in sent["policies"][1]
        assert sent["policies"][1]["wip_caps"] == {"warehouse-service": 1}
        table = page.locator('[data-testid="kpi-table"]')
        table.wait_for()

        runs = {"actual": answer["actual"], "calibration": answer["calibration"]["kpis"],
                "policy-1": answer["results"][0]["kpis"],
                "policy-2": answer["results"][1]["kpis"]}
        assert [th.get_attribute("data-run") for th in table.locator("thead th[data-run]").all()
                ] == list(runs)
        assert table.locator('thead th[data-run="policy-2"]').inner_text() == "pick capped at 1"
        assert answer["actual"]["completed"] == 6
        for kpi in ("completed", "throughput_per_hour", "lead_time_p50_s", "lead_time_p95_s",
                    "missed_cutoffs", "compensated"):
            row = table.locator(f'tbody tr[data-kpi="{kpi}"]')
            assert {run: row.locator(f'td[data-run="{run}"]').inner_text() for run in runs} == {
                run: shown(kpis[kpi]) for run, kpis in runs.items()}, kpi

        # The calibration's verdict and tolerance, as the API judged them.
        calibration = answer["calibration"]
        card = page.locator('[data-testid="calibration"]')
        assert card.get_attribute("data-ok") == str(calibration["within_tolerance"]).lower()
        verdict = card.locator('[data-testid="calibration-verdict"]').inner_text()
        assert ("within tolerance" if calibration["within_tolerance"] else "OFF") in verdict
        assert card.locator('[data-testid="calibration-off"]').count() == (
            0 if calibration["within_tolerance"] else 1)
        assert "±20 %" in card.locator('[data-testid="tolerance"]').inner_text()
        assert {r.get_attribute("data-kpi"): r.get_attribute("data-ok") for r in
                card.locator('[data-testid="calibration-checks"] tbody tr').all()} == {
            k: str(c["ok"]).lower() for k, c in calibration["checks"].items()}

        # One WIP chart per service, a line per run, drawn from the answer's series.
        services = sorted(answer["actual_wip"])
        assert "warehouse-service" in services
        assert max(p["in_flight"] for p in answer["actual_wip"]["warehouse-service"]) >= 1
        charts = page.locator('[data-testid="wip-chart"]')
        assert [c.get_attribute("data-service") for c in charts.all()] == services
        for service in services:
            paths = page.locator(f'[data-testid="wip-chart"][data-service="{service}"] svg path')
            assert paths.count() == len(runs)
            assert all(d.count("L") == len(answer["actual_wip"][service]) - 1
                       for d in (p.get_attribute("d") for p in paths.all()))

    def test_a_run_whose_calibration_is_off_says_so(
            self, quiet_wes: Server, misinformed_wes: Server,
            watched: tuple[Any, Watch]) -> None:
        page, _ = watched
        with quiet_wes.client() as client:
            ids = []
            for n in range(6):
                # Slow picks, three at a time: a cap of 1 would have queued them.
                inject_fault(client, "latency", f"ORD-OFF-{n}", latency_ms=400, count=None)
                ids.append(start_order(client, f"ORD-OFF-{n}", waveless=True,
                                       waveless_batch_size=3, waveless_interval_ms=500))
            for wid in ids:
                wait_for_status(client, wid, "COMPLETED")
            start, end = window_of(client, ids)
        page.goto(f"{misinformed_wes.url}/ui/#/whatif")
        pick_window(page, start, end)
        page.uncheck('[data-testid="policy-2-on"]')
        with page.expect_response("**/v1/whatif") as answered:
            page.click('[data-action="run"]')
        calibration = answered.value.json()["calibration"]
        assert calibration["within_tolerance"] is False, calibration["checks"]
        card = page.locator('[data-testid="calibration"][data-ok="false"]')
        card.wait_for()
        assert "OFF" in card.locator('[data-testid="calibration-verdict"]').inner_text()
        assert "Calibration is off" in card.locator('[data-testid="calibration-off"]').inner_text()
        off = {k for k, c in calibration["checks"].items() if not c["ok"]}
        assert off and {r.get_attribute("data-kpi") for r in card.locator(
            '[data-testid="calibration-checks"] tbody tr[data-ok="false"]').all()} == off

    def test_a_window_without_waveless_work_shows_the_problem_detail_of_the_422(
            self, quiet_wes: Server, watched: tuple[Any, Watch]) -> None:
        page, watch = watched
        with quiet_wes.client() as client:
            wid = start_order(client, "ORD-WHATIF-PLAIN")
            wait_for_status(client, wid, "COMPLETED")
            start, end = window_of(client, [wid])
        page.goto(f"{quiet_wes.url}/ui/#/whatif")
        pick_window(page, start, end)
        page.uncheck('[data-testid="policy-2-on"]')
        with page.expect_response("**/v1/whatif") as answered:
            page.click('[data-action="run"]')
        assert answered.value.status == 422
        problem = answered.value.json()
        assert "no waveless work" in problem["detail"]
        assert len(answered.value.request.post_data_json["policies"]) == 1
        box = page.locator('[data-testid="whatif-result"] [data-testid="problem"]')
        box.wait_for()
        assert box.get_attribute("data-status") == "422"
        assert box.locator('[data-testid="problem-detail"]').inner_text() == problem["detail"]
        assert problem["title"] in box.inner_text()
        assert page.locator('[data-testid="kpi-table"]').count() == 0
        # Chromium reports every 4xx answer in the console; this one was asked for.
        watch.errors[:] = [e for e in watch.errors if "status of 422" not in e]
