"""The API under test, in a process of its own: `python -m bench.api_server PORT SCHEMA`.

The real application (`api.app.create_app`) on the benchmark database, plus one bare route
returning a constant in the same server (the `api` figure's baseline). No projectors run
in it: the read models were brought up to date before it started. The read models are
where `WES_READ_MODEL_DATABASE_URL` puts them, queried on `WES_QUERY_DATABASE_URLS`'s
standbys when set (the `api_standby` figure).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys

import uvicorn

from api.app import create_app
from api.dependencies import ApiConfig
from api.read_models import ReadModelSet
from application import database
from application.settings import Settings
from application.workflows import Workflows

CONSTANT_PATH = "/bench/constant"


def main(port: int, schema: str) -> None:
    logging.basicConfig(level=logging.WARNING)
    db = database.parse_url(os.environ["DATABASE_URL"]).with_schema(schema)
    settings = dataclasses.replace(Settings.from_env(), schema=schema)
    read_url = settings.read_model_database_url
    read_db = database.parse_url(read_url).with_schema(schema) if read_url else None
    workflows = Workflows(env=db.env())
    models = ReadModelSet.from_settings(workflows, db, read_db, settings)
    app = create_app(workflows=workflows, read_models=models.ports, config=ApiConfig())

    @app.get(CONSTANT_PATH, include_in_schema=False)
    async def constant() -> dict[str, str]:
        return {"status": "ok"}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
