"""A nats-server of the tests' own (free port, own store directory) and stream readers."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from typing import Any

import nats
import pytest
from nats.js.errors import NotFoundError


def nats_binary() -> str:
    """The nats-server binary (`.ci/run` installs it); skipped only outside CI."""
    found = shutil.which("nats-server")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("nats-server is not installed (CI must have it: see .ci/run)")
        pytest.skip("nats-server is not installed")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class NatsServer:
    """One JetStream server on 127.0.0.1; `stop()` and `start()` keep port and store."""

    def __init__(self) -> None:
        self.binary = nats_binary()
        self.port = free_port()
        self.store = tempfile.mkdtemp(prefix="wes-nats-")
        self.process: subprocess.Popen[bytes] | None = None
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the server

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", self.store],
            stdout=subprocess.DEVNULL, stderr=self.log)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nats-server exited: {self.output()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"nats-server did not listen: {self.output()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.store, ignore_errors=True)
        self.log.close()

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-3000:]


@dataclass(frozen=True)
class StreamMessage:
    sequence: int
    subject: str
    headers: dict[str, str]
    data: bytes


def read_stream(url: str, stream: str) -> list[StreamMessage]:
    """Every message of the stream in sequence order (one direct get each)."""
    return asyncio.run(_read(url, stream))


async def _read(url: str, stream: str) -> list[StreamMessage]:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(stream)
        messages = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            if info.state.messages == 0:
                break
            try:
                msg = await js.get_msg(stream, seq=seq)
            except NotFoundError:  # deleted
                continue
            messages.append(StreamMessage(msg.seq or seq, msg.subject or "",
                                          dict(msg.headers or {}), msg.data or b""))
        return messages
    finally:
        await nc.close()


def stream_state(url: str, stream: str) -> Any:
    async def state() -> Any:
        nc = await nats.connect(url)
        try:
            return (await nc.jetstream().stream_info(stream)).state
        finally:
            await nc.close()
    return asyncio.run(state())


def delete_stream(url: str, stream: str) -> None:
    async def delete() -> None:
        nc = await nats.connect(url)
        try:
            await nc.jetstream().delete_stream(stream)
        finally:
            await nc.close()
    asyncio.run(delete())
