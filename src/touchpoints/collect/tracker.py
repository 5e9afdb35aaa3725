"""The first-party JavaScript tracker (`tracker.js`) that the collector serves at /tp.js,
and the HTML snippet a site pastes to load it.

The script is package data, read once; its ETag is a hash of its bytes, so a browser's
copy is revalidated cheaply and replaced as soon as a new version is installed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from typing import Any

from touchpoints.errors import InvalidInput

#: Methods the snippet's stub queues until the script has loaded (tracker.js replays them).
STUB_METHODS: tuple[str, ...] = ("page", "track", "identify", "consent", "reset", "flush")
#: Settings of `tp.config` besides the write key, host and consent mode.
OPTIONS: tuple[str, ...] = ("flushInterval", "batchSize", "clicks", "scroll")


@dataclass(frozen=True)
class Script:
    """The tracker's bytes and their strong ETag (quoted, as the header carries it)."""

    body: bytes
    etag: str

    def matches(self, if_none_match: str | None) -> bool:
        """Whether an If-None-Match header names this version (so 304 will do)."""
        if not if_none_match:
            return False
        tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
        return "*" in tags or self.etag in tags


@cache
def script() -> Script:
    """tracker.js as shipped in the package."""
    body = files("touchpoints.collect").joinpath("tracker.js").read_bytes()
    return Script(body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')


def snippet(
    host: str,
    write_key: str,
    require_consent: bool = False,
    *,
    options: Mapping[str, Any] | None = None,
) -> str:
    """The HTML to paste into every page of a site: a stub that queues calls, the
    tracker loaded asynchronously from `host` (the collector's public URL), and a first
    `tp.page()`. `options` sets more of `tp.config` (OPTIONS; docs/tracker.md)."""
    host = host.strip().rstrip("/")
    if not host.startswith(("http://", "https://")):
        raise InvalidInput("host must be an http:// or https:// URL", field="host")
    if not write_key:
        raise InvalidInput("a write key is required", field="write_key")
    unknown = sorted(set(options or {}) - set(OPTIONS))
    if unknown:
        raise InvalidInput(
            f"unknown tracker option {unknown[0]!r}; known: {', '.join(OPTIONS)}", field="options"
        )
    config = {"writeKey": write_key, "host": host, "requireConsent": require_consent}
    config.update(options or {})
    methods = json.dumps(list(STUB_METHODS))
    return f"""<script>
  (function (w, d) {{
    var tp = (w.tp = w.tp || []);
    if (tp.loaded || tp.invoked) return;
    tp.invoked = true;
    {methods}.forEach(function (m) {{
      tp[m] = function () {{ tp.push([m].concat([].slice.call(arguments))); }};
    }});
    tp.config = {_js(config)};
    var s = d.createElement("script");
    s.async = true;
    s.src = {_js(host + "/tp.js")};
    d.head.appendChild(s);
    tp.page();
  }})(window, document);
</script>"""


def _js(value: Any) -> str:
    """`value` as a JavaScript literal that is safe inside an HTML <script> element."""
    text = json.dumps(value, ensure_ascii=True)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
