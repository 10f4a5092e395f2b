"""HttpGatewaySender's status query (reconciliation, issue 15): off by default, asked by our id.

Against the local industry-style gateway, whose GET /sms/query?account=...&uid=... knows a
message only `query_lag_s` after it took it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import pytest

from service.channels.errors import PermanentProviderError
from service.channels.http_gateway import HttpGatewaySender
from service.config import Settings
from service.wiring.channels import build_http_gateway_sender
from tests.channels.helpers import PHONE, sms_message
from tests.fakes.http_gateway import FakeHttpGateway

SINCE = datetime(2026, 11, 30, tzinfo=UTC)
Factory = Callable[..., HttpGatewaySender]


@pytest.fixture
async def gateway() -> AsyncIterator[FakeHttpGateway]:
    server = await FakeHttpGateway().start()
    yield server
    await server.aclose()


@pytest.fixture
async def make_sender(gateway: FakeHttpGateway) -> AsyncIterator[Factory]:
    senders: list[HttpGatewaySender] = []

    def factory(**overrides: object) -> HttpGatewaySender:
        values: dict[str, object] = {
            "http_gateway_url": gateway.url,
            "http_gateway_account": "acct01",
            "http_gateway_message_id_path": "data.msgid",
            "http_gateway_query_url": gateway.query_url,
            "http_gateway_query_status_path": "data.status",
            "http_gateway_query_message_id_path": "data.msgid",
            "send_timeout_s": 2.0,
        }
        values.update(overrides)
        sender = build_http_gateway_sender(Settings(**values))  # type: ignore[arg-type]
        senders.append(sender)
        return sender

    yield factory
    for sender in senders:
        await sender.aclose()


async def test_query_finds_a_taken_message_by_our_id_after_the_gateways_lag(
    make_sender: Factory, gateway: FakeHttpGateway
) -> None:
    """Taken: unknown to the query during its lag (None: not found yet), then its msgid; the
    query carries the account and our notification id, URL-encoded."""
    gateway.query_lag_s = 0.3
    sender = make_sender()
    message = sms_message("hi", nid="evt 1:sms:s1")
    msgid = await sender.send(message)
    assert await sender.find_sent(PHONE, "", SINCE, notification_id="evt 1:sms:s1") is None
    await asyncio.sleep(0.4)
    assert await sender.find_sent(PHONE, "", SINCE, notification_id="evt 1:sms:s1") == msgid
    assert gateway.queries[-1] == {"account": "acct01", "uid": "evt 1:sms:s1"}


async def test_query_says_not_found_for_a_message_never_taken(make_sender: Factory) -> None:
    """Never sent: the gateway's not_found status is None (a resend may follow)."""
    sender = make_sender()
    assert await sender.find_sent(PHONE, "", SINCE, notification_id="evt-9:sms:s1") is None


async def test_a_status_that_says_neither_raises(
    make_sender: Factory, gateway: FakeHttpGateway
) -> None:
    """A status in neither list (e.g. "pending") raises: the send stays unknown, not resent."""
    gateway.query_status = "pending"
    sender = make_sender()
    with pytest.raises(PermanentProviderError):
        await sender.find_sent(PHONE, "", SINCE, notification_id="evt-1:sms:s1")


def test_query_is_off_by_default_and_must_ask_by_our_id(gateway: FakeHttpGateway) -> None:
    """No query URL: can_query is False. A query URL without {notification_id}, or a body
    template that does not send our id, stops the start naming the settings."""
    assert not build_http_gateway_sender(Settings(http_gateway_url=gateway.url)).can_query
    with pytest.raises(ValueError, match="NOTIFIER_HTTP_GATEWAY_QUERY_URL"):
        build_http_gateway_sender(
            Settings(http_gateway_url=gateway.url, http_gateway_query_url="http://gw/q?p={phone}")
        )
    with pytest.raises(ValueError, match="NOTIFIER_HTTP_GATEWAY_BODY_TEMPLATE"):
        build_http_gateway_sender(
            Settings(
                http_gateway_url=gateway.url,
                http_gateway_query_url=gateway.query_url,
                http_gateway_body_template='{"mobile": "{phone}", "content": "{text}"}',
            )
        )
