"""The `touchpoints webhooks` verbs: thin faces over `/v1/webhooks` (a running server
answers, else the warehouse in this process)."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

import typer

from touchpoints.activate.webhooks import DEFAULTS
from touchpoints.cli.context import FormatOpt, reach
from touchpoints.cli.output import Format, render
from touchpoints.errors import InvalidInput

webhooks_app = typer.Typer(
    help="Webhooks: signed JSON calls to your systems, retried, with dead letters.",
    no_args_is_help=True,
)
NameArg = Annotated[str, typer.Argument(help="The webhook's name.")]
LIST_COLUMNS = ["name", "url", "purpose", "max_attempts", "backoff_seconds", "updated_at"]
DELIVERY_COLUMNS = [
    "delivery_id",
    "webhook",
    "status",
    "attempts",
    "next_attempt_at",
    "last_error",
    "created_at",
    "delivered_at",
]
LETTER_COLUMNS = ["delivery_id", "webhook", "attempts", "last_error", "failed_at", "replayed_at"]


def _path(name: str) -> str:
    return f"/v1/webhooks/{quote(name, safe='')}"


@webhooks_app.command("add")
def add(
    name: NameArg,
    url: Annotated[str, typer.Argument(help="The http(s) address to POST to.")],
    purpose: Annotated[
        str, typer.Option(help="The consent purpose personal payloads need.")
    ] = DEFAULTS["purpose"],
    max_attempts: Annotated[int, typer.Option(help="Attempts before a dead letter.")] = DEFAULTS[
        "max_attempts"
    ],
    backoff: Annotated[float, typer.Option(help="Seconds before the first retry.")] = DEFAULTS[
        "backoff_seconds"
    ],
    max_backoff: Annotated[float, typer.Option(help="Longest wait between tries.")] = DEFAULTS[
        "max_backoff_seconds"
    ],
    timeout: Annotated[float, typer.Option(help="Seconds to wait for an answer.")] = DEFAULTS[
        "timeout_seconds"
    ],
    rotate_secret: Annotated[
        bool, typer.Option("--rotate-secret", help="Make a new signing secret.")
    ] = False,
    fmt: FormatOpt = Format.table,
) -> None:
    """Create or replace a webhook; prints the signing secret when one is made (once)."""
    definition: dict[str, Any] = {
        "url": url,
        "purpose": purpose,
        "max_attempts": max_attempts,
        "backoff_seconds": _number(backoff),
        "max_backoff_seconds": _number(max_backoff),
        "timeout_seconds": _number(timeout),
    }
    params = {"rotate_secret": "true"} if rotate_secret else None
    with reach() as target:
        saved = target.call("PUT", _path(name), json=definition, params=params)
    render(saved, fmt)


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


@webhooks_app.command("list")
def list_all(fmt: FormatOpt = Format.table) -> None:
    """Every webhook (never the secret)."""
    with reach() as target:
        found = target.call("GET", "/v1/webhooks")
    render(found, fmt, LIST_COLUMNS if fmt is Format.table else None)


@webhooks_app.command("remove")
def remove(name: NameArg, fmt: FormatOpt = Format.table) -> None:
    """Remove a webhook; its pending deliveries become dead letters."""
    with reach() as target:
        render(target.call("DELETE", _path(name)), fmt)


@webhooks_app.command("test")
def test(name: NameArg, fmt: FormatOpt = Format.table) -> None:
    """Send a ping now and show what came of it."""
    with reach() as target:
        render(target.call("POST", _path(name) + "/test"), fmt)


@webhooks_app.command("deliveries")
def list_deliveries(
    webhook: Annotated[str | None, typer.Option(help="Only this webhook's.")] = None,
    status: Annotated[str | None, typer.Option(help="pending, delivered, dead or denied.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 100,
    fmt: FormatOpt = Format.table,
) -> None:
    """The latest deliveries (personal payloads are never shown)."""
    params: dict[str, Any] = {"limit": limit}
    if webhook:
        params["webhook"] = webhook
    if status:
        params["status"] = status
    with reach() as target:
        found = target.call("GET", "/v1/webhooks/deliveries", params=params)
    render(found, fmt, DELIVERY_COLUMNS if fmt is Format.table else None)


@webhooks_app.command("dead-letters")
def list_dead_letters(
    limit: Annotated[int, typer.Option(help="At most this many, latest first.")] = 100,
    fmt: FormatOpt = Format.table,
) -> None:
    """Deliveries that failed their last attempt."""
    with reach() as target:
        found = target.call("GET", "/v1/webhooks/dead-letters", params={"limit": limit})
    render(found, fmt, LETTER_COLUMNS if fmt is Format.table else None)


@webhooks_app.command("replay")
def replay(
    delivery_ids: Annotated[
        list[str] | None, typer.Argument(help="Dead letters to queue again.")
    ] = None,
    every: Annotated[
        bool, typer.Option("--all", help="Every dead letter not yet replayed.")
    ] = False,
    fmt: FormatOpt = Format.table,
) -> None:
    """Queue dead letters again (name them, or --all)."""
    if bool(delivery_ids) == every:
        raise InvalidInput("name the delivery ids to replay, or give --all", field="delivery_ids")
    body = {} if every else {"delivery_ids": delivery_ids}
    with reach() as target:
        done = target.call("POST", "/v1/webhooks/dead-letters/replay", json=body)
    render({"replayed": len(done["replayed"]), **done}, fmt)
