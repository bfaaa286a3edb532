"""The seed usage guide's examples (sections 1-5 and 8-11), in Python naming, one class each."""

from __future__ import annotations

import uuid

import pytest

from domain.compensation import CompensationAction
from domain.enums import (
    CompensationStrategy,
    ErrorType,
    StepStatus,
    WorkflowPriority,
    WorkflowStatus,
    WorkflowType,
)
from domain.exceptions import InvalidStepTransition, InvalidTransition
from domain.retry_policy import RetryPolicy
from domain.step import StepResult, StepSpec
from domain.workflow import Workflow
from domain.workflow_error import WorkflowError
from tests.unit.sagas import (
    ASSIGN,
    NOW,
    ORDER_ID,
    PACK,
    PICK,
    RESERVE,
    completed_through,
    emitted,
    executing_workflow,
    ms,
    order_fulfillment_steps,
    pending_workflow,
    recoverable,
    replay,
    run_step,
    saved,
    unchanged,
    unrecoverable,
)


class TestSection1CreatingAndStartingAWorkflow:
    """Build the workflow instance, then start the saga: WorkflowStartedEvent."""

    def test_created_workflow_waits_in_pending_with_the_guide_fields(self) -> None:
        wf_id = uuid.uuid5(uuid.NAMESPACE_URL, "wf-001")

        workflow = Workflow.create(
            workflow_id=wf_id,
            definition_id="order-fulfillment-v1",
            name="Order Fulfillment",
            workflow_type=WorkflowType.ORDER_FULFILLMENT,
            priority=WorkflowPriority.HIGH,
            steps=order_fulfillment_steps(),
            max_retries=3,
            input={"orderId": "ORD-12345"},
            triggered_by="system",
            correlation_id="corr-001",
            now=NOW,
        )

        assert workflow.id == wf_id
        assert workflow.status == WorkflowStatus.PENDING
        assert workflow.definition_id == "order-fulfillment-v1"
        assert workflow.name == "Order Fulfillment"
        assert workflow.workflow_type == WorkflowType.ORDER_FULFILLMENT
        assert workflow.priority == WorkflowPriority.HIGH
        assert workflow.max_retries == 3
        assert workflow.input == {"orderId": "ORD-12345"}
        assert workflow.triggered_by == "system"
        assert workflow.correlation_id == "corr-001"
        assert list(workflow.steps) == [RESERVE, ASSIGN, PICK, PACK]
        assert all(s.status == StepStatus.PENDING for s in workflow.steps.values())
        assert workflow.executed_steps == []
        assert workflow.compensated_steps == []
        assert workflow.errors == []
        assert workflow.created_at == NOW
        assert emitted(workflow) == ["Created"]

    def test_start_saga_emits_started_and_moves_to_executing(self) -> None:
        workflow = pending_workflow(correlation_id="corr-001")
        started_at = NOW + ms(250)

        workflow.start(started_at)

        events = workflow.collect_events()
        assert [type(e).__name__ for e in events] == ["Started"]
        assert events[0].correlation_id == "corr-001"
        assert events[0].timestamp == started_at
        assert workflow.status == WorkflowStatus.EXECUTING
        assert workflow.started_at == started_at
        assert workflow.is_active

    def test_a_saga_cannot_be_started_twice(self) -> None:
        workflow = executing_workflow()

        with unchanged(workflow), pytest.raises(InvalidTransition, match="cannot start while EXECUTING"):
            workflow.start(NOW)


