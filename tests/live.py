"""A real Touchpoints server on 127.0.0.1, in a thread of the test process."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass

import uvicorn

from touchpoints.api.app import Services, create_app
from touchpoints.api.ratelimit import ApiSettings
from touchpoints.collect.collector import CollectorSettings
from touchpoints.collect.sources import add_source
from touchpoints.warehouse import Warehouse


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LiveServer:
    url: str
    write_key: str
    source_id: str
    services: Services
    server: uvicorn.Server
    thread: threading.Thread

    @property
    def warehouse(self) -> Warehouse:
        """The server's warehouse, once everything acknowledged so far is loaded."""
        self.services.writer.flush()
        return self.services.warehouse

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def start(
    warehouse: Warehouse,
    settings: CollectorSettings | None = None,
    control_token: str | None = "test-admin-token",
    api_settings: ApiSettings | None = None,
    source: str = "website",
) -> LiveServer:
    made = add_source(warehouse, source, "web")
    # the activation loop runs only where a test asks for it (ApiSettings)
    api_settings = api_settings or ApiSettings(activation_every_s=None)
    services = Services.open(
        warehouse, settings, control_token=control_token, api_settings=api_settings
    )
    port = free_port()
    config = uvicorn.Config(
        create_app(services),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    return LiveServer(
        f"http://127.0.0.1:{port}", made.write_key, made.source.source_id, services, server, thread
    )
