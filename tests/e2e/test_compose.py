"""docker-compose.yml is validated (there is no Docker engine to run it here)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = shutil.which("docker-compose")

# .ci/run installs Debian's docker-compose, which validates files without an engine.
pytestmark = pytest.mark.skipif(COMPOSE is None, reason="docker-compose is not installed")


def compose(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([COMPOSE or "docker-compose", "-f", str(ROOT / "docker-compose.yml"),
                           *args], capture_output=True, text=True, timeout=60, cwd=ROOT,
                          check=False)


def test_the_compose_file_is_valid():
    result = compose("config", "-q")
    assert result.returncode == 0, result.stderr


def test_postgres_api_workers_projector_and_services_run_as_separate_services():
    result = compose("config", "--services")
    assert result.returncode == 0, result.stderr
    assert set(result.stdout.split()) == {"postgres", "api", "worker", "projector", "services",
                                          "nats", "relay"}
    config = compose("config").stdout
    assert "wes worker" in config or "- worker" in config
    assert "projections" in config and "DATABASE_URL" in config


def test_the_relay_publishes_to_the_nats_service_with_jetstream():
    config = compose("config").stdout
    assert "nats:2" in config and "-js" in config
    assert "WES_NATS_URL: nats://nats:4222" in config
