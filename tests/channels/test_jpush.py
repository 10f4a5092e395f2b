"""JPushSender against a local JPush v3 endpoint: request shape and the error code taxonomy."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest

from service.channels.errors import (
    AmbiguousProviderError,
    PermanentProviderError,
    ProviderMisconfigured,
    TokenUnregistered,
    TransientProviderError,
)
from service.channels.jpush import JPushConfig, JPushSender
from service.config import Settings
from service.events import PushProvider
from service.wiring.channels import build_jpush_sender
from tests.channels.helpers import DEVICE_TOKEN, push_message
from tests.conftest import Closing
from tests.fakes.jpush import FakeJPush, JPushAnswer

MESSAGE = push_message(PushProvider.JPUSH)


@pytest.fixture
async def jpush() -> AsyncIterator[FakeJPush]:
    server = await FakeJPush(app_key="appkey123", master_secret="master456").start()
    yield server
    await server.aclose()


@pytest.fixture
async def sender(jpush: FakeJPush) -> AsyncIterator[JPushSender]:
    settings = Settings(
        jpush_base_url=jpush.base_url,
        jpush_app_key="appkey123",
        jpush_master_secret="master456",
        send_timeout_s=0.5,
    )
    adapter = build_jpush_sender(settings)
    yield adapter
    await adapter.aclose()


async def test_push_addresses_one_registration_id(sender: JPushSender, jpush: FakeJPush) -> None:
    """The push names the registration id, the Android title/alert/deep link and a TTL (an
    hour when the caller gives no expiry; the processor always does)."""
    msg_id = await sender.send(MESSAGE)
    assert msg_id == "1000001"
    [push] = jpush.pushes
    assert push["audience"] == {"registration_id": [DEVICE_TOKEN]}
    assert push["platform"] == ["android"]
    android = push["notification"]["android"]
    assert android["title"] == "还款提醒"
    assert android["intent"] == {"url": "jiebei://repay/JB****0123"}
    assert push["options"]["time_to_live"] == 3600


async def test_wrong_secret_alerts(jpush: FakeJPush, closing: Closing) -> None:
    """A 401 with code 1004 fails permanently and raises an alert."""
    adapter = closing(JPushSender(JPushConfig(jpush.base_url, "appkey123", "wrong")))
    with pytest.raises(ProviderMisconfigured) as caught:
        await adapter.send(MESSAGE)
    assert caught.value.code == "1004"


async def test_unknown_registration_id_is_a_dead_token(
    sender: JPushSender, jpush: FakeJPush
) -> None:
    """Code 1011 (no such target) marks the token dead."""
    jpush.answers.append(JPushAnswer(400, 1011))
    with pytest.raises(TokenUnregistered):
        await sender.send(MESSAGE)


@pytest.mark.parametrize("code", [1002, 1003, 1005, 1008, 1020])
async def test_request_errors_are_permanent(
    sender: JPushSender, jpush: FakeJPush, code: int
) -> None:
    """Missing/invalid parameters, oversize and HTTPS-only codes fail without retry."""
    jpush.answers.append(JPushAnswer(400, code))
    with pytest.raises(PermanentProviderError) as caught:
        await sender.send(MESSAGE)
    assert caught.value.code == str(code)
    assert not isinstance(caught.value, TokenUnregistered)


@pytest.mark.parametrize(
    ("status", "code"), [(429, 2002), (500, 1000), (503, None), (504, None), (400, 1030)]
)
async def test_busy_answers_are_transient(
    sender: JPushSender, jpush: FakeJPush, status: int, code: int | None
) -> None:
    """429, 5xx and codes 1000 / 1030 are worth retrying."""
    jpush.answers.append(JPushAnswer(status, code, headers=(("X-Rate-Limit-Reset", "3"),)))
    with pytest.raises(TransientProviderError) as caught:
        await sender.send(MESSAGE)
    assert caught.value.retry_after == 3.0


@pytest.mark.parametrize("answer", [JPushAnswer(hang=True), JPushAnswer(drop=True)])
async def test_no_answer_is_ambiguous(
    sender: JPushSender,
    jpush: FakeJPush,
    answer: JPushAnswer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A hang or a dropped connection after the push was sent is ambiguous; no token is logged."""
    caplog.set_level(logging.DEBUG)
    jpush.answers.append(answer)
    with pytest.raises(AmbiguousProviderError) as caught:
        await sender.send(MESSAGE)
    assert DEVICE_TOKEN not in caplog.text
    assert DEVICE_TOKEN not in str(caught.value)
