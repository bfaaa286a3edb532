"""The HTTP client of the commands that talk to a running server (`wes workflows`,
`wes definitions`): the shared options, problem+json answers turned into one line, and
output as a rich table or as one JSON document."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

from cli.output import one_line

DEFAULT_URL = "http://127.0.0.1:8000"

Url = Annotated[str, typer.Option(
    "--url", envvar="WES_URL", help="Base URL of a running `wes serve`.")]
ApiKey = Annotated[str | None, typer.Option(
    "--api-key", envvar="WES_API_KEY", show_default=False,
    help="API key, sent as `Authorization: Bearer` (needed when the server has WES_API_KEYS).")]
AsJson = Annotated[bool, typer.Option("--json", help="Print one JSON document (for scripts).")]


class ApiError(Exception):
    """A request the server refused, or a server that could not be reached: one line."""


class Api:
    """A client on the public HTTP API of one server."""

    def __init__(self, url: str, api_key: str | None, timeout: float = 15.0) -> None:
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        return self._send("GET", path, params=_clean(params))

    def post(self, path: str, body: Any = None, headers: Mapping[str, str] | None = None
             ) -> Any:
        return self._send("POST", path, json=body, headers=headers)

    @contextmanager
    def stream(self, path: str, params: Mapping[str, Any], read_timeout: float,
               headers: Mapping[str, str] | None = None) -> Iterator[Iterator[str]]:
        """The lines of a Server-Sent Events response, once its headers have arrived."""
        timeout = httpx.Timeout(self.http.timeout.connect, read=read_timeout)
        try:
            with self.http.stream("GET", path, params=_clean(params), headers=headers,
                                  timeout=timeout) as r:
                if r.is_error:
                    r.read()
                    raise ApiError(problem_line(r))
                yield r.iter_lines()
        except httpx.HTTPError as e:
            raise ApiError(self._transport_line(e)) from None

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Api:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _send(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as e:
            raise ApiError(self._transport_line(e)) from None
        if response.is_error:
            raise ApiError(problem_line(response))
        try:
            return response.json()
        except ValueError:
            raise ApiError(f"{self.url}{path} did not answer JSON (is it a wes server?)"
                           ) from None

    def _transport_line(self, error: httpx.HTTPError) -> str:
        if isinstance(error, httpx.ConnectError):
            return f"cannot reach the server at {self.url} (is `wes serve` running? " \
                   f"--url / WES_URL): {one_line(str(error))}"
        if isinstance(error, httpx.TimeoutException):
            return f"the server at {self.url} did not answer in time"
        return f"request to {self.url} failed: {one_line(str(error)) or type(error).__name__}"


def problem_line(response: httpx.Response) -> str:
    """`404 Workflow not found: workflow … not found`, from an RFC 9457 problem (or the
    status line when the body is not one)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and "detail" in body:
        title = body.get("title") or response.reason_phrase
        return one_line(f"{response.status_code} {title}: {body['detail']}")
    return f"{response.status_code} {response.reason_phrase} from {response.request.url}"


def _clean(params: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Query parameters without the options that were not given."""
    if params is None:
        return None
    return {k: v for k, v in params.items() if v is not None and v != [] and v != ()}


def print_json(document: Any) -> None:
    """The one JSON document a `--json` command prints."""
    typer.echo(json.dumps(document, indent=2, default=str))


def table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]],
          *, no_wrap: Sequence[str] = ()) -> Table:
    """A table of rows; the `no_wrap` columns (ids) are never broken across lines."""
    out = Table(title=title, title_justify="left", header_style="bold", pad_edge=False,
                box=None, padding=(0, 1, 0, 0))
    for column in columns:
        out.add_column(column, no_wrap=column in no_wrap, overflow="fold")
    for row in rows:
        out.add_row(*["-" if v is None or v == "" else str(v) for v in row])
    return out


def key_values(title: str, pairs: Sequence[tuple[str, Any]]) -> Table:
    """A record as two columns: field, value."""
    out = Table(title=title, title_justify="left", show_header=False, box=None,
                pad_edge=False, padding=(0, 1, 0, 0))
    out.add_column("field", style="bold", no_wrap=True)
    out.add_column("value", overflow="fold")
    for key, value in pairs:
        shown = json.dumps(value, default=str) if isinstance(value, (dict, list)) else value
        out.add_row(key, "-" if shown is None or shown == "" else str(shown))
    return out


def console() -> Console:
    return Console(highlight=False)
