"""Failover between providers, built from settings and sent to real local fakes: the next
provider takes a message only when the previous one cannot have accepted it."""

from __future__ import annotations

import io
from typing import Any

import pytest

from service.channels.dispatch import Dispatcher
from service.channels.smpp.pdu import CommandStatus
from service.channels.twilio import TwilioConfig, TwilioSender
from service.config import Settings
from service.errors import ConfigError
from service.wiring.channels import build_dispatcher, build_http_gateway_sender
from tests.channels.conftest import RecordingSleep, provider_settings, sms_message
from tests.channels.helpers import RecordingSink
from tests.clocks import StepClock
from tests.fakes import FakeTwilio
from tests.fakes.http_gateway import FakeHttpGateway, GatewayAnswer
from tests.fakes.smpp import FakeSmsc

US_PHONE = "+14155550123"


def accepted_submits(smsc: FakeSmsc, answered: int) -> int:
    """submit_sm the SMSC accepted: those received beyond the `answered` scripted refusals."""
    return len(smsc.submits) - answered


async def test_transient_failures_at_the_primary_fail_over_without_duplicates(
    smsc: FakeSmsc, twilio: FakeTwilio
) -> None:
    """SMPP answers ESME_RSYSERR on every attempt: the message goes out once through Twilio,
    the SMSC accepted nothing, and the outcome names Twilio and counts all three attempts."""
    smsc.submit_statuses.extend([CommandStatus.ESME_RSYSERR] * 2)
    settings = provider_settings(smsc=smsc, twilio=twilio, sms_provider="smpp,twilio")
    sleep = RecordingSleep()
    async with build_dispatcher(
        settings, out=io.StringIO(), clock=StepClock(), sink=RecordingSink(), sleep=sleep
    ) as dispatcher:
        outcome = await dispatcher.dispatch(sms_message())
    assert (outcome.status, outcome.provider) == ("sent", "twilio")
    assert outcome.provider_message_id == twilio.sent[0].response["sid"]
    assert outcome.attempts == 3
    assert outcome.providers_tried == ("smpp", "twilio")
    assert len(smsc.submits) == 2
    assert accepted_submits(smsc, answered=2) == 0
    assert len(twilio.sent) == 1
    assert len(twilio.requests) == 1


async def test_no_failover_after_an_ambiguous_outcome(smsc: FakeSmsc, twilio: FakeTwilio) -> None:
    """The SMSC takes the submit_sm and never answers: the SMSC may have sent it, so the result
    is unknown and Twilio is never asked."""
    smsc.hang_submits = True
    settings = provider_settings(smsc=smsc, twilio=twilio, sms_provider="smpp,twilio")
    async with build_dispatcher(
        settings, out=io.StringIO(), clock=StepClock(), sink=RecordingSink()
    ) as dispatcher:
        outcome = await dispatcher.dispatch(sms_message())
    assert (outcome.status, outcome.provider) == ("unknown", "smpp")
    assert outcome.reason == "ambiguous_timeout"
    assert len(smsc.submits) == 1
    assert twilio.requests == []


async def test_no_failover_after_a_refusal_of_the_recipient(
    smsc: FakeSmsc, twilio: FakeTwilio
) -> None:
    """ESME_RINVDSTADR (invalid number) is invalid everywhere: failed, Twilio never asked."""
    smsc.submit_statuses.append(CommandStatus.ESME_RINVDSTADR)
    settings = provider_settings(smsc=smsc, twilio=twilio, sms_provider="smpp,twilio")
    async with build_dispatcher(
        settings, out=io.StringIO(), clock=StepClock(), sink=RecordingSink()
    ) as dispatcher:
        outcome = await dispatcher.dispatch(sms_message())
    assert (outcome.status, outcome.reason, outcome.provider) == (
        "failed",
        "provider_rejected",
        "smpp",
    )
    assert outcome.provider_code == "0x0B"
    assert twilio.requests == []


async def test_our_misconfiguration_at_the_primary_fails_over(
    twilio: FakeTwilio, gateway: FakeHttpGateway
) -> None:
    """Twilio refuses our credentials (401, alert): it accepted nothing, so the HTTP gateway
    sends the message; the refusal is still visible as a permanent attempt at Twilio."""
    primary = TwilioSender(
        TwilioConfig(
            base_url=twilio.base_url,
            account_sid=twilio.account_sid,
            auth_token="wrong-token",
            from_="+15005550006",
        )
    )
    secondary = build_http_gateway_sender(provider_settings(gateway=gateway))
    dispatcher = Dispatcher(
        {"sms": [primary, secondary]},
        timeout_s=5,
        max_attempts=3,
        backoff_max_s=1,
        clock=StepClock(),
        sleep=RecordingSleep(),
    )
    try:
        outcome = await dispatcher.dispatch(sms_message())
    finally:
        await dispatcher.aclose()
    assert (outcome.status, outcome.provider) == ("sent", "http_gateway")
    assert outcome.providers_tried == ("twilio", "http_gateway")
    assert outcome.attempts == 2
    assert len(twilio.requests) == 1
    assert twilio.sent == []
    assert len(gateway.requests) == 1


