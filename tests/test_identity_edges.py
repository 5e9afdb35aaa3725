"""Edge cases of identity resolution found in review: splits, merge history, settings,
lookups, and concurrent use of the warehouse by the API."""

from __future__ import annotations

import threading

import httpx
import pytest

from tests.live import LiveServer
from tests.test_identity import customers_of, load
from touchpoints.errors import InvalidInput
from touchpoints.identity import IdentityConfig, build, profile, resolve
from touchpoints.identity.config import DEFAULT_MAX_LINKS
from touchpoints.privacy.keys import add_key
from touchpoints.warehouse import Warehouse


def test_a_split_never_hands_out_an_id_someone_keeps(duck: Warehouse) -> None:
    load(
        duck,
        [{"type": "identify", "userId": f"u-{i}", "anonymousId": "0-kiosk"} for i in range(3)]
        + [{"type": "identify", "userId": "u-0", "anonymousId": "a-0"}],
    )
    resolve(duck)
    load(
        duck,
        [{"type": "identify", "userId": "u-9", "anonymousId": "0-kiosk", "messageId": "fourth"}],
    )
    summary = resolve(duck)
    ids = customers_of(duck)
    assert summary.quarantined == 1
    people = {
        ids[k]
        for k in (
            "user_id:u-0",
            "user_id:u-1",
            "user_id:u-2",
            "user_id:u-9",
            "anonymous_id:0-kiosk",
        )
    }
    assert len(people) == 5  # four users and the kiosk, each their own


@pytest.mark.parametrize("full", [True, False])
def test_merge_history_names_a_link_that_exists(duck: Warehouse, full: bool) -> None:
    load(
        duck,
        [
            {"type": "identify", "userId": "u-1", "anonymousId": "a-1"},
            {"type": "identify", "userId": "u-3", "anonymousId": "a-3"},
        ],
    )
    resolve(duck)
    load(
        duck,
        [
            {"type": "alias", "userId": "u-1", "previousId": "a-3", "messageId": "b1"},
            {"type": "alias", "userId": "u-3", "previousId": "a-1", "messageId": "b2"},
        ],
    )
    resolve(duck, full=full)
    links = {
        frozenset((r["a"], r["b"])) for r in duck.table("identity_links").to_pyarrow().to_pylist()
    }
    merges = duck.table("identity_merges").to_pyarrow().to_pylist()
    assert len(merges) == 1
    assert frozenset((merges[0]["via_identifier"], merges[0]["linked_identifier"])) in links


def test_changing_one_limit_keeps_the_others(duck: Warehouse) -> None:
    changed = IdentityConfig().updated(max_links={"email": 3})
    assert changed.max_links["email"] == 3
    assert changed.max_links["user_id"] == DEFAULT_MAX_LINKS["user_id"]
    load(
        duck, [{"type": "identify", "userId": f"u-{i}", "anonymousId": "kiosk"} for i in range(12)]
    )
    made = build(duck, settings={"max_links": {"email": 3}})
    assert made["quarantined"] == 1 and made["customers"] == 13


@pytest.mark.parametrize(
    "settings",
    [
        {"traits": 5},
        {"traits": "member"},
        {"traits": [""]},
        {"traits": ["a b["]},
        {"max_links": [1, 2]},
        {"max_links": {"email": 10**30}},
        {"max_links": {"email": True}},
        {"strip_plus_addressing": "no"},
        {"country_code": "٣"},
        {"country_code": True},
    ],
)
def test_bad_settings_are_refused(duck: Warehouse, settings: dict) -> None:
    with pytest.raises(InvalidInput):
        build(duck, settings=settings)


def test_lookups_use_the_settings_of_the_last_build(duck: Warehouse) -> None:
    load(
        duck,
        [
            {
                "type": "identify",
                "userId": "m-1",
                "traits": {"email": "bo@example.org", "phone": "07700 900123", "member_no": "77"},
            }
        ],
    )
    build(
        duck,
        settings={"country_code": "44", "strip_plus_addressing": True, "traits": ["member_no"]},
    )
    for given in ("bo+news@example.org", "07700 900123", "member_no:77"):
        assert profile(duck, given)["customer_id"] == customers_of(duck)["user_id:m-1"]


def test_a_bare_value_prefers_the_user_id(duck: Warehouse) -> None:
    load(duck, [{"type": "identify", "userId": "123"}, {"type": "identify", "anonymousId": "123"}])
    build(duck)
    assert profile(duck, "123")["customer_id"] == customers_of(duck)["user_id:123"]


def test_concurrent_api_reads_during_a_build(server: LiveServer) -> None:
    warehouse = server.warehouse
    load(
        warehouse,
        [{"type": "identify", "userId": f"u-{i}", "anonymousId": f"a-{i}"} for i in range(100)],
    )
    build(warehouse)
    _, reader = add_key(warehouse, "r", "read")
    headers = {"Authorization": f"Bearer {reader}"}
    statuses: list[int] = []

    def read(i: int) -> None:
        for _ in range(5):
            response = httpx.get(f"{server.url}/v1/profiles/u-{i}", headers=headers, timeout=60)
            statuses.append(response.status_code)

    threads = [threading.Thread(target=read, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    built = httpx.post(
        f"{server.url}/v1/admin/build",
        json={"full": True},
        headers={"Authorization": "Bearer test-admin-token"},
        timeout=120,
    )
    for thread in threads:
        thread.join(timeout=120)
    assert built.status_code == 200, built.text
    assert statuses == [200] * 20
    odd = httpx.get(f"{server.url}/v1/profiles/%00", headers=headers)
    assert odd.status_code == 400
    slash = httpx.get(f"{server.url}/v1/profiles/a%2Fb", headers=headers)
    assert slash.status_code == 404 and slash.json()["code"] == "not_found"
