"""File importers: each kind from realistic synthetic files, with bad rows reported by
line, re-imports that add nothing, other column layouts through a mapping, and web logs
that never store an IP. `import_file` closes its writer (which loads the spool) before
it returns, so the counts below see everything it wrote."""

from __future__ import annotations

import gzip
import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.personal import revealed, stored
from touchpoints.collect.importers import KINDS, ImportReport, import_file, load_mapping
from touchpoints.collect.importers import orders as orders_module
from touchpoints.errors import InvalidInput
from touchpoints.warehouse import Warehouse


# -- helpers ------------------------------------------------------------------------
def _write(path: Path, text: str) -> Path:
    path.write_text(text.lstrip("\n"), encoding="utf-8")
    return path


def _rows(duck: Warehouse, sql: str) -> list[dict[str, Any]]:
    return duck.query(sql).to_pylist()


def _events(duck: Warehouse, where: str = "TRUE") -> list[dict[str, Any]]:
    rows = _rows(duck, f"SELECT * FROM events WHERE {where} ORDER BY timestamp, message_id")
    for row in rows:
        for column in ("properties", "traits", "context"):
            row[column] = revealed(duck, row[column])
    return rows


def _counts(duck: Warehouse) -> tuple[int, int, int]:
    return duck.count("events"), duck.count("rejected_events"), duck.count("spend")


def _errors(report: ImportReport) -> list[tuple[int, str | None]]:
    return [(error["line"], error["column"]) for error in report.errors]


def _reason(report: ImportReport, line: int) -> str:
    return next(error["reason"] for error in report.errors if error["line"] == line)


def _rejected(duck: Warehouse) -> dict[str, dict[str, Any]]:
    return {row["field"]: row for row in _rows(duck, "SELECT * FROM rejected_events")}


# -- orders -------------------------------------------------------------------------
ORDERS_CSV = """
order_id,timestamp,sku,name,category,price,quantity,currency,email,phone,loyalty_id,user_id
T-1001,2026-03-01T10:15:00Z,SKU-0001,Trail Shoe,Shoes,59.90,1,USD,Ana.Lima@Example.com,,,
T-1001,2026-03-01T10:15:00Z,SKU-0002,Wool Socks,Accessories,4.50,3,USD,ana.lima@example.com,,,
T-1002,2026-03-01T11:00:00,SKU-0003,"Rain Jacket,
hooded",Outerwear,120.00,1,EUR,,,lc200042,
T-1003,2026-03-02,SKU-0004,Tote Bag,Bags,abc,1,USD,bo.chen@example.com,,,
T-1003,2026-03-02,SKU-0005,Belt,Accessories,25.00,1,USD,bo.chen@example.com,,,
T-1004,2026-03-03T09:30:00+01:00,SKU-0006,Cap,Accessories,15.00,2,,,+1 (202) 555-0142,,user-00077
,2026-03-03,SKU-0007,Scarf,Accessories,12.00,1,USD,,,,
T-1005,03/04/2026,SKU-0008,Gloves,Accessories,18.00,1,USD,,,,
T-1006,2026-03-04T12:00:00Z,SKU-0009,Beanie,Accessories,9.99,1,USD,,,,
T-1002,2026-03-01T11:00:00,SKU-0010,Umbrella,Accessories,20.00,1,EUR,,,LC200042,
T-1007,2026-03-05T08:00:00Z,SKU-0011,Boot,Shoes,80.00,1,USD,cy.diaz@example.com
"""


def _orders_by_id(duck: Warehouse) -> dict[str, dict[str, Any]]:
    return {row["order_id"]: row for row in _events(duck, "event = 'Order Completed'")}


