"""Real `wes` processes for end-to-end and browser tests: `wes worker` in a subprocess, and
`wes serve` on a free port until a block ends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TypeVar

import httpx

from application.database import Database
from cli.background import free_port

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


class Served:
    """A `wes serve` process on a port of its own, its output in a temporary file."""

    def __init__(self, process: subprocess.Popen[bytes], log: IO[bytes], port: int) -> None:
        self.process = process
        self.log = log
        self.port = port
        self.url = f"http://127.0.0.1:{port}"

    def output(self) -> str:
        """The last of what it printed (for assertion messages)."""
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-4000:]


ServedT = TypeVar("ServedT", bound=Served)


@contextmanager
def serving_process(kind: type[ServedT], env: Mapping[str, str], *args: str,
                    timeout: float = 60.0) -> Iterator[ServedT]:
    """Runs `wes serve --port <free> <args>` with `env` until the block ends (SIGTERM, then
    SIGKILL after 20 s), as a `kind`; waits until `/healthz` answers, or fails with its
    output."""
    port = free_port()
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "serve", "--port", str(port), *args],
            cwd=ROOT, env=dict(env), stdout=log, stderr=subprocess.STDOUT)
        running = kind(process, log, port)
        try:
            wait_until_up(running, timeout)
            yield running
        finally:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def wait_until_up(running: Served, timeout: float = 60.0) -> None:
    """Until the server's `/healthz` answers 200; fails if the process ends or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{running.url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if running.process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"wes serve did not start:\n{running.output()}")
        time.sleep(0.1)
