"""Real worker processes for end-to-end tests (`wes worker` in a subprocess)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from application.database import Database

ROOT = Path(__file__).resolve().parents[2]


def worker_env(db: Database, simulator_url: str, **extra: str) -> dict[str, str]:
    services = {name: [f"{simulator_url}/{name}"] for name in (
        "inventory-service", "robotics-service", "warehouse-service", "packing-service")}
    env = {**os.environ, "DATABASE_URL": db.dsn, "WES_SCHEMA": db.schema,
           "WES_SERVICES": json.dumps(services), "WES_LOG_JSON": "1",
           "WES_WORKER_LEASE_SECONDS": "1.5", "WES_WORKER_POLL_SECONDS": "0.2",
           "WES_BREAKER_OPEN_SECONDS": "2"}
    env.update(extra)
    return env


def spawn_worker(db: Database, simulator_url: str, concurrency: int = 2,
                 **extra: str) -> subprocess.Popen[bytes]:
    """Starts `wes worker` as its own process."""
    return spawn_wes(db, simulator_url, "worker", "--concurrency", str(concurrency), **extra)


def spawn_wes(db: Database, simulator_url: str, *args: str,
              **extra: str) -> subprocess.Popen[bytes]:
    """Starts `wes <args>` as its own process; its log goes to a temporary file (a pipe
    nobody reads would fill up and stall it)."""
    log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the process
    process = subprocess.Popen(
        [sys.executable, "-m", "cli.main", *args],
        cwd=ROOT, env=worker_env(db, simulator_url, **extra),
        stdout=subprocess.DEVNULL, stderr=log)
    process.log = log  # type: ignore[attr-defined]
    return process


def output(process: subprocess.Popen[bytes]) -> str:
    """What the worker logged so far (for assertion messages)."""
    log = process.log  # type: ignore[attr-defined]
    log.seek(0)
    return log.read().decode(errors="replace")[-4000:]


def stop(process: subprocess.Popen[bytes], timeout: float = 20.0) -> int:
    """SIGTERM (graceful), then SIGKILL if it does not exit in time."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def kill9(process: subprocess.Popen[bytes]) -> None:
    process.kill()
    process.wait()
