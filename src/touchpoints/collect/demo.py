"""A realistic omnichannel demo shop, generated from documented hidden parameters.

Customers are acquired through the year and buy by the BG/NBD process (Fader, Hardie
and Lee, 2005): while alive, a customer buys at a Poisson rate λ ~ Gamma(r, α) (per
day), and after each repeat purchase leaves for good with probability p ~ Beta(a, b).
Online buyers browse anonymously first, sign up (identify), and shop on the web or the
app; some shop in the store with a loyalty card; newsletters go out every two weeks.
Paid sessions come from campaigns whose daily spend lands in the `spend` table.
Everything is drawn from one seeded generator, and message ids are derived from it,
so the same parameters give the same data and loading twice adds nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import orjson
import pyarrow as pa

from touchpoints.collect.normalize import Envelope, normalize, now_us
from touchpoints.collect.sources import add_source, find_source
from touchpoints.warehouse import Warehouse
from touchpoints.warehouse.writer import open_writer

DAY = 86_400.0


@dataclass(frozen=True)
class DemoParameters:
    """What the generator draws from; later models are checked against these."""

    customers: int = 5000
    months: int = 12
    seed: int = 7
    end: date = date(2026, 11, 1)
    #: BG/NBD purchase process (rates per day): λ ~ Gamma(shape r, rate α), p ~ Beta(a, b).
    r: float = 0.75
    alpha: float = 40.0
    a: float = 0.8
    b: float = 3.2
    #: Spend per order ~ Gamma(p, ν) with ν ~ Gamma(q, γ) per customer (Gamma-Gamma).
    spend_p: float = 6.0
    spend_q: float = 4.0
    spend_gamma: float = 30.0
    #: Where customers shop: online only, store only, both.
    share_online: float = 0.55
    share_store: float = 0.20
    #: Browsing sessions a day per unit of purchase rate, and anonymous-only visitors.
    sessions_per_purchase: float = 3.0
    anonymous_visitors_per_customer: float = 1.0
    newsletter_every_days: int = 14
    open_rate: float = 0.30
    click_rate: float = 0.25
    unsubscribe_rate: float = 0.004


CATEGORIES = ("Shoes", "Outerwear", "Knitwear", "Shirts", "Trousers", "Bags",
              "Accessories", "Sportswear")  # fmt: skip
TRAFFIC = (  # (medium, source, campaign, referrer, share)
    ("(none)", None, None, None, 0.30),
    ("organic", "google", None, "https://www.google.com/", 0.25),
    ("cpc", "google", "brand-search", "https://www.google.com/", 0.10),
    ("cpc", "google", "generic-search", "https://www.google.com/", 0.08),
    ("social", "instagram", None, "https://l.instagram.com/", 0.07),
    ("paid_social", "facebook", "spring-sale", "https://m.facebook.com/", 0.08),
    ("display", "adnetwork", "prospecting", None, 0.05),
    ("referral", "blog.example.org", None, "https://blog.example.org/post", 0.07),
)
CAMPAIGNS = {  # campaign: (channel, click-through rate, cost per click)
    "brand-search": ("Paid Search", 0.08, 0.35),
    "generic-search": ("Paid Search", 0.03, 0.90),
    "spring-sale": ("Paid Social", 0.012, 0.60),
    "prospecting": ("Display", 0.004, 0.40),
}


@dataclass
class _Person:
    index: int
    user_id: str | None
    email: str
    phone: str | None
    loyalty_id: str | None
    web_anonymous_id: str
    app_anonymous_id: str | None
    channels: tuple[str, ...]
    affinity: np.ndarray


class _Generator:
    def __init__(self, params: DemoParameters) -> None:
        self.p = params
        self.rng = np.random.default_rng(params.seed)
        self.end = datetime.combine(params.end, datetime.min.time(), tzinfo=UTC).timestamp()
        self.start = self.end - params.months * 30.4375 * DAY
        self.products = self._catalog()
        self.paid_clicks: dict[tuple[date, str], int] = {}
        self.stats = {"customers": 0, "churned": 0, "orders": 0, "anonymous_visitors": 0}

    def _id(self) -> str:
        return str(uuid.UUID(bytes=self.rng.bytes(16), version=4))

    def _catalog(self) -> list[dict[str, Any]]:
        items = []
        for index in range(120):
            category = CATEGORIES[index % len(CATEGORIES)]
            price = float(np.round(self.rng.lognormal(3.6, 0.5), 2))
            items.append(
                {
                    "product_id": f"P{index:04d}",
                    "sku": f"SKU-{index:04d}",
                    "category": category,
                    "name": f"{category} item {index}",
                    "price": price,
                }
            )
        return items

    def person(self, index: int) -> _Person:
        roll = self.rng.random()
        if roll < self.p.share_online:
            channels: tuple[str, ...] = ("web", "app") if self.rng.random() < 0.4 else ("web",)
        elif roll < self.p.share_online + self.p.share_store:
            channels = ("store",)
        else:
            channels = ("web", "store")
        online = "web" in channels
        return _Person(
            index=index,
            user_id=f"user-{index:05d}" if online else None,
            email=f"customer{index:05d}@example.com",
            phone=f"+1202555{index % 10000:04d}" if self.rng.random() < 0.5 else None,
            loyalty_id=f"LC{100000 + index}" if "store" in channels else None,
            web_anonymous_id=self._id(),
            app_anonymous_id=self._id() if "app" in channels else None,
            channels=channels,
            affinity=self.rng.dirichlet(np.full(len(CATEGORIES), 0.4)),
        )

    # -- messages ---------------------------------------------------------------
    def customer_messages(self, person: _Person) -> Iterator[tuple[str, dict[str, Any]]]:
        p, rng = self.p, self.rng
        self.stats["customers"] += 1
        birth = self.start + rng.uniform(0, 0.85) * (self.end - self.start)
        rate = rng.gamma(p.r, 1.0 / p.alpha)
        dropout_p = rng.beta(p.a, p.b)
        1.0 / rng.gamma(p.spend_q, 1.0 / p.spend_gamma)
        purchases, t, alive_until = [birth], birth, self.end
        while True:
            t += rng.exponential(1.0 / rate) * DAY
            if t >= self.end:
                break
            purchases.append(t)
            if rng.random() < dropout_p:
                alive_until = t
                self.stats["churned"] += 1
                break
        online = "web" in person.channels
        if online:  # anonymous browsing, then sign-up just before the first order
            for _ in range(int(rng.integers(1, 4))):
                yield from self.session(person, birth - rng.uniform(0.1, 10) * DAY, False)
            yield "web", self.identify(person, birth - 60, person.web_anonymous_id)
        elif person.loyalty_id:
            yield "store", self.identify(person, birth - 60, f"pos-{person.loyalty_id}")
        for when in purchases:
            channel = person.channels[int(rng.integers(len(person.channels)))]
            if channel == "store":
                yield "store", self.order(person, when, "store")
            else:
                yield from self.session(
                    person, when - rng.uniform(120, 1800), True, channel, buy=True
                )
        if online:
            n_browse = rng.poisson(p.sessions_per_purchase * rate * (alive_until - birth) / DAY)
            for when in rng.uniform(birth, alive_until, n_browse):
                yield from self.session(person, float(when), True)
        yield from self.newsletters(person, birth, alive_until)

    def identify(self, person: _Person, when: float, anonymous_id: str) -> dict[str, Any]:
        traits = {
            "email": person.email,
            "first_name": f"Test{person.index}",
            "created_at": _iso(when),
        }
        if person.phone:
            traits["phone"] = person.phone
        if person.loyalty_id:
            traits["loyalty_id"] = person.loyalty_id
        message = {
            "type": "identify",
            "anonymousId": anonymous_id,
            "traits": traits,
            "timestamp": _iso(when),
            "messageId": self._id(),
        }
        if person.user_id:
            message["userId"] = person.user_id
        return message

    def session(
        self,
        person: _Person | None,
        start: float,
        known: bool,
        channel: str = "web",
        buy: bool = False,
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """A visit: page or screen views, a product view, maybe a cart, maybe an order."""
        rng = self.rng
        medium, source, campaign, referrer, _ = TRAFFIC[
            rng.choice(len(TRAFFIC), p=[row[-1] for row in TRAFFIC])
        ]
        if campaign:
            day = datetime.fromtimestamp(start, UTC).date()
            self.paid_clicks[(day, campaign)] = self.paid_clicks.get((day, campaign), 0) + 1
        ids: dict[str, Any] = {}
        if person is not None:
            ids["anonymousId"] = (
                person.app_anonymous_id if channel == "app" else person.web_anonymous_id
            )
            if known and person.user_id:
                ids["userId"] = person.user_id
        else:
            ids["anonymousId"] = self._id()
        ua = (
            "TouchpointsDemoApp/2.1 (iPhone; iOS 18.1)"
            if channel == "app"
            else "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like "
            "Gecko) Chrome/131.0 Safari/537.36"
        )
        context: dict[str, Any] = {
            "userAgent": ua,
            "ip": f"198.51.100.{int(rng.integers(1, 255))}",
            "locale": "en-US",
        }
        if medium != "(none)":
            context["campaign"] = {
                k: v for k, v in (("source", source), ("medium", medium), ("name", campaign)) if v
            }
        affinity = person.affinity if person else np.full(len(CATEGORIES), 1 / len(CATEGORIES))
        t = start
        n_views = int(rng.integers(1, 6))
        pages = ["/"] + [
            f"/c/{CATEGORIES[int(rng.choice(len(CATEGORIES), p=affinity))].lower()}"
            for _ in range(n_views - 1)
        ]
        for index, path in enumerate(pages):
            page = {
                "path": path,
                "url": f"https://shop.example.com{path}",
                "title": path.strip("/") or "Home",
            }
            if index == 0 and referrer:
                page["referrer"] = referrer
            kind = "screen" if channel == "app" else "page"
            yield (
                channel,
                {
                    "type": kind,
                    "name": page["title"],
                    "properties": page,
                    "context": {**context, "page": page},
                    "timestamp": _iso(t),
                    "messageId": self._id(),
                    **ids,
                },
            )
            t += rng.exponential(40) + 3
        product = self.product(affinity)
        yield channel, self.track("Product Viewed", product, t, ids, context)
        if (buy and person is not None) or rng.random() < 0.15:
            t += rng.exponential(30) + 5
            yield channel, self.track("Product Added", {**product, "quantity": 1}, t, ids, context)
            if buy and person is not None:
                t += rng.exponential(60) + 10
                yield channel, self.track("Checkout Started", {"currency": "USD"}, t, ids, context)
                yield channel, self.order(person, t + 30, channel, ids, context, product)

    def product(self, affinity: np.ndarray) -> dict[str, Any]:
        category = CATEGORIES[int(self.rng.choice(len(CATEGORIES), p=affinity))]
        items = [p for p in self.products if p["category"] == category]
        return dict(items[int(self.rng.integers(len(items)))])

    def order(
        self,
        person: _Person,
        when: float,
        channel: str,
        ids: dict[str, Any] | None = None,
        context: dict[str, Any] | None = None,
        first: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        self.stats["orders"] += 1
        items = [first or self.product(person.affinity)]
        while self.rng.random() < 0.35:
            items.append(self.product(person.affinity))
        revenue = round(sum(i["price"] for i in items), 2)
        props = {
            "order_id": f"O-{self._id()[:13]}",
            "revenue": revenue,
            "total": revenue,
            "currency": "USD",
            "products": [{**i, "quantity": 1} for i in items],
        }
        if channel == "store":
            ids = {"anonymousId": f"pos-{person.loyalty_id}"}
            context = {
                "traits": {"loyalty_id": person.loyalty_id},
                "location": {"city": "Springfield"},
            }
        return self.track("Order Completed", props, when, ids or {}, context or {})

    def track(
        self,
        event: str,
        properties: dict[str, Any],
        when: float,
        ids: dict[str, Any],
        context: dict[str, Any],
    ) -> dict[str, Any]:
        return {
            "type": "track",
            "event": event,
            "properties": properties,
            "context": context,
            "timestamp": _iso(when),
            "messageId": self._id(),
            **ids,
        }

    def newsletters(
        self, person: _Person, birth: float, alive_until: float
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        p, rng = self.p, self.rng
        ids = (
            {"userId": person.user_id}
            if person.user_id
            else {"anonymousId": f"pos-{person.loyalty_id}"}
        )
        context = {"traits": {"email": person.email}}
        first = self.start + np.ceil((birth - self.start) / (p.newsletter_every_days * DAY)) * (
            p.newsletter_every_days * DAY
        )
        for send in np.arange(first, self.end, p.newsletter_every_days * DAY):
            name = "newsletter-" + datetime.fromtimestamp(send, UTC).strftime("%Y-%m-%d")
            props = {
                "email_id": f"{name}-{person.index}",
                "email_subject": "New this week",
                "campaign_name": name,
            }
            yield "email", self.track("Email Delivered", props, send, ids, context)
            alive = send < alive_until
            if rng.random() < (p.open_rate if alive else p.open_rate / 6):
                yield (
                    "email",
                    self.track("Email Opened", props, send + rng.exponential(7200), ids, context),
                )
                if rng.random() < p.click_rate:
                    yield (
                        "email",
                        self.track(
                            "Email Link Clicked",
                            {**props, "link_url": "https://shop.example.com/"},
                            send + rng.exponential(9000),
                            ids,
                            context,
                        ),
                    )
            if rng.random() < p.unsubscribe_rate:
                yield "email", self.track("Unsubscribed", props, send + 3600, ids, context)
                return

    def anonymous_messages(self) -> Iterator[tuple[str, dict[str, Any]]]:
        self.stats["anonymous_visitors"] += 1
        when = self.rng.uniform(self.start, self.end - DAY)
        yield from self.session(None, float(when), False)

    def spend_rows(self) -> pa.Table:
        rows = []
        for (day, campaign), clicks in sorted(self.paid_clicks.items()):
            channel, ctr, cpc = CAMPAIGNS[campaign]
            paid_clicks = round(clicks / 0.9)  # some clicks never load the page
            rows.append(
                {
                    "date": day,
                    "channel": channel,
                    "source": "demo",
                    "campaign": campaign,
                    "impressions": round(paid_clicks / ctr),
                    "clicks": paid_clicks,
                    "cost": round(paid_clicks * cpc, 2),
                    "currency": "USD",
                    "import_key": f"demo:{day}:{campaign}",
                }
            )
        from touchpoints.warehouse.schema import SPEND

        return pa.Table.from_pylist(rows, schema=SPEND.to_pyarrow())


def _iso(epoch_seconds: float) -> str:
    return datetime.fromtimestamp(epoch_seconds, UTC).isoformat(timespec="milliseconds")


def load_demo(
    warehouse: Warehouse,
    params: DemoParameters | None = None,
    progress: Callable[[int, int], None] | None = None,
    chunk: int = 20_000,
) -> dict[str, Any]:
    """Generate the demo shop into `warehouse`; returns counts and the web write key."""
    params = params or DemoParameters()
    generator = _Generator(params)
    channels = {"web": "web", "app": "app", "store": "store", "email": "email"}
    sources, web_key = {}, None
    for channel in channels:
        name = f"demo-{channel}"
        existing = find_source(warehouse, name)
        if existing is None:
            made = add_source(warehouse, name, channel)
            existing = made.source
            web_key = made.write_key if channel == "web" else web_key
        sources[channel] = Envelope(existing.source_id, channel, now_us())
    before = warehouse.count("events")
    writer = open_writer(warehouse)
    pending: list[dict[str, Any]] = []
    total = 0
    visitors = int(params.customers * params.anonymous_visitors_per_customer)
    try:
        for index in range(params.customers + visitors):
            messages = (
                generator.customer_messages(generator.person(index))
                if index < params.customers
                else generator.anonymous_messages()
            )
            for channel, message in messages:
                pending.append(normalize(message, sources[channel]))
            if len(pending) >= chunk:
                writer.write(pending)
                total += len(pending)
                pending = []
            if progress is not None:
                progress(index + 1, params.customers + visitors)
        writer.write(pending)
        total += len(pending)
    finally:
        writer.close()
    warehouse.insert("spend", generator.spend_rows())
    meta = {k: (v.isoformat() if isinstance(v, date) else v) for k, v in asdict(params).items()}
    warehouse.insert(
        "meta",
        pa.table(
            {
                "key": ["demo_parameters", "demo_counts"],
                "value": [orjson.dumps(meta).decode(), orjson.dumps(generator.stats).decode()],
            }
        ),
    )
    return {
        **generator.stats,
        "events": total,
        "events_added": warehouse.count("events") - before,
        "web_write_key": web_key or "(made earlier; see `touchpoints sources list`)",
    }
