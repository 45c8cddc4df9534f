"""A real `sift serve` on 127.0.0.1 for the benchmarks, and a bounded load client for it
(closed loop: each of `concurrency` clients sends its next query when the last is answered)."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Server:
    url: str
    pid: int

    def memory_kb(self) -> dict[str, int]:
        """VmRSS and VmHWM (peak RSS) of the server process, in kB."""
        out = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
        return out

    def written_bytes(self) -> int:
        """Bytes the server process has caused to be written to storage (/proc/PID/io)."""
        for line in Path(f"/proc/{self.pid}/io").read_text().splitlines():
            key, _, value = line.partition(":")
            if key == "write_bytes":
                return int(value)
        return 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve(index: Path, log: Path, env: dict[str, str] | None = None) -> Iterator[Server]:
    port = _free_port()
    command = [str(ROOT / ".venv" / "bin" / "sift"), "serve", "--index", str(index)]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    environ = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=environ)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            if process.poll() is not None:
                sys.exit(f"sift serve exited with {process.returncode}: see {log}")
            try:
                if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                sys.exit(f"sift serve did not answer /health in 300 s: see {log}")
            time.sleep(0.5)
        yield Server(url, process.pid)
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


class _Connection:
    """One keep-alive HTTP/1.1 connection, as lean as a client can be: httpx spent about a
    core of this 2-core machine to drive ~100 queries/s, and the client shares the machine
    with the server it measures."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, target: str) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(f"GET {target} HTTP/1.1\r\nHost: {self.host}\r\n\r\n".encode())
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        length = next(
            int(line.split(":", 1)[1])
            for line in lines
            if line.lower().startswith("content-length:")
        )
        await self.reader.readexactly(length)
        return int(lines[0].split()[1])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def _load(
    url: str, texts: list[str], modes: list[str], concurrency: int, seconds: float, most: int
) -> tuple[dict[str, list[float]], float, dict[str, int]]:
    """Request i asks texts[i] in modes[i % len(modes)]: with more than one mode, the modes take
    turns, so that they share the same moments of a noisy machine."""
    latencies: dict[str, list[float]] = {mode: [] for mode in modes}
    failures = dict.fromkeys(modes, 0)
    cursor = 0
    host, port = url.removeprefix("http://").split(":")
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal cursor
        connection = _Connection(host, int(port))
        try:
            while time.perf_counter() < deadline and cursor < most:
                mode = modes[cursor % len(modes)]
                query = urlencode({"q": texts[cursor % len(texts)], "mode": mode})
                cursor += 1
                started = time.perf_counter()
                if await connection.get(f"/search?{query}") != 200:
                    failures[mode] += 1
                latencies[mode].append(time.perf_counter() - started)
        finally:
            connection.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, time.perf_counter() - started, failures


def _figures(latencies: list[float]) -> dict[str, float]:
    if not latencies:
        return {"queries": 0}
    ms = np.array(latencies) * 1000
    return {
        "queries": len(latencies),
        "p50_ms": round(float(np.percentile(ms, 50)), 1),
        "p99_ms": round(float(np.percentile(ms, 99)), 1),
    }


def load(
    url: str, texts: list[str], mode: str, concurrency: int, seconds: float, most: int
) -> dict[str, float]:
    """`concurrency` clients in a closed loop for `seconds` (or `most` queries in all)."""
    latencies, elapsed, failures = asyncio.run(
        _load(url, texts, [mode], concurrency, seconds, most)
    )
    return {
        **_figures(latencies[mode]),
        "queries_per_s": round(len(latencies[mode]) / elapsed, 1),
        "failed": failures[mode],
    }


def load_turns(
    url: str, texts: list[str], modes: list[str], concurrency: int, seconds: float
) -> tuple[dict[str, dict[str, float]], float]:
    """The modes in turns, request by request, each on its own queries (distinct texts: no
    mode reuses another's cached query vector): latency per mode from the same seconds, and
    the requests per second of all modes together."""
    latencies, elapsed, failures = asyncio.run(
        _load(url, texts, modes, concurrency, seconds, 10**9)
    )
    per_mode = {mode: {**_figures(latencies[mode]), "failed": failures[mode]} for mode in modes}
    return per_mode, round(sum(map(len, latencies.values())) / elapsed, 1)
