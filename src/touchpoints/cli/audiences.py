"""The audience verbs (`audiences save|list|show|refresh|members|export|delete`): thin
faces over `/v1/audiences`, answered by the running server or, with none, in process."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import typer
import yaml

from touchpoints.activate.audience_sources import kind_of
from touchpoints.cli.context import FormatOpt, reach
from touchpoints.cli.output import Format, render
from touchpoints.errors import InvalidInput

audiences_app = typer.Typer(
    help="Audiences: who to reach, refreshed on a schedule, exported with consent.",
    no_args_is_help=True,
)
NameArg = Annotated[str, typer.Argument(help="The audience's name.")]


def _path(name: str, *rest: str) -> str:
    return "/".join(["/v1/audiences", quote(name, safe=""), *rest])


def read_definition(file: str) -> dict[str, Any]:
    """A definition from a .json/.yaml file (an uploaded list may also be a .txt or
    .csv file of identifiers, one a line)."""
    path = Path(file)
    if not path.is_file():
        raise InvalidInput(f"no file {file}", field="file")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() in (".txt", ".csv"):
        lines = [line.strip() for line in text.splitlines()]
        return {"list": [line for line in lines if line and line != "identifier"]}
    try:
        loaded = json.loads(text)
    except ValueError:
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise InvalidInput(f"the file is neither JSON nor YAML: {exc}", field="file") from exc
    if not isinstance(loaded, dict):
        raise InvalidInput("a definition is an object (a mapping)", field="file")
    return json.loads(json.dumps(loaded, default=str))  # YAML dates as ISO text


@audiences_app.command("save")
def save(
    name: NameArg,
    file: Annotated[str, typer.Argument(help="The definition: .json or .yaml (or a .txt/.csv "
                                              "list of identifiers, one a line).")],
    every: Annotated[
        int | None, typer.Option(help="Refresh every this many minutes (sets the schedule).")
    ] = None,
    fmt: FormatOpt = Format.table,
) -> None:  # fmt: skip
    """Create or replace an audience."""
    definition = read_definition(file)
    if every is not None:
        definition["refresh_every_minutes"] = every
    with reach() as target:
        saved = target.call("PUT", _path(name), json=definition)
    summary = {k: v for k, v in saved.items() if k != "definition"}
    render({**summary, "kind": kind_of(saved["definition"])}, fmt)


@audiences_app.command("list")
def list_all(fmt: FormatOpt = Format.table) -> None:
    """The audiences with their size and last refresh."""
    with reach() as target:
        rows = target.call("GET", "/v1/audiences")
    render(rows, fmt, ["name", "kind", "size", "last_refreshed", "refresh_every_minutes",
                       "description"])  # fmt: skip


@audiences_app.command("show")
def show(name: NameArg, fmt: FormatOpt = Format.table) -> None:
    """An audience's definition and its size over time (entered and left per refresh)."""
    with reach() as target:
        found = target.call("GET", _path(name))
    if fmt is not Format.table:
        render(found if fmt is Format.json else found["sizes"], fmt)
        return
    head = {k: v for k, v in found.items() if k not in ("sizes", "definition")}
    render({**head, "definition": json.dumps(found["definition"], sort_keys=True)}, fmt)
    render(found["sizes"], fmt, ["computed_at", "size", "entered", "left"], title="sizes")


@audiences_app.command("refresh")
def refresh(name: NameArg, fmt: FormatOpt = Format.table) -> None:
    """Find the members now; print the size and how many entered and left."""
    with reach() as target:
        render(target.call("POST", _path(name, "refresh")), fmt)


@audiences_app.command("members")
def members(
    name: NameArg,
    limit: Annotated[int, typer.Option(help="At most this many ids.")] = 1000,
    fmt: FormatOpt = Format.table,
) -> None:
    """The member customer ids as of the last refresh."""
    with reach() as target:
        found = target.call("GET", _path(name, "members"), params={"limit": limit})
    render([{"customer_id": c} for c in found["members"]], fmt, ["customer_id"])


@audiences_app.command("export")
def export(
    name: NameArg,
    path: Annotated[str, typer.Argument(help="The file to write.")],
    format: Annotated[
        str, typer.Option("--format", help="csv, parquet, google or meta (hashed lists).")
    ] = "csv",
    purpose: Annotated[
        str | None,
        typer.Option(help="The purpose members must consent to (advertising for ad files)."),
    ] = None,
    reason: Annotated[str | None, typer.Option(help="Why (kept in the audit log).")] = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Write the members to a file, leaving out (and counting) those without consent."""
    params = {"format": format, "inline": "true"}
    if purpose is not None:
        params["purpose"] = purpose
    if reason is not None:
        params["reason"] = reason
    with reach() as target:
        found = target.call("GET", _path(name, "export"), params=params)
    Path(path).write_bytes(base64.b64decode(found.pop("content_base64")))
    if fmt is not Format.json:
        found["left_out"] = json.dumps(found["left_out"])
    render({**found, "path": path}, fmt)


@audiences_app.command("delete")
def delete(name: NameArg, fmt: FormatOpt = Format.table) -> None:
    """Remove an audience, its members and its history."""
    with reach() as target:
        render(target.call("DELETE", _path(name)), fmt)
