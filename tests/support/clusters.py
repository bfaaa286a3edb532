"""PostgreSQL clusters of a test's own (the benchmark's module: `bench.clusters`)."""

from bench.clusters import (  # noqa: F401
    VERSION,
    Cluster,
    free_port,
    primary,
    standby,
    unavailable_reason,
    wait_replayed,
)
