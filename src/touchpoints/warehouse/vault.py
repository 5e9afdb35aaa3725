"""Encryption at rest of personal data: one key, an authenticated cipher, a keyed hash.

A personal value is stored as one token, `tp1:<blind>:<sealed>`:

- `sealed` is AES-256-GCM (a fresh 96-bit nonce per value, the field name as associated
  data) of the value: unreadable and tamper-evident without the key.
- `blind` is HMAC-SHA256 of the value's canonical form: equal values give equal blinds,
  so identity resolution, look-ups and erasure join on it without ever decrypting.

The subkeys (sealing, blinding, and signing the links the platform hands out) come from
one 32-byte master key by HKDF. The master key is read from
`TOUCHPOINTS_KEY` (URL-safe base64), else the file named by `TOUCHPOINTS_KEY_FILE`,
else `<warehouse file>.key` beside a DuckDB warehouse (created, mode 0600, on first
use; back it up with the warehouse, which cannot be read without it). A check value
kept in the warehouse's `meta` table refuses a wrong key at once.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
import re
import secrets
from pathlib import Path
from typing import Any

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from touchpoints.errors import WarehouseError

KEY_ENV = "TOUCHPOINTS_KEY"
KEY_FILE_ENV = "TOUCHPOINTS_KEY_FILE"
KEY_CHECK = "vault_key_check"
#: A token: the version and kind, the blind (43 chars of base64url), the sealed value.
#: `tp1i` is an identifier (its blind is of its canonical form, so it joins), `tp1o` a
#: sealed JSON value (an address object), `tp1` any other string.
TOKEN = re.compile(r"^tp1([io]?):([A-Za-z0-9_-]{43}):([A-Za-z0-9_-]+)$")
#: The SQL-side pattern that takes the blind out of an identifier's token (identity).
BLIND_PATTERN = r"^tp1i:([A-Za-z0-9_-]{43}):"
#: The SQL-side pattern of any token.
TOKEN_PATTERN = r"^tp1[io]?:[A-Za-z0-9_-]{43}:"


def _b64(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).rstrip(b"=").translate(_URLSAFE).decode()


_URLSAFE = bytes.maketrans(b"+/", b"-_")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def new_key() -> str:
    """A fresh master key as text (what `TOUCHPOINTS_KEY` holds)."""
    return _b64(secrets.token_bytes(32))


def parse_key(text: str, origin: str) -> bytes:
    """The 32 bytes of a key written as URL-safe base64; WarehouseError naming `origin`."""
    try:
        raw = _unb64(text.strip())
    except (ValueError, TypeError):
        raw = b""
    if len(raw) != 32:
        raise WarehouseError(
            f"the encryption key in {origin} is not 32 bytes of URL-safe base64 "
            "(make one with `touchpoints keys new-master`)"
        )
    return raw


def load_master(path: Path | None, shared_name: str | None = None) -> tuple[bytes, str]:
    """(master key, where it came from) by the order in the module docstring. A shared
    warehouse (Spark) with no key configured keeps its key in
    `~/.touchpoints/keys/<shared_name>.key`; an in-memory DuckDB one gets a fresh key
    that lives as long as it does."""
    if os.environ.get(KEY_ENV):
        return parse_key(os.environ[KEY_ENV], KEY_ENV), KEY_ENV
    named = os.environ.get(KEY_FILE_ENV)
    if named:
        key_file: Path | None = Path(named).expanduser()
    elif path is not None:
        key_file = _beside(path)
    elif shared_name is not None:
        key_file = Path.home() / ".touchpoints" / "keys" / f"{shared_name}.key"
    else:
        key_file = None
    if key_file is None:
        return secrets.token_bytes(32), "memory"
    if key_file.exists():
        return parse_key(key_file.read_text(encoding="ascii"), str(key_file)), str(key_file)
    if named:
        raise WarehouseError(f"{KEY_FILE_ENV} names {key_file}, which does not exist")
    key_file.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="ascii") as handle:
        handle.write(new_key() + "\n")
    return parse_key(key_file.read_text(encoding="ascii"), str(key_file)), str(key_file)


def _beside(path: Path) -> Path:
    return path.with_name(path.name + ".key")


class Vault:
    """Seals, opens and blinds personal values with subkeys of one master key."""

    def __init__(self, master: bytes, origin: str = "memory") -> None:
        self.origin = origin
        self._cipher = AESGCM(_derive(master, b"touchpoints seal v1"))
        self._blind_key = _derive(master, b"touchpoints blind v1")
        self._link_key = _derive(master, b"touchpoints links v1")

    @property
    def check_value(self) -> str:
        """A value that tells this key from another without revealing it."""
        return self.blind("key-check", "touchpoints")[:16]

    def blind(self, kind: str, canonical: str) -> str:
        """The keyed hash of a canonical value of a kind (43 characters)."""
        message = f"{kind}\x1f{canonical}".encode()
        return _b64(hmac.digest(self._blind_key, message, "sha256"))

    def sign(self, message: bytes) -> str:
        """A MAC of `message` (43 characters) for links the platform hands out (an
        unsubscribe link): checkable by this warehouse only, under its own subkey."""
        return _b64(hmac.digest(self._link_key, message, "sha256"))

    def seal(self, field: str, value: Any, blind: str, identifier: bool = False) -> str:
        """The token holding `value` (a string, or any JSON value) sealed for `field`;
        `identifier` when `blind` is of the value's canonical identifier form."""
        is_text = isinstance(value, str)
        plain = value.encode() if is_text else orjson.dumps(value)
        nonce = os.urandom(12)
        sealed = nonce + self._cipher.encrypt(nonce, plain, field.encode())
        kind = "o" if not is_text else "i" if identifier else ""
        return f"tp1{kind}:{blind}:{_b64(sealed)}"

    def open(self, field: str, token: str) -> Any:
        """The value inside a token sealed for `field`; WarehouseError if the key is not
        the one that sealed it or the token was altered."""
        match = TOKEN.match(token)
        if match is None:
            raise WarehouseError(f"{field} does not hold a sealed value")
        sealed = _unb64(match.group(3))
        try:
            plain = self._cipher.decrypt(sealed[:12], sealed[12:], field.encode())
        except (InvalidTag, ValueError) as exc:
            raise WarehouseError(
                f"a sealed {field} cannot be opened: wrong key, or the value was altered"
            ) from exc
        return orjson.loads(plain) if match.group(1) == "o" else plain.decode()


def is_token(value: Any) -> bool:
    return isinstance(value, str) and TOKEN.match(value) is not None


def blind_of(token: str) -> str | None:
    """The blind inside a token, or None for anything else."""
    match = TOKEN.match(token) if isinstance(token, str) else None
    return match.group(2) if match else None


def _derive(master: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(master)
