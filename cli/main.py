"""`wes`: serve, worker, services, projections, replay, demo, bench."""

from __future__ import annotations

import sys

import typer

from cli.bench import bench
from cli.demo import demo
from cli.projections import projections_app
from cli.replay import replay
from cli.serve import serve
from cli.whatif import whatif
from cli.worker import worker

app = typer.Typer(help="WES Orchestrator: an event-sourced orchestration engine for warehouses.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
app.add_typer(projections_app, name="projections")
app.command()(serve)
app.command()(worker)
app.command()(replay)
app.command()(demo)
app.command()(bench)
app.command()(whatif)


@app.command()
def services(
    host: str = typer.Option("127.0.0.1", help="Interface to bind."),
    port: int = typer.Option(8100, help="Port to listen on."),
) -> None:
    """Run the simulated warehouse services alone."""
    from simulator.server import run

    run(host=host, port=port)


def fail(message: str, code: int = 1) -> None:
    """Exit non-zero with a one-line reason on stderr (API.md: exit status)."""
    print(f"wes: {message}", file=sys.stderr)
    raise typer.Exit(code)


if __name__ == "__main__":
    app()
