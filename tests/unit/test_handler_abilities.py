"""The handler port's optional abilities: present ones are used, absent ones default."""

from __future__ import annotations

from application.engine.dispatch import Dispatcher
from application.engine.ports import StepCall, StepOutcome
from application.engine.python_handler import PYTHON_INSTANCE, PythonHandler


class CallOnly:
    """A remote handler with no ability beyond the call."""

    def __call__(self, call: StepCall) -> StepOutcome:
        return StepOutcome.success({}, 0)


class Routing(CallOnly):
    """A remote handler that routes ahead and knows when a service is saturated."""

    def __init__(self) -> None:
        self.released: list[str] = []

    def reserve(self, service: str) -> str:
        return f"{service}-1"

    def release(self, instance: str, service: str) -> None:
        self.released.append(instance)

    def unavailable_for(self, service: str) -> float | None:
        return 1.5


def python_with(service: str) -> PythonHandler:
    python = PythonHandler()
    python.register(service, lambda call: {})
    return python


class TestAHandlerWithoutAbilities:
    def test_a_python_handler_routes_nothing_ahead_and_never_holds_a_call_back(self) -> None:
        python = python_with("inventory-service")
        assert python.reserve("inventory-service", "reserve") is None
        assert python.unavailable_for("inventory-service") is None
        assert python.is_local("inventory-service", "reserve") is False

    def test_a_dispatcher_over_a_call_only_remote_answers_with_the_defaults(self) -> None:
        dispatcher = Dispatcher(PythonHandler(), CallOnly())
        assert dispatcher.reserve("packing-service", "pack") is None
        assert dispatcher.unavailable_for("packing-service") is None
        dispatcher.release("packing-1", "packing-service")  # nothing to give back to


class TestAHandlerWithAbilities:
    def test_a_dispatcher_uses_the_remote_routing_and_backpressure(self) -> None:
        remote = Routing()
        dispatcher = Dispatcher(PythonHandler(), remote)
        assert dispatcher.reserve("packing-service", "pack") == "packing-service-1"
        assert dispatcher.unavailable_for("packing-service") == 1.5
        dispatcher.release("packing-service-1", "packing-service")
        assert remote.released == ["packing-service-1"]

    def test_a_python_step_is_reserved_as_python_and_never_given_back_to_the_remote(
            self) -> None:
        remote = Routing()
        dispatcher = Dispatcher(python_with("inventory-service"), remote)
        assert dispatcher.reserve("inventory-service", "reserve") == PYTHON_INSTANCE
        dispatcher.release(PYTHON_INSTANCE, "inventory-service")
        assert remote.released == []
