"""A real `sift serve` on loopback, for the API tests that need their own settings.

The settings go in as `SIFT_*` environment variables, as they would in a deployment.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.helpers import SIFT


@dataclass
class Server:
    url: str
    client: httpx.Client
    log: Path

    def log_lines(self) -> list[str]:
        return self.log.read_text(encoding="utf-8").splitlines()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def copy_index(seeded_dir: Path, into: Path) -> Path:
    """A private copy of the session's seeded index: a server may write to it."""
    copy = into / "index"
    shutil.copytree(seeded_dir, copy)
    return copy


@contextmanager
def serve(index: Path, *flags: str, **settings: str) -> Iterator[Server]:
    """Run `sift serve FLAGS` with `SIFT_<NAME>=value` for each setting, until the block ends.
    With more than one worker, every request opens a connection of its own, so that requests
    are spread over the worker processes rather than kept on one."""
    port = free_port()
    log = index.parent / f"server-{port}.log"
    env = {**os.environ, **{f"SIFT_{k.upper()}": v for k, v in settings.items()}}
    command = [SIFT, "serve", "--host", "127.0.0.1", "--port", str(port), "--index", str(index)]
    with open(log, "w") as out:
        proc = subprocess.Popen([*command, *flags], stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    spread = "--workers" in flags or settings.get("workers", "1") != "1"
    limits = httpx.Limits(max_keepalive_connections=0) if spread else httpx.Limits()
    client = httpx.Client(base_url=url, timeout=60, limits=limits)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if client.get("/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"server did not start:\n{log.read_text()}")
            time.sleep(0.2)
        yield Server(url=url, client=client, log=log)
    finally:
        client.close()
        proc.terminate()
        proc.wait(timeout=30)
