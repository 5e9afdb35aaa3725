"""Experiments from raw events: exposures and purchases written through the real write
path, analysed, and checked against pandas/SciPy on the same rows; definitions, storage,
the report, the HTTP routes and the CLI."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from tests.insights_data import T0, event, write_events
from touchpoints.errors import InvalidInput, NotFound
from touchpoints.insights.reports import run_report
from touchpoints.models.experiment_data import unit_values
from touchpoints.models.experiment_define import parse_experiment
from touchpoints.models.experiment_reports import REPORTS
from touchpoints.models.experiments import (
    analyse,
    assignment,
    assignment_for,
    get_experiment,
    list_experiments,
    save_experiment,
)
from touchpoints.warehouse import Warehouse

DEFINITION: dict[str, Any] = {
    "key": "checkout-button",
    "unit": "user",
    "variants": [{"key": "control", "weight": 50}, {"key": "green", "weight": 50}],
    "start": "2026-03-02",
    "metrics": {
        "primary": {
            "name": "revenue",
            "kind": "sum",
            "event": "Order Completed",
            "property": "revenue",
            "within_days": 7,
        },
        "guardrails": [
            {"name": "purchased", "kind": "conversion", "event": "Order Completed"},
            {
                "name": "order value",
                "kind": "ratio",
                "numerator": {"kind": "sum", "event": "Order Completed", "property": "revenue"},
                "denominator": {"kind": "count", "event": "Order Completed"},
            },
            {
                "name": "shoe orders",
                "kind": "count",
                "event": "Order Completed",
                "where": ["category=shoes"],
                "cuped": False,
            },
        ],
    },
}
AS_OF = T0 + timedelta(days=20)


def synthetic_rows(users: int, seed: int = 5) -> tuple[list[dict[str, Any]], pd.DataFrame]:
    """Exposures and purchases (some before exposure, some after the 7-day window,
    one unit shown both variants, one exposure of another experiment), and the expected
    per-unit values computed directly from the same draws."""
    rng = np.random.default_rng(seed)
    rows, expected = [], []
    for i in range(users):
        user, variant = f"u{i}", ("control", "green")[i % 2]
        seen = float(rng.integers(0, 3 * 86400))
        rows.append(
            event(
                user,
                seen,
                "Experiment Viewed",
                properties={"experiment_id": "checkout-button", "variation_id": variant},
            )
        )
        rows.append(
            event(
                user,
                seen + 60,
                "Experiment Viewed",  # a second view: same unit
                properties={"experiment_key": "checkout-button", "variant": variant},
            )
        )
        revenue = orders = shoes = pre = 0.0
        for _ in range(int(rng.poisson(1.5 if variant == "green" else 1.2))):
            at = seen + float(rng.integers(1, 10 * 86400))
            amount = round(float(rng.gamma(2.0, 15.0)), 2)
            category = "shoes" if rng.random() < 0.5 else "hats"
            rows.append(
                event(
                    user, at, "Order Completed", revenue=amount, properties={"category": category}
                )
            )
            if at < seen + 7 * 86400:
                revenue += amount
            orders += 1
            shoes += category == "shoes"
        if rng.random() < 0.5:  # a purchase before exposure: the CUPED covariate
            amount = round(float(rng.gamma(2.0, 15.0)), 2)
            rows.append(event(user, seen - 3600, "Order Completed", revenue=amount))
            pre += amount
        expected.append(
            {
                "unit": user,
                "variant": variant,
                "revenue": revenue,
                "orders": orders,
                "shoes": shoes,
                "pre": pre,
                "purchased": float(orders > 0),
            }
        )
    rows.append(
        event(
            "both",
            10,
            "Experiment Viewed",
            properties={"experiment_id": "checkout-button", "variation_id": "control"},
        )
    )
    rows.append(
        event(
            "both",
            20,
            "Experiment Viewed",
            properties={"experiment_id": "checkout-button", "variation_id": "green"},
        )
    )
    rows.append(
        event(
            "other",
            10,
            "Experiment Viewed",
            properties={"experiment_id": "another", "variation_id": "control"},
        )
    )
    return rows, pd.DataFrame(expected)


def test_per_unit_values_on_both_engines(warehouse: Warehouse) -> None:
    rows, expected = synthetic_rows(6)
    write_events(warehouse, rows)
    experiment = parse_experiment(DEFINITION)
    found = unit_values(warehouse, experiment, AS_OF).to_pandas().set_index("unit").sort_index()
    assert found.loc["both", "variants"] == 2 and "other" not in found.index
    mine = found.drop(index="both")
    want = expected.set_index("unit").sort_index()
    assert list(mine.variant) == list(want.variant)
    assert np.allclose(mine.m0_num, want.revenue) and np.allclose(mine.m0_pre, want.pre)
    assert np.allclose(mine.m1_num, want.purchased)
    assert np.allclose(mine.m2_den, want.orders) and np.allclose(mine.m3_num, want.shoes)


def test_end_to_end_report_matches_pandas_and_scipy(duck: Warehouse) -> None:
    rows, expected = synthetic_rows(240)
    write_events(duck, rows)
    save_experiment(duck, DEFINITION)
    report = analyse(duck, "checkout-button", AS_OF)
    assert report.units == expected.groupby("variant").size().to_dict()
    assert report.excluded == {"several_variants": 1, "unknown_variant": 0}
    by_metric = {row["metric"]: row for row in report.rows}
    primary = by_metric["revenue"]
    a = expected[expected.variant == "control"].revenue.to_numpy()
    b = expected[expected.variant == "green"].revenue.to_numpy()
    assert primary["mean_control"] == pytest.approx(a.mean())
    assert primary["mean_variant"] == pytest.approx(b.mean())
    # CUPED (on by default): Welch's test on y - θ·pre, θ the pooled slope of y on pre
    cov = np.cov(expected.revenue, expected.pre)
    theta = cov[0, 1] / cov[1, 1]
    assert primary["cuped_theta"] == pytest.approx(theta)
    adjusted = expected.revenue - theta * expected.pre
    welch = stats.ttest_ind(
        adjusted[expected.variant == "green"],
        adjusted[expected.variant == "control"],
        equal_var=False,
    )
    assert primary["p_value"] == pytest.approx(welch.pvalue)
    assert primary["absolute_effect"] == pytest.approx(
        adjusted[expected.variant == "green"].mean()
        - adjusted[expected.variant == "control"].mean()
    )
    assert primary["test"] == "welch t" and primary["correction"].startswith("holm")
    assert primary["units_still_needed_per_arm"] >= 0 and primary["mde_relative"] > 0
    assert report.srm.ok and primary["srm_ok"]
    ratio = by_metric["order value"]
    control = expected[expected.variant == "control"]
    assert ratio["mean_control"] == pytest.approx(
        (rows_revenue := _all_revenue(rows, control.unit)) / control.orders.sum()
    ), rows_revenue
    shoes = by_metric["shoe orders"]
    assert shoes["mean_variant"] == pytest.approx(
        expected[expected.variant == "green"].shoes.mean()
    )
    assert by_metric["purchased"]["correction"] == "bh over 3 guardrail comparisons"


def _all_revenue(rows: list[dict[str, Any]], units: pd.Series) -> float:
    """Revenue of the units' orders after their first exposure (the ratio has no window)."""
    first: dict[str, Any] = {}
    for row in rows:
        if row["name"] == "Experiment Viewed":
            first[row["user"]] = min(first.get(row["user"], row["when"]), row["when"])
    return sum(
        r["revenue"]
        for r in rows
        if r["name"] == "Order Completed"
        and r["user"] in set(units)
        and r["when"] >= first[r["user"]]
    )


