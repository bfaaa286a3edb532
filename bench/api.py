"""Figure `api`: GET one workflow's progress, 32 concurrent clients, vs a bare route.

The API runs in a uvicorn process of its own (`bench.api_server`) on the engine figure's
workflows, with the read models up to date. A small keep-alive HTTP/1.1 load generator
(asyncio, one connection per client) alternates rounds against `GET /v1/workflows/{id}`
(random ids) and against a bare FastAPI route returning a constant in the same server.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from uuid import UUID

import httpx

from application.database import Database
from bench.api_server import CONSTANT_PATH
from bench.pg import database_url
from bench.report import Figure, median, percentile, ratio

CLIENTS = 32
TARGET_RATIO = 0.5
TARGET_P99_MS = 25.0


async def _client(host: str, port: int, paths: list[str], deadline: float,
                  latencies: list[float], errors: list[int]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    rng = random.Random()
    try:
        while time.perf_counter() < deadline:
            path = paths[rng.randrange(len(paths))]
            began = time.perf_counter()
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - began)
            if status != 200:
                errors.append(status)
    finally:
        writer.close()


async def _load(host: str, port: int, paths: list[str], seconds: float
                ) -> tuple[float, list[float], list[int]]:
    latencies: list[float] = []
    errors: list[int] = []
    deadline = time.perf_counter() + seconds
    began = time.perf_counter()
    await asyncio.gather(*(_client(host, port, paths, deadline, latencies, errors)
                           for _ in range(CLIENTS)))
    return len(latencies) / (time.perf_counter() - began), latencies, errors


def load(host: str, port: int, paths: list[str], seconds: float
         ) -> tuple[float, list[float], list[int]]:
    """Requests per second, latencies (seconds) and non-200 statuses of one round."""
    try:
        import uvloop

        return uvloop.run(_load(host, port, paths, seconds))
    except ImportError:  # pragma: no cover - uvicorn[standard] brings uvloop
        return asyncio.run(_load(host, port, paths, seconds))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def measure(db: Database, workflow_ids: list[UUID], *, seconds: float, rounds: int,
            extra_env: Mapping[str, str] | None = None) -> Figure:
    """The figure; `extra_env` configures the API process (e.g. where its read models are)."""
    port = _free_port()
    env = {**os.environ, "DATABASE_URL": database_url(db), **(extra_env or {})}
    server = subprocess.Popen([sys.executable, "-m", "bench.api_server", str(port), db.schema],
                              env=env)
    try:
        _wait_ready(port, server)
        paths = [f"/v1/workflows/{i}" for i in workflow_ids]
        load("127.0.0.1", port, paths, min(seconds, 0.5))  # warm up
        api_rates, bare_rates, api_lat, bare_lat, errors = [], [], [], [], []
        for _ in range(rounds):
            rate, lat, _errors = load("127.0.0.1", port, [CONSTANT_PATH], seconds)
            bare_rates.append(rate)
            bare_lat += lat
            rate, lat, errs = load("127.0.0.1", port, paths, seconds)
            api_rates.append(rate)
            api_lat += lat
            errors += errs
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
    value, baseline = median(api_rates), median(bare_rates)
    r = ratio(value, baseline)
    p99 = percentile(api_lat, 99) * 1000
    return Figure(
        "api", value, "requests/s", baseline, r,
        f"ratio >= {TARGET_RATIO}, p99 <= {TARGET_P99_MS:.0f} ms",
        baseline_name=f"bare FastAPI route returning a constant, same server, {CLIENTS} clients",
        met=r is not None and r >= TARGET_RATIO and p99 <= TARGET_P99_MS and not errors,
        details={"clients": CLIENTS, "rounds": rounds, "seconds_per_round": seconds,
                 "p50_ms": round(percentile(api_lat, 50) * 1000, 2), "p99_ms": round(p99, 2),
                 "bare_p50_ms": round(percentile(bare_lat, 50) * 1000, 2),
                 "bare_p99_ms": round(percentile(bare_lat, 99) * 1000, 2),
                 "non_200_responses": len(errors), "workflows": len(workflow_ids)})


def _wait_ready(port: int, server: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the API server exited with status {server.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError("the API server did not become ready")
