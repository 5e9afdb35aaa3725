"""The default channel grouping, from UTM parameters and the referrer.

The rules follow the shape of Google Analytics' default channel groups, first match wins:

1. Direct: no source, no medium (or `(none)`/`(direct)`/`(not set)`) and no referrer.
2. Paid Search: medium `cpc`, `ppc`, `sem`, `paidsearch` (any spelling) with a search
   engine as source or referrer, or a paid-search medium whatever the source.
3. Paid Social: a paid medium (`cpc`, `ppc`, `cpm`, `paid*`) with a social site as
   source or referrer, or a paid-social medium (`paid_social`, `paidsocial`, …).
4. Display: medium `display`, `banner`, `cpm`, `interstitial` or `expandable`.
5. Affiliates: medium `affiliate`/`affiliates`.
6. Email: source or medium `email`, `e-mail`, `e_mail` or `newsletter`.
7. Organic Social: a social site as source or referrer, or medium `social`, `sm`,
   `social-network`, `social-media`.
8. Organic Search: a search engine as source or referrer, or medium `organic`.
9. Referral: medium `referral`, or any other referrer.
10. Other: everything else (tagged traffic that matches no rule).
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

GROUPS = (
    "Direct",
    "Paid Search",
    "Paid Social",
    "Display",
    "Affiliates",
    "Email",
    "Organic Social",
    "Organic Search",
    "Referral",
    "Other",
)

SEARCH_SITES = ("google", "bing", "yahoo", "duckduckgo", "baidu", "yandex", "ecosia",
                "ask", "naver", "seznam", "qwant", "startpage", "brave", "aol")  # fmt: skip
SOCIAL_SITES = ("facebook", "fb", "instagram", "twitter", "x", "t", "linkedin", "lnkd",
                "pinterest", "tiktok", "youtube", "reddit", "snapchat", "whatsapp",
                "threads", "mastodon", "vk", "weibo", "tumblr", "quora")  # fmt: skip

_NONE = ("", "(none)", "(direct)", "(not set)", "direct", "none")


def _site_pattern(names: tuple[str, ...]) -> str:
    """A source such as `google` or a host such as `www.google.co.uk`/`l.instagram.com`:
    the site's name followed only by a top-level domain (and a country code), so that
    `t.co` is social but `t.example.com` and `x.mycompany.com` are not."""
    alternatives = "|".join(names)
    return rf"^(.*\.)?({alternatives})(\.[a-z]{{2,3}}(\.[a-z]{{2}})?)?$"


def referrer_host(url: ir.StringValue) -> ir.StringValue:
    """The host of a URL, lower case, without a leading `www.`; null when there is none."""
    host = url.lower().re_extract(r"^[a-z][a-z0-9+.-]*://([^/:?#]+)", 1)
    host = host.re_replace(r"^www\.", "")
    return ibis.ifelse(host == "", ibis.null("string"), host)


def _clean(value: ir.StringValue) -> ir.StringValue:
    """Lower case, without surrounding white space, "" for null. Not `.strip()`: ibis
    writes it for Spark as TRIM(' \\t\\n\\r\\v\\f' FROM ...), where '\\v' and '\\f' read as
    the letters v and f, so that 'facebook' became 'aceboo'."""
    return value.lower().re_replace(r"^\s+|\s+$", "").fill_null("")


def channel_group(
    source: ir.StringValue, medium: ir.StringValue, referrer: ir.StringValue
) -> ir.StringValue:
    """The default channel group of a visit from its UTM source, UTM medium and referrer
    URL (rules in the module docstring)."""
    src = _clean(source)
    med = _clean(medium)
    host = referrer_host(referrer).fill_null("")
    search = src.re_search(_site_pattern(SEARCH_SITES)) | host.re_search(
        _site_pattern(SEARCH_SITES)
    )
    social = src.re_search(_site_pattern(SOCIAL_SITES)) | host.re_search(
        _site_pattern(SOCIAL_SITES)
    )
    paid = med.re_search(r"^(.*cp.*|ppc|retargeting|paid.*)$")
    return ibis.cases(
        (src.isin(_NONE) & med.isin(_NONE) & (host == ""), "Direct"),
        (med.re_search(r"^(paid[-_ ]?search|sem)$") | (search & paid), "Paid Search"),
        (med.re_search(r"^(paid[-_ ]?social|social[-_ ]?paid)$") | (social & paid), "Paid Social"),
        (med.isin(("display", "banner", "cpm", "interstitial", "expandable")), "Display"),
        (med.isin(("affiliate", "affiliates")), "Affiliates"),
        (
            src.isin(("email", "e-mail", "e_mail", "newsletter"))
            | med.isin(("email", "e-mail", "e_mail", "newsletter")),
            "Email",
        ),
        (social | med.isin(("social", "sm", "social-network", "social-media")), "Organic Social"),
        (search | (med == "organic"), "Organic Search"),
        ((med == "referral") | (host != ""), "Referral"),
        else_="Other",
    )
