"""Device category, browser and operating system from the user agent.

Parsing uses `ua-parser` (the maintained uap-core rules). Each distinct user agent is
parsed once in Python and joined back as a small lookup table, so the analysis itself
stays a query that runs on any engine.
"""

from __future__ import annotations

from functools import lru_cache

import ibis
import ibis.expr.types as ir
import pyarrow as pa

TECHNOLOGY_FIELDS = ("device", "browser", "os")

_MOBILE_OS = {"iOS", "Android", "Windows Phone", "BlackBerry OS", "KaiOS", "Firefox OS"}


@lru_cache(maxsize=65536)
def parse_user_agent(text: str | None) -> tuple[str, str, str]:
    """(device category, browser family, OS family) of a user agent string. The device
    category is desktop, mobile, tablet, bot or unknown."""
    if not text:
        return ("unknown", "unknown", "unknown")
    from ua_parser import parse

    result = parse(text)
    browser = result.user_agent.family if result.user_agent else "Other"
    os_family = result.os.family if result.os else "Other"
    device = result.device.family if result.device else "Other"
    return (_category(text, device, os_family), browser, os_family)


def _category(text: str, device: str, os_family: str) -> str:
    if device == "Spider":
        return "bot"
    lowered = text.lower()
    if (
        "ipad" in lowered
        or "tablet" in lowered
        or (os_family == "Android" and "mobile" not in lowered)
    ):
        return "tablet"
    if os_family in _MOBILE_OS or "mobi" in lowered:
        return "mobile"
    if os_family == "Other" and device == "Other":
        return "unknown"
    return "desktop"


def technology_lookup(user_agents: list[str | None]) -> ir.Table:
    """A lookup table (user_agent, device, browser, os) for the given strings."""
    parsed = [parse_user_agent(ua) for ua in user_agents]
    return ibis.memtable(
        pa.table(
            {
                "_ua": pa.array(user_agents, pa.string()),
                "device": pa.array([p[0] for p in parsed], pa.string()),
                "browser": pa.array([p[1] for p in parsed], pa.string()),
                "os": pa.array([p[2] for p in parsed], pa.string()),
            }
        )
    )


def with_technology(events: ir.Table) -> ir.Table:
    """`events` plus `device`, `browser` and `os` columns. Runs one small query for the
    distinct user agents."""
    distinct = events.select(_ua=events.user_agent).distinct().to_pyarrow()
    user_agents = [ua for ua in distinct.column("_ua").to_pylist() if ua is not None]
    lookup = technology_lookup(user_agents)
    joined = events.left_join(lookup, events.user_agent == lookup._ua)
    unknown = ibis.literal("unknown")
    return joined.mutate(
        device=joined.device.fill_null(unknown),
        browser=joined.browser.fill_null(unknown),
        os=joined.os.fill_null(unknown),
    ).drop("_ua")