class TestSection2ExecutingWorkflowSteps:
    """start_step, call the service, then record_step_result: WorkflowStepExecutedEvent."""

    def test_starting_a_step_resolves_its_input_and_sets_a_deadline(self) -> None:
        workflow = executing_workflow()

        workflow.start_step(RESERVE, NOW)

        step = workflow.step(RESERVE)
        assert emitted(workflow) == ["StepStarted"]
        assert step.status == StepStatus.EXECUTING
        assert step.attempts == 1
        assert step.input_data == {"orderId": ORDER_ID}
        assert step.deadline == NOW + ms(5000)
        assert workflow.current_step_id == RESERVE

    def test_execute_step_records_the_result_and_completes_the_step(self) -> None:
        workflow = executing_workflow()
        workflow.start_step(RESERVE, NOW)
        saved(workflow)
        result = StepResult.success(RESERVE, {"inventoryReserved": True, "quantity": 10}, 1500)

        workflow.record_step_result(RESERVE, result, NOW + ms(1500))

        step = workflow.step(RESERVE)
        assert emitted(workflow) == ["StepExecuted"]
        assert step.status == StepStatus.COMPLETED
        assert step.output == {"inventoryReserved": True, "quantity": 10}
        assert step.duration_ms == 1500
        assert step.completed_at == NOW + ms(1500)
        assert workflow.executed_steps == [RESERVE]
        assert workflow.current_step_id == ASSIGN
        assert workflow.progress_percentage == 25.0

    def test_a_later_step_can_use_an_earlier_steps_output(self) -> None:
        steps = [
            {"step_id": RESERVE, "service": "inventory-service", "operation": "reserve",
             "input": {"orderId": "${input.orderId}"}},
            {"step_id": ASSIGN, "service": "robotics-service", "operation": "assign",
             "input": {"reservation": "${steps.reserve-inventory.reservationId}",
                       "label": "order-${input.orderId}"}},
        ]
        workflow = executing_workflow(steps)
        run_step(workflow, RESERVE, output={"reservationId": "res-12345"})

        workflow.start_step(ASSIGN, NOW + ms(2000))

        assert workflow.step(ASSIGN).input_data == {"reservation": "res-12345",
                                                    "label": f"order-{ORDER_ID}"}


class TestSection3HandlingStepFailuresWithRetry:
    """handle_step_failure: retry up to 3 times with 1 s, 2 s, 4 s backoff, then fail the saga."""

    def test_recoverable_failure_schedules_retries_at_1s_2s_4s_then_fails_the_saga(self) -> None:
        workflow = completed_through(RESERVE)
        error = WorkflowError.create(
            ASSIGN, "inventory-service", "INVENTORY_UNAVAILABLE",
            "Insufficient inventory for product SKU-12345",
            "BUSINESS_RULE_VIOLATION", True,
        )
        now = NOW + ms(10_000)
        delays = []
        for _ in range(3):
            workflow.start_step(ASSIGN, now)
            decision = workflow.handle_step_failure(ASSIGN, error, now)
            assert emitted(workflow) == ["StepStarted", "StepFailed", "StepRetryScheduled"]
            assert decision.decision == "retry"
            delays.append(decision.delay_ms)
            now += ms(decision.delay_ms or 0)

        workflow.start_step(ASSIGN, now)
        decision = workflow.handle_step_failure(ASSIGN, error, now)

        assert delays == [1000, 2000, 4000]
        assert decision.decision == "fail"
        assert emitted(workflow) == ["StepStarted", "StepFailed", "Failed", "CompensationStarted"]
        assert workflow.status == WorkflowStatus.COMPENSATING
        assert workflow.step(ASSIGN).attempts == 4
        assert workflow.compensation_queue == [RESERVE]


