"""The experiment verbs (`experiments save|list|show|assign`): definitions read from a
JSON or YAML file, the analysis through the `experiment` report (so a running server
answers), assignment by the same hashing the API serves."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from touchpoints.cli.context import FormatOpt, reach
from touchpoints.cli.insights import show as show_report
from touchpoints.cli.output import Format, render
from touchpoints.errors import InvalidInput
from touchpoints.models.experiment_define import parse_experiment

experiments_app = typer.Typer(
    help="A/B tests: definitions, assignment and results.", no_args_is_help=True
)
KeyArg = Annotated[str, typer.Argument(help="The experiment's key.")]
#: What `show` prints as a table; --format json or csv gives every statistic.
TABLE_COLUMNS = [
    "metric",
    "variant",
    "n_control",
    "n_variant",
    "mean_control",
    "mean_variant",
    "relative_effect",
    "relative_low",
    "relative_high",
    "p_value_adjusted",
    "sequential_p_value_adjusted",
    "chance_to_beat_control",
    "significant",
]


def read_definition(file: str) -> dict[str, Any]:
    """A definition from a .json/.yaml file, checked before anything is sent or saved."""
    path = Path(file)
    if not path.is_file():
        raise InvalidInput(f"no file {file}", field="file")
    return parse_experiment(path.read_text()).as_dict()


@experiments_app.command("save")
def save(
    file: Annotated[str, typer.Argument(help="The definition: a .json or .yaml file.")],
    fmt: FormatOpt = Format.table,
) -> None:
    """Create or replace an experiment from its definition."""
    definition = read_definition(file)
    with reach() as target:
        saved = target.save_experiment(definition)
    render({"saved": saved["key"], "variants": len(saved["variants"])}, fmt)


@experiments_app.command("list")
def list_all(fmt: FormatOpt = Format.table) -> None:
    """The saved experiments."""
    show_report("experiments", fmt, None, None, None)


@experiments_app.command("show")
def show(
    key: KeyArg,
    as_of: Annotated[str | None, typer.Option(help="Count events before this time (UTC).")] = None,
    alpha: Annotated[float, typer.Option(help="Significance level, two-sided.")] = 0.05,
    mde: Annotated[float, typer.Option(help="Relative effect the power figures aim at.")] = 0.05,
    fmt: FormatOpt = Format.table,
) -> None:
    """Each variant against control on every metric: effects, intervals, p-values
    (fixed-horizon and always-valid), chance to beat control, the SRM check."""
    params = {"key": key, "alpha": str(alpha), "mde": str(mde)}
    if as_of:
        params["as_of"] = as_of
    with reach() as target:
        result = target.report("experiment", params)
    rows = result["rows"]
    if fmt is not Format.table:
        render(rows, fmt, result["columns"])
        return
    console = Console()
    for warning in dict.fromkeys(r["warnings"] for r in rows if r.get("warnings")):
        console.print(f"[bold red]{warning}[/bold red]")
    render(rows, fmt, TABLE_COLUMNS, title=f"experiment {key}")
    if rows:
        console.print(
            f"p-values corrected: {'; '.join(dict.fromkeys(r['correction'] for r in rows))}"
        )


@experiments_app.command("assign")
def assign(
    key: KeyArg,
    unit: Annotated[str, typer.Argument(help="A unit id.")],
    fmt: FormatOpt = Format.table,
) -> None:
    """The variant a unit gets (the same everywhere, every time)."""
    with reach() as target:
        found = target.assignment(key, unit)
    render(found, fmt)