def test_orders_become_one_event_per_order_and_bad_lines_are_reported(
    duck: Warehouse, tmp_path: Path
) -> None:
    path = _write(tmp_path / "till.csv", ORDERS_CSV)
    report = import_file(duck, "orders", path)

    assert report.kind == "orders"
    assert report.rows_read == 11  # records, the two-line one counted once
    assert report.events == 4
    assert report.bad_rows == 4
    # line numbers are physical lines: the quoted value on lines 4-5 shifts the rest
    assert _errors(report) == [(6, "price"), (9, "order_id"), (10, "timestamp"), (13, None)]
    assert "'abc' is not a number" in _reason(report, 6)
    assert "no value" in _reason(report, 9)
    assert "ISO-8601" in _reason(report, 10)
    assert "9 fields where the header has 12" in _reason(report, 13)
    assert report.skipped == {"orders_held_back": 1}  # T-1003: its line 6 is bad

    orders = _orders_by_id(duck)
    assert set(orders) == {"T-1001", "T-1002", "T-1004", "T-1006"}
    assert all(row["channel"] == "store" and row["type"] == "track" for row in orders.values())

    t1001 = orders["T-1001"]
    assert t1001["revenue"] == pytest.approx(73.40)  # 59.90 + 3 x 4.50
    assert t1001["currency"] == "USD"
    assert t1001["properties"]["products"] == [
        {"sku": "SKU-0001", "name": "Trail Shoe", "category": "Shoes", "price": 59.9,
         "quantity": 1},
        {"sku": "SKU-0002", "name": "Wool Socks", "category": "Accessories", "price": 4.5,
         "quantity": 3},
    ]  # fmt: skip
    assert t1001["anonymous_id"] == stored(duck, "email:ana.lima@example.com")
    assert t1001["user_id"] is None
    assert t1001["traits"] == {"email": "ana.lima@example.com"}
    assert t1001["timestamp"] == datetime(2026, 3, 1, 10, 15, tzinfo=UTC)

    t1002 = orders["T-1002"]  # lines 4-5 and 12, far apart in the file
    assert t1002["revenue"] == pytest.approx(140.0)
    assert t1002["currency"] == "EUR"
    assert [p["sku"] for p in t1002["properties"]["products"]] == ["SKU-0003", "SKU-0010"]
    assert t1002["properties"]["products"][0]["name"] == "Rain Jacket,\nhooded"
    assert t1002["anonymous_id"] == "loyalty:LC200042"
    assert t1002["traits"] == {"loyalty_id": "LC200042"}

    t1004 = orders["T-1004"]
    assert t1004["user_id"] == "user-00077" and t1004["anonymous_id"] is None
    assert t1004["traits"] == {"phone": "+12025550142"}
    assert t1004["currency"] == "USD"  # the default
    assert t1004["revenue"] == pytest.approx(30.0)
    assert t1004["timestamp"] == datetime(2026, 3, 3, 8, 30, tzinfo=UTC)  # +01:00 -> UTC

    assert orders["T-1006"]["anonymous_id"] == "order:T-1006"  # no customer key at all

    rejected = _rejected(duck)
    assert set(rejected) == {
        "line 6: price",
        "line 9: order_id",
        "line 10: timestamp",
        "line 13",
        "order T-1003",
    }
    assert json.loads(rejected["line 6: price"]["payload"])["price"] == "abc"
    assert json.loads(rejected["line 6: price"]["payload"])["order_id"] == "T-1003"
    assert "line 6" in rejected["order T-1003"]["reason"]
    source = _rows(duck, "SELECT source_id, channel FROM sources WHERE name = 'import-orders'")
    assert len(source) == 1 and source[0]["channel"] == "store"
    assert {row["source_id"] for row in rejected.values()} == {source[0]["source_id"]}


def test_orders_import_twice_adds_nothing(duck: Warehouse, tmp_path: Path) -> None:
    path = _write(tmp_path / "till.csv", ORDERS_CSV)
    import_file(duck, "orders", path)
    before = _counts(duck)
    assert before[0] == 4 and before[1] == 5
    again = import_file(duck, "orders", path)
    assert again.events == 4 and again.bad_rows == 4  # read and reported again …
    assert _counts(duck) == before  # … but nothing is added
    assert duck.count("sources") == 1

    # the held-back order loads once its bad line is fixed; the others stay as they are
    fixed = _write(tmp_path / "till-fixed.csv", ORDERS_CSV.replace(",abc,", ",12.00,"))
    report = import_file(duck, "orders", fixed)
    assert report.skipped == {} and report.bad_rows == 3
    assert duck.count("events") == before[0] + 1
    assert _orders_by_id(duck)["T-1003"]["revenue"] == pytest.approx(37.0)


def test_an_order_in_two_currencies_is_held_back(duck: Warehouse, tmp_path: Path) -> None:
    path = _write(
        tmp_path / "mixed.csv",
        """
order_id,timestamp,sku,price,currency
M-1,2026-03-01,SKU-1,10.00,USD
M-2,2026-03-01,SKU-2,5.00,EUR
M-1,2026-03-01,SKU-3,3.00,EUR
""",
    )
    report = import_file(duck, "orders", path, chunk_rows=1)
    assert report.events == 1 and report.skipped == {"orders_held_back": 1}
    assert _errors(report) == [(4, "currency")]
    assert "EUR where line 2 of order M-1 has USD" in _reason(report, 4)
    assert set(_orders_by_id(duck)) == {"M-2"}


def test_orders_from_parquet_number_bad_rows_by_row(duck: Warehouse, tmp_path: Path) -> None:
    moment = datetime(2026, 3, 1, 10, 15, tzinfo=UTC)
    table = pa.table(
        {
            "order_id": ["P-1", "P-2", "P-1", "P-3", "P-2"],
            "timestamp": pa.array([moment] * 5, pa.timestamp("us", tz="UTC")),
            "sku": ["SKU-1", "SKU-2", "SKU-3", "SKU-4", "SKU-5"],
            "price": [10.0, 5.25, 2.5, None, 1.0],
            "quantity": [1, 2, 4, 1, 1],
            "loyalty_id": ["LC1", None, "LC1", None, None],
        }
    )
    path = tmp_path / "orders.parquet"
    pq.write_table(table, path, row_group_size=2)
    report = import_file(duck, "orders", path, chunk_rows=2)
    assert report.rows_read == 5 and report.events == 2
    assert _errors(report) == [(4, "price")]
    orders = _orders_by_id(duck)
    assert set(orders) == {"P-1", "P-2"}
    assert orders["P-1"]["revenue"] == pytest.approx(20.0)  # 10 + 4 x 2.5
    assert orders["P-2"]["revenue"] == pytest.approx(11.5)  # 2 x 5.25 + 1
    assert orders["P-1"]["anonymous_id"] == "loyalty:LC1"
    assert orders["P-1"]["timestamp"] == moment
    assert "row 4: price" in _rejected(duck)
    before = _counts(duck)
    import_file(duck, "orders", path, chunk_rows=2)
    assert _counts(duck) == before


