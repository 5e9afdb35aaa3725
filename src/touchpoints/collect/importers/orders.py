"""The `orders` importer: till/POS or e-commerce order LINES -> one "Order Completed" per
order (Segment e-commerce spec), channel `store` unless told otherwise.

The lines of one order may be anywhere in the file, so the import runs in two passes
with bounded memory. Pass 1 streams the file a chunk at a time, checks each line and
appends it (as one compact JSON line) to one of N partition files on disk, chosen by a
hash of the order id: all lines of an order land in the same partition. Pass 2 reads
one partition at a time, groups its lines by order and writes the orders. Memory holds
one chunk in pass 1 and one partition in pass 2: N is the file's size / 8 MB (2 MB for
a gzipped CSV; Parquet: rows / 50,000), at least 1 and at most 1,024, so a partition is
about 8 MB of the file until the file passes 8 GB. The partitions live in a temporary
folder beside the warehouse file (or the system's temporary folder) and are deleted.

An order with a bad line is not loaded (its revenue would be wrong): the line is
reported, the order is kept in rejected_events and counted in `skipped`, and once the
file is fixed a new import loads it (its messageId, a hash of the order id, was never
used). An order loaded once is never changed by a later import of the same id.
"""

from __future__ import annotations

import math
import tempfile
import zlib
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from touchpoints.collect.importers.reading import Column, CsvTable, Row, Table, open_table
from touchpoints.collect.importers.runner import (
    EventSink,
    ImportReport,
    Options,
    Tally,
    check_channel,
    ensure_source,
)
from touchpoints.collect.importers.values import (
    RowError,
    currency,
    customer_keys,
    identify,
    iso,
    message_id,
    parse_decimal,
    parse_time,
    plain_number,
    required_text,
    text,
)
from touchpoints.warehouse import Warehouse

COLUMNS = (
    Column("order_id", True, ("order", "orderid", "transaction_id", "receipt_id")),
    Column(
        "timestamp",
        True,
        ("time", "date", "datetime", "order_date", "ordered_at", "created_at", "completed_at"),
    ),
    Column("sku", True, ("item_sku", "product_sku")),
    Column("price", True, ("unit_price", "item_price")),
    Column("quantity", False, ("qty", "units")),
    Column("currency", False, ("currency_code",)),
    Column("product_id"),
    Column("name", False, ("product_name", "item_name")),
    Column("category", False, ("product_category",)),
    Column("brand"),
    Column("variant"),
    Column("email", False, ("email_address", "customer_email")),
    Column("phone", False, ("phone_number", "customer_phone")),
    Column("loyalty_id", False, ("loyalty_card", "loyalty_number")),
    Column("user_id"),
)
PRODUCT_TEXT = ("product_id", "name", "category", "brand", "variant")

PARTITION_BYTES = 8 * 1024 * 1024
PARTITION_BYTES_GZIP = 2 * 1024 * 1024
PARTITION_ROWS = 50_000
MAX_PARTITIONS = 1024


def partitions_for(table: Table) -> int:
    """How many partitions keep one of them about 8 MB of the file (see the docstring)."""
    if isinstance(table, CsvTable):
        size = PARTITION_BYTES_GZIP if table.compressed else PARTITION_BYTES
        wanted = math.ceil(table.total / size)
    else:
        wanted = math.ceil(table.total / PARTITION_ROWS)
    return min(max(wanted, 1), MAX_PARTITIONS)


def line_record(values: dict[str, Any], order_id: str, line: int) -> dict[str, Any]:
    """One order line, checked, as the compact record pass 1 spills (raises RowError)."""
    required_text(values, "sku")
    moment = iso(parse_time(values.get("timestamp"), "timestamp"))
    price = parse_decimal(values.get("price"), "price")
    quantity = (
        Decimal(1)
        if text(values.get("quantity")) is None
        else parse_decimal(values["quantity"], "quantity")
    )
    product: dict[str, Any] = {"sku": text(values["sku"])}
    for name in PRODUCT_TEXT:
        value = text(values.get(name))
        if value is not None:
            product[name] = value
    product["price"] = str(price)
    product["quantity"] = str(quantity)
    return {
        "o": order_id,
        "l": line,
        "t": moment,
        "c": currency(values.get("currency")),
        "k": customer_keys(values),
        "p": product,
    }