def test_sample_ratio_mismatch_is_flagged(duck: Warehouse) -> None:
    rows = [
        event(
            f"c{i}",
            i,
            "Experiment Viewed",
            properties={"experiment_id": "srm", "variation_id": "a" if i % 5 else "b"},
        )
        for i in range(400)
    ]
    write_events(duck, rows)
    definition = {**DEFINITION, "key": "srm", "variants": ["a", "b"]}
    report = analyse(duck, definition, AS_OF)
    assert not report.srm.ok and report.warnings[0].startswith("SAMPLE RATIO MISMATCH")
    assert all(row["srm_ok"] is False for row in report.rows)


def test_definition_errors_name_the_field() -> None:
    cases = {
        "variants": {**DEFINITION, "variants": ["only"]},
        "metrics.primary.kind": {**DEFINITION, "metrics": {"primary": {"kind": "median"}}},
        "metrics.guardrails[0].event": {
            **DEFINITION,
            "metrics": {
                "primary": DEFINITION["metrics"]["primary"],
                "guardrails": [{"kind": "count"}],
            },
        },
        "unit": {**DEFINITION, "unit": "device"},
        "stop": {**DEFINITION, "stop": "2026-03-01"},
        "colour": {**DEFINITION, "colour": "red"},
        "variants[1].weight": {
            **DEFINITION,
            "variants": [{"key": "a"}, {"key": "b", "weight": -1}],
        },
    }
    for path, definition in cases.items():
        with pytest.raises(InvalidInput) as caught:
            parse_experiment(definition)
        assert caught.value.field == path, (path, caught.value.message)


def test_yaml_round_trip_storage_and_assignment(duck: Warehouse) -> None:
    import yaml

    save_experiment(duck, yaml.safe_dump(DEFINITION))
    save_experiment(duck, json.dumps({**DEFINITION, "name": "Green button"}))  # replaces
    listed = list_experiments(duck)
    assert [e["key"] for e in listed] == ["checkout-button"] and listed[0]["name"] == "Green button"
    stored = get_experiment(duck, "checkout-button")
    assert parse_experiment(stored.as_dict()) == stored
    found = assignment(duck, "checkout-button", "u42")
    assert found == assignment_for(stored, "u42") and found["variant"] in ("control", "green")
    with pytest.raises(NotFound):
        assignment(duck, "nope", "u42")


