"""Running a simulator instance in a background thread, on a port of its own (tests, demo).

The simulated services stand for an outside system: they serve themselves, with nothing of
the orchestrator's own entrypoints (`wes`) underneath.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from types import TracebackType

import uvicorn
from fastapi import FastAPI

from simulator.server import DEFAULT_INSTANCE_ID, SimulatorState, create_app


@dataclass
class BackgroundServer:
    """A uvicorn server in a daemon thread; `url` is its base URL."""

    server: uvicorn.Server
    thread: threading.Thread
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)


def serve_in_background(app: FastAPI, host: str, port: int, timeout: float, *,
                        name: str) -> BackgroundServer:
    """Serves `app` without lifespan events and with a 1 s graceful shutdown (a call held
    by a latency fault must not hold up the stop); port 0 picks a free port, bound before
    the thread starts (no race)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound = int(sock.getsockname()[1])
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                            timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]},
                              name=f"{name}-{bound}", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            raise RuntimeError(f"{name} did not start on {host}:{bound}")
        time.sleep(0.01)
    return BackgroundServer(server, thread, host, bound)


class RunningSimulator:
    """A simulator served in a daemon thread; `base_url` is where it answers."""

    def __init__(self, app: FastAPI, running: BackgroundServer) -> None:
        self.app = app
        self.running = running
        self.host = running.host
        self.port = running.port
        self.base_url = running.url

    @property
    def state(self) -> SimulatorState:
        """The instance's in-memory state, for assertions beyond `GET /calls`."""
        state: SimulatorState = self.app.state.simulator
        return state

    @property
    def instance_id(self) -> str:
        return self.state.instance_id

    def service_url(self, service: str) -> str:
        """The base URL of one service on this instance (`POST {it}/{operation}`)."""
        return f"{self.base_url}/{service}"

    def stop(self, timeout: float = 10.0) -> None:
        """Stops serving and waits for the thread to end."""
        self.running.stop(timeout)

    def __enter__(self) -> RunningSimulator:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def start_simulator(instance_id: str = DEFAULT_INSTANCE_ID, *, seed: int | None = None,
                    host: str = "127.0.0.1", port: int = 0,
                    startup_timeout: float = 10.0) -> RunningSimulator:
    """Starts a simulator instance; port 0 picks a free port (bound before the thread starts)."""
    app = create_app(instance_id, seed=seed)
    running = serve_in_background(app, host, port, startup_timeout,
                                  name=f"simulator-{instance_id}")
    return RunningSimulator(app, running)
