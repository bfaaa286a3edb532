"""The console's files are package data: a non-editable install carries every one of them,
and none refers to another origin."""

from __future__ import annotations

import re
import tomllib
from fnmatch import fnmatch
from pathlib import Path

import api.console

ROOT = Path(__file__).resolve().parents[2]
STATIC = Path(api.console.__file__).parent / "static"


class TestConsoleFiles:
    def test_every_file_is_declared_as_package_data(self) -> None:
        config = tomllib.loads((ROOT / "pyproject.toml").read_text())
        patterns = config["tool"]["setuptools"]["package-data"]["api.console"]
        files = [p.relative_to(STATIC.parent).as_posix() for p in STATIC.rglob("*") if p.is_file()]
        assert "static/index.html" in files
        assert [f for f in files if not any(fnmatch(f, p) for p in patterns)] == []

    def test_no_file_loads_anything_from_another_origin(self) -> None:
        # Any absolute or scheme-relative URL, but the SVG namespace (a name, never loaded).
        url = re.compile(r"""https?://|["'(]//""")
        for path in STATIC.rglob("*"):
            if path.is_file():
                text = path.read_text().replace('"http://www.w3.org/2000/svg"', "")
                assert url.findall(text) == [], path
