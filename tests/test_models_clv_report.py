"""CLV from the command line and the warehouse: the CDNOW figures through `clv fit
--summary`, orders in the warehouse fitted as the same transactions written by hand,
and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.insights_data import event, write_events
from touchpoints.models.clv_data import fit_from_transactions
from touchpoints.models.reports import run_report
from touchpoints.warehouse import Warehouse

pytest.importorskip("lifetimes")
from lifetimes.datasets import load_cdnow_summary_data_with_monetary_value

#: Fader, Hardie & Lee (2005) and Fader & Hardie's Pareto/NBD note, on CDNOW (weeks).
PUBLISHED = {
    "bgnbd": {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426},
    "paretonbd": {"r": 0.553, "alpha": 10.58, "s": 0.606, "beta": 11.67},
    "gammagamma": {"p": 6.25, "q": 3.74, "gamma": 15.44},
}


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "touchpoints.cli.main", *args],
        capture_output=True, text=True, check=False,
    )  # fmt: skip


@pytest.mark.slow
def test_clv_fit_on_the_cdnow_summary_gives_the_published_parameters(tmp_path: Path) -> None:
    summary = load_cdnow_summary_data_with_monetary_value().rename_axis("customer_id")
    path = tmp_path / "cdnow.csv"
    summary.reset_index().to_csv(path, index=False)
    done = cli("clv", "fit", "--summary", str(path), "--period", "week", "-f", "json")
    assert done.returncode == 0, done.stderr
    fits = json.loads(done.stdout)
    for model, params in PUBLISHED.items():
        for name, value in params.items():
            # The papers print 3 or 4 significant digits (gamma is cut, not rounded).
            assert fits[model][name] == pytest.approx(value, abs=0.011, rel=2e-3), (model, name)
    assert fits["bgnbd"]["log_likelihood"] == pytest.approx(-9582.4, abs=0.1)
    assert fits["bgnbd"]["customers"] == len(summary)


def orders() -> list[dict]:
    """Twelve customers with 1 to 6 orders each, some on the web, some in the store."""
    rows = []
    for n in range(12):
        for k in range(1 + n % 6):
            when = n * 86400 + k * (5 + n) * 86400 + 3600
            channel = "store" if (n + k) % 3 == 0 else "web"
            rows.append(event(f"c{n}", when, "Order Completed", channel=channel,
                              revenue=20.0 + 7 * n + 3 * k))  # fmt: skip
    rows.append(event("c0", 2 * 86400, path="/"))  # not an order
    return rows


def test_warehouse_orders_fit_like_the_same_transactions(duck: Warehouse) -> None:
    rows = orders()
    write_events(duck, rows)
    by_hand = pd.DataFrame(
        [{"customer_id": f"user:{r['user']}", "time": r["when"], "amount": r["revenue"]}
         for r in rows if r["name"] == "Order Completed"]
    )  # fmt: skip
    want = fit_from_transactions(by_hand, "day").as_dict()
    got = run_report(duck, "clv", {})
    assert {row["model"]: {k: v for k, v in row.items() if k != "model" and v is not None}
            for row in got.rows} == want  # fmt: skip
    scored = run_report(duck, "clv", {"customers": "true", "top": "3"})
    assert len(scored.rows) == 3
    clv = [row["clv"] for row in scored.rows]
    assert clv == sorted(clv, reverse=True) and all(v > 0 for v in clv)
    assert scored.columns[0] == "customer_id"


def test_clv_errors_are_one_line(tmp_path: Path) -> None:
    missing = cli("clv", "fit", "--summary", str(tmp_path / "nope.csv"))
    assert missing.returncode == 2 and "no file" in missing.stderr
    bad = tmp_path / "bad.csv"
    bad.write_text("customer_id,frequency,recency\n" + "".join(f"c{n},1,2\n" for n in range(12)))
    done = cli("clv", "fit", "--summary", str(bad))
    assert done.returncode == 2 and "T" in done.stderr and "Traceback" not in done.stderr
    both = cli("clv", "fit", "--summary", str(bad), "--transactions", str(bad))
    assert both.returncode == 2 and "not both" in both.stderr
