"""Email sending benchmark: N consented people, one campaign, a real SMTP server.

The people are identified, built into profiles and given `email_marketing` consent;
the campaign (subject, text and an HTML body with a tracked link) is queued for all of
them and sent through aiosmtpd on 127.0.0.1 with no rate limit. Every message goes
through the whole path: the door (consent and erasure, per batch), the profile opened
for the moment of sending, rendering, signed links, the send log marked before and
after each hand-over, and the `Email Delivered` events.
"""

from __future__ import annotations

import socket
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from touchpoints.activate.campaigns import save_campaign
from touchpoints.activate.email_settings import save_email_settings
from touchpoints.activate.sending import queue, send_queued
from touchpoints.collect.normalize import Envelope, normalize, now_us
from touchpoints.privacy.consent_records import import_consents
from touchpoints.privacy.rebuild import rebuild
from touchpoints.warehouse import connect
from touchpoints.warehouse.writer import open_writer


@dataclass
class EmailResult:
    people: int
    received: int
    seconds: float
    messages_per_second: float
    setup_seconds: float


class _Count:
    def __init__(self) -> None:
        self.received = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received += 1
        return "250 OK"


def run_email(people: int) -> EmailResult:
    began = time.perf_counter()
    folder = Path(tempfile.mkdtemp(prefix="tp-bench-email-"))
    warehouse = connect(f"duckdb:///{folder / 'bench.duckdb'}")
    envelope = Envelope("src_bench", "web", now_us())
    writer = open_writer(warehouse)
    writer.write(
        [
            normalize(
                {
                    "type": "identify",
                    "userId": f"user-{i}",
                    "traits": {"email": f"person{i}@example.com", "first_name": f"Name{i}"},
                    "messageId": f"id-{i}",
                },
                envelope,
            )
            for i in range(people)
        ]
    )
    writer.flush()
    rebuild(warehouse)
    agreed = datetime.now(UTC) - timedelta(minutes=1)
    import_consents(
        warehouse,
        [
            {
                "subject": f"user_id:user-{i}",
                "purpose": "email_marketing",
                "status": "granted",
                "recorded_at": agreed,
            }
            for i in range(people)
        ],
    )
    handler = _Count()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    save_email_settings(
        warehouse,
        {"host": "127.0.0.1", "port": port, "security": "none", "rate_per_second": 10_000},
    )
    save_campaign(
        warehouse,
        {
            "campaign_id": "bench",
            "subject": "Hello {{ person.first_name }}",
            "text": "Hi {{ person.first_name }}\n{{ unsubscribe_url }}\n",
            "html": '<p>Hi {{ person.first_name }}</p><a href="https://shop.example.com/">Shop</a>',
        },
    )
    ids = warehouse.table("profiles").customer_id.to_pyarrow().to_pylist()
    queue(warehouse, "bench", ids)
    setup = time.perf_counter() - began
    start = time.perf_counter()
    result = send_queued(warehouse, "bench", writer=writer)
    seconds = time.perf_counter() - start
    controller.stop()
    writer.close()
    warehouse.close()
    assert result["sent"] == people == handler.received, (result, handler.received)
    return EmailResult(
        people, handler.received, round(seconds, 2), round(people / seconds, 1), round(setup, 2)
    )
