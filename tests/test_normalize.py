"""The message rules of the Segment spec, one function at a time."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from touchpoints.collect.normalize import Envelope, normalize
from touchpoints.errors import InvalidInput, PayloadTooLarge


def us(text: str) -> int:
    moment = datetime.fromisoformat(text).astimezone(UTC)
    return int(moment.timestamp() * 1_000_000)


RECEIVED = us("2026-05-01T12:00:10+00:00")
ENV = Envelope("src_1", "web", RECEIVED, ip="203.0.113.9")


def test_clock_skew_is_corrected_from_sent_at() -> None:
    # The client's clock is 1 hour fast: it says it sent at 13:00:10, we received 12:00:10.
    row = normalize(
        {
            "type": "track",
            "event": "E",
            "userId": "u",
            "timestamp": "2026-05-01T13:00:00Z",
            "sentAt": "2026-05-01T13:00:10Z",
        },
        ENV,
    )
    assert row["timestamp"] == us("2026-05-01T12:00:00+00:00")
    assert row["original_timestamp"] == us("2026-05-01T13:00:00+00:00")
    assert row["received_at"] == RECEIVED


def test_batch_sent_at_applies_to_each_message() -> None:
    envelope = Envelope("src_1", "web", RECEIVED, sent_at_us=us("2026-05-01T12:00:20+00:00"))
    row = normalize(
        {"type": "track", "event": "E", "userId": "u", "timestamp": "2026-05-01T12:00:00Z"},
        envelope,
    )
    assert row["timestamp"] == us("2026-05-01T11:59:50+00:00")


def test_without_sent_at_the_timestamp_is_kept_and_defaults_to_receipt() -> None:
    row = normalize(
        {"type": "track", "event": "E", "userId": "u", "timestamp": "2026-04-01T08:00:00+02:00"},
        ENV,
    )
    assert row["timestamp"] == us("2026-04-01T06:00:00+00:00")
    assert normalize({"type": "track", "event": "E", "userId": "u"}, ENV)["timestamp"] == RECEIVED


def test_batch_context_and_integrations_are_merged_message_wins() -> None:
    envelope = Envelope(
        "src_1",
        "web",
        RECEIVED,
        context={"locale": "de-DE", "app": "x"},
        integrations={"All": False},
    )
    row = normalize(
        {
            "type": "track",
            "event": "E",
            "userId": "u",
            "context": {"locale": "fr-FR"},
            "integrations": {"Mixpanel": True},
        },
        envelope,
    )
    context = row["context"]
    assert context["locale"] == "fr-FR" and context["app"] == "x"
    assert row["locale"] == "fr-FR"
    assert row["integrations"] == {"All": False, "Mixpanel": True}


def test_ip_comes_from_the_request_unless_the_client_sent_one() -> None:
    assert normalize({"type": "track", "event": "E", "userId": "u"}, ENV)["ip"] == "203.0.113.9"
    row = normalize(
        {"type": "track", "event": "E", "userId": "u", "context": {"ip": "198.51.100.1"}}, ENV
    )
    assert row["ip"] == "198.51.100.1"


def test_page_fields_and_utm_are_lifted() -> None:
    row = normalize(
        {
            "type": "page",
            "name": "Home",
            "anonymousId": "a1",
            "properties": {
                "url": "https://shop.example.com/sale?utm_source=news&utm_medium=email"
                "&utm_campaign=spring",
                "title": "Sale",
                "referrer": "https://www.google.com/",
            },
        },
        ENV,
    )
    assert row["page_path"] == "/sale"
    assert row["page_title"] == "Sale" and row["name"] == "Home"
    assert (row["utm_source"], row["utm_medium"], row["utm_campaign"]) == (
        "news",
        "email",
        "spring",
    )
    campaign = normalize(
        {
            "type": "track",
            "event": "E",
            "userId": "u",
            "context": {
                "campaign": {
                    "source": "google",
                    "medium": "cpc",
                    "name": "brand",
                    "term": "shoes",
                    "content": "ad1",
                }
            },
        },
        ENV,
    )
    assert [campaign["utm_" + k] for k in ("source", "medium", "campaign", "term", "content")] == [
        "google",
        "cpc",
        "brand",
        "shoes",
        "ad1",
    ]


def test_commerce_fields() -> None:
    row = normalize(
        {
            "type": "track",
            "event": "Order Completed",
            "userId": 42,
            "properties": {"order_id": "o-1", "total": "19.90", "currency": "EUR"},
        },
        ENV,
    )
    assert (row["user_id"], row["order_id"], row["revenue"], row["currency"]) == (
        "42",
        "o-1",
        19.9,
        "EUR",
    )
    with pytest.raises(InvalidInput) as bad:
        normalize(
            {"type": "track", "event": "E", "userId": "u", "properties": {"revenue": "lots"}},
            ENV,
            where="batch[2]",
        )
    assert bad.value.field == "batch[2].properties.revenue"


def test_channel_defaults_to_the_source_and_accepts_known_channels_only() -> None:
    assert normalize({"type": "track", "event": "E", "userId": "u"}, ENV)["channel"] == "web"
    assert (
        normalize({"type": "track", "event": "E", "userId": "u", "channel": "store"}, ENV)[
            "channel"
        ]
        == "store"
    )
    assert (
        normalize({"type": "track", "event": "E", "userId": "u", "channel": "browser"}, ENV)[
            "channel"
        ]
        == "web"
    )


@pytest.mark.parametrize(
    ("message", "field", "words"),
    [
        ({"type": "track", "event": "E"}, "userId", "userId or anonymousId"),
        ({"type": "track", "userId": "u"}, "event", "event is required"),
        ({"type": "alias", "userId": "u"}, "previousId", "previousId is required"),
        ({"type": "alias", "anonymousId": "a", "previousId": "p"}, "userId", "userId is required"),
        ({"type": "group", "userId": "u"}, "groupId", "groupId is required"),
        ({"type": "shout", "userId": "u"}, "type", "type must be one of"),
        ({"userId": "u"}, "type", "is missing"),
        (
            {"type": "track", "event": "E", "userId": "u", "properties": []},
            "properties",
            "JSON object",
        ),
        ({"type": "track", "event": "E", "userId": {"a": 1}}, "userId", "string"),
        ({"type": "track", "event": 5, "userId": "u"}, "event", "string"),
        (
            {"type": "track", "event": "E", "userId": "u", "timestamp": "yesterday"},
            "timestamp",
            "ISO-8601",
        ),
        (
            {"type": "track", "event": "E", "userId": "u", "messageId": "x" * 100},
            "messageId",
            "under 100",
        ),
        ({"type": "track", "event": "E", "userId": "u", "messageId": 7}, "messageId", "string"),
    ],
)
def test_each_rule_names_the_field_and_the_reason(message: dict, field: str, words: str) -> None:
    with pytest.raises(InvalidInput) as error:
        normalize(message, ENV)
    assert error.value.field == field
    assert words in error.value.message


def test_message_id_of_99_characters_is_accepted() -> None:
    row = normalize({"type": "track", "event": "E", "userId": "u", "messageId": "x" * 99}, ENV)
    assert row["message_id"] == "x" * 99


def test_a_misspelt_field_gets_a_suggestion() -> None:
    with pytest.raises(InvalidInput, match="did you mean 'userId'"):
        normalize({"type": "track", "event": "E", "userID": "u"}, ENV)


def test_an_event_over_32_kb_is_too_large() -> None:
    with pytest.raises(PayloadTooLarge):
        normalize(
            {"type": "track", "event": "E", "userId": "u", "properties": {"blob": "x" * 33_000}},
            ENV,
        )


def test_endpoint_type_must_match_the_message() -> None:
    with pytest.raises(InvalidInput, match="does not match"):
        normalize({"type": "page", "event": "E", "userId": "u"}, ENV, kind="track")
    assert normalize({"event": "E", "userId": "u"}, ENV, kind="track")["type"] == "track"
