"""One contract every provider adapter keeps, run against each adapter and its fake provider.

Whatever the protocol, the same three failures must reach the dispatcher as the same error
classes, because retry, failover and the `unknown` outcome are decided from the class alone:

- the provider answers "my side failed" (HTTP 5xx; SMPP ESME_RSYSERR): `TransientProviderError`;
- the request went out and no answer came within the timeout: `AmbiguousProviderError` (the
  provider may have accepted it, so it must not be resent silently);
- the connection is refused (nothing was sent): `TransientProviderError`.

And no error carries recipient data: neither the phone number or push token nor the message
text appears in its str() or repr(), since errors end up in logs and in the ledger.

The voice gateway adapter has no fake of its own yet, so it is not in this list.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from service.channels.apns import ApnsConfig, ApnsSender
from service.channels.base import OutboundMessage, Sender
from service.channels.errors import AmbiguousProviderError, TransientProviderError
from service.channels.fcm import FcmConfig, FcmSender
from service.channels.google_oauth import load_service_account
from service.channels.jpush import JPushConfig, JPushSender
from service.channels.smpp import SmppConfig, SmppSender
from service.channels.smpp.pdu import CommandStatus
from service.channels.twilio import TwilioConfig, TwilioSender
from service.channels.twilio_voice import TwilioVoiceConfig, TwilioVoiceSender
from service.config import Settings
from service.events import Channel, PushProvider, TemplateRef
from service.rendering.model import RenderedMessage, VoiceContent
from service.wiring.channels import build_http_gateway_sender
from tests.channels.conftest import PHONE, SMS_TEXT, TOKEN, push_message, sms_message
from tests.channels.helpers import RecordingSink
from tests.clocks import MonotonicClock, StepClock
from tests.fakes import FakeFcm, FakeTwilio
from tests.fakes.apns import ApnsAnswer, FakeApns
from tests.fakes.http_gateway import FakeHttpGateway, GatewayAnswer
from tests.fakes.jpush import FakeJPush, JPushAnswer
from tests.fakes.smpp import FakeSmsc
from tests.fakes.twilio import FAKE_ACCOUNT_SID, FAKE_AUTH_TOKEN
from tests.fakes.twilio_voice import FakeTwilioVoice

# Short enough to keep the hang cases quick, long enough for a loaded 2-core machine.
TIMEOUT_S = 0.5
PUSH_TEXT = ("Repayment overdue", "$1,239.70 was due on Nov 15, 2026. Tap to repay.")
VOICE_SCRIPT = "Hello, this is JieBei. Your loan ending 0123 is 10 days overdue."


@dataclass
class Rig:
    """One adapter pointed at its fake, with the fake's switches for the contract's cases."""

    sender: Sender
    message: OutboundMessage
    answer_5xx: Callable[[], None]
    hang: Callable[[], None]
    # What must never appear in an error: the recipient and the text it was sent.
    private: tuple[str, ...]


RigFactory = Callable[[Path, str | None], AbstractAsyncContextManager[Rig]]


def _sms_private() -> tuple[str, ...]:
    return (PHONE, PHONE.removeprefix("+"), SMS_TEXT)


def _push_private() -> tuple[str, ...]:
    return (TOKEN, *PUSH_TEXT)


@asynccontextmanager
async def _twilio(tmp: Path, dead_url: str | None) -> AsyncIterator[Rig]:
    async with FakeTwilio() as fake:
        sender = TwilioSender(
            TwilioConfig(
                base_url=dead_url or fake.base_url,
                account_sid=fake.account_sid,
                auth_token=fake.auth_token,
                from_="+15005550006",
                timeout_s=TIMEOUT_S,
            )
        )
        try:
            yield Rig(
                sender,
                sms_message(),
                lambda: fake.fail_next(status=503),
                fake.hang_next,
                _sms_private(),
            )
        finally:
            await sender.aclose()


@asynccontextmanager
async def _twilio_voice(tmp: Path, dead_url: str | None) -> AsyncIterator[Rig]:
    content = RenderedMessage(
        Channel.VOICE,
        TemplateRef(name="early_overdue.voice", version="1"),
        "en-US",
        voice=VoiceContent(
            script=VOICE_SCRIPT, limited_script="Please call JieBei.", language="en-US"
        ),
    )
    message = OutboundMessage("evt-1:voice:early_overdue", Channel.VOICE, PHONE, content)
    async with FakeTwilioVoice() as fake:
        sender = TwilioVoiceSender(
            TwilioVoiceConfig(
                base_url=dead_url or fake.base_url,
                account_sid=FAKE_ACCOUNT_SID,
                auth_token=FAKE_AUTH_TOKEN,
                from_="+15005550006",
                timeout_s=TIMEOUT_S,
            )
        )
        try:
            yield Rig(
                sender,
                message,
                lambda: fake.fail_next_with(503, 20500),
                fake.hang_next,
                (PHONE, PHONE.removeprefix("+"), VOICE_SCRIPT),
            )
        finally:
            await sender.aclose()


@asynccontextmanager
async def _fcm(tmp: Path, dead_url: str | None) -> AsyncIterator[Rig]:
    async with FakeFcm(tmp / "fcm") as fake:
        sender = FcmSender(
            FcmConfig(
                base_url=dead_url or fake.base_url,
                project_id=fake.project_id,
                account=load_service_account(fake.account.path),
                token_url=f"{dead_url}/token" if dead_url else None,
                timeout_s=TIMEOUT_S,
            ),
            clock=StepClock(),
        )
        try:
            yield Rig(sender, push_message(), fake.fail_next, fake.hang_next, _push_private())
        finally:
            await sender.aclose()


def _apns_keys() -> tuple[str, str]:
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


@asynccontextmanager
async def _apns(tmp: Path, dead_url: str | None) -> AsyncIterator[Rig]:
    private, public = _apns_keys()
    fake = await FakeApns(public_key_pem=public, key_id="ABC123DEFG", team_id="TEAM123456").start()
    config = ApnsConfig(
        dead_url or fake.base_url,
        private,
        "ABC123DEFG",
        "TEAM123456",
        "com.example.jiebei",
        timeout_s=TIMEOUT_S,
    )
    sender = ApnsSender(config, clock=MonotonicClock(1_768_000_000.0))
    try:
        yield Rig(
            sender,
            push_message(provider=PushProvider.APNS),
            lambda: fake.answers.append(ApnsAnswer(503, "ServiceUnavailable")),
            lambda: fake.answers.append(ApnsAnswer(hang=True)),
            _push_private(),
        )
    finally:
        await sender.aclose()
        await fake.aclose()


@asynccontextmanager
async def _jpush(tmp: Path, dead_url: str | None) -> AsyncIterator[Rig]:
    fake = await FakeJPush(app_key="appkey123", master_secret="master456").start()
    config = JPushConfig(dead_url or fake.base_url, "appkey123", "master456", timeout_s=TIMEOUT_S)
    sender = JPushSender(config)
    try:
        yield Rig(
            sender,
            push_message(provider=PushProvider.JPUSH),
            lambda: fake.answers.append(JPushAnswer(status=503)),
            lambda: fake.answers.append(JPushAnswer(hang=True)),
            _push_private(),
        )
    finally:
        await sender.aclose()
        await fake.aclose()


@asynccontextmanager
async def _http_gateway(tmp: Path, dead_url: str | None) -> AsyncIterator[Rig]:
    fake = await FakeHttpGateway().start()
    settings = Settings(
        http_gateway_url=f"{dead_url}/sms/send" if dead_url else fake.url,
        http_gateway_account="acct01",
        http_gateway_password="pw-secret",
        http_gateway_message_id_path="data.msgid",
        send_timeout_s=TIMEOUT_S,
    )
    sender = build_http_gateway_sender(settings)
    try:
        yield Rig(
            sender,
            sms_message(),
            lambda: fake.answers.append(GatewayAnswer(http_status=503)),
            lambda: fake.answers.append(GatewayAnswer(hang=True)),
            _sms_private(),
        )
    finally:
        await sender.aclose()
        await fake.aclose()


@asynccontextmanager
async def _smpp(tmp: Path, dead_url: str | None) -> AsyncIterator[Rig]:
    """SMPP has no HTTP status: "5xx" is the SMSC's system error and a hang is a submit_sm
    that never gets its submit_sm_resp."""
    fake = await FakeSmsc().start()
    port = int(dead_url.rsplit(":", 1)[1]) if dead_url else fake.port
    config = SmppConfig(
        host="127.0.0.1",
        port=port,
        system_id=fake.system_id,
        password=fake.password,
        source_addr="10690000",
        response_timeout_s=TIMEOUT_S,
        bind_wait_s=TIMEOUT_S,
        reconnect_min_s=0.05,
        reconnect_max_s=0.2,
    )
    sender = SmppSender(config, RecordingSink())

    def hang() -> None:
        fake.hang_submits = True

    try:
        await sender.start()
        if dead_url is None:
            assert await sender.wait_bound(5)
        yield Rig(
            sender,
            sms_message(),
            lambda: fake.submit_statuses.append(CommandStatus.ESME_RSYSERR),
            hang,
            _sms_private(),
        )
    finally:
        await sender.aclose()
        await fake.aclose()


ADAPTERS: dict[str, RigFactory] = {
    "twilio": _twilio,
    "twilio_voice": _twilio_voice,
    "fcm": _fcm,
    "apns": _apns,
    "jpush": _jpush,
    "http_gateway": _http_gateway,
    "smpp": _smpp,
}


@pytest.fixture(params=sorted(ADAPTERS))
def rig_factory(request: pytest.FixtureRequest) -> RigFactory:
    factory: RigFactory = ADAPTERS[request.param]
    return factory


@pytest.fixture
def dead_url() -> str:
    """A local address nobody listens on: connecting to it is refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def _assert_private(error: BaseException, private: tuple[str, ...]) -> None:
    shown = f"{error!s}\n{error!r}"
    for value in private:
        assert value not in shown, f"{type(error).__name__} shows recipient data {value!r}"


async def test_a_5xx_answer_is_transient(rig_factory: RigFactory, tmp_path: Path) -> None:
    async with rig_factory(tmp_path, None) as rig:
        rig.answer_5xx()
        with pytest.raises(TransientProviderError) as caught:
            await rig.sender.send(rig.message)
    _assert_private(caught.value, rig.private)


async def test_a_hang_past_the_timeout_is_ambiguous(
    rig_factory: RigFactory, tmp_path: Path
) -> None:
    async with rig_factory(tmp_path, None) as rig:
        rig.hang()
        with pytest.raises(AmbiguousProviderError) as caught:
            await rig.sender.send(rig.message)
    _assert_private(caught.value, rig.private)


async def test_a_refused_connection_is_transient(
    rig_factory: RigFactory, tmp_path: Path, dead_url: str
) -> None:
    async with rig_factory(tmp_path, dead_url) as rig:
        with pytest.raises(TransientProviderError) as caught:
            await rig.sender.send(rig.message)
    _assert_private(caught.value, rig.private)
