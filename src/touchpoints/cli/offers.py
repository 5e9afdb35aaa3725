"""The offer verbs: `offers save|list|codes|assign|results|next-best`. Each is one REST
call (`/v1/offers`), to the running server or answered in process (`Target.call`);
files are read and checked here first, so an error names the field or line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import typer

from touchpoints.activate.offer_define import codes_from_text, parse_offer
from touchpoints.cli.context import FormatOpt, reach
from touchpoints.cli.output import Format, render
from touchpoints.errors import InvalidInput

offers_app = typer.Typer(
    help="Offers and coupons: definitions, code pools, assignment, results.",
    no_args_is_help=True,
)
OfferArg = Annotated[str, typer.Argument(help="The offer's id.")]
LIST_COLUMNS = ["offer_id", "name", "discount", "valid_days", "holdout", "active", "offered",
                "held_out", "free_codes"]  # fmt: skip


def _call(method: str, path: str, **kwargs: Any) -> Any:
    with reach() as target:
        return target.call(method, path, **kwargs)


def _read(file: str) -> str:
    path = Path(file)
    if not path.is_file():
        raise InvalidInput(f"no file {file}", field="file")
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidInput(f"{file} is not UTF-8 text", field="file") from None


@offers_app.command("save")
def save(
    file: Annotated[str, typer.Argument(help="The definition: a .json or .yaml file.")],
    fmt: FormatOpt = Format.table,
) -> None:
    """Create or replace an offer from its definition."""
    offer = parse_offer(_read(file))
    saved = _call("PUT", f"/v1/offers/{quote(offer['offer_id'], safe='')}", json=offer)
    render(saved, fmt)


@offers_app.command("list")
def list_all(fmt: FormatOpt = Format.table) -> None:
    """Every offer, with people in each arm and free pool codes."""
    render(_call("GET", "/v1/offers"), fmt, LIST_COLUMNS if fmt is Format.table else None)


@offers_app.command("codes")
def codes(
    offer_id: OfferArg,
    file: Annotated[str, typer.Argument(help="Codes, one a line (text or CSV, first column).")],
    fmt: FormatOpt = Format.table,
) -> None:
    """Load coupon codes into a pool offer (a repeat or known code refuses the file)."""
    found, _ = codes_from_text(_read(file))
    render(_call("POST", f"/v1/offers/{quote(offer_id, safe='')}/codes", json=found), fmt)


@offers_app.command("assign")
def assign(
    offer_id: OfferArg,
    customer_ids: Annotated[list[str], typer.Argument(help="Customer ids.")],
    fmt: FormatOpt = Format.table,
) -> None:
    """Give the offer to customers (the same arm and code every time)."""
    path = f"/v1/offers/{quote(offer_id, safe='')}/assign"
    render(_call("POST", path, json={"customer_ids": customer_ids}), fmt)


@offers_app.command("results")
def results(
    offer_id: OfferArg,
    window_days: Annotated[int, typer.Option(help="Days after assignment that count.")] = 30,
    fmt: FormatOpt = Format.table,
) -> None:
    """Redemption per arm and the incremental revenue over the holdout."""
    path = f"/v1/offers/{quote(offer_id, safe='')}/results"
    found = _call("GET", path, params={"window_days": window_days})
    if fmt is not Format.table:
        render(found, fmt)
        return
    render(found["arms"], fmt, title=f"offer {offer_id}, orders within {window_days} days")
    render({**found["incremental"], **{f"uses_{k}": v for k, v in found["uses"].items()}}, fmt)


@offers_app.command("next-best")
def next_best(
    customer_id: Annotated[str, typer.Argument(help="A customer id.")],
    fmt: FormatOpt = Format.table,
) -> None:
    """The active offer worth most to a customer, and why the others were not chosen."""
    found = _call("GET", "/v1/offers/next-best", params={"customer_id": customer_id})
    if fmt is not Format.table:
        render(found, fmt)
        return
    render({k: v for k, v in found.items() if k != "candidates"}, fmt)
    render(found["candidates"], fmt, title="offers considered")
