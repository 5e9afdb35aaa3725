"""Identity resolution on DuckDB and on Spark, against answers known by hand and a
SciPy reference."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components as scipy_components

from tests.personal import stored
from touchpoints.collect.normalize import Envelope, normalize, now_us
from touchpoints.identity import IdentityConfig, resolve
from touchpoints.identity.components import connected_components
from touchpoints.warehouse import Warehouse
from touchpoints.warehouse.writer import open_writer

T0 = datetime(2026, 2, 1, 9, 0, tzinfo=UTC)


def load(warehouse: Warehouse, messages: list[dict], channel: str = "web") -> None:
    envelope = Envelope(f"src_{channel}", channel, now_us())
    rows = []
    for i, message in enumerate(messages):
        message = {"timestamp": (T0 + timedelta(hours=i)).isoformat(), **message}
        message.setdefault("messageId", f"{channel}-{len(message)}-{i}-{id(messages)}")
        rows.append(normalize(message, envelope))
    writer = open_writer(warehouse)
    writer.write(rows)
    writer.close()


def customers_of(warehouse: Warehouse) -> dict[str, str]:
    return {
        r["identifier"]: r["customer_id"]
        for r in warehouse.table("identities").to_pyarrow().to_pylist()
    }


def event_customers(warehouse: Warehouse) -> dict[str, set[str]]:
    """message_id -> the customers its identifiers resolve to."""
    ids = customers_of(warehouse)
    found: dict[str, set[str]] = {}
    for row in warehouse.table("events").to_pyarrow().to_pylist():
        keys = [f"user_id:{row['user_id']}", f"anonymous_id:{row['anonymous_id']}"]
        found[row["message_id"]] = {ids[k] for k in keys if k in ids}
    return found


def test_one_person_across_web_store_and_email(warehouse: Warehouse) -> None:
    load(
        warehouse,
        [
            {"type": "page", "anonymousId": "a-1", "messageId": "w1"},  # browses anonymously
            {
                "type": "identify",
                "anonymousId": "a-1",
                "userId": "u-1",
                "messageId": "w2",
                "traits": {"email": " Ana.Lima@Example.com "},
            },  # signs up
            {"type": "track", "event": "Order Completed", "userId": "u-1", "messageId": "w3"},
            {"type": "page", "anonymousId": "a-9", "messageId": "w4"},  # somebody else
        ],
    )
    load(
        warehouse,
        [
            {
                "type": "identify",
                "anonymousId": "pos-LC7",
                "messageId": "s1",  # card signup
                "traits": {"loyalty_id": "lc7", "email": "ana.lima@example.com"},
            },
            {
                "type": "track",
                "event": "Order Completed",
                "anonymousId": "pos-LC7",
                "messageId": "s2",
                "context": {"traits": {"loyalty_id": "LC7"}},
            },
        ],
        channel="store",
    )
    load(
        warehouse,
        [
            {
                "type": "track",
                "event": "Email Link Clicked",
                "anonymousId": "esp-77",
                "messageId": "e1",
                "context": {"traits": {"email": "ANA.LIMA@example.com"}},
            },
        ],
        channel="email",
    )
    summary = resolve(warehouse)
    ids = customers_of(warehouse)
    ana = ids["user_id:u-1"]
    for identifier in (
        "anonymous_id:a-1",
        "email:ana.lima@example.com",
        "loyalty_id:LC7",
        "anonymous_id:pos-LC7",
        "anonymous_id:esp-77",
    ):
        assert ids[stored(warehouse, identifier)] == ana, identifier
    assert ids["anonymous_id:a-9"] != ana
    assert summary.customers == 2 and summary.quarantined == 0
    timeline = event_customers(warehouse)
    assert all(timeline[m] == {ana} for m in ("w1", "w2", "w3", "s1", "s2", "e1"))
    assert timeline["w4"] == {ids["anonymous_id:a-9"]}


def test_a_shared_identifier_glues_nobody(warehouse: Warehouse) -> None:
    people = [
        {
            "type": "identify",
            "userId": f"u-{i}",
            "anonymousId": f"a-{i}",
            "traits": {"email": "none@none.com"},
        }
        for i in range(12)
    ]
    tablet = [
        {"type": "identify", "userId": f"u-{i}", "anonymousId": "shop-tablet"} for i in range(12)
    ]
    load(warehouse, people + tablet)
    summary = resolve(warehouse, IdentityConfig())
    ids = customers_of(warehouse)
    assert len({ids[f"user_id:u-{i}"] for i in range(12)}) == 12
    assert summary.quarantined == 2
    report = {
        r["identifier"]: r for r in warehouse.table("identity_quarantine").to_pyarrow().to_pylist()
    }
    placeholder = stored(warehouse, "email:none@none.com")
    assert set(report) == {placeholder, "anonymous_id:shop-tablet"}
    assert report[placeholder]["links"] == 12
    # limits are per linked kind: an identifier may be linked to at most 3 user ids
    assert report[placeholder]["linked_kind"] == "user_id"
    assert report[placeholder]["max_links"] == 3
    assert report["anonymous_id:shop-tablet"]["linked_kind"] == "user_id"
    flags = {
        r["identifier"]: r["quarantined"]
        for r in warehouse.table("identities").to_pyarrow().to_pylist()
    }
    assert flags[placeholder] and not flags["user_id:u-3"]
    # a higher limit lets the same links through
    relaxed = resolve(warehouse, IdentityConfig(max_links={"user_id": 100, "email": 100}))
    assert relaxed.quarantined == 0
    assert len(set(customers_of(warehouse).values())) == 1


def test_customer_ids_are_stable_and_merges_are_recorded(warehouse: Warehouse) -> None:
    load(
        warehouse,
        [
            {"type": "identify", "anonymousId": "a-1", "userId": "u-1"},
            {"type": "identify", "anonymousId": "a-2", "userId": "u-2"},
        ],
    )
    resolve(warehouse)
    first = customers_of(warehouse)
    resolve(warehouse)
    assert customers_of(warehouse) == first  # nothing new: nothing changes
    assert warehouse.count("identity_merges") == 0
    load(warehouse, [{"type": "alias", "previousId": "a-1", "userId": "u-2", "messageId": "link"}])
    summary = resolve(warehouse)
    after = customers_of(warehouse)
    kept = min(first["user_id:u-1"], first["user_id:u-2"])
    gone = max(first["user_id:u-1"], first["user_id:u-2"])
    assert set(after.values()) == {kept} and summary.merges == 1
    merge = warehouse.table("identity_merges").to_pyarrow().to_pylist()
    assert [(m["customer_id"], m["merged_customer_id"]) for m in merge] == [(kept, gone)]
    assert {merge[0]["via_identifier"], merge[0]["linked_identifier"]} <= set(after)


def test_normalisation_of_emails_and_phones(warehouse: Warehouse) -> None:
    load(
        warehouse,
        [
            {"type": "identify", "userId": "p-1", "traits": {"phone": "(202) 555-0101"}},
            {"type": "identify", "userId": "p-2", "traits": {"phone": "+1 202 555 0101"}},
            {"type": "identify", "userId": "p-3", "traits": {"phone": "0012025550101"}},
            {"type": "identify", "userId": "p-4", "traits": {"phone": "123"}},
            {"type": "identify", "userId": "m-1", "traits": {"email": "Bo+news@Example.org"}},
            {"type": "identify", "userId": "m-2", "traits": {"email": "bo@example.org"}},
            {"type": "identify", "userId": "m-3", "traits": {"email": "not-an-email"}},
        ],
    )
    resolve(warehouse)
    ids = customers_of(warehouse)
    phone = stored(warehouse, "phone:+12025550101")
    assert ids["user_id:p-1"] == ids["user_id:p-2"] == ids["user_id:p-3"] == ids[phone]
    assert ids["user_id:p-4"] != ids["user_id:p-1"]
    # "123" and "not-an-email" are no identifiers: one phone and two emails remain
    assert sum(k.startswith("phone:") for k in ids) == 1
    assert sum(k.startswith("email:") for k in ids) == 2
    assert ids["user_id:m-1"] != ids["user_id:m-2"]  # plus-addressing kept by default
    resolve(warehouse, IdentityConfig(strip_plus_addressing=True))
    ids = customers_of(warehouse)
    assert ids["user_id:m-1"] == ids["user_id:m-2"]


@pytest.mark.parametrize("seed", [1, 2])
def test_components_match_scipy(warehouse: Warehouse, seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 300
    a = rng.integers(0, n, 220)
    b = rng.integers(0, n, 220)
    chain = np.arange(40)  # a long path: the worst case for label propagation
    a, b = np.concatenate([a, chain[:-1]]), np.concatenate([b, chain[1:]])
    names = [f"n{i:04d}" for i in range(n)]
    import ibis

    nodes = ibis.memtable({"node": names})
    links = ibis.memtable({"a": [names[i] for i in a], "b": [names[i] for i in b]})
    stored: list[str] = []

    def store(expr, name):  # type: ignore[no-untyped-def]
        stored.append(name)
        return warehouse.scratch(expr, name)

    labels = connected_components(nodes, links, store, prefix=f"cc_test_{seed}")
    got = {r["node"]: r["label"] for r in labels.to_pyarrow().to_pylist()}
    for name in stored:
        warehouse.drop_scratch(name)
    graph = coo_matrix((np.ones(len(a)), (a, b)), shape=(n, n))
    count, component = scipy_components(graph, directed=False)
    assert len(set(got.values())) == count
    for i in range(n):
        for j in (0, n // 2, n - 1):  # same component in SciPy <=> same label here
            assert (component[i] == component[j]) == (got[names[i]] == got[names[j]])
    # the label is the smallest node of its component
    for label in set(got.values()):
        assert label == min(k for k, v in got.items() if v == label)


def _random_batch(rng: np.random.Generator, start: int, size: int) -> list[dict]:
    """Identify calls mixing a few users, devices, emails and phones, so batches link
    people that earlier batches kept apart."""
    batch = []
    for i in range(start, start + size):
        message: dict = {
            "type": "identify",
            "messageId": f"rnd-{i}",
            "anonymousId": f"dev-{rng.integers(0, 40)}",
        }
        if rng.random() < 0.6:
            message["userId"] = f"user-{rng.integers(0, 25)}"
        traits = {}
        if rng.random() < 0.4:
            traits["email"] = f"p{rng.integers(0, 20)}@example.com"
        if rng.random() < 0.2:
            traits["phone"] = f"+1202555{rng.integers(0, 15):04d}"
        if traits:
            message["traits"] = traits
        batch.append(message)
    return batch


def test_incremental_builds_agree_with_a_full_build(warehouse: Warehouse) -> None:
    rng = np.random.default_rng(7)
    relaxed = IdentityConfig(max_links={})  # random links: no identifier is quarantined
    load(warehouse, _random_batch(rng, 0, 30))
    assert resolve(warehouse, relaxed).mode == "full"
    assert resolve(warehouse, relaxed).mode == "unchanged"
    modes = []
    for step in range(2):
        load(warehouse, _random_batch(rng, 100 * (step + 1), 25))
        modes.append(resolve(warehouse, relaxed).mode)
    assert modes == ["incremental", "incremental"]
    incremental = customers_of(warehouse)
    merges_before = warehouse.count("identity_merges")
    full = resolve(warehouse, relaxed, full=True)
    assert full.mode == "full"
    assert customers_of(warehouse) == incremental  # same people, same ids
    assert warehouse.count("identity_merges") == merges_before


def test_a_link_that_quarantines_forces_a_full_build(warehouse: Warehouse) -> None:
    load(
        warehouse,
        [{"type": "identify", "userId": f"u-{i}", "anonymousId": "kiosk"} for i in range(3)],
    )
    resolve(warehouse)
    assert len(set(customers_of(warehouse).values())) == 1  # 3 users: within the limit
    load(
        warehouse,
        [{"type": "identify", "userId": "u-9", "anonymousId": "kiosk", "messageId": "fourth"}],
    )
    summary = resolve(warehouse)
    assert summary.mode == "full" and summary.quarantined == 1
    ids = customers_of(warehouse)
    assert len({ids[f"user_id:u-{i}"] for i in (0, 1, 2, 9)}) == 4


def test_settings_are_kept_and_checked(warehouse: Warehouse) -> None:
    from touchpoints.errors import InvalidInput
    from touchpoints.identity import build

    load(
        warehouse,
        [
            {"type": "identify", "userId": "m-1", "traits": {"email": "Bo+news@Example.org"}},
            {"type": "identify", "userId": "m-2", "traits": {"email": "bo@example.org"}},
        ],
    )
    build(warehouse, settings={"strip_plus_addressing": True})
    ids = customers_of(warehouse)
    assert ids["user_id:m-1"] == ids["user_id:m-2"]
    load(
        warehouse,
        [{"type": "identify", "userId": "m-3", "traits": {"email": "bo+shop@example.org"}}],
    )
    assert resolve(warehouse).mode == "incremental"  # the stored settings still apply
    assert customers_of(warehouse)["user_id:m-3"] == ids["user_id:m-1"]
    with pytest.raises(InvalidInput):
        build(warehouse, settings={"max_links": {"email": 0}})
    with pytest.raises(InvalidInput):
        build(warehouse, settings={"colour": "blue"})
