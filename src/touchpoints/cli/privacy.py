"""`touchpoints privacy`: the rights of the person (export, erase) and retention.

Each verb goes to the running server that owns the warehouse file when there is one
(with the control token it left beside the file), else opens the warehouse itself.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import httpx
import typer
from rich.console import Console

from touchpoints.cli.context import FormatOpt, state
from touchpoints.cli.output import Format, render
from touchpoints.errors import InvalidInput, TouchpointsError, WarehouseError
from touchpoints.warehouse import Warehouse, connect, duckdb_path
from touchpoints.warehouse.ownership import running_server

privacy_app = typer.Typer(
    help="Rights of the person: access export, erasure; retention periods.",
    no_args_is_help=True,
)
err = Console(stderr=True)

IdentifierArg = Annotated[
    str,
    typer.Argument(help="Any identifier (email, phone, user id, kind:value) or a customer id."),
]


def _remote(method: str, path: str, **kwargs: Any) -> httpx.Response | None:
    """Ask the server that owns the warehouse file, if one runs; None otherwise."""
    database = duckdb_path(state.warehouse)
    info = running_server(database) if database is not None else None
    if info is None:
        return None
    headers = {"Authorization": f"Bearer {info.token}"}
    try:
        response = httpx.request(method, info.url + path, headers=headers, timeout=600, **kwargs)
    except httpx.HTTPError as exc:
        raise WarehouseError(f"the server at {info.url} did not answer: {exc}") from exc
    if response.status_code >= 400:
        try:
            body = response.json()
        except ValueError:
            body = {}
        raise TouchpointsError(
            body.get("message", f"the server refused ({response.status_code})"),
            field=body.get("field"),
        )
    return response


def _local(fn: Callable[[Warehouse], Any]) -> Any:
    warehouse = connect(state.warehouse)
    try:
        return fn(warehouse)
    finally:
        warehouse.close()


@privacy_app.command("export")
def export_command(
    identifier: IdentifierArg,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="The zip to write (default: a new name).")
    ] = None,
    reason: Annotated[str | None, typer.Option(help="Why (kept in the audit log).")] = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Write everything held about a person to one zip (JSON, and a CSV per table)."""
    from touchpoints.api.privacy_routes import EXTRAS
    from touchpoints.privacy.access import export_person

    target = out or Path(f"touchpoints-export-{_stamp()}.zip")
    if target.exists():
        raise InvalidInput(f"{target} exists already; choose another --out", field="out")
    params = {"reason": reason} if reason else {}
    response = _remote("GET", f"/v1/privacy/export/{quote(identifier, safe='')}", params=params)
    if response is not None:
        target.write_bytes(response.content)
        summary = {"file": str(target), "bytes": len(response.content)}
    else:
        _, manifest = _local(
            lambda wh: export_person(wh, identifier, reason=reason, out=target, extras=EXTRAS)
        )
        rows = {name: entry["rows"] for name, entry in manifest["tables"].items()}
        summary = {"file": str(target.resolve()), "customer_id": manifest["customer_id"], **rows}
    render(summary, fmt)


@privacy_app.command("erase")
def erase_command(
    identifier: IdentifierArg,
    reason: Annotated[str, typer.Option(help="Why (a request reference); kept in the audit log.")],
    fmt: FormatOpt = Format.table,
) -> None:
    """Erase a person from every table and file, leaving only salted-hash tombstones."""
    from touchpoints.privacy.erasure import erase

    response = _remote(
        "POST", "/v1/privacy/erase", json={"identifier": identifier, "reason": reason}
    )
    result = (
        response.json()
        if response is not None
        else _local(lambda wh: erase(wh, identifier, reason=reason))
    )
    if fmt is Format.json:
        render(result, fmt)
        return
    flat = {k: v for k, v in result.items() if not isinstance(v, dict)}
    render(flat, fmt)
    render([{"table": k, "rows": v} for k, v in result["deleted"].items()], fmt, title="deleted")


@privacy_app.command("enforce-retention")
def enforce_command(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would go; change nothing.")
    ] = False,
    fmt: FormatOpt = Format.table,
) -> None:
    """Delete what is past its retention period; counts per table and event rule."""
    from touchpoints.privacy.retention import enforce_retention

    response = _remote("POST", "/v1/privacy/retention/enforce", json={"dry_run": dry_run})
    result = (
        response.json()
        if response is not None
        else _local(lambda wh: enforce_retention(wh, dry_run=dry_run, actor="cli"))
    )
    if fmt is Format.json:
        render(result, fmt)
        return
    rows = [{"rule": k, "rows": v} for k, v in result["deleted"].items()]
    title = "would be deleted (dry run)" if result["dry_run"] else "deleted"
    render(rows, fmt, ["rule", "rows"], title=title)


@privacy_app.command("retention")
def retention_command(
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="TABLE=PERIOD or events:EVENT=PERIOD, e.g. events=730d."),
    ] = None,
    unset: Annotated[list[str] | None, typer.Option(help="Remove a rule (repeatable).")] = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Show the retention periods, or change them with --set / --unset."""
    from touchpoints.privacy.retention import load_settings, save_settings

    remote = _remote("GET", "/v1/privacy/retention")
    current = remote.json()["settings"] if remote is not None else _local(load_settings)
    if set_ or unset:
        changed = dict(current)
        for pair in set_ or []:
            key, sep, period = pair.rpartition("=")
            if not sep or not key:
                raise InvalidInput(f"--set takes KEY=PERIOD, not {pair!r}", field="--set")
            changed[key] = period
        for key in unset or []:
            changed.pop(key, None)
        response = _remote("PUT", "/v1/privacy/retention", json={"settings": changed})
        if response is not None:
            current = response.json()["settings"]
        else:
            current = _local(lambda wh: save_settings(wh, changed, actor="cli"))
    render([{"rule": k, "period": v} for k, v in current.items()], fmt, ["rule", "period"])


def _stamp() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