class TestSection4SagaCompensation:
    """failSaga on an unrecoverable error, then compensate completed steps in reverse order."""

    def test_fail_saga_compensates_completed_steps_in_reverse_order(self) -> None:
        workflow = completed_through(RESERVE, ASSIGN)
        workflow.start_step(PICK, NOW + ms(5000))
        saved(workflow)
        critical_error = WorkflowError.create(
            PICK, "robotics-service", "ROBOT_UNAVAILABLE", "All robots are offline",
            ErrorType.SERVICE_UNAVAILABLE, False,
        )

        workflow.fail(critical_error, NOW + ms(6000))
        failing_events = emitted(workflow)
        undone = []
        for step in workflow.steps_requiring_compensation():
            action = workflow.get_compensation_action(step.step_id)
            undone.append((step.step_id, action.operation))
            workflow.mark_step_compensated(step.step_id, NOW + ms(7000))
        compensation_events = emitted(workflow)
        workflow.complete_compensation(NOW + ms(8000))

        assert failing_events == ["StepFailed", "Failed", "CompensationStarted"]
        assert undone == [(ASSIGN, "unassign"), (RESERVE, "release")]
        assert emitted(workflow) == ["CompensationCompleted"]
        assert compensation_events == ["StepCompensationStarted", "StepCompensated"] * 2
        assert workflow.status == WorkflowStatus.COMPENSATED
        assert workflow.compensated_steps == [ASSIGN, RESERVE]
        assert workflow.finished_at == NOW + ms(8000)

    def test_fail_saga_on_the_running_step_records_that_step_as_failed(self) -> None:
        workflow = completed_through(RESERVE, ASSIGN)
        workflow.start_step(PICK, NOW + ms(5000))
        saved(workflow)

        workflow.fail(unrecoverable(PICK), NOW + ms(6000))

        assert emitted(workflow) == ["StepFailed", "Failed", "CompensationStarted"]
        assert workflow.step(PICK).status == StepStatus.FAILED
        assert len(workflow.errors) == 1

    def test_after_compensating_a_saga_failed_mid_step_it_can_be_retried(self) -> None:
        workflow = completed_through(RESERVE, ASSIGN)
        workflow.start_step(PICK, NOW + ms(5000))
        workflow.fail(unrecoverable(PICK), NOW + ms(6000))
        for step in workflow.steps_requiring_compensation():
            workflow.mark_step_compensated(step.step_id, NOW + ms(7000))
        workflow.complete_compensation(NOW + ms(8000))
        saved(workflow)

        workflow.retry(NOW + ms(9000))

        assert emitted(workflow) == ["Retried"]
        assert workflow.status == WorkflowStatus.EXECUTING
        assert workflow.current_step_id == RESERVE

    def test_mark_step_compensated_without_starting_it_records_both_events(self) -> None:
        workflow = completed_through(RESERVE)
        workflow.fail(unrecoverable(ASSIGN), NOW + ms(2000))
        saved(workflow)

        workflow.mark_step_compensated(RESERVE, NOW + ms(3000), output={"released": True})

        events = workflow.collect_events()
        assert [type(e).__name__ for e in events] == ["StepCompensationStarted",
                                                      "StepCompensated"]
        assert events[0].operation == "release"
        assert events[0].attempt == 1
        assert workflow.step(RESERVE).status == StepStatus.COMPENSATED
        assert workflow.step(RESERVE).compensation_output == {"released": True}

    def test_a_step_cannot_be_marked_compensated_twice(self) -> None:
        workflow = completed_through(RESERVE)
        workflow.fail(unrecoverable(ASSIGN), NOW + ms(2000))
        workflow.mark_step_compensated(RESERVE, NOW + ms(3000))
        saved(workflow)

        with unchanged(workflow), pytest.raises(InvalidStepTransition,
                                                match="cannot mark compensated while COMPENSATED"):
            workflow.mark_step_compensated(RESERVE, NOW + ms(4000))


