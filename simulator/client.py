"""A small HTTP client for the simulator's control surface (faults, calls) and operations."""

from __future__ import annotations

import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any

import httpx


class SimulatorClient:
    """Injects faults, reads the call log, and calls operations on one simulator instance."""

    def __init__(self, base_url: str, *, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout)

    def add_fault(self, service: str, kind: str, operation: str | None = None, *,
                  count: int | None = None, rate: float | None = None, latency_ms: int = 0,
                  match: Mapping[str, Any] | None = None, **extensions: Any) -> str:
        """Injects a fault (API.md `POST /faults`); returns its id."""
        body = {"service": service, "operation": operation, "kind": kind, "count": count,
                "rate": rate, "latency_ms": latency_ms, "match": dict(match or {}),
                **extensions}
        response = self._http.post("/faults", json=body)
        response.raise_for_status()
        fault_id: str = response.json()["id"]
        return fault_id

    def faults(self) -> list[dict[str, Any]]:
        return self._items(self._http.get("/faults"))

    def remove_fault(self, fault_id: str) -> None:
        self._http.delete(f"/faults/{fault_id}").raise_for_status()

    def clear_faults(self) -> None:
        self._http.delete("/faults").raise_for_status()

    def calls(self, **filters: str) -> list[dict[str, Any]]:
        """The calls received, oldest first; filters: service, operation, order_id, ..."""
        return self._items(self._http.get("/calls", params=filters))

    def clear_calls(self) -> None:
        self._http.delete("/calls").raise_for_status()

    def reset(self, idle_timeout: float = 10.0) -> None:
        """Removes every fault, waits for calls in flight to finish, and forgets every call."""
        self.clear_faults()
        self.wait_idle(idle_timeout)
        self.clear_calls()

    def in_flight(self) -> int:
        """How many operation calls the instance is answering right now."""
        response = self._http.get("/healthz")
        response.raise_for_status()
        count: int = response.json()["in_flight"]
        return count

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Waits until no operation call is in flight (e.g. one held by a latency fault)."""
        deadline = time.monotonic() + timeout
        while self.in_flight() > 0:
            if time.monotonic() > deadline:
                raise TimeoutError(f"simulator at {self.base_url} still busy after {timeout}s")
            time.sleep(0.02)

    def call(self, service: str, operation: str, body: Any = None, *,
             idempotency_key: str | None = None, correlation_id: str | None = None,
             attempt: int | None = None, timeout: float | None = None) -> httpx.Response:
        """Calls an operation as a step would; `body` is sent as JSON."""
        headers = {}
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        if attempt is not None:
            headers["X-WES-Attempt"] = str(attempt)
        if correlation_id is not None:
            headers["X-Correlation-ID"] = correlation_id
        extra: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
        return self._http.post(f"/{service}/{operation}", json=body, headers=headers, **extra)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SimulatorClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    @staticmethod
    def _items(response: httpx.Response) -> list[dict[str, Any]]:
        response.raise_for_status()
        items: list[dict[str, Any]] = response.json()["items"]
        return items