async def test_failed_everywhere_names_the_last_provider(
    twilio: FakeTwilio, gateway: FakeHttpGateway
) -> None:
    """Both providers keep failing: failed after every provider's attempts, nothing sent."""
    twilio.fail_next(10)
    gateway.answers.extend([GatewayAnswer(code="101")] * 10)
    settings = provider_settings(twilio=twilio, gateway=gateway, sms_provider="twilio,http_gateway")
    async with build_dispatcher(
        settings, out=io.StringIO(), clock=StepClock(), sleep=RecordingSleep()
    ) as dispatcher:
        outcome = await dispatcher.dispatch(sms_message())
    assert (outcome.status, outcome.reason, outcome.provider) == (
        "failed",
        "retries_exhausted",
        "http_gateway",
    )
    assert outcome.attempts == 4
    assert len(twilio.requests) == 2
    assert len(gateway.requests) == 2
    assert twilio.sent == []


async def test_country_routes_pick_providers_by_phone_prefix(
    twilio: FakeTwilio, gateway: FakeHttpGateway
) -> None:
    """With NOTIFIER_SMS_ROUTES=86:http_gateway a Chinese number goes to the gateway and a US
    number to the default list (Twilio)."""
    settings = provider_settings(
        twilio=twilio, gateway=gateway, sms_provider="twilio", sms_routes="86:http_gateway"
    )
    async with build_dispatcher(settings, out=io.StringIO(), clock=StepClock()) as dispatcher:
        china = await dispatcher.dispatch(sms_message())
        usa = await dispatcher.dispatch(sms_message(phone=US_PHONE, nid="evt-2:sms:x"))
    assert (china.status, china.provider) == ("sent", "http_gateway")
    assert (usa.status, usa.provider) == ("sent", "twilio")
    assert [r.form["To"] for r in twilio.sent] == [US_PHONE]
    assert len(gateway.requests) == 1


@pytest.mark.parametrize(
    ("values", "variable"),
    [
        ({"sms_provider": "smpp,nexmo"}, "NOTIFIER_SMS_PROVIDER"),
        ({"sms_provider": "twilio,twilio"}, "NOTIFIER_SMS_PROVIDER"),
        ({"sms_provider": ""}, "NOTIFIER_SMS_PROVIDER"),
        ({"sms_routes": "china:smpp"}, "NOTIFIER_SMS_ROUTES"),
        ({"sms_routes": "86:carrier_pigeon"}, "NOTIFIER_SMS_ROUTES"),
        ({"push_provider": "fcm,hms"}, "NOTIFIER_PUSH_PROVIDER"),
        ({"provider_rate_limits": "twilio:fast"}, "NOTIFIER_PROVIDER_RATE_LIMITS"),
        ({"sms_provider": "smpp"}, "NOTIFIER_SMPP_SYSTEM_ID"),
        ({"sms_routes": "86:http_gateway"}, "NOTIFIER_HTTP_GATEWAY_URL"),
        ({"push_provider": "apns"}, "NOTIFIER_APNS_KEY_FILE"),
        ({"push_provider": "jpush"}, "NOTIFIER_JPUSH_APP_KEY"),
    ],
)
def test_bad_routing_settings_are_refused_naming_the_variable(
    values: dict[str, Any], variable: str
) -> None:
    """A routing setting that cannot work stops the start with a message naming it, and the
    error carries that variable and a fix (what `config check` prints) as fields."""
    with pytest.raises(ConfigError, match=variable) as raised:
        build_dispatcher(Settings(**values), out=io.StringIO(), clock=StepClock())
    assert raised.value.variable == variable
    assert "provider" in raised.value.fix


def test_smpp_without_a_receipt_sink_is_refused() -> None:
    """The SMPP session must hand its delivery receipts to someone: no sink, no start."""
    settings = Settings(sms_provider="smpp", smpp_system_id="notifier")
    with pytest.raises(ValueError, match="receipt sink"):
        build_dispatcher(settings, out=io.StringIO(), clock=StepClock())
