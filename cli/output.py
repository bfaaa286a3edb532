"""What every `wes` command says on failure: one line on stderr and a non-zero exit."""

from __future__ import annotations

import sys
from typing import NoReturn

import typer


def one_line(text: str) -> str:
    """A message folded onto one line (library errors often span several)."""
    return " ".join(str(text).split())


def fail(message: str, code: int = 1) -> NoReturn:
    """Exit non-zero with a one-line reason on stderr (API.md: exit status)."""
    print(f"wes: {one_line(message)}", file=sys.stderr)
    raise typer.Exit(code)
