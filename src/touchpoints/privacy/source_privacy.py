"""What a source keeps of client IP addresses, changed with an audit entry (the consent
collection mode has its twin in `consent_config.set_source_mode`)."""

from __future__ import annotations

from touchpoints.collect.sources import set_ip_mode
from touchpoints.privacy import audit
from touchpoints.warehouse import Warehouse


def set_source_ip_mode(
    warehouse: Warehouse, source_id: str, mode: str, *, actor: str = "cli"
) -> dict[str, str]:
    """Set a source's `ip_mode` (keep, truncate, hash, drop) and audit it."""
    with warehouse.lock:
        previous = set_ip_mode(warehouse, source_id, mode)
        audit.record(warehouse, actor, "source.ip_mode", source_id, None,
                     {"mode": mode, "previous": previous})  # fmt: skip
    return {"source_id": source_id, "ip_mode": mode, "previous": previous}
