"""The operator console: static HTML, ES modules and CSS served under `/ui/`, with `/` leading
there. It runs in the browser on the public HTTP API only, so it can never show what the API
would not; the files are package data, so it works with no internet and no build step."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"
# The page's own files only: no inline script, nothing from another origin.
CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
       "connect-src 'self'; frame-ancestors 'none'")


DOCS_ASSETS = Path(fastapi_offline.__file__).parent / "static"
# ReDoc's sidebar shows the vendor's logo from the vendor's server; offline, the page uses
# the icon it is installed with instead.
REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"


@cache
def _redoc_js() -> bytes:
    script = (DOCS_ASSETS / "redoc.standalone.js").read_text(encoding="utf-8")
    return script.replace(REDOC_LOGO, "/ui/docs-assets/favicon.png").encode()


def install(app: FastAPI) -> None:
    """Serves the console at `/ui/` (assets under `/ui/static/`), sends `/` there, and
    serves ReDoc at `/redoc` from installed files."""
    app.mount("/ui/static", StaticFiles(directory=STATIC), name="console-static")

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url=app.openapi_url or "/openapi.json",
                              title=f"{app.title} - ReDoc", redoc_js_url="/ui/redoc.js",
                              redoc_favicon_url="/ui/docs-assets/favicon.png",
                              with_google_fonts=False)

    @app.get("/ui/redoc.js", include_in_schema=False)
    async def redoc_js() -> Response:
        return Response(_redoc_js(), media_type="text/javascript",
                        headers={"Cache-Control": "max-age=3600"})

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/ui/", status_code=307)

    @app.get("/ui", include_in_schema=False)
    @app.get("/ui/", include_in_schema=False)
    async def console() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={
            "Content-Security-Policy": CSP, "Cache-Control": "no-cache"})
