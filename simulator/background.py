"""Running a simulator instance in a background thread, on a port of its own (tests, demo)."""

from __future__ import annotations

from types import TracebackType

from fastapi import FastAPI

from cli.background import BackgroundServer, serve_in_background
from simulator.server import DEFAULT_INSTANCE_ID, SimulatorState, create_app


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
    # A short graceful shutdown: a call held by a latency fault must not hold up the stop.
    running = serve_in_background(app, host, port, startup_timeout, lifespan="off",
                                  graceful_seconds=1, name=f"simulator-{instance_id}")
    return RunningSimulator(app, running)
