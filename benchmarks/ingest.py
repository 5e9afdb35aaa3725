"""Ingest benchmark: events per second through /v1/batch, and request latency.

Starts the real server (`touchpoints serve`) on a fresh DuckDB file, then a concurrent
client on 127.0.0.1 sends pre-serialised 100-event batches over keep-alive connections.
An event counts only when its batch got HTTP 200 (validated and durable); at the end the
warehouse is opened to check that exactly the acknowledged events are stored.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson

from touchpoints.collect.sources import add_source
from touchpoints.warehouse import connect


@dataclass
class IngestResult:
    events: int
    seconds: float
    events_per_second: float
    p50_ms: float
    p99_ms: float
    stored: int
    connections: int
    batch_size: int


def _batches(key: str, n_batches: int, size: int, personal: bool = False) -> list[bytes]:
    """Pre-serialised batches; with `personal`, every event carries an email, a phone
    and a name in `context.traits` (all sealed on the way in: the worst case)."""
    sent_at = "2026-11-01T12:00:00.000Z"
    bodies = []
    for b in range(n_batches):
        batch = []
        for i in range(size):
            batch.append(
                {
                    "type": "track",
                    "event": "Product Viewed",
                    "messageId": uuid.uuid4().hex,
                    "anonymousId": f"anon-{b}-{i % 7}",
                    "userId": f"user-{(b * size + i) % 5000}",
                    "timestamp": "2026-11-01T11:59:59.500Z",
                    "properties": {
                        "product_id": f"P{i:04d}",
                        "sku": f"SKU-{i:04d}",
                        "category": "Shoes",
                        "price": 59.9,
                        "currency": "USD",
                    },
                    "context": {
                        "library": {"name": "bench", "version": "1.0"},
                        "userAgent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0",
                        "page": {"path": "/p/shoes", "url": "https://shop.example.com/p"},
                        "campaign": {"source": "google", "medium": "cpc", "name": "b"},
                        **(
                            {
                                "traits": {
                                    "email": f"shopper{(b * size + i) % 5000}@example.com",
                                    "phone": f"+1202555{(b * size + i) % 10000:04d}",
                                    "name": "Synthetic Shopper",
                                }
                            }
                            if personal
                            else {}
                        ),
                    },
                }
            )
        bodies.append(orjson.dumps({"batch": batch, "sentAt": sent_at, "writeKey": key}))
    return bodies


async def _connection(port: int, bodies: list[bytes], latencies: list[float]) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    acknowledged = 0
    try:
        for body in bodies:
            head = (
                f"POST /v1/batch HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            )
            start = time.perf_counter()
            writer.write(head.encode() + body)
            status_line = await reader.readuntil(b"\r\n")
            headers = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in headers.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - start)
            if status_line.split()[1] == b"200":
                acknowledged += body.count(b'"messageId"')
    finally:
        writer.close()
    return acknowledged


async def _drive(port: int, bodies: list[bytes], connections: int, latencies: list[float]) -> int:
    shares = [bodies[i::connections] for i in range(connections)]
    counts = await asyncio.gather(*(_connection(port, s, latencies) for s in shares))
    return sum(counts)


def run_ingest(
    events: int = 500_000,
    batch_size: int = 100,
    connections: int = 8,
    port: int = 8799,
    personal: bool = False,
) -> IngestResult:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"duckdb:///{Path(tmp) / 'bench.duckdb'}"
        warehouse = connect(url)
        key = add_source(warehouse, "bench").write_key
        warehouse.close()
        bodies = _batches(key, events // batch_size, batch_size, personal)
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "touchpoints.cli.main",
                "-w",
                url,
                "serve",
                "--port",
                str(port),
                "--rate-limit",
                "10000000",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=os.environ.copy(),
        )
        try:
            _wait(port)
            warmup: list[float] = []
            asyncio.run(_drive(port, _batches(key, 50, batch_size), connections, warmup))
            latencies: list[float] = []
            start = time.perf_counter()
            acknowledged = asyncio.run(_drive(port, bodies, connections, latencies))
            seconds = time.perf_counter() - start
        finally:
            server.send_signal(signal.SIGINT)
            server.wait(timeout=60)
        warehouse = connect(url)
        stored = warehouse.count("events") - 50 * batch_size
        warehouse.close()
    latencies.sort()
    return IngestResult(
        events=acknowledged,
        seconds=round(seconds, 3),
        events_per_second=round(acknowledged / seconds),
        p50_ms=round(1000 * latencies[len(latencies) // 2], 2),
        p99_ms=round(1000 * latencies[int(len(latencies) * 0.99)], 2),
        stored=stored,
        connections=connections,
        batch_size=batch_size,
    )


def _wait(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError("the server did not start")
