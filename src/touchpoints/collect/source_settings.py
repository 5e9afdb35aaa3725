"""A source's `settings` JSON: read leniently (a bad or missing value is no settings) and
changed one key at a time, so the consent and IP modes never overwrite each other."""

from __future__ import annotations

from typing import Any

import orjson

from touchpoints.errors import InvalidInput, NotFound
from touchpoints.warehouse import Warehouse


def json_object(value: Any) -> dict[str, Any]:
    """A dict from a dict or JSON text; anything else is an empty dict."""
    if isinstance(value, dict):
        return value
    if isinstance(value, str) and value:
        try:
            parsed = orjson.loads(value)
        except orjson.JSONDecodeError:
            return {}
        return parsed if isinstance(parsed, dict) else {}
    return {}


def check_choice(value: Any, allowed: tuple[str, ...], field: str) -> str:
    """`value` when it is one of `allowed`, else InvalidInput naming `field`."""
    if value not in allowed:
        raise InvalidInput(
            f"{field} must be one of {', '.join(allowed)}, not {str(value)[:40]!r}", field=field
        )
    return str(value)


def setting_choice(settings: Any, key: str, allowed: tuple[str, ...], default: str) -> str:
    """One key of a source's settings when it holds an allowed value, else `default`."""
    value = json_object(settings).get(key)
    return value if value in allowed else default


def put_source_setting(warehouse: Warehouse, source_id: str, key: str, value: Any) -> str | None:
    """Set one key of a source's settings; returns the settings text as it was before."""
    with warehouse.lock:
        table = warehouse.table("sources")
        rows = table.filter(table.source_id == source_id).select("settings").to_pyarrow()
        if rows.num_rows == 0:
            raise NotFound(f"no source {source_id!r}", field="source_id")
        text = rows.column("settings")[0].as_py()
        settings = json_object(text)
        settings[key] = value
        warehouse.update_rows(
            "sources", "source_id", source_id, {"settings": orjson.dumps(settings).decode()}
        )
    return text
