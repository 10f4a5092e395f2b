"""TwilioSender against a local fake Twilio: request shape and the mapping of every error class."""

from __future__ import annotations

import socket

import pytest

from service.channels.errors import (
    AmbiguousProviderError,
    ProviderMisconfigured,
    RecipientOptedOut,
    RecipientRefused,
    TransientProviderError,
)
from service.channels.twilio import TwilioConfig, TwilioSender
from tests.channels.conftest import PHONE, SMS_TEXT, TwilioSenderFactory, sms_message
from tests.conftest import Closing
from tests.fakes import FakeTwilio


async def test_send_posts_twilio_form_and_returns_sid(
    fake_twilio: FakeTwilio, make_twilio_sender: TwilioSenderFactory
) -> None:
    """A send is one POST with Basic auth and To/From/Body/StatusCallback; the sid comes back."""
    sender = make_twilio_sender()
    sid = await sender.send(sms_message())
    [request] = fake_twilio.sent
    assert sid.startswith("SM")
    assert len(sid) == 34
    assert request.path == f"/2010-04-01/Accounts/{fake_twilio.account_sid}/Messages.json"
    assert request.basic_auth == (fake_twilio.account_sid, fake_twilio.auth_token)
    assert request.form == {
        "To": PHONE,
        "From": "+15005550006",
        "Body": SMS_TEXT,
        "StatusCallback": "https://notifier.example.com/receipts/twilio",
    }


async def test_messaging_service_sid_is_sent_as_such(
    fake_twilio: FakeTwilio, make_twilio_sender: TwilioSenderFactory
) -> None:
    """A sender id starting with MG goes out as MessagingServiceSid, not From."""
    sender = make_twilio_sender(from_="MG" + "1" * 32)
    await sender.send(sms_message())
    [request] = fake_twilio.sent
    assert request.form["MessagingServiceSid"] == "MG" + "1" * 32
    assert "From" not in request.form


async def test_throttled_is_transient_with_retry_after(
    fake_twilio: FakeTwilio, make_twilio_sender: TwilioSenderFactory
) -> None:
    """429 / 20429 is transient and carries the provider's Retry-After in seconds."""
    fake_twilio.throttle_next(retry_after="7")
    sender = make_twilio_sender()
    with pytest.raises(TransientProviderError) as caught:
        await sender.send(sms_message())
    assert caught.value.code == "20429"
    assert caught.value.retry_after == 7.0


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_server_errors_are_transient(
    fake_twilio: FakeTwilio, status: int, make_twilio_sender: TwilioSenderFactory
) -> None:
    """Any 5xx answer is transient."""
    fake_twilio.fail_next(status=status)
    sender = make_twilio_sender()
    with pytest.raises(TransientProviderError):
        await sender.send(sms_message())


@pytest.mark.parametrize("code", [21211, 21614, 30006])
async def test_recipient_errors_are_permanent(
    fake_twilio: FakeTwilio, code: int, make_twilio_sender: TwilioSenderFactory
) -> None:
    """Invalid number, not a mobile, landline: a refusal of the recipient, with Twilio's code,
    neither an opt-out nor our misconfiguration."""
    fake_twilio.reject_next(code)
    sender = make_twilio_sender()
    with pytest.raises(RecipientRefused) as caught:
        await sender.send(sms_message())
    assert caught.value.code == str(code)
    assert type(caught.value) is RecipientRefused


async def test_unsubscribed_recipient_records_opt_out(
    fake_twilio: FakeTwilio, make_twilio_sender: TwilioSenderFactory
) -> None:
    """21610 (the borrower replied STOP) is a RecipientOptedOut, so the opt-out is recorded."""
    fake_twilio.unsubscribed.add(PHONE)
    sender = make_twilio_sender()
    with pytest.raises(RecipientOptedOut) as caught:
        await sender.send(sms_message())
    assert caught.value.code == "21610"


async def test_wrong_credentials_are_permanent_and_alert(
    fake_twilio: FakeTwilio, make_twilio_sender: TwilioSenderFactory
) -> None:
    """401 from Twilio means our credentials are wrong: ProviderMisconfigured, no PII in it."""
    sender = make_twilio_sender(auth_token="wrong")
    with pytest.raises(ProviderMisconfigured) as caught:
        await sender.send(sms_message())
    assert caught.value.code == "20003"
    assert PHONE not in str(caught.value)


async def test_no_answer_after_sending_is_ambiguous(
    fake_twilio: FakeTwilio, make_twilio_sender: TwilioSenderFactory
) -> None:
    """A read timeout after the request went out is ambiguous, never transient."""
    fake_twilio.hang_next()
    sender = make_twilio_sender(timeout_s=0.3)
    with pytest.raises(AmbiguousProviderError) as caught:
        await sender.send(sms_message())
    assert caught.value.code == "timeout"
    assert len(fake_twilio.requests) == 1


async def test_refused_connection_is_transient(closing: Closing) -> None:
    """Nothing listening: the message cannot have been sent, so it is safe to retry."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sender = closing(
        TwilioSender(
            TwilioConfig(
                base_url=f"http://127.0.0.1:{port}",
                account_sid="AC" + "0" * 32,
                auth_token="t",
                from_="+15005550006",
            )
        )
    )
    with pytest.raises(TransientProviderError) as caught:
        await sender.send(sms_message())
    assert caught.value.code == "connect"


async def test_find_sent_pages_the_list_api_and_matches_the_body(
    fake_twilio: FakeTwilio, make_twilio_sender: TwilioSenderFactory
) -> None:
    """An accepted message is found by To and body through the paged list API (reconciliation)."""
    from dataclasses import replace
    from datetime import UTC, datetime

    from service.rendering.model import SmsContent

    sender = make_twilio_sender()
    original = sms_message()
    assert original.content.sms is not None
    sid = await sender.send(original)
    for n in range(3):  # newer messages to the same number push it to a later page
        other = replace(original.content, sms=SmsContent(f"other reminder {n}", "GSM-7", 1))
        await sender.send(replace(original, content=other))
    since = datetime.now(UTC)
    found = await sender.find_sent(PHONE, original.content.sms.text, since, page_size=1)
    missing = await sender.find_sent(PHONE, "never sent", since, page_size=1)
    assert found == sid
    assert missing is None
    gets = [r for r in fake_twilio.requests if r.method == "GET"]
    assert len(gets) >= 4 + 4  # four pages each time
    assert all(r.basic_auth == (fake_twilio.account_sid, fake_twilio.auth_token) for r in gets)


async def test_find_sent_sees_nothing_before_the_list_delay(
    fake_twilio: FakeTwilio, make_twilio_sender: TwilioSenderFactory
) -> None:
    """Twilio lists a message some time after accepting it: before that, not found."""
    from datetime import UTC, datetime

    fake_twilio.list_delay_s = 3600.0
    sender = make_twilio_sender()
    message = sms_message()
    assert message.content.sms is not None
    await sender.send(message)
    found = await sender.find_sent(PHONE, message.content.sms.text, datetime.now(UTC))
    assert found is None
