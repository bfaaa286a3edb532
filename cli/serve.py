"""`wes serve`: the HTTP API, with the projectors, an engine worker and the simulated
warehouse services in the same process unless told otherwise."""

from __future__ import annotations

import contextlib
import errno
import logging
import socket

import typer

from api.auth import KeyRing, check_bind
from application import logs
from application.database import embedded_data_dir
from application.errors import ApplicationError
from application.settings import Settings
from bootstrap.container import SIMULATOR_PATH, api_app
from cli.output import fail

log = logging.getLogger(__name__)

ANY_HOST = frozenset({"0.0.0.0", "::", ""})


def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to bind."),
    port: int = typer.Option(8000, min=1, max=65535, help="Port to listen on."),
    no_worker: bool = typer.Option(False, "--no-worker", help="Run no engine worker here."),
    no_projections: bool = typer.Option(False, "--no-projections",
                                        help="Run no projectors here (the read models are "
                                             "still queried)."),
    no_simulated_services: bool = typer.Option(
        False, "--no-simulated-services",
        help=f"Do not host the simulated warehouse services under {SIMULATOR_PATH}."),
    concurrency: int = typer.Option(4, min=1, max=256, help="Workflows the worker drives at "
                                                            "once."),
) -> None:
    """Run the API with the projectors, an engine worker and the simulated services."""
    settings = Settings.from_env()  # the one read of the environment
    logs.configure(settings.log_level, settings.log_json)
    try:
        keys = KeyRing.parse(settings.api_keys)
    except ApplicationError as e:
        fail(str(e))
        return
    refusal = check_bind(host, keys)
    if refusal:
        fail(refusal)
    # Bound before anything starts, so a busy port is one line, not a stack of uvicorn's.
    listening = bind_or_fail(host, port)
    # Notices wait until the server is built: a failure before that is its one line alone.
    notices: list[str] = []
    if not keys.enabled:
        notices.append(f"no API keys configured (WES_API_KEYS): listening on {host} only, "
                       "and every request is allowed")
    simulate = not no_simulated_services
    base_url = f"http://{'127.0.0.1' if host in ANY_HOST else host}:{port}"
    if settings.services is None and simulate:
        # Steps reach the simulated services through this very server.
        services = {name: [f"{base_url}{SIMULATOR_PATH}/{name}"] for name in _service_names()}
        settings = settings.replace(services=services)
    elif settings.services is None and not no_worker:
        notices.append("WES_SERVICES is not set and --no-simulated-services was given: "
                       "steps that call a service will fail")
    try:
        app = api_app(settings, worker=not no_worker, projections=not no_projections,
                      simulate=simulate, concurrency=concurrency, keys=keys)
    except ApplicationError as e:
        listening.close()
        fail(str(e))
        return
    import uvicorn

    for notice in notices:
        typer.echo(f"wes: {notice}", err=True)

    parts = ["API"] + (["projections"] if not no_projections else []) + (
        ["worker"] if not no_worker else []) + (
        [f"simulated services at {base_url}{SIMULATOR_PATH}"] if simulate else [])
    typer.echo(f"wes: serving {', '.join(parts)} on {base_url} (docs: {base_url}/docs)",
               err=True)
    if settings.database_url is None:
        typer.echo(f"wes: data in the embedded PostgreSQL at {embedded_data_dir()}; it keeps "
                   "running after this command (`wes db stop` stops it)", err=True)
    config = uvicorn.Config(app, host=host, port=port, log_level=settings.log_level.lower(),
                            access_log=False)
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises Ctrl-C after shutdown
        uvicorn.Server(config).run(sockets=[listening])


def bind_or_fail(host: str, port: int) -> socket.socket:
    """The listening socket, or a one-line failure when the port is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        busy = e.errno == errno.EADDRINUSE
        fail(f"cannot listen on {host}:{port}: " + (
            "the port is in use (another `wes serve`? choose one with --port)" if busy
            else e.strerror or str(e)))
    sock.set_inheritable(True)
    return sock


def _service_names() -> list[str]:
    from simulator.warehouse import SERVICE_OPERATIONS

    return sorted(SERVICE_OPERATIONS)
