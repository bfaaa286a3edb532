"""Fixtures of this directory: the simulated warehouse services (tests/conftest_simulator.py)."""

from tests.conftest_simulator import (  # noqa: F401
    service_registry,
    simulator,
    simulator_server,
    simulator_url,
    start_simulator,
)