def test_lines_of_one_order_split_across_chunks_and_partitions(
    duck: Warehouse, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = ["order_id,timestamp,sku,price,quantity,email"]
    expected: dict[str, float] = {}
    for index in range(30):  # orders A-00 … A-09, their lines interleaved
        order = f"A-{index % 10:02d}"
        price = 1.25 + index
        lines.append(
            f"{order},2026-03-01T10:00:00Z,SKU-{index},{price},2,c{index % 10}@example.com"
        )
        expected[order] = expected.get(order, 0.0) + 2 * price
    path = _write(tmp_path / "split.csv", "\n".join(lines) + "\n")
    monkeypatch.setattr(orders_module, "PARTITION_BYTES", 64)  # many partitions
    report = import_file(duck, "orders", path, chunk_rows=1)
    assert report.events == 10 and report.bad_rows == 0
    rows = _rows(duck, "SELECT order_id, revenue, properties FROM events")
    assert len(rows) == 10
    for row in rows:
        assert row["revenue"] == pytest.approx(expected[row["order_id"]])
        assert len(json.loads(row["properties"])["products"]) == 3


def test_orders_in_another_layout_through_a_mapping(duck: Warehouse, tmp_path: Path) -> None:
    path = _write(
        tmp_path / "pos-export.csv",
        """
Receipt No;Sold At;Item Code;Amount;Pieces;Card
R-1;2026-03-01 09:00:00;SKU-1;3.50;2;LC7
R-1;2026-03-01 09:00:00;SKU-2;1.00;1;LC7
R-2;2026-03-01 09:05:00;SKU-3;x;1;
""",
    )
    mapping = {
        "order_id": "Receipt No",
        "timestamp": "Sold At",
        "sku": "Item Code",
        "price": "Amount",
        "quantity": "Pieces",
        "loyalty_id": "Card",
    }
    report = import_file(
        duck, "orders", path, mapping=mapping, channel="web", source_name="pos-north"
    )
    assert report.events == 1
    # the report names the file's column, as the user knows it
    assert report.errors == [{"line": 4, "column": "Amount", "reason": "'x' is not a number"}]
    (order,) = _events(duck)
    assert order["order_id"] == "R-1" and order["revenue"] == pytest.approx(8.0)
    assert order["anonymous_id"] == "loyalty:LC7"
    assert order["channel"] == "web"
    assert _rows(duck, "SELECT name, channel FROM sources") == [
        {"name": "pos-north", "channel": "web"}
    ]


def test_a_missing_column_is_named_with_the_closest_before_anything_is_written(
    duck: Warehouse, tmp_path: Path
) -> None:
    path = _write(
        tmp_path / "orders.csv",
        "order_id,timestamp,sku,prise\nO-1,2026-03-01,SKU-1,2.00\n",
    )
    with pytest.raises(InvalidInput) as caught:
        import_file(duck, "orders", path)
    assert caught.value.field == "price"
    assert "no column 'price'" in caught.value.message
    assert "'prise'" in caught.value.message
    assert duck.count("sources") == 0 and _counts(duck) == (0, 0, 0)


def test_mappings_are_checked(duck: Warehouse, tmp_path: Path) -> None:
    path = _write(tmp_path / "orders.csv", "Order,When,Sku,Price\nO-1,2026-03-01,S,1\n")
    with pytest.raises(InvalidInput, match=r"'Whenn'.*closest is 'When'"):
        import_file(duck, "orders", path, mapping={"timestamp": "Whenn"})
    with pytest.raises(InvalidInput, match=r"'timestmp'.*did you mean 'timestamp'"):
        import_file(duck, "orders", path, mapping={"timestmp": "When"})
    with pytest.raises(InvalidInput, match=r"unknown import kind 'order'.*'orders'"):
        import_file(duck, "order", path)
    with pytest.raises(InvalidInput, match="channel must be one of"):
        import_file(duck, "orders", path, mapping={"timestamp": "When"}, channel="till")
    assert duck.count("sources") == 0
    report = import_file(duck, "orders", path, mapping={"timestamp": "When"})
    assert report.events == 1


def test_progress_is_reported_as_chunks_go(duck: Warehouse, tmp_path: Path) -> None:
    path = _write(tmp_path / "till.csv", ORDERS_CSV)
    calls: list[tuple[int, int]] = []
    import_file(duck, "orders", path, chunk_rows=2, progress=lambda d, t: calls.append((d, t)))
    assert len(calls) >= 6  # 11 records in chunks of 2, then the grouping pass
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)
    assert calls[-1][0] == calls[-1][1] > 0


