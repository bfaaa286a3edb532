"""API keys and roles: 401 without a valid key, 403 below the role a route needs."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from api.auth import KeyRing, Role, check_bind
from application.errors import ConfigurationError
from cli.main import app as cli
from tests.e2e import api_support
from tests.e2e.api_support import assert_problem

# Fixtures this module uses.
make_client = api_support.make_client
read_models = api_support.read_models

ClientFactory = Callable[..., TestClient]
WORKFLOW = {"definition": "order-fulfillment", "driven_by": "caller",
            "input": {"orderId": "ORD-1"}}


class TestKeysAndRoles:
    def test_a_missing_key_is_401_with_a_challenge(self, make_client: ClientFactory) -> None:
        client = make_client()
        answer = assert_problem(client.get("/v1/workflows"), 401, "unauthenticated")
        assert "API key" in answer["detail"]
        assert client.get("/v1/events").headers["www-authenticate"].startswith("Bearer")
        assert_problem(client.post("/v1/workflows", json=WORKFLOW), 401)

    def test_an_unknown_key_is_401(self, make_client: ClientFactory) -> None:
        assert_problem(make_client("guess").get("/v1/workflows"), 401, "unauthenticated")
        assert_problem(make_client("guess", header="x-api-key").get("/v1/events"), 401)

    def test_a_reader_queries_but_cannot_command(self, make_client: ClientFactory) -> None:
        reader = make_client("reader-key")
        assert reader.get("/v1/definitions").status_code == 200
        head = reader.get("/v1/events").json()["head"]
        body = assert_problem(reader.post("/v1/workflows", json=WORKFLOW), 403, "forbidden")
        assert "operator" in body["detail"]
        assert reader.get("/v1/events").json()["head"] == head

    def test_an_operator_commands_but_cannot_register_definitions(
            self, make_client: ClientFactory) -> None:
        operator = make_client("operator-key", header="x-api-key")
        started = operator.post("/v1/workflows", json=WORKFLOW)
        assert started.status_code == 201
        assert operator.post(f"/v1/workflows/{started.json()['id']}/pause").status_code == 200
        assert_problem(operator.post("/v1/definitions", json={
            "name": "x", "steps": [{"step_id": "a", "service": "s", "operation": "o"}]}),
            403)
        assert_problem(operator.post("/v1/projections/progress/rebuild"), 403)

    def test_an_admin_may_do_everything(self, make_client: ClientFactory) -> None:
        admin = make_client("admin-key")
        assert admin.post("/v1/definitions", json={
            "name": "x", "steps": [{"step_id": "a", "service": "s", "operation": "o"}]
        }).status_code == 201
        assert admin.post("/v1/workflows", json=WORKFLOW).status_code == 201
        assert admin.get("/v1/audit").status_code == 200

    def test_the_actor_is_the_keys_fingerprint_never_the_key(
            self, make_client: ClientFactory, caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.DEBUG)
        operator = make_client("operator-key")
        started = operator.post("/v1/workflows", json=WORKFLOW).json()
        operator.post(f"/v1/workflows/{started['id']}/pause")
        events = operator.get("/v1/events", params={"workflow_id": started["id"]}).json()
        fingerprint = "api-key:" + hashlib.sha256(b"operator-key").hexdigest()[:8]
        assert events["items"][0]["data"]["triggered_by"] == fingerprint
        assert events["items"][-1]["data"]["actor"] == fingerprint
        assert "operator-key" not in caplog.text

    def test_operations_routes_need_no_key(self, make_client: ClientFactory) -> None:
        client = make_client()
        assert client.get("/healthz").status_code == 200
        assert client.get("/metrics").status_code == 200
        assert client.get("/openapi.json").status_code == 200
        assert client.get("/docs").status_code == 200


class TestKeyConfiguration:
    def test_parses_keys_with_roles_and_stores_only_digests(self) -> None:
        ring = KeyRing.parse("k1:reader, k2:operator,k3:ADMIN")
        assert [ring.role_of(k) for k in ("k1", "k2", "k3", "k4")] == [
            Role.READER, Role.OPERATOR, Role.ADMIN, None]
        assert all(len(digest) == 32 for digest, _ in ring.entries)
        assert b"k1" not in b"".join(d for d, _ in ring.entries)

    def test_reads_a_key_file_with_comments_and_hashed_keys(self, tmp_path: Path) -> None:
        hashed = hashlib.sha256(b"secret-admin").hexdigest()
        path = tmp_path / "keys"
        path.write_text(f"# deployer's keys\nreader-1:reader\nsha256:{hashed}:admin\n")
        ring = KeyRing.parse(str(path))
        assert ring.role_of("reader-1") == Role.READER
        assert ring.role_of("secret-admin") == Role.ADMIN

    def test_rejects_malformed_configuration(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigurationError):
            KeyRing.parse("k1:superuser")
        with pytest.raises(ConfigurationError):
            KeyRing.parse(str(tmp_path / "missing"))
        assert not KeyRing.parse("").enabled

    def test_without_keys_only_localhost_may_be_bound(self) -> None:
        assert check_bind("127.0.0.1", KeyRing()) is None
        assert check_bind("::1", KeyRing()) is None
        assert "WES_API_KEYS" in (check_bind("0.0.0.0", KeyRing()) or "")
        assert check_bind("0.0.0.0", KeyRing.parse("k:reader")) is None

    def test_wes_serve_refuses_a_public_bind_without_keys(
            self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("WES_API_KEYS", raising=False)
        result = CliRunner().invoke(cli, ["serve", "--host", "0.0.0.0"])
        assert result.exit_code != 0
        assert "refusing to bind to 0.0.0.0" in result.output
