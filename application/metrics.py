"""Prometheus metrics shared by the API, the engine and the projectors.

Counters and histograms live in the process-wide default registry, so every part of one
process (API, worker threads, projector threads) reports through the same `/metrics`.
Values that are read from the database at scrape time (events appended to the store, which
counts every process's appends; projection lag) are collectors that the API registers per
app; see `api.metrics`. The engine increments `STEPS_RUN` and `STEP_DURATION`.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

REQUEST_LATENCY = Histogram(
    "wes_http_request_duration_seconds",
    "HTTP request latency by method, route template and status code.",
    ("method", "route", "status"),
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)

STEPS_RUN = Counter(
    "wes_steps_run",
    "Step (and compensation) calls made by this process's engine workers, by outcome.",
    ("service", "operation", "outcome"),
)

STEP_DURATION = Histogram(
    "wes_step_duration_seconds",
    "Duration of step calls made by engine workers.",
    ("service", "operation"),
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