# -- email --------------------------------------------------------------------------
EMAIL_CSV = """
event,email,timestamp,campaign,email_id,subject,link_url
sent,ana.lima@example.com,2026-03-01T09:00:00Z,spring-news,m-1,Spring is here,
delivered,ana.lima@example.com,2026-03-01T09:00:05Z,spring-news,m-1,Spring is here,
open,Ana.Lima@Example.com,2026-03-01T10:12:00Z,spring-news,m-1,Spring is here,
click,ana.lima@example.com,2026-03-01T10:13:00Z,spring-news,m-1,Spring is here,https://shop.example.com/spring
bounce,bo.chen@example.com,2026-03-01T09:00:07Z,spring-news,m-2,Spring is here,
unsubscribe,ana.lima@example.com,2026-03-02,spring-news,m-1,Spring is here,
forwarded,ana.lima@example.com,2026-03-02,spring-news,m-1,,
open,not-an-email,2026-03-02,spring-news,m-3,,
open,cy.diaz@example.com,yesterday,spring-news,m-4,,
Email Opened,cy.diaz@example.com,2026-03-03T08:00:00,spring-news,m-4,,
"""


def test_email_events_follow_the_spec(duck: Warehouse, tmp_path: Path) -> None:
    path = _write(tmp_path / "esp.csv", EMAIL_CSV)
    report = import_file(duck, "email", path)
    assert report.rows_read == 10 and report.events == 7
    assert _errors(report) == [(8, "event"), (9, "email"), (10, "timestamp")]
    assert "'forwarded' is not an email event" in _reason(report, 8)
    assert "not an email address" in _reason(report, 9)
    events = _events(duck)
    assert [e["event"] for e in events] == [
        "Email Sent",
        "Email Delivered",
        "Email Bounced",
        "Email Opened",
        "Email Link Clicked",
        "Unsubscribed",
        "Email Opened",
    ]
    assert all(e["channel"] == "email" for e in events)
    opened = events[3]
    assert opened["anonymous_id"] == stored(duck, "email:ana.lima@example.com")
    assert opened["traits"] == {"email": "ana.lima@example.com"}
    assert opened["properties"] == {
        "email_id": "m-1",
        "email_subject": "Spring is here",
        "campaign_name": "spring-news",
    }
    assert events[4]["properties"]["link_url"] == "https://shop.example.com/spring"
    assert events[6]["anonymous_id"] == stored(duck, "email:cy.diaz@example.com")

    before = _counts(duck)
    assert before[:2] == (7, 3)
    import_file(duck, "email", path)
    assert _counts(duck) == before


def test_email_in_another_layout_through_a_mapping(duck: Warehouse, tmp_path: Path) -> None:
    path = _write(
        tmp_path / "mailer.csv",
        """
Contact,Action Type,When,Mailing
ana.lima@example.com,Opened,2026-03-01T10:00:00Z,march-news
bo.chen@example.com,Clicked,2026-03-01T10:05:00Z,march-news
""",
    )
    mapping = {"email": "Contact", "event": "Action Type", "timestamp": "When"}
    with pytest.raises(InvalidInput, match="no column 'event'"):
        import_file(duck, "email", path, mapping={"email": "Contact"})
    report = import_file(duck, "email", path, mapping={**mapping, "campaign": "Mailing"})
    assert report.events == 2 and report.bad_rows == 0
    events = _events(duck)
    assert [(e["event"], e["anonymous_id"]) for e in events] == [
        ("Email Opened", stored(duck, "email:ana.lima@example.com")),
        ("Email Link Clicked", stored(duck, "email:bo.chen@example.com")),
    ]
    assert events[0]["properties"]["campaign_name"] == "march-news"


def test_csv_quirks_bom_semicolons_gzip_blank_lines_and_encoding(
    duck: Warehouse, tmp_path: Path
) -> None:
    body = (
        "\ufeffEvent;Email;Timestamp\n"
        "open;ana.lima@example.com;2026-03-01T10:00:00Z\n"
        "\n"
        ";;\n"
        "open;bo.chen@example.com;2026-03-0\n"
    )
    path = tmp_path / "esp.csv.gz"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write(body)
    report = import_file(duck, "email", path)
    assert report.rows_read == 2 and report.events == 1
    assert _errors(report) == [(5, "Timestamp")]  # blank lines are not rows but are lines

    latin = tmp_path / "latin.csv"
    latin.write_bytes(
        b"event,email,timestamp\nopen,cy@example.com,2026-03-01\nopen,J\xe9r\xf4me@example.com,"
        b"2026-03-01\n"
    )
    with pytest.raises(InvalidInput, match=r"latin.csv is not UTF-8 text \(at line 3\)"):
        import_file(duck, "email", latin)


# -- spend --------------------------------------------------------------------------
SPEND_CSV = """
date,channel,campaign,impressions,clicks,cost,currency,source
2026-03-01,Paid Search,brand-search,1000,80,28.00,USD,google-ads
2026-03-01,Paid Search,brand-search,500,20,7.50,USD,google-ads
2026-03-01,Paid Social,spring-sale,20000,240,144.00,USD,meta-ads
2026-03-02,Paid Search,brand-search,1100,90,"1,031.25",USD,google-ads
2026-03-02,Display,prospecting,50000,,20.00,,adnet
2026-03-03,Paid Search,brand-search,1000,-5,10.00,USD,google-ads
2026-03-0x,Paid Search,brand-search,1000,5,10.00,USD,google-ads
2026-03-03,Paid Search,generic-search,1000,5,ten,USD,google-ads
2026-03-01,Paid Search,brand-search,10,1,1.00,EUR,google-ads
"""