class TestSection5ConfiguringCompensationActions:
    """A step's compensation action, and the four strategies."""

    def test_reserve_inventory_step_is_undone_by_release_inventory(self) -> None:
        step = StepSpec(
            step_id="reserve-inventory",
            name="Reserve Inventory",
            service="inventory-service",
            operation="reserveInventory",
            execution_order=1,
            input={"sku": "SKU-12345", "quantity": 10},
            timeout_ms=5000,
            retry_policy=RetryPolicy.default(),
            compensation=CompensationAction.reverse_operation(
                "reserve-inventory", "inventory-service", "releaseInventory",
                {"reservationId": "res-12345"},
            ),
        )

        action = step.compensation
        assert action is not None
        assert action.strategy == CompensationStrategy.REVERSE_OPERATION
        assert (action.step_id, action.service, action.operation) == (
            "reserve-inventory", "inventory-service", "releaseInventory")
        assert action.request_body() == {"reservationId": "res-12345"}
        assert (action.idempotent, action.max_retries, action.timeout_ms) == (True, 3, 5000)

    def test_step_defaults_are_5s_timeout_and_the_default_retry_policy(self) -> None:
        step = StepSpec("pick", "Pick", "warehouse-service", "pick", 1)

        assert step.timeout_ms == 5000
        assert step.retry_policy == RetryPolicy(3, 1000, 10000, 2.0, True)
        assert step.compensation is None

    def test_delete_created_calls_delete_with_the_created_resource_id(self) -> None:
        action = CompensationAction.delete_created("create-label", "shipping-service", "lbl-7")

        assert action.strategy == CompensationStrategy.DELETE_CREATED
        assert action.operation == "delete"
        assert action.request_body() == {"resourceId": "lbl-7"}

    def test_restore_state_calls_restore_with_the_snapshot(self) -> None:
        action = CompensationAction.restore_state(
            "adjust-stock", "inventory-service", {"sku": "SKU-1", "onHand": 42})

        assert action.strategy == CompensationStrategy.RESTORE_STATE
        assert action.operation == "restore"
        assert action.request_body() == {"snapshot": {"sku": "SKU-1", "onHand": 42}}

    def test_custom_compensation_names_its_own_operation(self) -> None:
        action = CompensationAction.custom("gift-wrap", "vas-service", "notify-supervisor",
                                           {"level": 2})

        assert action.strategy == CompensationStrategy.CUSTOM
        assert action.operation == "notify-supervisor"
        assert action.request_body() == {"level": 2}

    def test_compensation_action_is_immutable(self) -> None:
        params = {"reservationId": "res-1"}
        action = CompensationAction.reverse_operation("r", "inventory-service", "release", params)
        params["reservationId"] = "changed"

        assert action.parameters["reservationId"] == "res-1"
        with pytest.raises(TypeError):
            action.parameters["reservationId"] = "res-2"  # type: ignore[index]

    def test_compensation_parameters_resolve_against_input_and_the_steps_output(self) -> None:
        steps = [{
            "step_id": RESERVE, "service": "inventory-service", "operation": "reserve",
            "compensation": {"operation": "release", "parameters": {
                "reservationId": "${steps.reserve-inventory.reservationId}",
                "orderId": "${input.orderId}",
            }},
        }]
        workflow = executing_workflow(steps)
        run_step(workflow, RESERVE, output={"reservationId": "res-12345"})

        assert workflow.compensation_request(RESERVE) == {"reservationId": "res-12345",
                                                          "orderId": ORDER_ID}

    def test_only_steps_with_a_compensation_action_require_compensation(self) -> None:
        steps = [
            {"step_id": RESERVE, "service": "inventory-service", "operation": "reserve",
             "compensation": {"operation": "release"}},
            {"step_id": "notify", "service": "notification-service", "operation": "send"},
        ]
        workflow = executing_workflow(steps)
        run_step(workflow, RESERVE)
        run_step(workflow, "notify", NOW + ms(2000))

        assert [s.step_id for s in workflow.steps_requiring_compensation()] == [RESERVE]
        with pytest.raises(InvalidStepTransition, match="no compensation action"):
            workflow.get_compensation_action("notify")


class TestSection8WorkflowControlOperations:
    """pause, resume, cancel and retry, each with its event."""

    def test_pause_and_resume(self) -> None:
        workflow = executing_workflow()

        workflow.pause(NOW + ms(100), reason="shift change")
        assert workflow.status == WorkflowStatus.PAUSED
        assert workflow.paused_reason == "shift change"
        workflow.resume(NOW + ms(200))

        assert emitted(workflow) == ["Paused", "Resumed"]
        assert workflow.status == WorkflowStatus.EXECUTING
        assert workflow.paused_reason is None

    def test_a_paused_workflow_starts_no_new_step(self) -> None:
        workflow = executing_workflow()
        workflow.pause(NOW)
        saved(workflow)

        with unchanged(workflow), pytest.raises(InvalidTransition, match="while PAUSED"):
            workflow.start_step(RESERVE, NOW)

    def test_a_step_running_when_paused_still_records_its_outcome(self) -> None:
        workflow = executing_workflow()
        workflow.start_step(RESERVE, NOW)
        workflow.pause(NOW + ms(10))
        saved(workflow)

        workflow.record_step_result(RESERVE, StepResult.success(RESERVE, {}, 100), NOW + ms(100))

        assert emitted(workflow) == ["StepExecuted"]
        assert workflow.status == WorkflowStatus.PAUSED

    def test_cancel_records_the_reason(self) -> None:
        workflow = executing_workflow()

        workflow.cancel(NOW + ms(100), "Cancelled by user")

        assert emitted(workflow) == ["Cancelled"]
        assert workflow.status == WorkflowStatus.CANCELLED
        assert workflow.cancel_reason == "Cancelled by user"
        assert workflow.finished_at == NOW + ms(100)

    def test_cancel_with_compensation_undoes_completed_steps(self) -> None:
        workflow = completed_through(RESERVE, ASSIGN)

        workflow.cancel(NOW + ms(5000), "Cancelled by user", compensate=True)

        assert emitted(workflow) == ["Cancelled", "CompensationStarted"]
        assert workflow.status == WorkflowStatus.COMPENSATING
        assert workflow.compensation_queue == [ASSIGN, RESERVE]

    def test_retry_while_retry_count_below_max_retries(self) -> None:
        workflow = executing_workflow(max_retries=2)
        now = NOW
        for expected_count in (1, 2):
            workflow.cancel(now, "operator mistake")
            workflow.retry(now + ms(1))
            assert workflow.retry_count == expected_count
            now += ms(1000)
        workflow.cancel(now, "operator mistake")
        assert emitted(workflow) == ["Cancelled", "Retried"] * 2 + ["Cancelled"]
        assert workflow.retry_count == workflow.max_retries

        with unchanged(workflow), pytest.raises(InvalidTransition,
                                                match="retry count 2 has reached max retries 2"):
            workflow.retry(now + ms(1))


