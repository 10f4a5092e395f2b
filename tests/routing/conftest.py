"""Fixtures of the routing tests: the fake providers as running local servers, a hand-moved
monotonic clock, and settings that route SMS through several of them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import SecretStr

from service.config import Settings
from tests.fakes import FakeTwilio
from tests.fakes.http_gateway import FakeHttpGateway
from tests.fakes.smpp import FakeSmsc

# The ledger on SQLite and PostgreSQL, as the ledger tests have it.
from tests.ledger.conftest import empty_url, ledger, ledger_url, make_ledger

__all__ = ["empty_url", "ledger", "ledger_url", "make_ledger"]


class ManualMonotonic:
    """A monotonic clock in seconds that only moves when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
async def twilio() -> AsyncIterator[FakeTwilio]:
    async with FakeTwilio() as fake:
        yield fake


@pytest.fixture
async def gateway() -> AsyncIterator[FakeHttpGateway]:
    fake = await FakeHttpGateway().start()
    try:
        yield fake
    finally:
        await fake.aclose()


@pytest.fixture
async def smsc() -> AsyncIterator[FakeSmsc]:
    fake = await FakeSmsc().start()
    try:
        yield fake
    finally:
        await fake.aclose()


def provider_settings(
    *,
    twilio: FakeTwilio | None = None,
    gateway: FakeHttpGateway | None = None,
    smsc: FakeSmsc | None = None,
    **overrides: Any,
) -> Settings:
    """Settings whose provider credentials point at the given fakes."""
    values: dict[str, Any] = {"send_timeout_s": 5.0, "send_max_attempts": 2}
    if twilio is not None:
        values.update(
            twilio_base_url=twilio.base_url,
            twilio_account_sid=twilio.account_sid,
            twilio_auth_token=SecretStr(twilio.auth_token),
            twilio_from="+15005550006",
        )
    if gateway is not None:
        values.update(
            http_gateway_url=gateway.url,
            http_gateway_message_id_path="data.msgid",
            http_gateway_transient_codes=["101"],
            http_gateway_permanent_codes=["201"],
        )
    if smsc is not None:
        values.update(
            smpp_host="127.0.0.1",
            smpp_port=smsc.port,
            smpp_system_id=smsc.system_id,
            smpp_password=SecretStr(smsc.password),
            smpp_response_timeout_s=0.5,
            smpp_reconnect_min_s=0.05,
        )
    values.update(overrides)
    return Settings(**values)