def _spend(duck: Warehouse) -> dict[tuple[str, str], dict[str, Any]]:
    rows = _rows(duck, "SELECT * FROM spend")
    return {(str(r["date"]), r["campaign"]): r for r in rows}


def test_spend_rows_are_summed_per_key_and_loaded_once(duck: Warehouse, tmp_path: Path) -> None:
    path = _write(tmp_path / "ads.csv", SPEND_CSV)
    report = import_file(duck, "spend", path)
    assert report.rows_read == 9 and report.spend_rows == 4 and report.events == 0
    assert _errors(report) == [(7, "clicks"), (8, "date"), (9, "cost"), (10, "currency")]
    assert "EUR differs from USD on line 2" in _reason(report, 10)
    spend = _spend(duck)
    assert set(spend) == {
        ("2026-03-01", "brand-search"),
        ("2026-03-01", "spring-sale"),
        ("2026-03-02", "brand-search"),
        ("2026-03-02", "prospecting"),
    }
    brand = spend[("2026-03-01", "brand-search")]  # lines 2 and 3 added up
    assert (brand["impressions"], brand["clicks"], brand["cost"]) == (1500, 100, 35.5)
    assert brand["channel"] == "Paid Search" and brand["source"] == "google-ads"
    assert spend[("2026-03-02", "brand-search")]["cost"] == 1031.25
    display = spend[("2026-03-02", "prospecting")]
    assert display["clicks"] is None and display["currency"] == "USD"
    assert len({row["import_key"] for row in spend.values()}) == 4
    assert duck.count("events") == 0 and duck.count("sources") == 0
    rejected = _rejected(duck)
    assert set(rejected) == {"line 7: clicks", "line 8: date", "line 9: cost", "line 10: currency"}
    assert {row["source_id"] for row in rejected.values()} == {None}

    before = _counts(duck)
    again = import_file(duck, "spend", path)
    assert again.skipped == {"already_imported": 4}
    assert _counts(duck) == before

    # a later file with the same key adds nothing to that key, only its new rows
    later = _write(
        tmp_path / "ads-later.csv",
        SPEND_CSV.strip().splitlines()[0]
        + "\n2026-03-01,Paid Search,brand-search,1,1,999.00,USD,google-ads"
        + "\n2026-03-04,Paid Search,brand-search,1,1,3.00,USD,google-ads\n",
    )
    import_file(duck, "spend", later)
    spend = _spend(duck)
    assert len(spend) == 5 and spend[("2026-03-01", "brand-search")]["cost"] == 35.5


def test_spend_in_another_layout_with_channel_and_source_given(
    duck: Warehouse, tmp_path: Path
) -> None:
    path = _write(
        tmp_path / "meta-ads.csv",
        """
Reporting Starts,Campaign Name,Amount Spent (USD),Impressions Served,Outbound Clicks
2026-03-01,spring-sale,12.40,3000,41
2026-03-02,spring-sale,9.60,2500,30
""",
    )
    mapping = {
        "date": "Reporting Starts",
        "cost": "Amount Spent (USD)",
        "impressions": "Impressions Served",
    }
    with pytest.raises(InvalidInput, match="no column 'channel'"):
        import_file(duck, "spend", path, mapping=mapping)
    report = import_file(
        duck,
        "spend",
        path,
        mapping={**mapping, "clicks": "Outbound Clicks"},
        channel="Paid Social",
        source_name="meta-ads",
    )
    assert report.spend_rows == 2 and report.bad_rows == 0
    rows = sorted(_rows(duck, "SELECT * FROM spend"), key=lambda r: r["date"])
    assert [(r["channel"], r["source"], r["campaign"]) for r in rows] == [
        ("Paid Social", "meta-ads", "spring-sale")
    ] * 2
    assert [(r["impressions"], r["clicks"], r["cost"]) for r in rows] == [
        (3000, 41, 12.4),
        (2500, 30, 9.6),
    ]


