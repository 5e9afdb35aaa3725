"""The `attribution` verb: the attribution report of the warehouse (through a running
server when there is one), or the same models on an ad-hoc paths file."""

from __future__ import annotations

from typing import Annotated

import typer

from touchpoints.cli.context import FormatOpt
from touchpoints.cli.insights import FromOpt, ToOpt, WhereOpt, show
from touchpoints.cli.output import Format, render


def attribution(
    by: Annotated[str, typer.Option(help="Touchpoints by channel, campaign or source_medium.")] = (
        "channel"
    ),
    lookback: Annotated[str, typer.Option(help="Touches this recent count: 30d, 2w, …")] = "30d",
    conversion_event: Annotated[str, typer.Option(help="The event that converts.")] = (
        "Order Completed"
    ),
    models: Annotated[
        list[str] | None,
        typer.Option(
            "--model",
            help="Only these models (repeatable): first_touch, last_touch, "
            "last_non_direct, linear, time_decay, position_based, markov, shapley.",
        ),
    ] = None,
    markov_order: Annotated[int, typer.Option(help="Markov chain order, 1 to 3.")] = 1,
    half_life: Annotated[str, typer.Option(help="Time decay half-life: 7d, 12h, …")] = "7d",
    shapley_value: Annotated[
        str, typer.Option(help="Shapley worth of a coalition: conversions or conversion_rate.")
    ] = "conversions",
    paths: Annotated[
        str | None,
        typer.Option(
            "--paths",
            help="A CSV of path (a > b > c), total_conversions, "
            "total_conversion_value, total_null instead of the warehouse.",
        ),
    ] = None,
    since: FromOpt = None,
    until: ToOpt = None,
    where: WhereOpt = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Attributed conversions, revenue, cost per conversion and ROAS per channel under
    every model side by side: first touch, last touch, last non-direct, linear, time
    decay, position based (40/20/40), Markov chain and Shapley value."""
    if paths is None:
        show("attribution", fmt, since, until, where, by=by, lookback=lookback,
             conversion_event=conversion_event, models=models, markov_order=markov_order,
             half_life=half_life, shapley_value=shapley_value)  # fmt: skip
        return
    from touchpoints.errors import InvalidInput
    from touchpoints.insights.attribution import PATH_MODELS, attribute, read_paths

    if since or until or where:
        raise InvalidInput("--from, --to and --where apply to the warehouse, not to --paths",
                           field="paths")  # fmt: skip
    chosen = [n.strip() for group in models or [] for n in group.split(",") if n.strip()]
    frame = attribute(read_paths(paths), models=chosen or PATH_MODELS, markov_order=markov_order,
                      shapley_value=shapley_value)  # fmt: skip
    clean = frame.astype(object).where(frame.notna(), None)
    render(clean.to_dict(orient="records"), fmt, list(frame.columns))
