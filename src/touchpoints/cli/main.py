"""The `touchpoints` command: thin verbs over the layers below."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer
from rich.console import Console

from touchpoints.cli.output import Format, render
from touchpoints.cli.target import open_target
from touchpoints.errors import TouchpointsError
from touchpoints.warehouse import CHANNELS, default_url

app = typer.Typer(
    name="touchpoints",
    help="Touchpoints: collect every customer touchpoint, understand it, act on it.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
sources_app = typer.Typer(help="Event sources and their write keys.", no_args_is_help=True)
app.add_typer(sources_app, name="sources")

err = Console(stderr=True)


class _State:
    warehouse: str = default_url()


state = _State()

WarehouseOpt = Annotated[
    str | None,
    typer.Option(
        "--warehouse",
        "-w",
        help="Warehouse URL (default: $TOUCHPOINTS_WAREHOUSE or duckdb:///touchpoints.duckdb).",
        show_default=False,
    ),
]
FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="Output format.")]


@app.callback()
def _main(warehouse: WarehouseOpt = None) -> None:
    if warehouse:
        state.warehouse = warehouse


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    rate_limit: Annotated[float, typer.Option(help="Events a second per write key.")] = 200_000,
) -> None:
    """Serve the collector and API on the warehouse (the server owns its file)."""
    from touchpoints.api.server import serve as run_server
    from touchpoints.collect.collector import CollectorSettings

    err.print(f"Touchpoints serving {state.warehouse} on http://{host}:{port}  (Ctrl-C stops)")
    run_server(state.warehouse, host, port, CollectorSettings(rate_limit=rate_limit))


@app.command()
def sql(
    query: Annotated[str, typer.Argument(help="One read-only SQL statement.")],
    fmt: FormatOpt = Format.table,
) -> None:
    """Run a read-only SQL query on the warehouse for a quick look at any table."""
    target = open_target(state.warehouse)
    try:
        columns, rows = target.sql(query)
    finally:
        target.close()
    render(rows, fmt, columns)


@sources_app.command("add")
def sources_add(
    name: Annotated[str, typer.Argument(help="A name for the website, app or system.")],
    channel: Annotated[str, typer.Option(help=f"Default channel: {', '.join(CHANNELS)}.")] = "web",
    fmt: FormatOpt = Format.table,
) -> None:
    """Create a source and print its write key (shown this once only)."""
    target = open_target(state.warehouse)
    try:
        made = target.add_source(name, channel)
    finally:
        target.close()
    render(made, fmt)
    if fmt is Format.table:
        err.print("Keep the write key now: only its hash is stored.")


@sources_app.command("list")
def sources_list(fmt: FormatOpt = Format.table) -> None:
    """List the sources (never their keys)."""
    target = open_target(state.warehouse)
    try:
        rows = target.list_sources()
    finally:
        target.close()
    render(rows, fmt, ["source_id", "name", "channel", "write_key_prefix", "created_at"])


@app.command()
def demo(
    customers: Annotated[int, typer.Option(min=1, help="How many customers to make.")] = 5000,
    months: Annotated[int, typer.Option(min=1, max=120, help="Months of history.")] = 12,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same data).")] = 7,
    if_empty: Annotated[
        bool, typer.Option("--if-empty", help="Do nothing when the warehouse already holds events.")
    ] = False,
    fmt: FormatOpt = Format.table,
) -> None:
    """Load a realistic omnichannel demo shop into the warehouse."""
    from touchpoints.cli.progress import bar
    from touchpoints.collect.demo import DemoParameters, load_demo
    from touchpoints.warehouse import connect

    warehouse = connect(state.warehouse)
    try:
        if if_empty and warehouse.count("events") > 0:
            err.print("The warehouse holds events already; demo data not loaded.")
            return
        with bar("Generating demo data") as progress:
            summary = load_demo(
                warehouse, DemoParameters(customers, months, seed), progress=progress
            )
    finally:
        warehouse.close()
    render(summary, fmt)


def main() -> None:
    """Entry point: errors become one line on stderr and exit status 2."""
    try:
        app()
    except TouchpointsError as exc:
        where = f" ({exc.field})" if exc.field else ""
        err.print(f"[red]error[/red]{where}: {exc.message}", highlight=False)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # a bug of ours: one line, the traceback on request
        if os.environ.get("TOUCHPOINTS_DEBUG"):
            raise
        err.print(
            f"[red]internal error[/red]: {type(exc).__name__}: {exc} "
            "(set TOUCHPOINTS_DEBUG=1 to see the traceback)",
            highlight=False,
        )
        sys.exit(1)


if __name__ == "__main__":
    main()