# -- web logs -----------------------------------------------------------------------
_BROWSER = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/131.0"
_PHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 Mobile"
_MAC = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 Safari/605.1.15"
_T = "[01/Mar/2026:10:00:00 +0000]"
_SHOE = "/products/trail-shoe?utm_source=newsletter&utm_medium=email"
_GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
_HEADLESS = "Mozilla/5.0 (X11; Linux x86_64) HeadlessChrome/120.0.0.0 Safari/537.36"
ACCESS_LOG = f"""
203.0.113.7 - - {_T} "GET / HTTP/1.1" 200 5120 "https://www.google.com/" "{_BROWSER}"
203.0.113.7 - - {_T} "GET /static/site.css HTTP/1.1" 200 900 "/" "{_BROWSER}"
203.0.113.7 - - {_T} "GET /img/logo.png?v=2 HTTP/1.1" 200 900 "-" "{_BROWSER}"
203.0.113.7 - - [01/Mar/2026:11:00:05 +0100] "GET {_SHOE} HTTP/1.1" 200 8000 "-" "{_BROWSER}"
66.249.66.1 - - {_T} "GET / HTTP/1.1" 200 5120 "-" "{_GOOGLEBOT}"
192.0.2.10 - - {_T} "GET /pricing HTTP/1.1" 200 100 "-" "curl/8.5.0"
192.0.2.11 - - {_T} "GET /pricing HTTP/1.1" 200 100 "-" "python-requests/2.32.3"
192.0.2.12 - - {_T} "GET /pricing HTTP/1.1" 200 100 "-" "{_HEADLESS}"
198.51.100.23 - - {_T} "GET /missing HTTP/1.1" 404 0 "-" "{_PHONE}"
198.51.100.23 - - {_T} "POST /cart HTTP/1.1" 200 10 "-" "{_PHONE}"
198.51.100.23 - - [01/Mar/2026:10:04:00 +0000] "HEAD /about HTTP/1.1" 200 0 "-" "{_PHONE}"
this is not a log line from 198.51.100.99
2001:db8::7 - - [01/Mar/2026:10:05:00 +0000] "GET /account/ HTTP/1.1" 200 10 "-" "{_MAC}"
203.0.113.9 - - [32/Mar/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 1 "-" "{_BROWSER}"

198.51.100.40 - - {_T} "GET /favicon.ico HTTP/1.1" 200 1 "-" "{_BROWSER}"
198.51.100.41 - frank [01/Mar/2026:10:07:00 +0000] "GET /blog/post-1 HTTP/1.0" 304 0
"""
IPS = (
    "203.0.113.7", "66.249.66.1", "192.0.2.10", "192.0.2.11", "192.0.2.12", "198.51.100.23",
    "198.51.100.99", "2001:db8::7", "203.0.113.9", "198.51.100.40", "198.51.100.41",
)  # fmt: skip


def _all_text(duck: Warehouse, table: str) -> str:
    """Every value of every column of `table`, as text."""
    columns = [f.name for f in duck.query(f"SELECT * FROM {table} LIMIT 0").schema]
    casts = ", ".join(f'CAST("{c}" AS VARCHAR) AS "{c}"' for c in columns)
    rows = _rows(duck, f"SELECT {casts} FROM {table}")
    return "\n".join(str(value) for row in rows for value in row.values())


@pytest.fixture
def no_env_salt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TOUCHPOINTS_SALT", raising=False)


def test_weblog_pages_without_bots_assets_or_ips(
    duck: Warehouse, tmp_path: Path, no_env_salt: None
) -> None:
    path = _write(tmp_path / "access.log", ACCESS_LOG)
    report = import_file(duck, "weblog", path)
    assert report.rows_read == 16  # the blank line is not a row
    assert report.events == 5
    assert report.skipped == {"bots": 4, "static": 3, "status": 1, "method": 1}
    assert _errors(report) == [(12, None), (14, "timestamp")]
    assert "Common or Combined Log Format" in _reason(report, 12)

    events = _events(duck)
    assert [e["page_path"] for e in events] == [
        "/",
        "/products/trail-shoe",
        "/about",
        "/account/",
        "/blog/post-1",
    ]
    assert all(e["type"] == "page" and e["channel"] == "web" for e in events)
    home, product = events[0], events[1]
    assert home["page_referrer"] == "https://www.google.com/"
    assert home["user_agent"] == _BROWSER
    assert product["timestamp"] == datetime(2026, 3, 1, 10, 0, 5, tzinfo=UTC)
    assert product["utm_source"] == "newsletter" and product["utm_medium"] == "email"
    assert product["properties"]["search"] == "?utm_source=newsletter&utm_medium=email"
    assert home["anonymous_id"] == product["anonymous_id"]  # one visitor: same ip and agent
    assert len({e["anonymous_id"] for e in events}) == 4
    assert all(e["anonymous_id"].startswith("wl-") for e in events)
    assert events[4]["user_agent"] is None  # a Common Log Format line has no agent

    assert all(e["ip"] is None for e in events)
    assert all(e["context"]["ip"] is None for e in events)
    assert duck.count("rejected_events") == 2
    stored = _all_text(duck, "events") + _all_text(duck, "rejected_events")
    for ip in IPS:
        assert ip not in stored, ip
    assert "frank" not in stored  # the logged-in user name is not kept either
    assert "is not a log line from [ip]" in stored  # the bad line, with its address masked


def test_weblog_visitor_ids_are_stable_and_reimports_add_nothing(
    duck: Warehouse, tmp_path: Path, no_env_salt: None
) -> None:
    first = _write(tmp_path / "access.log", ACCESS_LOG)
    import_file(duck, "weblog", first)
    salts = _rows(duck, "SELECT value FROM meta WHERE key = 'weblog_salt'")
    assert len(salts) == 1 and len(salts[0]["value"]) == 64
    visitor = _events(duck, "page_path = '/'")[0]["anonymous_id"]

    before = _counts(duck)
    import_file(duck, "weblog", first)
    assert _counts(duck) == before

    next_day = tmp_path / "access-2.log.gz"
    line = (
        f'203.0.113.7 - - [02/Mar/2026:09:00:00 +0000] "GET /sale HTTP/1.1" 200 1 "-" "{_BROWSER}"'
    )
    with gzip.open(next_day, "wt", encoding="utf-8") as handle:
        handle.write(line + "\n")
    report = import_file(duck, "weblog", next_day)
    assert report.events == 1
    (sale,) = _events(duck, "page_path = '/sale'")
    assert sale["anonymous_id"] == visitor
    assert len(_rows(duck, "SELECT value FROM meta WHERE key = 'weblog_salt'")) == 1


