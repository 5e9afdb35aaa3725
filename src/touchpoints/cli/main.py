"""The `touchpoints` command: thin verbs over the layers below."""

from __future__ import annotations

import os
import sys
from dataclasses import asdict
from typing import Annotated

import typer
from rich.console import Console

from touchpoints.cli import activation, insights, models, privacy, segments
from touchpoints.cli.attribution import attribution
from touchpoints.cli.audiences import audiences_app
from touchpoints.cli.context import FormatOpt, state
from touchpoints.cli.context import reach as _target
from touchpoints.cli.experiments import experiments_app
from touchpoints.cli.feedback import feedback_app
from touchpoints.cli.offers import offers_app
from touchpoints.cli.output import Format, render
from touchpoints.cli.webhooks import webhooks_app
from touchpoints.collect.ip import DEFAULT_IP_MODE
from touchpoints.errors import TouchpointsError
from touchpoints.warehouse import CHANNELS
from touchpoints.warehouse.vault import new_key

app = typer.Typer(
    name="touchpoints",
    help="Touchpoints: collect every customer touchpoint, understand it, act on it.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
sources_app = typer.Typer(help="Event sources and their write keys.", no_args_is_help=True)
app.add_typer(sources_app, name="sources")
keys_app = typer.Typer(help="API keys: read (insights, profiles) and admin.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
insights.register(app)
app.add_typer(models.clv_app, name="clv")
app.command()(models.recommend)
app.command()(models.churn)
app.add_typer(segments.segments_app, name="segments")
app.add_typer(privacy.privacy_app, name="privacy")
app.add_typer(experiments_app, name="experiments")
app.add_typer(feedback_app, name="feedback")
app.add_typer(offers_app, name="offers")
app.add_typer(audiences_app, name="audiences")
app.add_typer(activation.campaigns_app, name="campaigns")
app.add_typer(activation.triggers_app, name="triggers")
app.add_typer(activation.email_app, name="email")
app.add_typer(webhooks_app, name="webhooks")
app.command()(attribution)
app.command()(segments.rfm)
app.command()(segments.personas)

err = Console(stderr=True)


WarehouseOpt = Annotated[
    str | None,
    typer.Option(
        "--warehouse",
        "-w",
        help="Warehouse URL (default: $TOUCHPOINTS_WAREHOUSE or duckdb:///touchpoints.duckdb).",
        show_default=False,
    ),
]


@app.callback()
def _main(warehouse: WarehouseOpt = None) -> None:
    if warehouse:
        state.warehouse = warehouse


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    rate_limit: Annotated[float, typer.Option(help="Events a second per write key.")] = 200_000,
    api_rate_limit: Annotated[
        float, typer.Option(help="API requests a second per read or admin key.")
    ] = 50.0,
    api_burst: Annotated[float, typer.Option(help="API requests a key may burst.")] = 100.0,
    retention_hours: Annotated[
        float, typer.Option(help="Hours between retention runs (0: never).")
    ] = 24.0,
) -> None:
    """Serve the collector and API on the warehouse (the server owns its file)."""
    from touchpoints.api.ratelimit import ApiSettings
    from touchpoints.api.server import serve as run_server
    from touchpoints.collect.collector import CollectorSettings

    api = ApiSettings(api_rate_limit, api_burst, retention_hours * 3600 or None)
    err.print(f"Touchpoints serving {state.warehouse} on http://{host}:{port}  (Ctrl-C stops)")
    run_server(
        state.warehouse, host, port, CollectorSettings(rate_limit=rate_limit), api_settings=api
    )


@app.command()
def sql(
    query: Annotated[str, typer.Argument(help="One read-only SQL statement.")],
    fmt: FormatOpt = Format.table,
) -> None:
    """Run a read-only SQL query on the warehouse for a quick look at any table."""
    with _target() as target:
        columns, rows = target.sql(query)
    render(rows, fmt, columns)


@sources_app.command("add")
def sources_add(
    name: Annotated[str, typer.Argument(help="A name for the website, app or system.")],
    channel: Annotated[str, typer.Option(help=f"Default channel: {', '.join(CHANNELS)}.")] = "web",
    ip_mode: Annotated[
        str,
        typer.Option(
            help="What is kept of client IP addresses: keep, truncate (last IPv4 octet, "
            "all but 48 IPv6 bits zeroed), hash (keyed, per warehouse) or drop."
        ),
    ] = DEFAULT_IP_MODE,
    fmt: FormatOpt = Format.table,
) -> None:
    """Create a source and print its write key (shown this once only)."""
    with _target() as target:
        made = target.add_source(name, channel, ip_mode)
    render(made, fmt)
    if fmt is Format.table:
        err.print("Keep the write key now: only its hash is stored.")


@sources_app.command("set")
def sources_set(
    source_id: Annotated[str, typer.Argument(help="The source_id (see sources list).")],
    ip_mode: Annotated[
        str | None, typer.Option(help="What to keep of client IPs: keep, truncate, hash, drop.")
    ] = None,
    consent_mode: Annotated[
        str | None,
        typer.Option(help="Events without analytics consent: off, pseudonymous or drop."),
    ] = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Change a source's privacy settings (recorded in the audit log)."""
    from touchpoints.errors import InvalidInput

    if ip_mode is None and consent_mode is None:
        raise InvalidInput("give --ip-mode or --consent-mode", field="ip_mode")
    with _target() as target:
        render(target.set_source(source_id, ip_mode, consent_mode), fmt)


@sources_app.command("list")
def sources_list(fmt: FormatOpt = Format.table) -> None:
    """List the sources (never their keys)."""
    with _target() as target:
        rows = target.list_sources()
    render(rows, fmt, ["source_id", "name", "channel", "ip_mode", "write_key_prefix", "created_at"])


@app.command("build")
def build_command(
    full: Annotated[bool, typer.Option("--full", help="Rebuild from the whole log.")] = False,
    country_code: Annotated[
        str | None, typer.Option(help="Calling code put before national phone numbers, e.g. 44.")
    ] = None,
    plus_addressing: Annotated[
        bool | None,
        typer.Option(
            "--strip-plus-addressing/--keep-plus-addressing",
            help="Treat ana+news@example.com as ana@example.com.",
        ),
    ] = None,
    trait: Annotated[
        list[str] | None, typer.Option(help="Another trait that identifies a person (repeatable).")
    ] = None,
    max_links: Annotated[
        list[str] | None,
        typer.Option(
            help="KIND=N: quarantine an identifier linked to more than N of KIND "
            "(repeatable), e.g. --max-links email=3."
        ),
    ] = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Resolve identities into customers and rebuild their profiles. Settings given here
    are kept for later builds."""
    from touchpoints.errors import InvalidInput

    settings: dict = {}
    if country_code is not None:
        settings["country_code"] = country_code
    if plus_addressing is not None:
        settings["strip_plus_addressing"] = plus_addressing
    if trait:
        settings["traits"] = trait
    if max_links:
        limits = {}
        for pair in max_links:
            kind, _, number = pair.partition("=")
            if not kind or not number.isdigit():
                raise InvalidInput(f"--max-links takes KIND=N, not {pair!r}", field="max_links")
            limits[kind] = int(number)
        settings["max_links"] = limits
    with _target() as target:
        summary = target.build(full, settings)
    render(summary, fmt)


@app.command("profile")
def profile_command(
    identifier: Annotated[
        str,
        typer.Argument(
            help="Any identifier: an email, phone, "
            "user id, anonymous id, loyalty card, "
            "or kind:value."
        ),
    ],
    limit: Annotated[int, typer.Option(min=1, help="Timeline events to show.")] = 20,
    fmt: FormatOpt = Format.table,
) -> None:
    """Show a customer's profile and cross-channel timeline."""
    with _target() as target:
        found = target.profile(identifier, limit)
    timeline = found.pop("timeline")
    if fmt is Format.json:
        render({**found, "timeline": timeline}, fmt)
        return
    render(found, fmt)
    compact = ["timestamp", "channel", "type", "event", "name", "page_path", "revenue"]
    render(timeline, fmt, compact if fmt is Format.table else None, title="timeline (latest first)")


@keys_app.command("add")
def keys_add(
    name: Annotated[str, typer.Argument(help="Who or what uses the key.")],
    role: Annotated[str, typer.Option(help="read or admin.")] = "read",
    fmt: FormatOpt = Format.table,
) -> None:
    """Make an API key and print it (shown this once only)."""
    with _target() as target:
        made = target.add_key(name, role)
    render(made, fmt)


@keys_app.command("list")
def keys_list(fmt: FormatOpt = Format.table) -> None:
    """List the API keys (never the keys themselves)."""
    with _target() as target:
        rows = target.list_keys()
    render(rows, fmt, ["key_id", "name", "role", "key_prefix", "created_at", "revoked_at"])


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key_id to revoke.")],
    fmt: FormatOpt = Format.table,
) -> None:
    """Revoke an API key at once."""
    with _target() as target:
        render(target.revoke_key(key_id), fmt)


@keys_app.command("new-master")
def keys_new_master() -> None:
    """Print a fresh encryption key for personal data (for TOUCHPOINTS_KEY or a key
    file). Only for a new warehouse: data sealed with another key cannot be read."""
    typer.echo(new_key())


@app.command("import")
def import_command(
    kind: Annotated[
        str, typer.Argument(help="orders, email, spend, weblog, feedback or mentions.")
    ],
    path: Annotated[
        str,
        typer.Argument(
            help="A CSV or Parquet file (weblog: an access log in Common or Combined Log Format)."
        ),
    ],
    map_file: Annotated[
        str | None, typer.Option("--map", help="YAML mapping our column names to the file's.")
    ] = None,
    column: Annotated[
        list[str] | None,
        typer.Option(
            "--column", "-c", help="OURS=THEIRS, e.g. -c order_id='Order No' (repeatable)."
        ),
    ] = None,
    channel: Annotated[str | None, typer.Option(help="Channel of the events.")] = None,
    source: Annotated[str | None, typer.Option(help="Source name (default import-KIND).")] = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Import a file of orders, email events, ad spend, web logs, survey answers or social
    mentions. Bad rows are reported by line and kept aside; importing twice adds nothing."""
    from touchpoints.cli.progress import bar
    from touchpoints.collect.importers import import_file, load_mapping
    from touchpoints.errors import InvalidInput
    from touchpoints.warehouse import connect

    mapping = dict(load_mapping(map_file)) if map_file else {}
    for pair in column or []:
        ours, sep, theirs = pair.partition("=")
        if not sep or not ours.strip() or not theirs.strip():
            raise InvalidInput(f"--column takes OURS=THEIRS, not {pair!r}", field="--column")
        mapping[ours.strip()] = theirs.strip()
    warehouse = connect(state.warehouse)
    try:
        with bar(f"Importing {kind}") as progress:
            report = import_file(
                warehouse,
                kind,
                path,
                mapping=mapping or None,
                channel=channel,
                source_name=source,
                progress=progress,
            )
    finally:
        warehouse.close()
    summary = {k: v for k, v in asdict(report).items() if k != "errors"}
    if fmt is Format.json:
        render({**summary, "errors": report.errors}, fmt)
        return
    render(summary, fmt)
    if report.errors:
        render(report.errors, fmt, ["line", "column", "reason"], title="rows kept aside")


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
