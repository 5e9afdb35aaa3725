"""File importers: orders, email events, ad spend, web logs, survey answers and social
mentions from CSV, Parquet or access logs into the warehouse, streamed in chunks.

Every row becomes a Segment message normalised like one the collector receives (or, for
spend, a row of `spend`), with a messageId derived from the row's natural key, so
importing the same file twice adds nothing. Bad rows are reported by line and kept in
`rejected_events`; the good ones load. See docs/importers.md.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from pathlib import Path

from touchpoints.collect.importers.emails import import_email
from touchpoints.collect.importers.feedback import import_feedback, import_mentions
from touchpoints.collect.importers.orders import import_orders
from touchpoints.collect.importers.reading import load_mapping
from touchpoints.collect.importers.runner import ImportReport, Options
from touchpoints.collect.importers.spend import import_spend
from touchpoints.collect.importers.weblog import import_weblog
from touchpoints.errors import InvalidInput
from touchpoints.warehouse import Warehouse

KINDS = ("orders", "email", "spend", "weblog", "feedback", "mentions")

_IMPORTERS: dict[str, Callable[[Warehouse, Options], ImportReport]] = {
    "orders": import_orders,
    "email": import_email,
    "spend": import_spend,
    "weblog": import_weblog,
    "feedback": import_feedback,
    "mentions": import_mentions,
}


def import_file(
    warehouse: Warehouse,
    kind: str,
    path: str | Path,
    *,
    mapping: Mapping[str, str] | None = None,
    channel: str | None = None,
    source_name: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    chunk_rows: int = 50_000,
    salt: str | None = None,
) -> ImportReport:
    """Import one file of `kind` (one of KINDS) into `warehouse` and say what it did.

    `mapping` maps our column names to the file's; `channel` overrides the importer's
    channel (for spend: the channel of rows that name none); `source_name` names the
    source of the events (default ``import-<kind>``; for spend, the `source` of rows
    that name none); `progress(done, total)` is called after each chunk of `chunk_rows`
    rows; `salt` keys web log visitors. Raises InvalidInput, before anything is
    written, for an unknown kind, a missing file or a missing required column.
    """
    if kind not in _IMPORTERS:
        close = difflib.get_close_matches(str(kind), KINDS, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise InvalidInput(
            f"unknown import kind {kind!r}{hint}; use one of {', '.join(KINDS)}", field="kind"
        )
    target = Path(path)
    if not target.is_file():
        raise InvalidInput(f"no file {target}", field="path")
    if not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise InvalidInput("chunk_rows must be a whole number of at least 1", field="chunk_rows")
    if mapping is not None and not isinstance(mapping, Mapping):
        raise InvalidInput("mapping must map our column names to the file's", field="mapping")
    options = Options(
        kind=kind,
        path=target,
        mapping=dict(mapping) if mapping else None,
        channel=channel,
        source_name=source_name,
        progress=progress,
        chunk_rows=chunk_rows,
        salt=salt,
    )
    return _IMPORTERS[kind](warehouse, options)


__all__ = ["KINDS", "ImportReport", "import_file", "load_mapping"]