def test_weblog_salt_from_the_argument_or_the_environment(
    duck: Warehouse, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    line = f'203.0.113.7 - - {_T} "GET /a HTTP/1.1" 200 10 "-" "{_BROWSER}"\n'
    path = _write(tmp_path / "a.log", line)
    monkeypatch.setenv("TOUCHPOINTS_SALT", "from-the-environment")
    import_file(duck, "weblog", path, salt="pepper-1")
    expected = hashlib.sha256(f"pepper-1203.0.113.7{_BROWSER}".encode()).hexdigest()[:32]
    assert [e["anonymous_id"] for e in _events(duck)] == [f"wl-{expected}"]

    other = _write(tmp_path / "b.log", line.replace("/a ", "/b "))
    import_file(duck, "weblog", other)
    from_env = hashlib.sha256(f"from-the-environment203.0.113.7{_BROWSER}".encode()).hexdigest()
    assert _events(duck, "page_path = '/b'")[0]["anonymous_id"] == "wl-" + from_env[:32]
    assert _rows(duck, "SELECT * FROM meta WHERE key = 'weblog_salt'") == []
    with pytest.raises(InvalidInput, match="no columns to map"):
        import_file(duck, "weblog", path, mapping={"timestamp": "time"})


# -- feedback -----------------------------------------------------------------------
FEEDBACK_CSV = """
timestamp,email,user_id,survey,question,score,comment,channel
2026-03-01T12:00:00Z,ana.lima@example.com,,nps-q1,Would you recommend us?,9,"Great fit, fast",web
2026-03-01T13:00:00Z,,user-00077,nps-q1,Would you recommend us?,3,,email
2026-03-02,bo.chen@example.com,,csat-store,How was your visit?,4.5,,in-store
2026-03-02,cy.diaz@example.com,,nps-q1,Would you recommend us?,,Only a comment this time,
2026-03-02,dee.example@example.com,,nps-q1,Would you recommend us?,ten,,web
2026-03-02,eve@example.com,,nps-q1,Would you recommend us?,,,web
2026-13-02,fay@example.com,,nps-q1,Would you recommend us?,7,,web
2026-03-02,gus@example.com,,nps-q1,Would you recommend us?,8,,fax
2026-03-02,,,nps-q1,Would you recommend us?,8,,web
"""


def test_feedback_becomes_survey_responded(duck: Warehouse, tmp_path: Path) -> None:
    path = _write(tmp_path / "survey.csv", FEEDBACK_CSV)
    report = import_file(duck, "feedback", path)
    assert report.rows_read == 9 and report.events == 4
    assert _errors(report) == [
        (6, "score"),
        (7, "score"),
        (8, "timestamp"),
        (9, "channel"),
        (10, "email"),
    ]
    assert "'ten' is not a number" in _reason(report, 6)
    assert "no score and no comment" in _reason(report, 7)
    assert "'fax' is not one of" in _reason(report, 9)
    assert "no customer key" in _reason(report, 10)
    events = _events(duck)
    assert {e["event"] for e in events} == {"Survey Responded"}
    by_key = {e["anonymous_id"] or e["user_id"]: e for e in events}
    ana = by_key[stored(duck, "email:ana.lima@example.com")]
    assert ana["properties"] == {
        "score": 9,
        "comment": "Great fit, fast",
        "survey": "nps-q1",
        "question": "Would you recommend us?",
    }
    assert ana["channel"] == "web" and ana["traits"] == {"email": "ana.lima@example.com"}
    assert by_key["user-00077"]["channel"] == "email"
    assert by_key[stored(duck, "email:bo.chen@example.com")]["channel"] == "store"
    assert by_key[stored(duck, "email:bo.chen@example.com")]["properties"]["score"] == 4.5
    comment_only = by_key[stored(duck, "email:cy.diaz@example.com")]
    assert comment_only["channel"] == "other" and "score" not in comment_only["properties"]

    before = _counts(duck)
    import_file(duck, "feedback", path)
    assert _counts(duck) == before


def test_feedback_in_another_layout_through_a_yaml_mapping(duck: Warehouse, tmp_path: Path) -> None:
    path = _write(
        tmp_path / "typeform.csv",
        """
Respondent,How likely (0-10),Why?,Submitted On,Form,Via
ana.lima@example.com,10,Love it,2026-03-05T10:00:00Z,nps-q1,app
bo.chen@example.com,6,,2026-03-05T11:00:00Z,nps-q1,
""",
    )
    mapping_file = _write(
        tmp_path / "typeform.yaml",
        """
# our column: the export's column
email: Respondent
score: "How likely (0-10)"
comment: "Why?"
timestamp: Submitted On
survey: Form
channel: Via
""",
    )
    mapping = load_mapping(mapping_file)
    assert mapping["score"] == "How likely (0-10)"
    report = import_file(duck, "feedback", path, mapping=mapping, channel="email")
    assert report.events == 2 and report.bad_rows == 0
    events = _events(duck)
    assert [(e["anonymous_id"], e["channel"]) for e in events] == [
        (stored(duck, "email:ana.lima@example.com"), "app"),  # from the file
        (stored(duck, "email:bo.chen@example.com"), "email"),  # none in the file: the channel given
    ]
    assert events[0]["properties"] == {"score": 10, "comment": "Love it", "survey": "nps-q1"}

    bad = _write(tmp_path / "bad.yaml", "- email\n- score\n")
    with pytest.raises(InvalidInput, match="must hold a mapping"):
        load_mapping(bad)


# -- mentions -----------------------------------------------------------------------
MENTIONS_CSV = """
platform,author_handle,text,timestamp,reach,likes,url
Instagram,@Trail.Runner,Loving my new trail shoes from @exampleshop,2026-03-01T08:00:00Z,12000,340,https://instagram.example.com/p/abc
X,@CityWalker,"@exampleshop your rain jacket kept me dry, thanks",2026-03-01T09:30:00Z,800,12,
TikTok,,unboxing,2026-03-01T10:00:00Z,500,5,https://tiktok.example.com/v/1
Instagram,@someone,nice,2026-03-01T11:00:00Z,1000,many,https://instagram.example.com/p/def
X,@later,hm,not-a-time,1,1,
"""


def test_mentions_become_brand_mentioned(duck: Warehouse, tmp_path: Path) -> None:
    path = _write(tmp_path / "listening.csv", MENTIONS_CSV)
    report = import_file(duck, "mentions", path)
    assert report.rows_read == 5 and report.events == 2
    assert _errors(report) == [(4, "author_handle"), (5, "likes"), (6, "timestamp")]
    assert "'many' is not a number" in _reason(report, 5)
    events = _events(duck)
    assert [(e["event"], e["anonymous_id"], e["channel"]) for e in events] == [
        ("Brand Mentioned", "social:instagram:trail.runner", "social"),
        ("Brand Mentioned", "social:x:citywalker", "social"),
    ]
    assert events[0]["properties"] == {
        "platform": "instagram",
        "author_handle": "Trail.Runner",
        "text": "Loving my new trail shoes from @exampleshop",
        "reach": 12000,
        "likes": 340,
        "url": "https://instagram.example.com/p/abc",
    }
    assert "url" not in events[1]["properties"]
    before = _counts(duck)
    import_file(duck, "mentions", path)
    assert _counts(duck) == before


def test_mentions_in_another_layout_through_a_mapping(duck: Warehouse, tmp_path: Path) -> None:
    table = pa.table(
        {
            "Channel Name": ["Instagram"],
            "Posted By": ["@Wanderer"],
            "Message Text": ["new boots!"],
            "Published": ["2026-03-02T07:00:00Z"],
            "Reached": [4200],
            "Hearts": [77],
        }
    )
    path = tmp_path / "mentions.parquet"
    pq.write_table(table, path)
    mapping = {
        "platform": "Channel Name",
        "author_handle": "Posted By",
        "text": "Message Text",
        "timestamp": "Published",
        "reach": "Reached",
        "likes": "Hearts",
    }
    report = import_file(duck, "mentions", path, mapping=mapping)
    assert report.events == 1 and report.bad_rows == 0
    (event,) = _events(duck)
    assert event["anonymous_id"] == "social:instagram:wanderer"
    assert event["properties"]["reach"] == 4200 and event["properties"]["likes"] == 77
    assert event["properties"]["text"] == "new boots!"


def test_every_kind_is_importable() -> None:
    assert KINDS == ("orders", "email", "spend", "weblog", "feedback", "mentions")


def test_reimports_add_nothing_on_every_engine(
    warehouse: Warehouse, tmp_path: Path, no_env_salt: None
) -> None:
    """Spark appends without keys: the importers check spend and rejected rows there."""
    orders = _write(tmp_path / "till.csv", ORDERS_CSV)
    spend = _write(tmp_path / "ads.csv", SPEND_CSV)
    log = _write(tmp_path / "access.log", ACCESS_LOG)
    for kind, path in (("orders", orders), ("spend", spend), ("weblog", log)):
        import_file(warehouse, kind, path)
    before = _counts(warehouse)
    assert before == (4 + 5, 5 + 4 + 2, 4)
    visitors = warehouse.query("SELECT DISTINCT anonymous_id FROM events WHERE type = 'page'")
    for kind, path in (("orders", orders), ("spend", spend), ("weblog", log)):
        import_file(warehouse, kind, path)
    assert _counts(warehouse) == before
    again = warehouse.query("SELECT DISTINCT anonymous_id FROM events WHERE type = 'page'")
    assert sorted(again.column(0).to_pylist()) == sorted(visitors.column(0).to_pylist())
