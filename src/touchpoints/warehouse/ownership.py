"""Who owns an embedded warehouse file while a server runs.

DuckDB lets one process hold a file read-write, and then no other process may open it.
So the server owns the file and writes ``<file>.server.json`` beside it (its address, its
process id and a control token, readable only by the owner); the CLI reads that file and
asks the running server, or opens the warehouse itself when no server runs.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import httpx


@dataclass(frozen=True)
class ServerInfo:
    url: str
    pid: int
    token: str


def server_file(database: Path) -> Path:
    return database.with_name(database.name + ".server.json")


def claim(database: Path, url: str) -> ServerInfo:
    """Record that this process serves `database` at `url`; returns the control token."""
    info = ServerInfo(url=url, pid=os.getpid(), token=secrets.token_urlsafe(24))
    path = server_file(database)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"url": info.url, "pid": info.pid, "token": info.token}, handle)
    os.replace(tmp, path)
    return info


def release(database: Path, info: ServerInfo) -> None:
    """Remove the server file if it is still ours."""
    current = _read(database)
    if current is not None and current.token == info.token:
        server_file(database).unlink(missing_ok=True)


def _read(database: Path) -> ServerInfo | None:
    try:
        data = json.loads(server_file(database).read_text())
        return ServerInfo(url=str(data["url"]), pid=int(data["pid"]), token=str(data["token"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def running_server(database: Path) -> ServerInfo | None:
    """The server that owns `database`, if it is alive and answers."""
    info = _read(database)
    if info is None:
        return None
    if info.pid == os.getpid():
        return None  # a file left by an earlier process that had our pid
    try:
        os.kill(info.pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    try:  # a live pid may belong to another program now: ask the server itself
        httpx.get(f"{info.url}/health", timeout=2.0).raise_for_status()
    except httpx.HTTPError:
        return None
    return info
