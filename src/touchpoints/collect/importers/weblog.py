"""The `weblog` importer: web server access logs (Common and Combined Log Format, plain
or gzipped) -> `page` events, without bots, assets or failed requests, and without IPs.

A visitor is `anonymousId = "wl-" + sha256(salt + ip + user agent)[:32]`; the raw IP is
never stored (context.ip is set to None, and a bad line kept in rejected_events has its
addresses masked). The salt is the `salt` argument, else $TOUCHPOINTS_SALT, else a
random one made on the first import and kept in the `meta` table as `weblog_salt`, so
one visitor keeps one id from import to import.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
import secrets
from typing import Any
from urllib.parse import urlsplit

import pyarrow as pa

from touchpoints.collect.importers.reading import open_text
from touchpoints.collect.importers.runner import (
    EventSink,
    ImportReport,
    Options,
    Tally,
    check_channel,
    ensure_source,
)
from touchpoints.collect.importers.values import RowError, iso, message_id, parse_clf_time
from touchpoints.errors import InvalidInput
from touchpoints.warehouse import Warehouse

SALT_KEY = "weblog_salt"
SALT_ENV = "TOUCHPOINTS_SALT"

#: A user agent containing any of these (case-insensitive) is a bot or a script.
BOT_PATTERNS = (
    "bot", "crawl", "spider", "slurp", "curl", "wget", "python-requests", "python-urllib",
    "aiohttp", "httpx", "go-http-client", "java/", "okhttp", "libwww-perl", "scrapy",
    "headlesschrome", "phantomjs", "facebookexternalhit", "pingdom", "lighthouse",
)  # fmt: skip
_BOT = re.compile("|".join(re.escape(pattern) for pattern in BOT_PATTERNS), re.IGNORECASE)

#: Paths with these extensions are assets, not pages.
STATIC_EXTENSIONS = frozenset(
    (
        ".css", ".js", ".mjs", ".map", ".json", ".xml", ".txt", ".png", ".jpg", ".jpeg",
        ".gif", ".svg", ".ico", ".webp", ".avif", ".bmp", ".tif", ".tiff", ".woff", ".woff2",
        ".ttf", ".otf", ".eot", ".mp4", ".webm", ".mp3", ".wav", ".ogg", ".m4a", ".wasm",
        ".zip", ".gz", ".tar", ".rar", ".7z", ".exe", ".dmg", ".apk",
    )
)  # fmt: skip
METHODS = ("GET", "HEAD")

_QUOTED = r'"((?:[^"\\]|\\.)*)"'
_LINE = re.compile(
    rf"^(\S+) \S+ \S+ \[([^\]]+)\] {_QUOTED} (\d{{3}}) (?:\d+|-)(?: {_QUOTED} {_QUOTED})?(?:\s.*)?$"
)
_ESCAPE = re.compile(r"\\(x[0-9A-Fa-f]{2}|.)")
_IPV4 = re.compile(r"(?<![\d.])\d{1,3}(?:\.\d{1,3}){3}(?![\d.])")
_IPV6 = re.compile(
    r'(?<![^\s"\[(,=])(?=[0-9A-Fa-f:.]*::|(?:[0-9A-Fa-f]{0,4}:){3})[0-9A-Fa-f:.]{2,45}'
    r'(?![^\s"\]),])'
)


def resolve_salt(warehouse: Warehouse, salt: str | None) -> str:
    """The salt of visitor ids: the argument, $TOUCHPOINTS_SALT, or the stored one."""
    if salt:
        return salt
    from_env = os.environ.get(SALT_ENV)
    if from_env:
        return from_env
    stored = _stored_salts(warehouse)
    if not stored:
        made = pa.table({"key": [SALT_KEY], "value": [secrets.token_hex(32)]})
        warehouse.insert("meta", made)
        stored = _stored_salts(warehouse)  # a concurrent import may have won: use theirs
    return min(stored)


def _stored_salts(warehouse: Warehouse) -> list[str]:
    meta = warehouse.table("meta")
    values = meta.filter(meta.key == SALT_KEY).value.to_pyarrow().to_pylist()
    return [value for value in values if value]


def visitor_id(salt: str, ip: str, user_agent: str | None) -> str:
    """The anonymousId of a visitor: a salted hash of the IP and user agent."""
    return "wl-" + hashlib.sha256((salt + ip + (user_agent or "")).encode()).hexdigest()[:32]


def is_bot(user_agent: str | None) -> bool:
    """True for a user agent matching BOT_PATTERNS, and for none ("-") at all."""
    return user_agent is None or _BOT.search(user_agent) is not None


def mask_addresses(line: str) -> str:
    """The line with its first field (the client) and every IPv4/IPv6 address masked."""
    first, _, rest = line.partition(" ")
    rest = _IPV6.sub("[ip]", _IPV4.sub("[ip]", rest))
    return ("[client] " + rest) if first else rest


def _unescape(value: str | None) -> str | None:
    """A quoted log field as text: Apache's \\" and nginx's \\xHH escapes undone."""
    if value is None or value == "-":
        return None
    if "\\" not in value:
        return value
    out = bytearray()
    position = 0
    for match in _ESCAPE.finditer(value):
        out += value[position : match.start()].encode("utf-8", "surrogateescape")
        code = match.group(1)
        out += bytes([int(code[1:], 16)]) if len(code) == 3 else code.encode()
        position = match.end()
    out += value[position:].encode("utf-8", "surrogateescape")
    return out.decode("utf-8", "replace")


def parse_line(line: str, salt: str) -> tuple[str, dict[str, Any] | None]:
    """One log line -> ("page", message), or (why it is skipped, None); RowError when
    it is not a log line. The rules: a bot's user agent, a status outside 200-399, a
    method other than GET or HEAD, or a static asset's extension means no page."""
    match = _LINE.match(line)
    if match is None:
        raise RowError(None, "not a line of the Common or Combined Log Format")
    ip, when, request, status, referrer, agent = match.groups()
    moment = parse_clf_time(when)
    user_agent = _unescape(agent)
    if agent is not None and is_bot(user_agent):
        return "bots", None
    if not 200 <= int(status) < 400:
        return "status", None
    parts = (_unescape(request) or "").split(" ")
    if len(parts) not in (2, 3) or not parts[1] or (len(parts) == 3 and "HTTP/" not in parts[2]):
        raise RowError("request", "the request is not like GET /path HTTP/1.1")
    method, target = parts[0], parts[1]
    if method not in METHODS:
        return "method", None
    try:
        split = urlsplit(target)
    except ValueError:
        raise RowError("request", "the request's URL cannot be read") from None
    path = split.path or "/"
    if posixpath.splitext(path.lower())[1] in STATIC_EXTENSIONS:
        return "static", None
    properties: dict[str, Any] = {"path": path, "url": target}
    if split.query:
        properties["search"] = "?" + split.query
    referrer_text = _unescape(referrer)
    if referrer_text is not None:
        properties["referrer"] = referrer_text
    return "page", {
        "type": "page",
        "anonymousId": visitor_id(salt, ip, user_agent),
        "timestamp": iso(moment),
        "properties": properties,
        "context": {"ip": None, "userAgent": user_agent},
        "messageId": message_id("weblog", salt, line),
    }


