"""ApnsSender against a local HTTP/2 APNs: headers, JWT lifecycle, every error class, hangs."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from service.channels.apns import ApnsConfig, ApnsSender
from service.channels.errors import (
    AmbiguousProviderError,
    PermanentProviderError,
    ProviderMisconfigured,
    TokenUnregistered,
    TransientProviderError,
)
from service.channels.push_options import collapse_id
from service.config import Settings
from service.events import PushProvider
from service.wiring.channels import build_apns_sender
from tests.channels.helpers import DEVICE_TOKEN, push_message
from tests.clocks import MonotonicClock
from tests.conftest import Closing
from tests.fakes.apns import ApnsAnswer, FakeApns
from tests.fakes.apns import invalid_headers as invalid_apns_headers

KEY_ID = "ABC123DEFG"
TEAM_ID = "TEAM123456"
TOPIC = "com.example.jiebei"


@pytest.fixture(scope="module")
def key_pair() -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


@pytest.fixture
async def apns(key_pair: tuple[str, str]) -> AsyncIterator[FakeApns]:
    server = await FakeApns(public_key_pem=key_pair[1], key_id=KEY_ID, team_id=TEAM_ID).start()
    yield server
    await server.aclose()


@pytest.fixture
def clock() -> MonotonicClock:
    return MonotonicClock(1_768_000_000.0)


@pytest.fixture
async def sender(
    apns: FakeApns, key_pair: tuple[str, str], clock: MonotonicClock
) -> AsyncIterator[ApnsSender]:
    config = ApnsConfig(apns.base_url, key_pair[0], KEY_ID, TEAM_ID, TOPIC, timeout_s=0.5)
    adapter = ApnsSender(config, clock=clock)
    yield adapter
    await adapter.aclose()


MESSAGE = push_message(PushProvider.APNS)


async def test_send_posts_an_alert_with_token_auth(sender: ApnsSender, apns: FakeApns) -> None:
    """One HTTP/2 POST to /3/device/{token} with topic, push type, apns-id and a valid JWT."""
    apns_id = await sender.send(MESSAGE)
    [request] = apns.requests
    assert request.path == f"/3/device/{DEVICE_TOKEN}"
    assert request.headers["apns-topic"] == TOPIC
    assert request.headers["apns-push-type"] == "alert"
    assert request.headers["apns-id"] == apns_id
    assert request.payload["aps"]["alert"]["title"] == "还款提醒"
    assert request.payload["deep_link"] == "jiebei://repay/JB****0123"
    assert jwt.get_unverified_header(request.bearer)["alg"] == "ES256"


async def test_same_notification_keeps_its_apns_id(sender: ApnsSender) -> None:
    """The apns-id derives from the notification id, so a retry carries the same one."""
    assert await sender.send(MESSAGE) == await sender.send(MESSAGE)


async def test_jwt_is_reused_then_refreshed_after_50_minutes(
    sender: ApnsSender, apns: FakeApns, clock: MonotonicClock
) -> None:
    """Within 50 minutes one token serves every request; after that a new one is made."""
    await sender.send(MESSAGE)
    clock.now += 49 * 60
    await sender.send(MESSAGE)
    clock.now += 2 * 60
    await sender.send(MESSAGE)
    tokens = [r.bearer for r in apns.requests]
    assert tokens[0] == tokens[1] != tokens[2]


async def test_expired_provider_token_is_refreshed_and_retried_once(
    sender: ApnsSender, apns: FakeApns
) -> None:
    """403 ExpiredProviderToken makes a new JWT and repeats the request once, successfully."""
    await sender.send(MESSAGE)
    apns.expire_seen_tokens()
    await sender.send(MESSAGE)
    assert len(apns.requests) == 3
    assert apns.requests[2].bearer != apns.requests[1].bearer
    assert sender.token_refreshes == 2


@pytest.mark.parametrize(
    ("status", "reason"),
    [(410, "Unregistered"), (400, "BadDeviceToken")],
)
async def test_dead_tokens_are_flagged(
    sender: ApnsSender, apns: FakeApns, status: int, reason: str
) -> None:
    """410 Unregistered and 400 BadDeviceToken fail as TokenUnregistered."""
    apns.answers.append(ApnsAnswer(status, reason))
    with pytest.raises(TokenUnregistered) as caught:
        await sender.send(MESSAGE)
    assert caught.value.code == reason


async def test_payload_too_large_is_permanent(sender: ApnsSender, apns: FakeApns) -> None:
    """413 PayloadTooLarge fails the notification without flagging the token."""
    apns.answers.append(ApnsAnswer(413, "PayloadTooLarge"))
    with pytest.raises(PermanentProviderError) as caught:
        await sender.send(MESSAGE)
    assert type(caught.value) is PermanentProviderError


@pytest.mark.parametrize(
    ("status", "reason"),
    [(429, "TooManyRequests"), (500, "InternalServerError"), (503, "ServiceUnavailable")],
)
async def test_busy_answers_are_transient(
    sender: ApnsSender, apns: FakeApns, status: int, reason: str
) -> None:
    """429, 500 and 503 are worth retrying, honouring Retry-After."""
    apns.answers.append(ApnsAnswer(status, reason, retry_after="7"))
    with pytest.raises(TransientProviderError) as caught:
        await sender.send(MESSAGE)
    assert caught.value.retry_after == 7.0


async def test_bad_key_alerts(apns: FakeApns, clock: MonotonicClock, closing: Closing) -> None:
    """A JWT signed with the wrong key is refused as InvalidProviderToken: ProviderMisconfigured."""
    other = (
        ec.generate_private_key(ec.SECP256R1())
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    adapter = closing(
        ApnsSender(ApnsConfig(apns.base_url, other, KEY_ID, TEAM_ID, TOPIC), clock=clock)
    )
    with pytest.raises(ProviderMisconfigured) as caught:
        await adapter.send(MESSAGE)
    assert caught.value.code == "InvalidProviderToken"


async def test_hang_is_ambiguous(sender: ApnsSender, apns: FakeApns) -> None:
    """No answer after the request went out: APNs may have accepted it."""
    apns.answers.append(ApnsAnswer(hang=True))
    with pytest.raises(AmbiguousProviderError):
        await sender.send(MESSAGE)


async def test_dropped_connection_is_ambiguous_and_next_send_reconnects(
    sender: ApnsSender, apns: FakeApns
) -> None:
    """A connection closed under a request is ambiguous; the next send opens a new one."""
    apns.answers.append(ApnsAnswer(drop=True))
    with pytest.raises(AmbiguousProviderError):
        await sender.send(MESSAGE)
    assert await sender.send(MESSAGE)
    assert apns.connections == 2


async def test_unreachable_apns_is_transient(
    key_pair: tuple[str, str], clock: MonotonicClock, closing: Closing
) -> None:
    """A refused connection means nothing was sent: transient."""
    config = ApnsConfig("http://127.0.0.1:9", key_pair[0], KEY_ID, TEAM_ID, TOPIC)
    adapter = closing(ApnsSender(config, clock=clock))
    with pytest.raises(TransientProviderError):
        await adapter.send(MESSAGE)


async def test_builder_reads_the_key_file(
    tmp_path: Path, key_pair: tuple[str, str], apns: FakeApns, closing: Closing
) -> None:
    """build_apns_sender loads the .p8 key named in the settings and sends with it."""
    key_file = tmp_path / "AuthKey.p8"
    key_file.write_text(key_pair[0])
    settings = Settings(
        apns_base_url=apns.base_url,
        apns_key_file=key_file,
        apns_key_id=KEY_ID,
        apns_team_id=TEAM_ID,
        apns_topic=TOPIC,
    )
    adapter = closing(build_apns_sender(settings))
    assert await adapter.send(MESSAGE)


async def test_no_token_in_logs_or_errors(
    sender: ApnsSender, apns: FakeApns, caplog: pytest.LogCaptureFixture
) -> None:
    """Failures never put the device token into a log line or an error text."""
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    answers: list[Callable[[], ApnsAnswer]] = [
        lambda: ApnsAnswer(410, "Unregistered"),
        lambda: ApnsAnswer(hang=True),
        lambda: ApnsAnswer(drop=True),
        lambda: ApnsAnswer(503, "ServiceUnavailable"),
    ]
    for make in answers:
        apns.answers.append(make())
        with pytest.raises(
            (PermanentProviderError, AmbiguousProviderError, TransientProviderError)
        ) as caught:
            await sender.send(MESSAGE)
        texts.append(str(caught.value))
    assert DEVICE_TOKEN not in caplog.text
    assert not any(DEVICE_TOKEN in t for t in texts)


async def test_push_carries_apns_expiration_and_collapse_id(
    sender: ApnsSender, apns: FakeApns, clock: MonotonicClock
) -> None:
    """apns-expiration is the UNIX time of the push's expiry (0 once it has passed: deliver
    now or never) and apns-collapse-id is the notification's collapse id, at most 64 bytes."""
    now = datetime.fromtimestamp(clock.now, UTC)
    await sender.send(replace(MESSAGE, expires_at=now + timedelta(hours=5)))
    await sender.send(replace(MESSAGE, expires_at=now - timedelta(seconds=1)))
    first, late = (r.headers for r in apns.requests)
    assert first["apns-expiration"] == str(int(clock.now) + 5 * 3600)
    assert late["apns-expiration"] == "0"
    assert first["apns-collapse-id"] == collapse_id(MESSAGE.notification_id)
    assert len(first["apns-collapse-id"].encode()) <= 64


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({"apns-collapse-id": "c" * 65}, "BadCollapseId"),
        ({"apns-expiration": "tomorrow"}, "BadExpirationDate"),
        ({"apns-collapse-id": "c" * 64, "apns-expiration": "0"}, None),
    ],
)
def test_fake_apns_checks_collapse_id_and_expiration(
    headers: dict[str, str], reason: str | None
) -> None:
    """The fake refuses an apns-collapse-id over 64 bytes and a non-numeric apns-expiration
    with APNs' 400 reasons, and accepts the limits themselves."""
    assert invalid_apns_headers(headers) == reason
