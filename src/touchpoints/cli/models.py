"""The model verbs (`clv fit`, `clv customers`): warehouse data goes through the reports
(so a running server answers), files are read and fitted right here."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer

from touchpoints.cli.context import FormatOpt
from touchpoints.cli.insights import show
from touchpoints.cli.output import Format, render
from touchpoints.errors import InvalidInput

clv_app = typer.Typer(
    help="Customer lifetime value: BG/NBD, Pareto/NBD and Gamma-Gamma.", no_args_is_help=True
)
PeriodOpt = Annotated[str, typer.Option(help="The summary's time unit: day or week.")]
CalibrationOpt = Annotated[
    str | None,
    typer.Option(help="Fit on purchases up to this date; the rest is the holdout."),
]


def read_table(path: str) -> pd.DataFrame:
    """A CSV or Parquet file as a DataFrame, or a one-line error naming the file."""
    file = Path(path)
    if not file.is_file():
        raise InvalidInput(f"no file {path}", field="file")
    try:
        if file.suffix.lower() in (".parquet", ".pq"):
            return pd.read_parquet(file)
        return pd.read_csv(file)
    except (ValueError, OSError) as exc:
        raise InvalidInput(f"cannot read {path}: {exc}", field="file") from None


def _print_fits(fits: dict[str, dict[str, Any]], fmt: Format) -> None:
    if fmt is Format.json:
        render(fits, fmt)
        return
    rows = [{"model": name, **values} for name, values in fits.items()]
    render(rows, fmt, list(dict.fromkeys(k for row in rows for k in row)))


@clv_app.command("fit")
def clv_fit(
    period: PeriodOpt = "day",
    calibration_end: CalibrationOpt = None,
    transactions: Annotated[
        str | None, typer.Option(help="CSV/Parquet of customer_id, time, amount instead.")
    ] = None,
    summary: Annotated[
        str | None,
        typer.Option(help="CSV/Parquet of customer_id, frequency, recency, T[, monetary_value]."),
    ] = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Fit the three models on the warehouse's purchases, a transactions file or a summary;
    print each model's parameters, log-likelihood and (with a holdout) holdout error."""
    from touchpoints.models.clv_data import fit_all, fit_from_transactions

    if transactions and summary:
        raise InvalidInput("give --transactions or --summary, not both", field="summary")
    if transactions:
        fits = fit_from_transactions(read_table(transactions), period, calibration_end)
        _print_fits(fits.as_dict(), fmt)
    elif summary:
        table = read_table(summary)
        if "customer_id" in table.columns:
            table = table.set_index("customer_id")
        _print_fits(fit_all(table, period).as_dict(), fmt)
    else:
        from touchpoints.cli.context import reach

        params = {"period": period, "calibration_end": calibration_end}
        with reach() as target:
            result = target.report("clv", {k: v for k, v in params.items() if v})
        _print_fits({row.pop("model"): row for row in result["rows"]}, fmt)


@clv_app.command("customers")
def clv_customers(
    period: PeriodOpt = "day",
    horizon: Annotated[int, typer.Option(help="Months of future purchases to value.")] = 12,
    discount_rate: Annotated[float, typer.Option(help="Discount rate a month.")] = 0.01,
    top: Annotated[int, typer.Option(help="How many customers, highest CLV first.")] = 20,
    fmt: FormatOpt = Format.table,
) -> None:
    """Customers by CLV: expected purchases, probability alive, expected order value."""
    show("clv", fmt, None, None, None, customers=True, period=period, horizon=horizon,
         discount_rate=discount_rate, top=top)  # fmt: skip


def recommend(
    identifier: Annotated[str, typer.Argument(help="Any identifier of the customer.")],
    k: Annotated[int, typer.Option("--k", "-k", help="How many products.")] = 10,
    model: Annotated[str, typer.Option(help="als, cooccurrence or popularity.")] = "als",
    fmt: FormatOpt = Format.table,
) -> None:
    """The products a customer is likeliest to want, from every channel's purchases and
    views (what they bought is left out)."""
    show("recommend", fmt, None, None, None, identifier=identifier, k=k, model=model)


def churn(
    horizon: Annotated[int, typer.Option(help="Days ahead the risk is about.")] = 90,
    target: Annotated[str, typer.Option(help="purchase or activity.")] = "purchase",
    metrics: Annotated[
        bool, typer.Option("--metrics", help="The model's out-of-time test metrics.")
    ] = False,
    retention: Annotated[
        bool, typer.Option("--retention-list", help="High risk × high CLV, with actions.")
    ] = False,
    top: Annotated[int, typer.Option(help="How many customers, riskiest first.")] = 50,
    fmt: FormatOpt = Format.table,
) -> None:
    """Churn risk per customer with its top drivers (LightGBM on behaviour as of now)."""
    view = "metrics" if metrics else "retention" if retention else "customers"
    show("churn", fmt, None, None, None, horizon_days=horizon, target=target, view=view, top=top)