class _Spill:
    """Partition files of order lines, appended a chunk at a time."""

    def __init__(self, folder: Path, partitions: int) -> None:
        self.folder = folder
        self.partitions = partitions
        self._buffers: list[list[bytes]] = [[] for _ in range(partitions)]

    def add(self, record: dict[str, Any]) -> None:
        # `<order id as JSON>\t<record as JSON>`: JSON text holds no raw tab, so pass 2
        # groups the lines by their first field without parsing them
        key = orjson.dumps(record["o"])
        index = zlib.crc32(key) % self.partitions
        self._buffers[index].append(key + b"\t" + orjson.dumps(record) + b"\n")

    def flush(self) -> None:
        for index, buffer in enumerate(self._buffers):
            if buffer:
                with open(self.folder / f"{index:04d}.jsonl", "ab") as handle:
                    handle.write(b"".join(buffer))
                buffer.clear()

    def groups(self, index: int) -> Iterator[tuple[str, list[dict[str, Any]]]]:
        """The orders of one partition (deleted once read), each with its lines in file
        order. The partition is held as its compact JSON lines, parsed an order at a time."""
        path = self.folder / f"{index:04d}.jsonl"
        if not path.exists():
            return
        orders: dict[bytes, list[bytes]] = {}
        with open(path, "rb") as handle:
            for line in handle:
                key, _, record = line.partition(b"\t")
                orders.setdefault(key, []).append(record)
        path.unlink()
        while orders:
            key, lines = orders.popitem()
            records = sorted((orjson.loads(line) for line in lines), key=lambda r: r["l"])
            yield orjson.loads(key), records


def import_orders(warehouse: Warehouse, options: Options) -> ImportReport:
    """Load order lines (CSV or Parquet) as one "Order Completed" event per order."""
    channel = check_channel(options.channel, "store")
    tally = Tally(options.kind)
    table = open_table(options.path, COLUMNS, options.mapping, options.chunk_rows)
    spill_root = warehouse.path.parent if warehouse.path is not None else None
    try:
        source_id = ensure_source(warehouse, options.source_name or "import-orders", channel)
        with (
            tempfile.TemporaryDirectory(prefix=".touchpoints-orders-", dir=spill_root) as folder,
            EventSink(
                warehouse,
                "orders",
                source_id,
                channel,
                tally,
                unit=table.unit,
                columns=table.columns,
            ) as sink,
        ):
            spill = _Spill(Path(folder), partitions_for(table))
            total = 2 * table.total  # the file is read once, then its partitions once
            for chunk in table.chunks():
                for row in chunk:
                    _first_pass(row, sink, spill)
                spill.flush()
                sink.write()
                options.report_progress(table.done(), total)
            for index in range(spill.partitions):
                for order_id, records in spill.groups(index):
                    _order(order_id, records, sink, channel)
                    if sink.pending() >= options.chunk_rows:
                        sink.write()
                sink.write()
                options.report_progress(
                    table.total + table.total * (index + 1) // spill.partitions, total
                )
    finally:
        table.close()
    return tally.report()


def _first_pass(row: Row, sink: EventSink, spill: _Spill) -> None:
    sink.tally.rows_read += 1
    if row.problem is not None:
        sink.reject(row.line, row.problem[0], row.problem[1], row.raw)
        return
    order_id = text(row.values.get("order_id"))
    if order_id is None:
        sink.reject(row.line, "order_id", "no value", row.raw)
        return
    try:
        record = line_record(row.values, order_id, row.line)
    except RowError as exc:
        sink.reject(row.line, exc.column, exc.reason, row.raw)
        spill.add({"o": order_id, "l": row.line, "bad": 1})  # the order is held back
        return
    spill.add(record)


def _order(order_id: str, records: list[dict[str, Any]], sink: EventSink, channel: str) -> None:
    """Write one order from its lines, or keep it aside when a line of it is bad."""
    good = [record for record in records if "bad" not in record]
    lines = [record["l"] for record in records]
    summary = {"order_id": order_id, sink.unit + "s": lines}
    bad = [record["l"] for record in records if "bad" in record]
    if bad:
        if good:
            shown = ", ".join(str(line) for line in bad[:20]) + (" …" if len(bad) > 20 else "")
            sink.keep(
                f"order {order_id}",
                f"not loaded: {sink.unit} {shown} of this order "
                f"{'is' if len(bad) == 1 else 'are'} bad; fix and import again",
                summary,
            )
            sink.tally.skipped["orders_held_back"] += 1
        return
    first = good[0]
    for record in good[1:]:
        if record["c"] != first["c"]:
            sink.reject(
                record["l"],
                "currency",
                f"{record['c']} where {sink.unit} {first['l']} of order {order_id} has "
                f"{first['c']}: an order has one currency",
                summary,
            )
            sink.tally.skipped["orders_held_back"] += 1
            return
    keys: dict[str, str] = {}
    products, revenue = [], Decimal(0)
    for record in good:
        for kind, value in record["k"].items():
            keys.setdefault(kind, value)
        product = dict(record["p"])
        price, quantity = Decimal(product["price"]), Decimal(product["quantity"])
        revenue += price * quantity
        product["price"] = float(price)
        product["quantity"] = plain_number(quantity)
        products.append(product)
    message: dict[str, Any] = {
        "type": "track",
        "event": "Order Completed",
        "timestamp": first["t"],
        "messageId": message_id("orders", order_id),
        "channel": channel,
        "properties": {
            "order_id": order_id,
            "revenue": float(revenue),
            "currency": first["c"],
            "products": products,
        },
    }
    identify(message, keys, f"order:{order_id}")
    sink.add(message, first["l"], summary)
