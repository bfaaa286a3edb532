"""The API under test, in a process of its own: `python -m bench.api_server PORT SCHEMA`.

The real application (`api.app.create_app`) on the benchmark database, plus one bare route
returning a constant in the same server (the `api` figure's baseline). No projectors run
in it: the read models were brought up to date before it started. The read models are
where `WES_READ_MODEL_DATABASE_URL` puts them, queried on `WES_QUERY_DATABASE_URLS`'s
standbys when set (the `api_standby` figure).
"""

from __future__ import annotations

import logging
import sys

import uvicorn

from application.settings import Settings
from bootstrap.container import bench_api_app

CONSTANT_PATH = "/bench/constant"


def main(port: int, schema: str) -> None:
    logging.basicConfig(level=logging.WARNING)
    app = bench_api_app(Settings.from_env().replace(db_schema=schema))

    @app.get(CONSTANT_PATH, include_in_schema=False)
    async def constant() -> dict[str, str]:
        return {"status": "ok"}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
