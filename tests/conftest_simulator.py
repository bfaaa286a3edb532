"""Fixtures for tests that need the simulated warehouse services over real HTTP.

Register them in a directory's conftest.py with
`from tests.conftest_simulator import simulator, simulator_server, ...  # noqa: F401`
(tests/integration/conftest.py does).

- `simulator_server`: one simulator for the session, in a background thread on a free port.
- `simulator`: a `SimulatorClient` on it, with no faults, no calls in flight and an empty
  call log at the start of the test.
- `simulator_url`: its base URL; `service_registry`: a `ServiceRegistry` pointing at it.
- `start_simulator`: starts more instances (`start_simulator("inv-02")`), stopped afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from application.engine.registry import ServiceRegistry
from simulator.background import RunningSimulator
from simulator.background import start_simulator as start_in_background
from simulator.client import SimulatorClient

SIMULATOR_SEED = 1234


@pytest.fixture(scope="session")
def simulator_server() -> Iterator[RunningSimulator]:
    """The session's simulator (instance id "sim-1", fault coins seeded)."""
    running = start_in_background("sim-1", seed=SIMULATOR_SEED)
    yield running
    running.stop()


@pytest.fixture
def simulator(simulator_server: RunningSimulator) -> Iterator[SimulatorClient]:
    """A client on the session's simulator, reset (no faults, no calls) for this test."""
    with SimulatorClient(simulator_server.base_url) as client:
        client.reset()
        yield client
        # Calls a latency fault still holds would land in the next test's call log.
        client.reset()


@pytest.fixture
def simulator_url(simulator: SimulatorClient) -> str:
    """The reset simulator's base URL."""
    return simulator.base_url


@pytest.fixture
def service_registry(simulator_url: str) -> ServiceRegistry:
    """Every simulated service on the session's simulator."""
    return ServiceRegistry.simulated(simulator_url)


@pytest.fixture
def start_simulator() -> Iterator[Callable[..., RunningSimulator]]:
    """Starts extra simulator instances for one test: `start_simulator("inv-02", seed=7)`."""
    started: list[RunningSimulator] = []

    def start(instance_id: str, *, seed: int | None = None) -> RunningSimulator:
        running = start_in_background(instance_id, seed=seed)
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()
