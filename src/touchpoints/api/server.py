"""Run the API server on the warehouse it owns."""

from __future__ import annotations

import gc
import logging
import signal
import sys

import uvicorn

from touchpoints.api.app import Services, create_app
from touchpoints.api.ratelimit import ApiSettings
from touchpoints.collect.collector import CollectorSettings
from touchpoints.errors import WarehouseError
from touchpoints.warehouse import connect, duckdb_path
from touchpoints.warehouse.ownership import claim, release, running_server

log = logging.getLogger("touchpoints.server")
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def serve(
    url: str,
    host: str = "127.0.0.1",
    port: int = 8000,
    settings: CollectorSettings | None = None,
    log_level: str = "warning",
    api_settings: ApiSettings | None = None,
) -> None:
    """Open the warehouse, claim it, and serve until interrupted (`api_settings`: rate
    limits of the read and admin API per key)."""
    path = duckdb_path(url)
    if path is not None:
        other = running_server(path)
        if other is not None:
            raise WarehouseError(
                f"{path} is already served by process {other.pid} at {other.url}; stop it first"
            )
    warehouse = connect(url)
    info = claim(warehouse.path, f"http://{host}:{port}") if warehouse.path else None
    token = info.token if info else None
    services = Services.open(warehouse, settings, control_token=token, api_settings=api_settings)
    app = create_app(services)
    if token and host in LOOPBACK:  # the operator's own terminal: how to open the dashboard
        print(
            f"Dashboard: http://{host}:{port}/dashboard  (sign in with a read or admin key, "
            f"or this run's local admin token: {token})",
            file=sys.stderr,
        )
    # Many short-lived dicts per event: collect garbage less often.
    gc.collect()
    gc.freeze()
    gc.set_threshold(100_000, 50, 50)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        http="httptools",
        access_log=False,
        log_level=log_level,
        lifespan="on",
    )
    # uvicorn re-raises SIGTERM after its graceful shutdown; make that an orderly exit so
    # the `finally` below still loads the spool and gives the warehouse file back.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        uvicorn.Server(config).run()
    finally:
        services.close()
        if info is not None:
            release(warehouse.path, info)
        warehouse.close()
