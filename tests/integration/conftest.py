"""Fixtures of this directory: the simulated warehouse services, and the projected mixed history."""

from collections.abc import Iterator

import pytest

from application.database import Database
from projections.read_models import ProjectionViews
from tests.conftest_simulator import (  # noqa: F401
    service_registry,
    simulator,
    simulator_server,
    simulator_url,
    start_simulator,
)
from tests.support.projection_history import Projected, live_projection


@pytest.fixture(scope="module")
def projected(server: Database) -> Iterator[Projected]:
    """The mixed history of tests/support/projection_history.py, projected live once for
    the read-only tests of one module."""
    with live_projection(server) as done:
        yield done


@pytest.fixture
def models(projected: Projected) -> ProjectionViews:
    """The read models of that history (a module may define its own `models`)."""
    return projected.models
