"""`wes projections run | status | rebuild`."""

from __future__ import annotations

import typer

projections_app = typer.Typer(help="Run the projectors, show their position and lag, rebuild.",
                              no_args_is_help=True)