def test_report_reads_text_parameters(duck: Warehouse) -> None:
    rows, _ = synthetic_rows(40)
    write_events(duck, rows)
    save_experiment(duck, DEFINITION)
    result = run_report(
        duck,
        "experiment",
        {"key": "checkout-button", "as_of": "2026-03-22", "alpha": "0.1"},
        REPORTS,
    )
    assert {r["metric"] for r in result.rows} == {
        "revenue",
        "purchased",
        "order value",
        "shoe orders",
    }
    assert "srm_p_value" in result.columns and "chance_to_beat_control" in result.columns
    with pytest.raises(InvalidInput) as caught:
        run_report(duck, "experiment", {"key": "checkout-button", "alpha": "2"}, REPORTS)
    assert caught.value.field == "alpha"
    listed = run_report(duck, "experiments", {}, REPORTS)
    assert listed.rows[0]["key"] == "checkout-button"


# -- faces ------------------------------------------------------------------------------


def test_cli_save_list_show_assign(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import yaml
    from typer.testing import CliRunner

    from touchpoints.cli.context import state
    from touchpoints.cli.experiments import experiments_app
    from touchpoints.warehouse import connect

    url = f"duckdb:///{tmp_path / 'cli.duckdb'}"
    warehouse = connect(url)
    write_events(warehouse, synthetic_rows(40)[0])
    warehouse.close()
    monkeypatch.setattr(state, "warehouse", url)
    file = tmp_path / "checkout.yaml"
    file.write_text(yaml.safe_dump(DEFINITION))
    runner = CliRunner()
    saved = runner.invoke(experiments_app, ["save", str(file), "--format", "json"])
    assert saved.exit_code == 0, saved.output
    assert json.loads(saved.stdout) == {"saved": "checkout-button", "variants": 2}
    listed = runner.invoke(experiments_app, ["list", "--format", "json"])
    assert json.loads(listed.stdout)[0]["key"] == "checkout-button"
    shown = runner.invoke(
        experiments_app, ["show", "checkout-button", "--as-of", "2026-03-22", "--format", "json"]
    )
    assert shown.exit_code == 0, shown.output
    rows = json.loads(shown.stdout)
    assert len(rows) == 4 and {"p_value", "sequential_p_value", "srm_ok"} <= set(rows[0])
    table = runner.invoke(experiments_app, ["show", "checkout-button", "--as-of", "2026-03-22"])
    assert table.exit_code == 0 and "p-values corrected: holm" in table.stdout
    assigned = runner.invoke(experiments_app, ["assign", "checkout-button", "u7", "-f", "json"])
    assert json.loads(assigned.stdout)["variant"] in ("control", "green")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**DEFINITION, "unit": "device"}))
    refused = runner.invoke(experiments_app, ["save", str(bad)])
    assert refused.exit_code != 0


@pytest.mark.slow
def test_http_routes_and_report(server: Any) -> None:
    """Needs `experiment_routes.router` included in `create_app` and the experiment
    reports in `models.reports.REPORTS`."""
    import httpx

    from touchpoints.privacy.keys import add_key

    _, reader = add_key(server.warehouse, "analyst", "read")
    _, admin = add_key(server.warehouse, "ops", "admin")
    write_events(server.warehouse, synthetic_rows(40)[0])
    with httpx.Client(base_url=server.url, timeout=60) as client:
        as_reader = {"Authorization": f"Bearer {reader}"}
        as_admin = {"Authorization": f"Bearer {admin}"}
        path = "/v1/experiments/checkout-button"
        assert client.put(path, json=DEFINITION, headers=as_reader).status_code == 403
        saved = client.put(path, json=DEFINITION, headers=as_admin)
        assert saved.status_code == 200, saved.text
        bad = client.put(path, json={**DEFINITION, "unit": "device"}, headers=as_admin)
        assert bad.status_code == 400 and bad.json()["field"] == "unit"
        assert (
            client.get("/v1/experiments", headers=as_reader).json()[0]["key"] == "checkout-button"
        )
        found = client.get(f"{path}/assignment", params={"unit": "u7"}, headers=as_reader)
        assert found.status_code == 200
        assert (
            found.json()["variant"] == assignment_for(parse_experiment(DEFINITION), "u7")["variant"]
        )
        missing = client.get(
            "/v1/experiments/nope/assignment", params={"unit": "u7"}, headers=as_reader
        )
        assert missing.status_code == 404
        blank = client.get(f"{path}/assignment", params={"unit": " "}, headers=as_reader)
        assert blank.status_code == 400 and blank.json()["field"] == "unit"
        report = client.get(
            "/v1/insights/experiment",
            headers=as_reader,
            params={"key": "checkout-button", "as_of": "2026-03-22"},
        )
        assert report.status_code == 200, report.text
        body = report.json()
        assert len(body["rows"]) == 4 and "srm_p_value" in body["columns"]
