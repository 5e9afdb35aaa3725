"""The insights verbs (`web`, `funnel`, `paths`, `retention`, `kpis`): each gathers its
options as text parameters for `touchpoints.insights.reports`, which reads and checks
them the same way for the CLI and the API."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from touchpoints.cli.context import FormatOpt, reach
from touchpoints.cli.output import Format, render

FromOpt = Annotated[
    str | None,
    typer.Option("--from", "--since", help="Start: a date or time (UTC), inclusive."),
]
ToOpt = Annotated[
    str | None,
    typer.Option("--to", "--until", help="End: a time, exclusive; a bare date includes that day."),
]
WhereOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--where",
        help="FIELD=VALUE or FIELD!=VALUE (repeatable): channel, source, medium, campaign, "
        "device, browser, os, country or any event property.",
    ),
]
TimeoutOpt = Annotated[str, typer.Option(help="Session timeout: 30m, 1h, …")]


def show(
    report: str,
    fmt: Format,
    since: str | None,
    until: str | None,
    where: list[str] | None,
    **options: Any,
) -> None:
    """Run one report where the warehouse lives, and print it."""
    params: dict[str, Any] = {"from": since, "to": until, "where": where or None}
    for name, value in options.items():
        if isinstance(value, bool):
            value = "true" if value else None
        elif value is not None and not isinstance(value, list):
            value = str(value)
        params[name] = value
    params = {k: v for k, v in params.items() if v not in (None, [])}
    with reach() as target:
        result = target.report(report, params)
    render(result["rows"], fmt, result["columns"])


def register(app: typer.Typer) -> None:
    """Add the insights verbs to the `touchpoints` command."""

    @app.command()
    def web(
        period: Annotated[str, typer.Option(help="day, week, month or all.")] = "day",
        by: Annotated[
            str | None,
            typer.Option(
                help="Break down by channel_group, source, medium, campaign, referrer_host, "
                "entry_page, exit_page, device, browser, os or country."
            ),
        ] = None,
        pages: Annotated[
            bool, typer.Option("--pages", help="Top pages with entrances and exits instead.")
        ] = False,
        limit: Annotated[int, typer.Option(help="Pages to list with --pages.")] = 20,
        timeout: TimeoutOpt = "30m",
        since: FromOpt = None,
        until: ToOpt = None,
        where: WhereOpt = None,
        fmt: FormatOpt = Format.table,
    ) -> None:
        """Web and app analytics: users, sessions, views, bounce and engagement rates.
        Reads the web and app channels unless --where names a channel."""
        if pages:
            show("pages", fmt, since, until, where, limit=limit, timeout=timeout)
        else:
            show("web", fmt, since, until, where, period=period, by=by, timeout=timeout)

    @app.command()
    def funnel(
        steps: Annotated[
            list[str],
            typer.Argument(
                help="Ordered steps: an event name, page:/path or screen:Name, with optional "
                "filters as 'Product Viewed[category=Shoes]'."
            ),
        ],
        window: Annotated[str, typer.Option(help="Time from step 1 to the last: 7d, 12h…")] = "7d",
        by: Annotated[str | None, typer.Option(help="Break down by a field or property.")] = None,
        dropped_after: Annotated[
            int | None, typer.Option(help="List the users who reached step K but not K+1.")
        ] = None,
        since: FromOpt = None,
        until: ToOpt = None,
        where: WhereOpt = None,
        fmt: FormatOpt = Format.table,
    ) -> None:
        """Users reaching each step in order, with conversion and time to convert
        (ClickHouse windowFunnel semantics)."""
        show("funnel", fmt, since, until, where, step=steps, window=window, by=by,
             dropped_after=dropped_after)  # fmt: skip

    @app.command()
    def paths(
        from_event: Annotated[
            str | None, typer.Option("--from-event", "--after", help="Paths after this step.")
        ] = None,
        to_event: Annotated[
            str | None, typer.Option("--to-event", "--before", help="Paths leading to this step.")
        ] = None,
        steps: Annotated[int, typer.Option(help="How many steps to follow.")] = 3,
        top: Annotated[int, typer.Option(help="How many paths to list.")] = 20,
        sankey: Annotated[
            bool, typer.Option("--sankey", help="Print the Sankey edges (source, target, value).")
        ] = False,
        timeout: TimeoutOpt = "30m",
        since: Annotated[str | None, typer.Option("--since", help="Start date or time.")] = None,
        until: Annotated[str | None, typer.Option("--until", help="End date or time.")] = None,
        where: WhereOpt = None,
        fmt: FormatOpt = Format.table,
    ) -> None:
        """The most common next (or previous) steps in a session from (or to) an event
        or page (page:/pricing). Date range: --since/--until."""
        show("paths", fmt, since, until, where, from_event=from_event, to_event=to_event,
             steps=steps, top=top, sankey=sankey, timeout=timeout)  # fmt: skip

    @app.command()
    def retention(
        period: Annotated[str, typer.Option(help="day, week or month.")] = "week",
        start_event: Annotated[
            str | None, typer.Option(help="Cohorts by the first time of this step.")
        ] = None,
        return_event: Annotated[
            str | None, typer.Option(help="What counts as coming back (default: any event).")
        ] = None,
        periods: Annotated[int, typer.Option(help="Periods after the cohort's.")] = 12,
        lifecycle: Annotated[
            bool, typer.Option("--lifecycle", help="New, returning, resurrected, dormant.")
        ] = False,
        since: FromOpt = None,
        until: ToOpt = None,
        where: WhereOpt = None,
        fmt: FormatOpt = Format.table,
    ) -> None:
        """Cohort retention (classic and unbounded), or the lifecycle of users."""
        show("retention", fmt, since, until, where, period=period, start_event=start_event,
             return_event=return_event, periods=periods, lifecycle=lifecycle)  # fmt: skip

    @app.command()
    def kpis(
        by: Annotated[str, typer.Option(help="channel or campaign.")] = "channel",
        period: Annotated[str, typer.Option(help="day, week, month or all.")] = "all",
        customers: Annotated[
            bool, typer.Option("--customers", help="Customer retention and churn instead.")
        ] = False,
        since: FromOpt = None,
        until: ToOpt = None,
        where: WhereOpt = None,
        fmt: FormatOpt = Format.table,
    ) -> None:
        """Campaign KPIs from spend and sessions: CTR, conversion rate, CPA, CAC, ROAS,
        ROI; or customer retention and churn per period (--customers)."""
        show("kpis", fmt, since, until, where, by=by, period=period, customers=customers)
