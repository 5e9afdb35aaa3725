"""How email leaves: the SMTP server, the sender, the rate, and the public address of
the API that serves the links inside messages. Kept in `meta` (audited on change); the
SMTP password never is — it is read from the environment variable the settings name.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, fields
from typing import Any
from urllib.parse import urlsplit

import orjson

from touchpoints.errors import InvalidInput
from touchpoints.privacy import audit
from touchpoints.warehouse import Warehouse

__all__ = ["EmailSettings", "load_email_settings", "save_email_settings"]

META_KEY = "email_settings"
SECURITY = ("starttls", "tls", "none")
_ADDRESS = re.compile(r"^[^@\s<>\"]{1,64}@[A-Za-z0-9.\-]{1,253}\.[A-Za-z]{2,63}$")
_ENV = re.compile(r"^[A-Z_][A-Z0-9_]{0,63}$")


@dataclass(frozen=True)
class EmailSettings:
    """SMTP and sender settings (see the module docstring)."""

    host: str = "127.0.0.1"
    port: int = 25
    security: str = "starttls"  # starttls: upgrade after connecting; tls: TLS from the start
    username: str | None = None
    password_env: str = "TOUCHPOINTS_SMTP_PASSWORD"
    from_address: str = "marketing@example.com"
    from_name: str | None = None
    reply_to: str | None = None
    public_url: str = "http://127.0.0.1:8000"  # where recipients reach the links
    rate_per_second: float = 10.0
    timeout_seconds: float = 30.0
    ca_file: str | None = None  # a PEM bundle to trust besides the system's (a private relay)

    def __post_init__(self) -> None:
        _check(isinstance(self.host, str) and 0 < len(self.host) <= 253, "host", "a host name")
        _check(isinstance(self.port, int) and 0 < self.port < 65536, "port", "a port, 1 to 65535")
        _check(self.security in SECURITY, "security", "one of " + ", ".join(SECURITY))
        _check(
            self.username is None or (isinstance(self.username, str) and self.username),
            "username",
            "a user name, or null",
        )
        _check(
            isinstance(self.password_env, str) and bool(_ENV.match(self.password_env)),
            "password_env",
            "the name of an environment variable (A-Z, 0-9, _)",
        )
        for name in ("from_address", "reply_to"):
            value = getattr(self, name)
            if name == "reply_to" and value is None:
                continue
            _check(isinstance(value, str) and bool(_ADDRESS.match(value)), name, "an address")
        _check(
            self.from_name is None
            or (isinstance(self.from_name, str) and len(self.from_name) < 80),
            "from_name",
            "a short display name",
        )
        _check(
            self.ca_file is None
            or (isinstance(self.ca_file, str) and os.path.isfile(self.ca_file)),
            "ca_file",
            "the path of a PEM file of certificates to trust",
        )
        url = urlsplit(self.public_url) if isinstance(self.public_url, str) else None
        _check(
            url is not None and url.scheme in ("http", "https") and bool(url.netloc),
            "public_url",
            "the http(s) address of this server as recipients reach it",
        )
        for name, top in (("rate_per_second", 10_000.0), ("timeout_seconds", 600.0)):
            value = getattr(self, name)
            _check(
                isinstance(value, int | float) and 0 < value <= top,
                name,
                f"a number above 0 and at most {top:g}",
            )

    @property
    def password(self) -> str | None:
        return os.environ.get(self.password_env) or None

    @property
    def domain(self) -> str:
        """The sender's domain: the right side of every Message-ID."""
        return self.from_address.rpartition("@")[2]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check(ok: bool, field: str, what: str) -> None:
    if not ok:
        raise InvalidInput(f"{field} must be {what}", field=field)


def parse_settings(body: Any, base: EmailSettings | None = None) -> EmailSettings:
    """Settings from a JSON object: the keys given replace those of `base`."""
    if not isinstance(body, dict):
        raise InvalidInput("email settings are a JSON object", field="body")
    known = {f.name for f in fields(EmailSettings)}
    unknown = sorted(set(body) - known)
    if unknown:
        raise InvalidInput(
            f"unknown setting {unknown[0]!r}; known: {', '.join(sorted(known))}", field=unknown[0]
        )
    merged = {**(base or EmailSettings()).as_dict(), **body}
    if isinstance(merged.get("port"), float) and merged["port"].is_integer():
        merged["port"] = int(merged["port"])
    return EmailSettings(**merged)


def load_email_settings(warehouse: Warehouse) -> EmailSettings:
    """The stored settings, or the defaults (a local mail server on port 25)."""
    stored = warehouse.get_meta(META_KEY)
    return parse_settings(orjson.loads(stored)) if stored else EmailSettings()


def save_email_settings(
    warehouse: Warehouse, body: dict[str, Any], *, actor: str = "server"
) -> EmailSettings:
    """Validate and store settings (the keys given change, the rest stay); audited."""
    with warehouse.lock:
        settings = parse_settings(body, load_email_settings(warehouse))
        warehouse.set_meta(META_KEY, orjson.dumps(settings.as_dict()).decode())
        audit.record(warehouse, actor, "email.settings", None, None, settings.as_dict())
    return settings