class TestSection9MonitoringWorkflowProgress:
    """progress, active, terminal, timed out, current step and compensation progress."""

    def test_progress_counts_completed_steps_out_of_all_steps(self) -> None:
        workflow = executing_workflow()
        progress = [workflow.progress_percentage]
        for offset, step_id in enumerate((RESERVE, ASSIGN, PICK, PACK)):
            run_step(workflow, step_id, NOW + ms(1000 * offset))
            progress.append(workflow.progress_percentage)

        assert progress == [0.0, 25.0, 50.0, 75.0, 100.0]

    def test_active_and_terminal_follow_the_status(self) -> None:
        workflow = pending_workflow()
        seen = [(workflow.status, workflow.is_active, workflow.is_terminal)]
        workflow.start(NOW)
        seen.append((workflow.status, workflow.is_active, workflow.is_terminal))
        workflow.pause(NOW)
        seen.append((workflow.status, workflow.is_active, workflow.is_terminal))
        workflow.cancel(NOW)
        seen.append((workflow.status, workflow.is_active, workflow.is_terminal))

        assert seen == [
            (WorkflowStatus.PENDING, False, False),
            (WorkflowStatus.EXECUTING, True, False),
            (WorkflowStatus.PAUSED, True, False),
            (WorkflowStatus.CANCELLED, False, True),
        ]

    def test_compensating_is_active_and_compensated_is_terminal(self) -> None:
        workflow = completed_through(RESERVE)
        workflow.fail(unrecoverable(ASSIGN), NOW + ms(2000))
        assert (workflow.is_active, workflow.is_terminal) == (True, False)

        workflow.mark_step_compensated(RESERVE, NOW + ms(3000))
        workflow.complete_compensation(NOW + ms(3000))

        assert (workflow.is_active, workflow.is_terminal) == (False, True)

    def test_has_timed_out_after_the_given_time_since_start(self) -> None:
        workflow = pending_workflow()
        assert not workflow.has_timed_out(300_000, NOW + ms(10_000_000))
        workflow.start(NOW)

        assert not workflow.has_timed_out(300_000, NOW + ms(300_000))
        assert workflow.has_timed_out(300_000, NOW + ms(300_001))

    def test_a_terminal_workflow_never_times_out(self) -> None:
        workflow = executing_workflow()
        workflow.cancel(NOW + ms(1))

        assert not workflow.has_timed_out(300_000, NOW + ms(10_000_000))

    def test_current_step_is_the_running_one_else_the_next_one(self) -> None:
        workflow = executing_workflow()
        seen = [workflow.current_step_id]
        run_step(workflow, RESERVE)
        seen.append(workflow.current_step_id)
        workflow.start_step(ASSIGN, NOW + ms(2000))
        seen.append(workflow.current_step_id)
        workflow.record_step_result(ASSIGN, StepResult.success(ASSIGN, {}, 1), NOW + ms(2001))
        run_step(workflow, PICK, NOW + ms(3000))
        run_step(workflow, PACK, NOW + ms(5000))
        seen.append(workflow.current_step_id)

        assert seen == [RESERVE, ASSIGN, ASSIGN, None]

    def test_compensation_progress_is_compensated_over_executed(self) -> None:
        workflow = completed_through(RESERVE, ASSIGN)
        workflow.fail(unrecoverable(PICK), NOW + ms(5000))
        progress = [workflow.compensation_progress]
        for step in workflow.steps_requiring_compensation():
            workflow.mark_step_compensated(step.step_id, NOW + ms(6000))
            progress.append(workflow.compensation_progress)

        assert progress == [0.0, 50.0, 100.0]

    def test_compensation_progress_is_100_when_nothing_was_executed(self) -> None:
        workflow = executing_workflow()

        assert workflow.compensation_progress == 100.0


