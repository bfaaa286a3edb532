"""`wes bench`: the benchmark suite, each figure beside its baseline from the same run."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from cli.output import fail


def bench(
    quick: Annotated[bool, typer.Option("--quick", help="A short smoke run (CI), not a measurement.")
                     ] = False,
    json_file: Annotated[Path | None, typer.Option("--json", help="Also write the results here.")
                         ] = None,
    only: Annotated[list[str] | None, typer.Option(
        "--only", help="Measure only this figure (repeatable): commands, engine, rebuild, lag, "
                       "api, replay, engine_split, api_standby, relay, whatif.")] = None,
) -> None:
    """Run the benchmarks on a throw-away database and print each figure with its baseline."""
    from bench import runner
    from bench.report import to_json
    console = Console(width=None if sys.stdout.isatty() else 120)
    try:
        result = runner.run(quick=quick, console=Console(stderr=True), only=only or ())
    except ValueError as e:
        fail(str(e))
    console.print(runner.table(result))
    for line in runner.baselines(result):
        console.print(f"  baseline of {line}")
    console.print(f"machine: {runner.machine_line(result.machine)}")
    if quick:
        console.print("--quick: a smoke run; the figures are not measurements")
    if json_file is not None:
        json_file.write_text(to_json(result.machine, result.figures, quick=quick) + "\n")
        console.print(f"wrote {json_file}")
    if result.failures:
        fail(f"{len(result.failures)} figure(s) failed: {'; '.join(result.failures)}"[:500])
