"""The `touchpoints feedback` verbs: NPS, CSAT/CES, sentiment, themes and mentions, each
one report of `touchpoints.models.feedback_reports` printed as a table, JSON or CSV; and
`feedback surveys save|list|show|delete`, thin faces over `/v1/surveys`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated
from urllib.parse import quote

import typer

from touchpoints.cli.context import FormatOpt, reach
from touchpoints.cli.insights import FromOpt, ToOpt, WhereOpt, show
from touchpoints.cli.output import Format, render
from touchpoints.collect.surveys import parse_survey
from touchpoints.errors import InvalidInput

feedback_app = typer.Typer(
    help="Voice of the customer: surveys (NPS, CSAT, CES), sentiment, themes, mentions.",
    no_args_is_help=True,
)
PeriodOpt = Annotated[str, typer.Option(help="day, week, month or all.")]
ByOpt = Annotated[
    str | None, typer.Option(help="Break down by a field, property or trait (channel, …).")
]
SourceOpt = Annotated[str, typer.Option(help="all, survey or mention.")]
surveys_app = typer.Typer(
    help="Surveys defined in the product: a hosted page, an embeddable form, answers as events.",
    no_args_is_help=True,
)
feedback_app.add_typer(surveys_app, name="surveys")
SurveyArg = Annotated[str, typer.Argument(help="The survey's id.")]


@feedback_app.command()
def nps(
    period: PeriodOpt = "all",
    by: ByOpt = None,
    view: Annotated[
        str, typer.Option(help="score, response_rate or detractors (what they did before).")
    ] = "score",
    days: Annotated[int, typer.Option(help="Days before a detractor's answer.")] = 7,
    top: Annotated[int, typer.Option(help="Events to list with --view detractors.")] = 20,
    since: FromOpt = None,
    until: ToOpt = None,
    where: WhereOpt = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Net Promoter Score (promoters 9-10 minus detractors 0-6) with its 95% interval."""
    show("nps", fmt, since, until, where, period=period, by=by, view=view, days=days, top=top)


@feedback_app.command()
def csat(
    period: PeriodOpt = "all",
    by: ByOpt = None,
    since: FromOpt = None,
    until: ToOpt = None,
    where: WhereOpt = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """CSAT (share of 4-5 answers on 1-5, and the mean) and CES (mean effort score)."""
    show("csat", fmt, since, until, where, period=period, by=by)


@feedback_app.command()
def sentiment(
    period: PeriodOpt = "week",
    by: ByOpt = None,
    source: SourceOpt = "all",
    texts: Annotated[bool, typer.Option("--texts", help="List the latest texts, scored.")] = False,
    top: Annotated[int, typer.Option(help="Texts to list with --texts.")] = 100,
    since: FromOpt = None,
    until: ToOpt = None,
    where: WhereOpt = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Sentiment (VADER) of survey comments and mentions per period and source."""
    show("sentiment", fmt, since, until, where, period=period, by=by, source=source,
         view="texts" if texts else "trend", top=top)  # fmt: skip


@feedback_app.command()
def themes(
    source: SourceOpt = "all",
    top: Annotated[int, typer.Option(help="Terms per side.")] = 10,
    examples: Annotated[int, typer.Option(help="Example texts per term.")] = 2,
    since: FromOpt = None,
    until: ToOpt = None,
    where: WhereOpt = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """The words and phrases most characteristic of negative vs positive texts."""
    show("themes", fmt, since, until, where, source=source, top=top, examples=examples)


@feedback_app.command()
def mentions(
    term: Annotated[
        list[str] | None, typer.Option(help="A brand or competitor term (repeatable).")
    ] = None,
    view: Annotated[str, typer.Option(help="share, volume or platforms.")] = "share",
    window: Annotated[int, typer.Option(help="Trailing days for spike detection.")] = 14,
    threshold: Annotated[float, typer.Option(help="Robust z-score of a spike.")] = 3.5,
    since: FromOpt = None,
    until: ToOpt = None,
    where: WhereOpt = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Share of voice by term, daily volume with spikes flagged, or mentions by platform."""
    show("mentions", fmt, since, until, where, term=term or None, view=view, window=window,
         threshold=threshold)  # fmt: skip


@surveys_app.command("save")
def save_survey(
    file: Annotated[str, typer.Argument(help="The definition: a .json file.")],
    fmt: FormatOpt = Format.table,
) -> None:
    """Create or replace a survey from its definition (checked before it is sent)."""
    path = Path(file)
    if not path.is_file():
        raise InvalidInput(f"no file {file}", field="file")
    survey = parse_survey(path.read_text())
    with reach() as target:
        saved = target.call("PUT", f"/v1/surveys/{quote(survey['survey_id'], safe='')}",
                            json=survey)  # fmt: skip
    page = f"/v1/surveys/{saved['survey_id']}/page"
    render({"saved": saved["survey_id"], "questions": len(saved["questions"]), "page": page}, fmt)


@surveys_app.command("list")
def list_surveys(fmt: FormatOpt = Format.table) -> None:
    """The surveys."""
    with reach() as target:
        rows = target.call("GET", "/v1/surveys")
    render(rows, fmt, ["survey_id", "title", "questions", "source_id", "updated_at"])


@surveys_app.command("show")
def show_survey(survey_id: SurveyArg, fmt: FormatOpt = Format.table) -> None:
    """A survey's definition (its questions as a table, or the whole as JSON)."""
    with reach() as target:
        survey = target.call("GET", f"/v1/surveys/{quote(survey_id, safe='')}")
    if fmt is not Format.table:
        render(survey, fmt)
        return
    rows = [{**q, "choices": ", ".join(q.get("choices", []))} for q in survey["questions"]]
    render(rows, fmt, ["id", "type", "text", "required", "choices"], title=survey["title"])


@surveys_app.command("delete")
def delete_survey(survey_id: SurveyArg, fmt: FormatOpt = Format.table) -> None:
    """Delete a survey's definition (answers already given stay: they are events)."""
    with reach() as target:
        render(target.call("DELETE", f"/v1/surveys/{quote(survey_id, safe='')}"), fmt)