class TestSection10WorkflowLifecycleStates:
    """Each arrow of the guide's state diagram, taken by its command."""

    def test_pending_executing_completed(self) -> None:
        workflow = pending_workflow()
        path = [workflow.status]
        workflow.start(NOW)
        path.append(workflow.status)
        for offset, step_id in enumerate((RESERVE, ASSIGN, PICK, PACK)):
            run_step(workflow, step_id, NOW + ms(1000 * offset))
        workflow.complete(NOW + ms(5000))
        path.append(workflow.status)

        assert path == [WorkflowStatus.PENDING, WorkflowStatus.EXECUTING, WorkflowStatus.COMPLETED]
        assert workflow.finished_at == NOW + ms(5000)

    def test_executing_paused_executing(self) -> None:
        workflow = executing_workflow()
        workflow.pause(NOW)
        paused = workflow.status
        workflow.resume(NOW)

        assert (paused, workflow.status) == (WorkflowStatus.PAUSED, WorkflowStatus.EXECUTING)

    def test_executing_failed_compensating_compensated(self) -> None:
        workflow = Workflow.create(steps=order_fulfillment_steps(), now=NOW,
                                   input={"orderId": ORDER_ID})
        workflow.start(NOW)
        run_step(workflow, RESERVE)
        workflow.fail(unrecoverable(ASSIGN), NOW + ms(2000))
        workflow.mark_step_compensated(RESERVE, NOW + ms(3000))
        workflow.complete_compensation(NOW + ms(4000))
        history = workflow.collect_events()

        path = []
        for version in range(1, len(history) + 1):
            status = replay(history[:version]).status
            if not path or path[-1] != status:
                path.append(status)

        assert path == [WorkflowStatus.PENDING, WorkflowStatus.EXECUTING, WorkflowStatus.FAILED,
                        WorkflowStatus.COMPENSATING, WorkflowStatus.COMPENSATED]

    def test_executing_cancelled(self) -> None:
        workflow = executing_workflow()

        workflow.cancel(NOW, "Cancelled by user")

        assert workflow.status == WorkflowStatus.CANCELLED

    def test_a_completed_workflow_cannot_be_paused(self) -> None:
        workflow = completed_through(RESERVE, ASSIGN, PICK, PACK)
        workflow.complete(NOW + ms(9000))
        saved(workflow)

        with unchanged(workflow), pytest.raises(InvalidTransition, match="cannot pause while COMPLETED"):
            workflow.pause(NOW + ms(9001))


class TestSection11RetryPolicyConfiguration:
    """The three presets, a custom policy and calculate_delay."""

    def test_default_policy(self) -> None:
        policy = RetryPolicy.default()

        assert (policy.max_retries, policy.initial_delay_ms, policy.multiplier) == (3, 1000, 2.0)
        assert [policy.calculate_delay(n) for n in range(3)] == [1000, 2000, 4000]

    def test_aggressive_policy_has_five_faster_retries(self) -> None:
        policy = RetryPolicy.aggressive()

        assert (policy.max_retries, policy.initial_delay_ms, policy.max_delay_ms,
                policy.multiplier) == (5, 500, 5000, 1.5)

    def test_conservative_policy_has_two_slower_retries(self) -> None:
        policy = RetryPolicy.conservative()

        assert (policy.max_retries, policy.initial_delay_ms, policy.max_delay_ms,
                policy.multiplier) == (2, 2000, 20000, 3.0)

    def test_custom_policy_second_retry_waits_18_seconds(self) -> None:
        custom_policy = RetryPolicy(max_retries=5, initial_delay_ms=2000, max_delay_ms=30000,
                                    multiplier=3.0, exponential=True)

        delay = custom_policy.calculate_delay(2)

        assert delay == 18000  # 2000 * 3^2

    def test_a_step_uses_its_own_policy_for_the_retry_delay(self) -> None:
        workflow = executing_workflow(order_fulfillment_steps(RetryPolicy.conservative()))
        workflow.start_step(RESERVE, NOW)

        decision = workflow.handle_step_failure(RESERVE, recoverable(RESERVE), NOW + ms(100))

        assert decision.delay_ms == 2000
        assert workflow.step(RESERVE).next_attempt_at == NOW + ms(2100)
