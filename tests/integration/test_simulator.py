"""The simulated warehouse services over real HTTP: operations, idempotency, faults, call log."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from application.engine.registry import SIMULATED_SERVICES
from simulator.background import RunningSimulator
from simulator.client import SimulatorClient
from simulator.warehouse import SERVICE_OPERATIONS

ITEMS = [{"sku": "SKU-12345", "quantity": 2}, {"sku": "SKU-777", "quantity": 1}]


def order() -> str:
    return f"order-{uuid.uuid4().hex[:8]}"


def post_fault(simulator: SimulatorClient, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{simulator.base_url}/faults", json=body)


class TestOperations:
    @pytest.mark.parametrize(("service", "operation", "body", "expected"), [
        ("inventory-service", "reserve", {"items": ITEMS}, {"reserved": True, "items": ITEMS}),
        ("inventory-service", "release", {"reservationId": "res-1"}, {"released": True}),
        ("robotics-service", "assign", {}, {"assigned": True}),
        ("robotics-service", "unassign", {"robotId": "robot-007"},
         {"unassigned": True, "robotId": "robot-007"}),
        ("warehouse-service", "pick", {"items": ITEMS, "robotId": "robot-007"},
         {"picked": True, "pickedItems": ITEMS, "robotId": "robot-007"}),
        ("warehouse-service", "return-to-stock", {"items": ITEMS},
         {"returned": True, "returnedItems": ITEMS}),
        ("packing-service", "pack", {"items": ITEMS}, {"packed": True, "itemCount": 2}),
        ("packing-service", "unpack", {"packageId": "pkg-1"},
         {"unpacked": True, "packageId": "pkg-1"}),
    ])
    def test_each_operation_answers_its_output(
        self, simulator: SimulatorClient, service: str, operation: str,
        body: dict[str, Any], expected: dict[str, Any],
    ) -> None:
        order_id = order()
        response = simulator.call(service, operation, {"orderId": order_id, **body})
        assert response.status_code == 200
        answer = response.json()
        assert answer["orderId"] == order_id
        assert answer["instance"] == "sim-1"
        assert expected.items() <= answer.items()

    @pytest.mark.parametrize(("service", "operation", "id_field", "prefix"), [
        ("inventory-service", "reserve", "reservationId", "res-"),
        ("robotics-service", "assign", "robotId", "robot-"),
        ("warehouse-service", "pick", "pickId", "pick-"),
        ("packing-service", "pack", "packageId", "pkg-"),
    ])
    def test_forward_operations_answer_the_id_of_what_they_created(
        self, simulator: SimulatorClient, service: str, operation: str, id_field: str,
        prefix: str,
    ) -> None:
        answer = simulator.call(service, operation, {"orderId": order(), "items": ITEMS}).json()
        assert answer[id_field].startswith(prefix)

    def test_release_releases_the_reservation_it_names(
        self, simulator: SimulatorClient,
    ) -> None:
        order_id = order()
        reserved = simulator.call("inventory-service", "reserve",
                                  {"orderId": order_id, "items": ITEMS}).json()
        released = simulator.call("inventory-service", "release", {
            "orderId": order_id, "reservationId": reserved["reservationId"]}).json()
        assert released["releasedReservations"] == [reserved["reservationId"]]

    def test_an_order_keeps_its_robot_until_unassigned(self, simulator: SimulatorClient) -> None:
        order_id = order()
        first = simulator.call("robotics-service", "assign", {"orderId": order_id}).json()
        again = simulator.call("robotics-service", "assign", {"orderId": order_id}).json()
        freed = simulator.call("robotics-service", "unassign", {"orderId": order_id}).json()
        assert again["robotId"] == first["robotId"]
        assert freed["robotId"] == first["robotId"]

    def test_reverse_operations_succeed_for_what_this_instance_never_did(
        self, simulator: SimulatorClient,
    ) -> None:
        for service, operation in [("inventory-service", "release"),
                                   ("robotics-service", "unassign"),
                                   ("warehouse-service", "return-to-stock"),
                                   ("packing-service", "unpack")]:
            response = simulator.call(service, operation, {"orderId": order()})
            assert response.status_code == 200, (service, operation, response.text)

    def test_answers_echo_the_correlation_id_and_name_the_instance(
        self, simulator: SimulatorClient,
    ) -> None:
        response = simulator.call("inventory-service", "reserve", {"orderId": order()},
                                  correlation_id="corr-42")
        assert response.headers["X-Correlation-ID"] == "corr-42"
        assert response.headers["X-Instance-ID"] == "sim-1"

    @pytest.mark.parametrize("raw", [b"not json", b"[1, 2]", b'"text"'])
    def test_rejects_a_body_that_is_not_a_json_object(
        self, simulator: SimulatorClient, raw: bytes,
    ) -> None:
        response = httpx.post(f"{simulator.base_url}/inventory-service/reserve", content=raw)
        assert response.status_code == 400
        assert response.json()["code"] == "INVALID_REQUEST"

    def test_rejects_items_that_are_not_a_list(self, simulator: SimulatorClient) -> None:
        response = simulator.call("warehouse-service", "pick",
                                  {"orderId": order(), "items": "SKU-1"})
        assert response.status_code == 400
        assert response.json() == {"code": "INVALID_REQUEST",
                                   "message": "items must be a list"}

    def test_unknown_services_and_operations_are_not_found(
        self, simulator: SimulatorClient,
    ) -> None:
        no_service = simulator.call("billing-service", "charge", {"orderId": order()})
        no_operation = simulator.call("inventory-service", "steal", {"orderId": order()})
        assert (no_service.status_code, no_service.json()["code"]) == (404, "UNKNOWN_SERVICE")
        assert (no_operation.status_code, no_operation.json()["code"]) == (
            404, "UNKNOWN_OPERATION")

    def test_serves_the_services_the_engine_expects(self) -> None:
        assert tuple(SERVICE_OPERATIONS) == SIMULATED_SERVICES

    def test_healthz(self, simulator: SimulatorClient) -> None:
        response = httpx.get(f"{simulator.base_url}/healthz")
        assert response.json() == {"status": "ok", "instance": "sim-1", "in_flight": 0}

    def test_counts_the_calls_in_flight(self, simulator: SimulatorClient) -> None:
        simulator.add_fault("robotics-service", "latency", "assign", latency_ms=400)
        caller = threading.Thread(target=simulator.call,
                                  args=("robotics-service", "assign", {}))
        caller.start()
        time.sleep(0.2)
        busy = simulator.in_flight()
        caller.join()
        assert (busy, simulator.in_flight()) == (1, 0)


class TestIdempotency:
    def test_a_repeated_key_answers_the_first_response(self, simulator: SimulatorClient) -> None:
        order_id = order()
        first = simulator.call("inventory-service", "reserve", {"orderId": order_id},
                               idempotency_key=f"{order_id}:reserve:1")
        repeat = simulator.call("inventory-service", "reserve", {"orderId": order_id},
                                idempotency_key=f"{order_id}:reserve:1")
        assert repeat.json() == first.json()
        assert repeat.headers["Idempotent-Replayed"] == "true"
        assert [c["repeated"] for c in simulator.calls(order_id=order_id)] == [False, True]

    def test_a_new_key_does_the_work_again(self, simulator: SimulatorClient) -> None:
        order_id = order()
        first = simulator.call("inventory-service", "reserve", {"orderId": order_id},
                               idempotency_key=f"{order_id}:reserve:1").json()
        second = simulator.call("inventory-service", "reserve", {"orderId": order_id},
                                idempotency_key=f"{order_id}:reserve:2").json()
        assert first["reservationId"] != second["reservationId"]

    def test_keys_are_scoped_to_one_operation(self, simulator: SimulatorClient) -> None:
        order_id = order()
        simulator.call("warehouse-service", "pick", {"orderId": order_id}, idempotency_key="k")
        other = simulator.call("warehouse-service", "return-to-stock", {"orderId": order_id},
                               idempotency_key="k")
        assert other.json()["returned"] is True
        assert [c["repeated"] for c in simulator.calls(order_id=order_id)] == [False, False]

    def test_calls_without_a_key_are_never_repeats(self, simulator: SimulatorClient) -> None:
        order_id = order()
        first = simulator.call("packing-service", "pack", {"orderId": order_id}).json()
        second = simulator.call("packing-service", "pack", {"orderId": order_id}).json()
        assert first["packageId"] != second["packageId"]
        calls = simulator.calls(order_id=order_id)
        assert [(c["idempotency_key"], c["repeated"]) for c in calls] == [(None, False)] * 2

    def test_a_failed_answer_is_not_stored(self, simulator: SimulatorClient) -> None:
        order_id = order()
        simulator.add_fault("inventory-service", "recoverable", "reserve", count=1)
        failed = simulator.call("inventory-service", "reserve", {"orderId": order_id},
                                idempotency_key="retry-me")
        worked = simulator.call("inventory-service", "reserve", {"orderId": order_id},
                                idempotency_key="retry-me")
        again = simulator.call("inventory-service", "reserve", {"orderId": order_id},
                               idempotency_key="retry-me")
        assert (failed.status_code, worked.status_code) == (503, 200)
        assert again.json() == worked.json()
        calls = simulator.calls(order_id=order_id)
        assert [(c["status"], c["repeated"]) for c in calls] == [
            (503, False), (200, False), (200, True)]

    def test_a_stored_answer_is_replayed_to_every_later_attempt(
            self, simulator: SimulatorClient) -> None:
        order_id = order()
        answers = [simulator.call("packing-service", "pack", {"orderId": order_id},
                                  idempotency_key="wf-1:pack-items", attempt=n).json()
                   for n in (1, 2, 3)]
        assert len({a["packageId"] for a in answers}) == 1
        assert [(c["attempt"], c["repeated"]) for c in simulator.calls(order_id=order_id)] == [
            (1, False), (2, True), (3, True)]

    def test_a_business_rejection_does_not_override_an_applied_key(
            self, simulator: SimulatorClient) -> None:
        order_id = order()
        done = simulator.call("packing-service", "pack", {"orderId": order_id},
                              idempotency_key="wf-2:pack-items", attempt=1)
        simulator.add_fault("packing-service", "unrecoverable", "pack", count=1)
        again = simulator.call("packing-service", "pack", {"orderId": order_id},
                               idempotency_key="wf-2:pack-items", attempt=2)
        fresh = simulator.call("packing-service", "pack", {"orderId": order_id},
                               idempotency_key="wf-3:pack-items", attempt=1)
        assert (again.status_code, again.json()) == (200, done.json())
        # The fault was not spent on the replay: it rejects the next new key.
        assert (fresh.status_code, fresh.json()["code"]) == (422, "PACKING_STATION_UNAVAILABLE")

    def test_an_unavailable_service_fails_an_applied_key_too_and_stores_nothing(
            self, simulator: SimulatorClient) -> None:
        order_id = order()
        done = simulator.call("packing-service", "pack", {"orderId": order_id},
                              idempotency_key="wf-4:pack-items", attempt=1)
        simulator.add_fault("packing-service", "recoverable", "pack", count=1)
        failed = simulator.call("packing-service", "pack", {"orderId": order_id},
                                idempotency_key="wf-4:pack-items", attempt=1)
        replayed = simulator.call("packing-service", "pack", {"orderId": order_id},
                                  idempotency_key="wf-4:pack-items", attempt=2)
        assert failed.status_code == 503
        assert replayed.json() == done.json()
        assert [(c["attempt"], c["status"], c["repeated"])
                for c in simulator.calls(order_id=order_id)] == [
            (1, 200, False), (1, 503, False), (2, 200, True)]

    def test_concurrent_calls_with_one_key_do_the_work_once(
        self, simulator: SimulatorClient, simulator_server: RunningSimulator,
    ) -> None:
        order_id = order()
        answers: list[dict[str, Any]] = []

        def reserve() -> None:
            with SimulatorClient(simulator.base_url) as client:
                answers.append(client.call("inventory-service", "reserve",
                                           {"orderId": order_id}, idempotency_key="once").json())

        threads = [threading.Thread(target=reserve) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len({a["reservationId"] for a in answers}) == 1
        assert sum(not c["repeated"] for c in simulator.calls(order_id=order_id)) == 1


class TestFaults:
    def test_unrecoverable_answers_422_with_the_operations_business_code(
        self, simulator: SimulatorClient,
    ) -> None:
        fault_id = simulator.add_fault("inventory-service", "unrecoverable", "reserve")
        response = simulator.call("inventory-service", "reserve", {"orderId": order()})
        assert response.status_code == 422
        assert response.json() == {"code": "INSUFFICIENT_INVENTORY",
                                   "message": "not enough stock to reserve the order's items",
                                   "fault": fault_id}

    def test_unrecoverable_may_name_its_status_code_and_message(
        self, simulator: SimulatorClient,
    ) -> None:
        simulator.add_fault("robotics-service", "unrecoverable", "assign", status=409,
                            code="ROBOT_BUSY", message="robot-007 is busy")
        response = simulator.call("robotics-service", "assign", {"orderId": order()})
        assert response.status_code == 409
        assert (response.json()["code"], response.json()["message"]) == (
            "ROBOT_BUSY", "robot-007 is busy")

    def test_recoverable_answers_503(self, simulator: SimulatorClient) -> None:
        simulator.add_fault("warehouse-service", "recoverable", "pick")
        response = simulator.call("warehouse-service", "pick", {"orderId": order()})
        assert response.status_code == 503
        assert response.json()["code"] == "SERVICE_UNAVAILABLE"

    def test_recoverable_may_answer_429(self, simulator: SimulatorClient) -> None:
        simulator.add_fault("warehouse-service", "recoverable", "pick", status=429)
        assert simulator.call("warehouse-service", "pick", {}).status_code == 429

    def test_outage_refuses_every_call_to_that_service_only(
        self, simulator: SimulatorClient,
    ) -> None:
        simulator.add_fault("packing-service", "outage")
        pack = simulator.call("packing-service", "pack", {"orderId": order()})
        unpack = simulator.call("packing-service", "unpack", {"orderId": order()})
        pick = simulator.call("warehouse-service", "pick", {"orderId": order()})
        assert (pack.status_code, pack.json()["code"]) == (503, "SERVICE_OUTAGE")
        assert (unpack.status_code, unpack.json()["code"]) == (503, "SERVICE_OUTAGE")
        assert pick.status_code == 200

    def test_outage_comes_before_other_faults(self, simulator: SimulatorClient) -> None:
        simulator.add_fault("packing-service", "unrecoverable", "pack")
        simulator.add_fault("packing-service", "outage")
        assert simulator.call("packing-service", "pack", {}).json()["code"] == "SERVICE_OUTAGE"

    def test_latency_delays_the_answer(self, simulator: SimulatorClient) -> None:
        simulator.add_fault("robotics-service", "latency", "assign", latency_ms=300)
        started = time.perf_counter()
        slow = simulator.call("robotics-service", "assign", {"orderId": order()})
        slow_s = time.perf_counter() - started
        started = time.perf_counter()
        simulator.call("robotics-service", "unassign", {"orderId": order()})
        fast_s = time.perf_counter() - started
        assert slow.status_code == 200
        assert slow_s >= 0.3
        assert fast_s < 0.3

    def test_latency_adds_to_a_failing_fault(self, simulator: SimulatorClient) -> None:
        simulator.add_fault("robotics-service", "recoverable", "assign", latency_ms=200)
        started = time.perf_counter()
        response = simulator.call("robotics-service", "assign", {})
        assert response.status_code == 503
        assert time.perf_counter() - started >= 0.2

    def test_garbage_answers_200_with_a_body_that_is_not_json(
        self, simulator: SimulatorClient,
    ) -> None:
        simulator.add_fault("packing-service", "garbage", "pack")
        response = simulator.call("packing-service", "pack", {"orderId": order()})
        assert response.status_code == 200
        with pytest.raises(ValueError):
            response.json()

    def test_garbage_may_name_its_body(self, simulator: SimulatorClient) -> None:
        simulator.add_fault("packing-service", "garbage", "pack", body="[1, 2, 3]")
        assert simulator.call("packing-service", "pack", {}).text == "[1, 2, 3]"

    def test_count_limits_the_calls_a_fault_affects(self, simulator: SimulatorClient) -> None:
        fault_id = simulator.add_fault("inventory-service", "recoverable", "reserve", count=2)
        statuses = [simulator.call("inventory-service", "reserve", {}).status_code
                    for _ in range(3)]
        assert statuses == [503, 503, 200]
        [fault] = simulator.faults()
        assert (fault["id"], fault["hits"], fault["remaining"]) == (fault_id, 2, 0)

    def test_rate_affects_about_that_share_of_calls(self, simulator: SimulatorClient) -> None:
        simulator.add_fault("inventory-service", "recoverable", "reserve", rate=0.5)
        statuses = [simulator.call("inventory-service", "reserve", {}).status_code
                    for _ in range(200)]
        assert 60 <= statuses.count(503) <= 140
        assert statuses.count(503) + statuses.count(200) == 200

    @pytest.mark.parametrize(("rate", "expected"), [(0.0, 200), (1.0, 503)])
    def test_rate_zero_never_strikes_and_one_always_does(
        self, simulator: SimulatorClient, rate: float, expected: int,
    ) -> None:
        simulator.add_fault("inventory-service", "recoverable", "reserve", rate=rate)
        statuses = {simulator.call("inventory-service", "reserve", {}).status_code
                    for _ in range(20)}
        assert statuses == {expected}

    def test_a_seeded_rate_strikes_the_same_calls_every_time(
        self, simulator: SimulatorClient,
    ) -> None:
        def pattern() -> list[int]:
            fault_id = simulator.add_fault("robotics-service", "recoverable", "assign",
                                           rate=0.3, seed=99)
            statuses = [simulator.call("robotics-service", "assign", {}).status_code
                        for _ in range(30)]
            simulator.remove_fault(fault_id)
            return statuses

        first = pattern()
        assert first == pattern()
        assert 503 in first
        assert 200 in first

    def test_count_counts_only_the_calls_a_rate_fault_strikes(
        self, simulator: SimulatorClient,
    ) -> None:
        simulator.add_fault("robotics-service", "recoverable", "assign", rate=0.5, count=3,
                            seed=7)
        statuses = [simulator.call("robotics-service", "assign", {}).status_code
                    for _ in range(60)]
        assert statuses.count(503) == 3

    def test_match_limits_a_fault_to_matching_calls(self, simulator: SimulatorClient) -> None:
        doomed, lucky = order(), order()
        simulator.add_fault("warehouse-service", "unrecoverable", "pick",
                            match={"orderId": doomed})
        assert simulator.call("warehouse-service", "pick", {"orderId": doomed}).status_code == 422
        assert simulator.call("warehouse-service", "pick", {"orderId": lucky}).status_code == 200
        assert simulator.call("warehouse-service", "pick", {}).status_code == 200

    def test_a_fault_without_operation_affects_every_operation_of_its_service(
        self, simulator: SimulatorClient,
    ) -> None:
        simulator.add_fault("inventory-service", "unrecoverable")
        reserve = simulator.call("inventory-service", "reserve", {})
        release = simulator.call("inventory-service", "release", {})
        assert (reserve.status_code, reserve.json()["code"]) == (422, "INSUFFICIENT_INVENTORY")
        assert (release.status_code, release.json()["code"]) == (
            422, "RESERVATION_NOT_RELEASABLE")

    def test_faults_are_listed_removed_one_by_one_and_cleared(
        self, simulator: SimulatorClient,
    ) -> None:
        first = simulator.add_fault("inventory-service", "recoverable", "reserve")
        second = simulator.add_fault("packing-service", "latency", latency_ms=10)
        assert [f["id"] for f in simulator.faults()] == [first, second]

        simulator.remove_fault(first)
        assert [f["id"] for f in simulator.faults()] == [second]
        assert simulator.call("inventory-service", "reserve", {}).status_code == 200

        missing = httpx.delete(f"{simulator.base_url}/faults/{first}")
        assert (missing.status_code, missing.json()["code"]) == (404, "FAULT_NOT_FOUND")

        simulator.clear_faults()
        assert simulator.faults() == []

    def test_a_listed_fault_shows_what_was_injected(self, simulator: SimulatorClient) -> None:
        simulator.add_fault("warehouse-service", "latency", "pick", count=4, rate=0.25,
                            latency_ms=50, match={"orderId": "o-1"})
        [fault] = simulator.faults()
        assert {k: fault[k] for k in ("service", "operation", "kind", "count", "rate",
                                      "latency_ms", "match", "hits", "remaining")} == {
            "service": "warehouse-service", "operation": "pick", "kind": "latency",
            "count": 4, "rate": 0.25, "latency_ms": 50, "match": {"orderId": "o-1"},
            "hits": 0, "remaining": 4}


class TestFaultValidation:
    @pytest.mark.parametrize("body", [
        {"service": "billing-service", "kind": "recoverable"},
        {"service": "inventory-service", "kind": "meltdown"},
        {"service": "inventory-service", "operation": "assign", "kind": "recoverable"},
        {"service": "inventory-service", "kind": "recoverable", "rate": 1.5},
        {"service": "inventory-service", "kind": "recoverable", "rate": -0.1},
        {"service": "inventory-service", "kind": "recoverable", "count": -1},
        {"service": "inventory-service", "kind": "recoverable", "count": 0},
        {"service": "inventory-service", "kind": "latency"},
        {"service": "inventory-service", "kind": "latency", "latency_ms": -5},
        {"service": "inventory-service", "kind": "recoverable", "latencyMs": 100},
        {"service": "inventory-service", "kind": "recoverable", "status": 422},
        {"service": "inventory-service", "kind": "unrecoverable", "status": 503},
        {"service": "inventory-service", "kind": "outage", "status": 500},
        {"service": "inventory-service", "kind": "recoverable", "body": "x"},
        {"kind": "recoverable"},
    ], ids=lambda body: ",".join(f"{k}={v}" for k, v in body.items()))
    def test_rejects_an_invalid_fault_and_changes_nothing(
        self, simulator: SimulatorClient, body: dict[str, Any],
    ) -> None:
        response = post_fault(simulator, body)
        assert response.status_code == 422
        assert response.json()["code"] == "INVALID_REQUEST"
        assert response.json()["message"]
        assert simulator.faults() == []

    def test_accepts_a_fault_with_every_field(self, simulator: SimulatorClient) -> None:
        response = post_fault(simulator, {
            "service": "inventory-service", "operation": "reserve", "kind": "unrecoverable",
            "count": 1, "rate": 1.0, "latency_ms": 0, "match": {"orderId": "o-9"}})
        assert response.status_code == 201
        assert set(response.json()) == {"id"}


class TestCallLog:
    def test_lists_every_call_oldest_first(self, simulator: SimulatorClient) -> None:
        order_id = order()
        simulator.call("inventory-service", "reserve", {"orderId": order_id},
                       idempotency_key="k-1", correlation_id="c-1")
        simulator.add_fault("robotics-service", "recoverable", "assign")
        simulator.call("robotics-service", "assign", {"orderId": order_id})
        simulator.call("inventory-service", "steal", {"orderId": order_id})

        calls = simulator.calls()
        assert [(c["service"], c["operation"], c["idempotency_key"], c["repeated"],
                 c["order_id"], c["status"]) for c in calls] == [
            ("inventory-service", "reserve", "k-1", False, order_id, 200),
            ("robotics-service", "assign", None, False, order_id, 503),
            ("inventory-service", "steal", None, False, order_id, 404),
        ]
        assert calls[0]["correlation_id"] == "c-1"
        assert calls[0]["input"] == {"orderId": order_id}
        assert calls[0]["instance"] == "sim-1"
        assert calls[1]["fault_id"] is not None
        assert calls[0]["at"] <= calls[1]["at"] <= calls[2]["at"]

    def test_filters_by_service_operation_and_order(self, simulator: SimulatorClient) -> None:
        mine, other = order(), order()
        simulator.call("inventory-service", "reserve", {"orderId": mine})
        simulator.call("inventory-service", "release", {"orderId": mine})
        simulator.call("inventory-service", "reserve", {"orderId": other})
        assert len(simulator.calls(order_id=mine)) == 2
        assert len(simulator.calls(operation="reserve")) == 2
        assert len(simulator.calls(service="inventory-service", operation="release")) == 1

    def test_delete_forgets_the_calls(self, simulator: SimulatorClient) -> None:
        simulator.call("inventory-service", "reserve", {})
        response = httpx.delete(f"{simulator.base_url}/calls")
        assert response.json() == {"deleted": 1}
        assert simulator.calls() == []


class TestInstances:
    def test_instances_keep_their_own_state_and_name_themselves(
        self, simulator: SimulatorClient, start_simulator: Callable[..., RunningSimulator],
    ) -> None:
        second = start_simulator("inv-02")
        with SimulatorClient(second.base_url) as other:
            first_answer = simulator.call("inventory-service", "reserve", {}, idempotency_key="k")
            other_answer = other.call("inventory-service", "reserve", {}, idempotency_key="k")
            assert first_answer.json()["instance"] == "sim-1"
            assert other_answer.json()["instance"] == "inv-02"
            assert other_answer.json()["reservationId"] != first_answer.json()["reservationId"]
            assert [c["instance"] for c in other.calls()] == ["inv-02"]
            assert [c["repeated"] for c in simulator.calls()] == [False]


def test_a_fault_can_target_one_sku_inside_an_orders_items(simulator) -> None:
    simulator.add_fault("warehouse-service", "unrecoverable", "pick", match={"sku": "SKU-9"})
    hit = simulator.call("warehouse-service", "pick",
                         {"orderId": "A", "items": [{"sku": "SKU-1"}, {"sku": "SKU-9"}]})
    spared = simulator.call("warehouse-service", "pick",
                            {"orderId": "B", "items": [{"sku": "SKU-1"}]})
    assert hit.status_code == 422
    assert spared.status_code == 200
