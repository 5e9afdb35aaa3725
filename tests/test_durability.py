"""kill -9 the server while a client sends: every acknowledged event survives, once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import duckdb_url
from tests.live import free_port
from touchpoints.collect.sources import add_source
from touchpoints.warehouse import connect

pytestmark = pytest.mark.slow
BATCHES = 400


def _start(url: str, port: int, log: Path) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-m", "touchpoints.cli.main", "-w", url, "serve", "--port", str(port)],
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"the server did not start: {log.read_text()[-2000:]}")


class _Client(threading.Thread):
    """Sends batches; a batch counts as acknowledged only on HTTP 200; retries otherwise."""

    def __init__(self, url: str, key: str, name: str, batches: int) -> None:
        super().__init__(daemon=True)
        self.url, self.key, self.name, self.batches = url, key, name, batches
        self.acknowledged: list[str] = []
        self.sent: set[str] = set()
        self.failures = 0

    def run(self) -> None:
        with httpx.Client(timeout=5) as http:
            for b in range(self.batches):
                ids = [f"{self.name}-{b}-{i}" for i in range(50)]
                body = {
                    "writeKey": self.key,
                    "batch": [
                        {"type": "track", "event": "Tick", "userId": "u", "messageId": m}
                        for m in ids
                    ],
                }
                while True:
                    self.sent.update(ids)
                    try:
                        if http.post(self.url + "/v1/batch", json=body).status_code == 200:
                            self.acknowledged.extend(ids)
                            break
                    except httpx.HTTPError:
                        pass
                    self.failures += 1
                    time.sleep(0.02)
                time.sleep(0.004)  # keep sending through all the kills


def test_kill_minus_nine_loses_nothing_and_duplicates_nothing(tmp_path: Path) -> None:
    url = duckdb_url(tmp_path / "touchpoints.duckdb")
    warehouse = connect(url)
    key = add_source(warehouse, "website").write_key
    warehouse.close()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "server.log"
    server = _start(url, port, log)
    clients = [_Client(base, key, f"c{n}", batches=BATCHES) for n in range(2)]
    for client in clients:
        client.start()
    kills = 0
    try:
        for pause in (0.7, 1.1, 0.5):
            time.sleep(pause)
            server.send_signal(signal.SIGKILL)
            server.wait()
            kills += 1
            server = _start(url, port, log)
        for client in clients:
            client.join(timeout=180)
            assert not client.is_alive(), "the client did not finish"
    finally:
        server.send_signal(signal.SIGKILL)
        server.wait()
    assert kills == 3
    assert sum(c.failures for c in clients) >= 3, "the kills did not hit the clients"
    acknowledged = [m for c in clients for m in c.acknowledged]
    assert len(acknowledged) == 2 * BATCHES * 50
    warehouse = connect(url)
    rows = warehouse.query("SELECT message_id FROM events").column("message_id").to_pylist()
    warehouse.close()
    assert len(rows) == len(set(rows)), "an event was stored twice"
    assert set(acknowledged) <= set(rows), "an acknowledged event was lost"
    assert set(rows) <= set().union(*(c.sent for c in clients))
    assert os.path.getsize(tmp_path / "touchpoints.duckdb") > 0
