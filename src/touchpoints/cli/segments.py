"""The segment verbs (`segments save|list|members|sizes|refresh|delete`) and `rfm`,
`personas`: rules read from a file or the command line, members printed or written to
CSV/Parquet."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pandas as pd
import typer

from touchpoints.cli.context import FormatOpt, reach
from touchpoints.cli.insights import show
from touchpoints.cli.output import Format, render
from touchpoints.errors import InvalidInput
from touchpoints.insights.segment_rules import parse_rule

segments_app = typer.Typer(
    help="Saved segments: rules over traits and behaviour.", no_args_is_help=True
)
NameArg = Annotated[str, typer.Argument(help="The segment's name.")]
AsOfOpt = Annotated[str | None, typer.Option(help="Evaluate as of this date or time (UTC).")]


def read_rule(rule: str) -> dict:
    """A rule from a .json/.yaml file, or the text itself."""
    path = Path(rule)
    if path.suffix.lower() in (".json", ".yaml", ".yml"):
        if not path.is_file():
            raise InvalidInput(f"no file {rule}", field="rule")
        rule = path.read_text()
    return parse_rule(rule)


@segments_app.command("save")
def save(
    name: NameArg,
    rule: Annotated[str, typer.Argument(help="The rule: JSON or YAML text, or a file.")],
    fmt: FormatOpt = Format.table,
) -> None:
    """Create or replace a saved segment."""
    parsed = read_rule(rule)
    with reach() as target:
        render(target.save_segment(name, parsed), fmt)


@segments_app.command("list")
def list_segments(fmt: FormatOpt = Format.table) -> None:
    """The saved segments with their latest recorded size."""
    show("segments", fmt, None, None, None)


@segments_app.command("members")
def members(
    name: Annotated[str | None, typer.Argument(help="A saved segment.")] = None,
    rule: Annotated[str | None, typer.Option(help="Or a rule (text or file) to try.")] = None,
    as_of: AsOfOpt = None,
    out: Annotated[
        str | None, typer.Option(help="Write the members to a .csv or .parquet file.")
    ] = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """The customers in a saved segment, or matching a rule."""
    params = {"name": name, "as_of": as_of}
    if rule is not None:
        import orjson

        params["rule"] = orjson.dumps(read_rule(rule)).decode()
    if out is None:
        show("segment", fmt, None, None, None, **params)
        return
    suffix = Path(out).suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise InvalidInput("--out takes a .csv or .parquet file", field="out")
    with reach() as target:
        result = target.report("segment", {k: v for k, v in params.items() if v is not None})
    frame = pd.DataFrame(result["rows"], columns=result["columns"])
    if suffix == ".csv":
        frame.to_csv(out, index=False)
    else:
        frame.to_parquet(out, index=False)
    render({"members": len(frame), "file": out}, fmt)


@segments_app.command("sizes")
def sizes(name: NameArg, fmt: FormatOpt = Format.table) -> None:
    """A saved segment's size each time it was refreshed."""
    show("segment_sizes", fmt, None, None, None, name=name)


@segments_app.command("refresh")
def refresh(name: NameArg, fmt: FormatOpt = Format.table) -> None:
    """Count a saved segment's members now and record the size."""
    with reach() as target:
        render(target.refresh_segment(name), fmt)


@segments_app.command("delete")
def delete(name: NameArg, fmt: FormatOpt = Format.table) -> None:
    """Remove a saved segment (refused while another one refers to it)."""
    with reach() as target:
        render(target.delete_segment(name), fmt)


def rfm(
    summary: Annotated[bool, typer.Option("--summary", help="Customers per named group.")] = False,
    as_of: AsOfOpt = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Recency, frequency and monetary scores (1-5) and named groups (Champions, At Risk…)."""
    show("rfm", fmt, None, None, None, as_of=as_of, view="summary" if summary else "customers")


def personas(
    max_clusters: Annotated[int, typer.Option(help="The most clusters to consider.")] = 8,
    by_trait: Annotated[
        str | None, typer.Option(help="Break each persona down by a profile trait.")
    ] = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Customers clustered by behaviour (k by silhouette), each group described."""
    show("personas", fmt, None, None, None, max_clusters=max_clusters, trait=by_trait)
