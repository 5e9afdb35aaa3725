"""What a source keeps of the client's IP address: each source's `ip_mode`.

The collector applies a source's mode to every address before anything is written —
the `ip` column, `context.ip`, a rejected message's payload and the spool — so an
address the mode does not keep is never stored anywhere:

- `keep`: stored as received.
- `truncate` (the default for new sources): IPv4 with its last octet zeroed
  (203.0.113.77 → 203.0.113.0), IPv6 with its first 48 bits kept and the rest zeroed
  (2001:db8:85a3:8d3:1319:8a2e:370:7348 → 2001:db8:85a3::). A value that is no IP
  address is not stored.
- `hash`: ``"h:"`` + the hex HMAC-SHA256 of the address, keyed by a random secret made
  once per warehouse and kept in the `meta` table (`ip_hash_secret`). The same address
  gives the same hash within a warehouse, so visitors can still be counted, but not the
  address back without that secret: this is pseudonymisation, not anonymisation.
- `drop`: not stored at all.

Sources made before `ip_mode` existed have no such key in their `settings` and keep
addresses as they always did (`keep`) until it is set (`set_ip_mode`).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from typing import Any

import pyarrow as pa

from touchpoints.collect.source_settings import check_choice, setting_choice
from touchpoints.warehouse import Warehouse

IP_MODES: tuple[str, ...] = ("keep", "truncate", "hash", "drop")
#: The mode of a source made now (privacy first).
DEFAULT_IP_MODE = "truncate"
#: The mode of a source whose settings do not name one (made before `ip_mode` existed).
UNSET_IP_MODE = "keep"
#: The key of a source's mode in its `settings` JSON.
IP_SETTING = "ip_mode"
#: The `meta` key of the warehouse's secret for `hash`.
SECRET_KEY = "ip_hash_secret"
HASH_PREFIX = "h:"

_V6_KEPT = ((1 << 48) - 1) << 80  # the first 48 of 128 bits


def check_ip_mode(mode: Any) -> str:
    """`mode` when it is one of IP_MODES, else InvalidInput naming `ip_mode`."""
    return check_choice(mode, IP_MODES, "ip_mode")


def ip_mode_from_settings(settings: str | None) -> str:
    """A source's ip mode from its `settings` JSON text (`keep` when it names none)."""
    return setting_choice(settings, IP_SETTING, IP_MODES, UNSET_IP_MODE)


def parse_ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An address from text as proxies write it (``[v6]:port``, ``v4:port``, a zone
    id, an IPv4-mapped IPv6 address), or None when it is none."""
    text = value.strip()
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1 and "." in text:  # 203.0.113.7:51234
        text = text.partition(":")[0]
    text = text.partition("%")[0]  # fe80::1%eth0
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def truncate_ip(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    if isinstance(address, ipaddress.IPv4Address):
        return str(ipaddress.IPv4Address(int(address) & 0xFFFFFF00))
    return str(ipaddress.IPv6Address(int(address) & _V6_KEPT))


def hash_ip(value: str, secret: bytes) -> str:
    """``h:`` + HMAC-SHA256 of the address in its canonical form (so ``2001:DB8::1``
    and ``2001:db8:0::1`` hash alike), or of the stripped text when it is no address."""
    address = parse_ip(value)
    text = str(address) if address is not None else value.strip()
    return HASH_PREFIX + hmac.new(secret, text.encode(), hashlib.sha256).hexdigest()


def mask_ip(value: Any, mode: str, secret: bytes | None = None) -> Any:
    """What `mode` stores of `value` (`secret` is needed for `hash`). Under any mode but
    `keep`, a value that is not text (a number, an object) is not stored."""
    if mode == "keep" or value is None:
        return value
    if mode == "drop" or not isinstance(value, str) or not value.strip():
        return None
    if mode == "truncate":
        address = parse_ip(value)
        return None if address is None else truncate_ip(address)
    if mode == "hash":
        if secret is None:
            raise ValueError("hashing an ip needs the warehouse's secret")
        return hash_ip(value, secret)
    raise ValueError(f"unknown ip_mode {mode!r}")


class IpMasker:
    """`mask_ip` for one request, remembering each address it saw (a batch usually
    comes from one client)."""

    __slots__ = ("_seen", "mode", "secret")

    def __init__(self, mode: str, secret: bytes | None = None) -> None:
        self.mode = mode
        self.secret = secret
        self._seen: dict[str, Any] = {}

    def __call__(self, value: Any) -> Any:
        if self.mode == "keep" or value is None:
            return value
        if not isinstance(value, str):
            return None
        if value not in self._seen:
            self._seen[value] = mask_ip(value, self.mode, self.secret)
        return self._seen[value]

    def row(self, row: dict[str, Any]) -> dict[str, Any]:
        """An `events` row with its `ip` column and `context.ip` masked (in place)."""
        if self.mode == "keep":
            return row
        context = row.get("context")
        if isinstance(context, dict) and "ip" in context:
            context["ip"] = self(context["ip"])
            row["ip"] = context["ip"] if isinstance(context["ip"], str) else None
        else:
            row["ip"] = self(row.get("ip"))
        return row

    def message(self, message: Any) -> Any:
        """A raw message (kept in rejected_events) with its `context.ip` masked; a copy,
        the original is not changed."""
        if self.mode == "keep" or not isinstance(message, dict):
            return message
        context = message.get("context")
        if not isinstance(context, dict) or "ip" not in context:
            return message
        return {**message, "context": {**context, "ip": self(context["ip"])}}


def ip_secret(warehouse: Warehouse) -> bytes:
    """The warehouse's secret for `hash`, made on first use and kept in `meta`."""
    with warehouse.lock:
        stored = _stored_secrets(warehouse)
        if not stored:
            made = pa.table({"key": [SECRET_KEY], "value": [secrets.token_hex(32)]})
            warehouse.insert("meta", made)
            stored = _stored_secrets(warehouse)  # another process may have won: use theirs
    return bytes.fromhex(min(stored))


def _stored_secrets(warehouse: Warehouse) -> list[str]:
    meta = warehouse.table("meta")
    values = meta.filter(meta.key == SECRET_KEY).value.to_pyarrow().to_pylist()
    return [value for value in values if value]