def import_weblog(warehouse: Warehouse, options: Options) -> ImportReport:
    """Load an access log as page events (see the module docstring)."""
    if options.mapping:
        raise InvalidInput("a web log has no columns to map", field="mapping")
    channel = check_channel(options.channel, "web")
    tally = Tally(options.kind)
    log = open_text(options.path, errors="backslashreplace", newline="\n")
    total = os.path.getsize(options.path)
    try:
        salt = resolve_salt(warehouse, options.salt)
        source_id = ensure_source(warehouse, options.source_name or "import-weblog", channel)
        with EventSink(warehouse, "weblog", source_id, channel, tally, secret=salt) as sink:
            for number, raw_line in enumerate(log.text, start=1):
                line = raw_line.rstrip("\r\n")
                if not line.strip():
                    continue
                tally.rows_read += 1
                try:
                    outcome, message = parse_line(line, salt)
                except RowError as exc:
                    sink.reject(number, exc.column, exc.reason, {"log": mask_addresses(line)})
                else:
                    if message is None:
                        tally.skipped[outcome] += 1
                    else:
                        message["channel"] = channel
                        sink.add(message, number, {"log": mask_addresses(line)})
                if tally.rows_read % options.chunk_rows == 0:
                    sink.write()
                    options.report_progress(min(log.raw.tell(), total), total)
    finally:
        log.close()
    options.report_progress(total, total)
    return tally.report()
