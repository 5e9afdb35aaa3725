"""The email and trigger verbs: `campaigns save|list|show|send|sends`, `triggers
save|list|fires|pending|remove|tick` and `email settings`. Each is one REST call, to the
running server or answered in process (`Target.call`)."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

import typer

from touchpoints.cli.context import FormatOpt, reach
from touchpoints.cli.files import read_document
from touchpoints.cli.output import Format, render

campaigns_app = typer.Typer(help="Email campaigns: define, send, read the send log.",
                            no_args_is_help=True)  # fmt: skip
triggers_app = typer.Typer(help="Real-time triggers: define, watch what they do.",
                           no_args_is_help=True)  # fmt: skip
email_app = typer.Typer(help="How email leaves: SMTP server, sender, rate.", no_args_is_help=True)
FileArg = Annotated[str, typer.Argument(help="The definition: a .json or .yaml file.")]


def _call(method: str, path: str, **kwargs: Any) -> Any:
    with reach() as target:
        return target.call(method, path, **kwargs)


@campaigns_app.command("save")
def campaign_save(file: FileArg, fmt: FormatOpt = Format.table) -> None:
    """Create or replace a campaign (needs `campaign_id`)."""
    body = read_document(file)
    key = quote(str(body.get("campaign_id", "")), safe="")
    saved = _call("PUT", f"/v1/campaigns/{key}", json=body)
    render({"saved": saved["campaign_id"], "audience": saved["audience"]}, fmt)


@campaigns_app.command("list")
def campaign_list(fmt: FormatOpt = Format.table) -> None:
    """Every campaign."""
    rows = _call("GET", "/v1/campaigns")
    render(rows, fmt, ["campaign_id", "name", "audience", "purpose", "offer_id", "updated_at"])


@campaigns_app.command("send")
def campaign_send(
    campaign_id: Annotated[str, typer.Argument(help="The campaign.")], fmt: FormatOpt = Format.table
) -> None:
    """Send to the audience as it is now: each allowed person once; safe to run again."""
    render(_call("POST", f"/v1/campaigns/{quote(campaign_id, safe='')}/send"), fmt)


@campaigns_app.command("sends")
def campaign_sends(
    campaign_id: Annotated[str, typer.Argument(help="The campaign.")],
    limit: Annotated[int, typer.Option(help="How many of the latest rows.")] = 20,
    fmt: FormatOpt = Format.table,
) -> None:
    """The send log: counts by status, then the latest rows."""
    log = _call("GET", f"/v1/campaigns/{quote(campaign_id, safe='')}/sends",
                params={"limit": limit})  # fmt: skip
    if fmt is Format.json:
        render(log, fmt)
        return
    render(log["counts"], fmt, title="by status")
    render(log["sends"], fmt, ["send_id", "customer_id", "status", "reason", "sent_at"])


@triggers_app.command("save")
def trigger_save(file: FileArg, fmt: FormatOpt = Format.table) -> None:
    """Create or replace a trigger (needs `name`)."""
    body = read_document(file)
    saved = _call("PUT", f"/v1/triggers/{quote(str(body.get('name', '')), safe='')}", json=body)
    render({"saved": saved["name"], "action": saved["action"]}, fmt)


@triggers_app.command("list")
def trigger_list(fmt: FormatOpt = Format.table) -> None:
    """Every trigger."""
    render(_call("GET", "/v1/triggers"), fmt, ["name", "when", "unless", "action", "cap_hours"])


@triggers_app.command("fires")
def trigger_fires(
    name: Annotated[str, typer.Argument(help="The trigger.")], fmt: FormatOpt = Format.table
) -> None:
    """When it fired, for whom, and what came of it."""
    rows = _call("GET", f"/v1/triggers/{quote(name, safe='')}/fires")
    render(rows, fmt, ["fired_at", "customer_id", "status", "reason"])


@triggers_app.command("pending")
def trigger_pending(
    name: Annotated[str, typer.Argument(help="The trigger.")], fmt: FormatOpt = Format.table
) -> None:
    """Who it is waiting on, and until when."""
    rows = _call("GET", f"/v1/triggers/{quote(name, safe='')}/pending")
    render(rows, fmt, ["customer_id", "started_at", "due_at"])


@triggers_app.command("remove")
def trigger_remove(name: Annotated[str, typer.Argument(help="The trigger.")]) -> None:
    """Remove a trigger and what it is waiting for."""
    render(_call("DELETE", f"/v1/triggers/{quote(name, safe='')}"), Format.table)


@triggers_app.command("tick")
def trigger_tick(fmt: FormatOpt = Format.table) -> None:
    """Evaluate the triggers now (a running server does so every second)."""
    render(_call("POST", "/v1/triggers/tick"), fmt)


@email_app.command("settings")
def email_settings(
    file: Annotated[str | None, typer.Argument(help="Settings to change (.json/.yaml).")] = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Show the email settings, or change those the file names."""
    if file is None:
        render(_call("GET", "/v1/email/settings"), fmt)
    else:
        render(_call("PUT", "/v1/email/settings", json=read_document(file)), fmt)
