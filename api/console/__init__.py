"""The operator console: static HTML, ES modules and CSS served under `/ui/`, with `/` leading
there. It runs in the browser on the public HTTP API only, so it can never show what the API
would not; the files are package data, so it works with no internet and no build step."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"
# The page's own files only: no inline script, nothing from another origin.
CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
       "connect-src 'self'; frame-ancestors 'none'")


def install(app: FastAPI) -> None:
    """Serves the console at `/ui/` (assets under `/ui/static/`) and sends `/` there."""
    app.mount("/ui/static", StaticFiles(directory=STATIC), name="console-static")

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/ui/", status_code=307)

    @app.get("/ui", include_in_schema=False)
    @app.get("/ui/", include_in_schema=False)
    async def console() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={
            "Content-Security-Policy": CSP, "Cache-Control": "no-cache"})
