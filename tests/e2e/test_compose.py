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
    assert {"postgres", "api", "worker", "projector", "services", "nats", "relay",
            "readmodels", "readmodels-replica"} <= set(result.stdout.split())
    config = compose("config").stdout
    assert "wes worker" in config or "- worker" in config
    assert "projections" in config and "DATABASE_URL" in config


def test_the_relay_publishes_to_the_nats_service_with_jetstream():
    config = compose("config").stdout
    assert "nats:2" in config and "-js" in config
    assert "WES_NATS_URL: nats://nats:4222" in config


def test_read_models_have_their_own_server_and_a_standby_the_api_queries():
    import yaml

    result = compose("config")
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    assert {"readmodels", "readmodels-replica"} <= set(services)
    replica = services["readmodels-replica"]
    assert "pg_basebackup -h readmodels" in " ".join(replica["entrypoint"])
    assert "-R" in " ".join(replica["entrypoint"]).split()
    api = services["api"]["environment"]
    assert api["WES_QUERY_DATABASE_URLS"].endswith("@readmodels-replica:5432/wes")
    for name in ("api", "worker", "projector"):
        env = services[name]["environment"]
        assert env["WES_READ_MODEL_DATABASE_URL"].endswith("@readmodels:5432/wes"), name
        assert env["DATABASE_URL"].endswith("@postgres:5432/wes"), name
    assert services["api"]["deploy"]["replicas"] >= 2
    # `--scale worker=N` needs a worker without a fixed name or host port.
    assert "container_name" not in services["worker"] and "ports" not in services["worker"]
