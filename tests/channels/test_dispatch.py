"""The dispatcher: routing, retries on transient errors only, attempt cap, timeouts as unknown,
metrics, and no personal data in its logs. Senders are the real ones against local fakes."""

from __future__ import annotations

import io
import logging
from collections.abc import Mapping
from datetime import timedelta

import pytest
from prometheus_client import REGISTRY

from service.channels.base import OutboundMessage, Sender
from service.channels.console import ConsoleSender
from service.channels.dispatch import REASONS, Dispatcher
from service.events import Channel, PushProvider
from service.observability.masking import mask_token
from tests.channels.conftest import (
    PHONE,
    TOKEN,
    RecordingSleep,
    fcm_sender,
    push_message,
    sms_message,
    twilio_sender,
)
from tests.clocks import StepClock
from tests.fakes import FakeFcm, FakeTwilio


def dispatcher(
    routes: Mapping[str, Sender],
    sleep: RecordingSleep,
    *,
    timeout_s: float = 5.0,
    max_attempts: int = 4,
    backoff_max_s: float = 30.0,
    clock: StepClock | None = None,
) -> Dispatcher:
    return Dispatcher(
        routes,
        timeout_s=timeout_s,
        max_attempts=max_attempts,
        backoff_max_s=backoff_max_s,
        clock=clock or StepClock(step=timedelta(seconds=1)),
        sleep=sleep,
    )


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_transient_errors_are_retried_until_sent(fake_twilio: FakeTwilio) -> None:
    """Two 503s then success: sent on the third attempt, two backoff waits, two retries counted."""
    fake_twilio.fail_next(2)
    sleep = RecordingSleep()
    clock = StepClock(step=timedelta(seconds=1))
    retries_before = sample("notifier_retries_total", provider="twilio")
    ok_before = sample("notifier_provider_attempts_total", provider="twilio", outcome="ok")
    d = dispatcher({"sms": twilio_sender(fake_twilio)}, sleep, clock=clock)
    try:
        outcome = await d.dispatch(sms_message())
    finally:
        await d.aclose()
    assert outcome.status == "sent"
    assert outcome.reason == "sent"
    assert outcome.provider == "twilio"
    assert outcome.provider_message_id == fake_twilio.sent[0].response["sid"]
    assert outcome.attempts == 3
    assert len(fake_twilio.requests) == 3
    assert len(sleep.waits) == 2
    assert all(0 < w <= 30 for w in sleep.waits)
    assert outcome.first_attempt_at is not None
    assert outcome.finished_at is not None
    assert outcome.first_attempt_at < outcome.finished_at
    assert sample("notifier_retries_total", provider="twilio") == retries_before + 2
    assert (
        sample("notifier_provider_attempts_total", provider="twilio", outcome="ok") == ok_before + 1
    )


async def test_attempts_are_capped(fake_twilio: FakeTwilio) -> None:
    """A provider that keeps failing is tried exactly max_attempts times, then failed."""
    fake_twilio.fail_next(10)
    sleep = RecordingSleep()
    d = dispatcher({"sms": twilio_sender(fake_twilio)}, sleep, max_attempts=3)
    try:
        outcome = await d.dispatch(sms_message())
    finally:
        await d.aclose()
    assert outcome.status == "failed"
    assert outcome.reason == "retries_exhausted"
    assert outcome.provider_code == "20500"
    assert outcome.attempts == 3
    assert len(fake_twilio.requests) == 3
    assert len(sleep.waits) == 2


async def test_retry_after_is_honoured(fake_twilio: FakeTwilio) -> None:
    """A 429 with Retry-After: 7 waits at least 7 s (never more than the cap) before retrying."""
    fake_twilio.throttle_next(retry_after="7")
    sleep = RecordingSleep()
    d = dispatcher({"sms": twilio_sender(fake_twilio)}, sleep, backoff_max_s=10)
    try:
        outcome = await d.dispatch(sms_message())
    finally:
        await d.aclose()
    assert outcome.status == "sent"
    assert outcome.attempts == 2
    assert len(sleep.waits) == 1
    assert 7 <= sleep.waits[0] <= 10


async def test_retry_after_beyond_cap_fails_without_early_retry(fake_fcm: FakeFcm) -> None:
    """If FCM asks for more patience than send_backoff_max_s allows, give up, don't retry early."""
    fake_fcm.throttle_next(retry_after="120")
    sleep = RecordingSleep()
    d = dispatcher({"push:fcm": fcm_sender(fake_fcm)}, sleep, backoff_max_s=30)
    try:
        outcome = await d.dispatch(push_message())
    finally:
        await d.aclose()
    assert outcome.status == "failed"
    assert outcome.reason == "provider_throttled"
    assert outcome.provider_code == "QUOTA_EXCEEDED"
    assert outcome.attempts == 1
    assert sleep.waits == []
    assert len(fake_fcm.sends) == 1


async def test_permanent_error_is_not_retried(fake_twilio: FakeTwilio) -> None:
    """An invalid number fails at once with Twilio's code; the provider sees one request."""
    fake_twilio.reject_next(21211)
    sleep = RecordingSleep()
    d = dispatcher({"sms": twilio_sender(fake_twilio)}, sleep)
    try:
        outcome = await d.dispatch(sms_message())
    finally:
        await d.aclose()
    assert (outcome.status, outcome.reason, outcome.provider_code) == (
        "failed",
        "provider_rejected",
        "21211",
    )
    assert outcome.attempts == 1
    assert sleep.waits == []
    assert len(fake_twilio.requests) == 1


async def test_opt_out_and_dead_token_are_their_own_reasons(
    fake_twilio: FakeTwilio, fake_fcm: FakeFcm
) -> None:
    """21610 (RecipientOptedOut) ends `opted_out_by_provider`, UNREGISTERED (TokenUnregistered)
    `token_unregistered`, each after one request: the reasons the ledger and upstream act on."""
    fake_twilio.unsubscribed.add(PHONE)
    fake_fcm.unregistered_tokens.add(TOKEN)
    routes: dict[str, Sender] = {
        "sms": twilio_sender(fake_twilio),
        "push:fcm": fcm_sender(fake_fcm),
    }
    d = dispatcher(routes, RecordingSleep())
    try:
        sms = await d.dispatch(sms_message())
        push = await d.dispatch(push_message())
    finally:
        await d.aclose()
    assert (sms.status, sms.reason, sms.provider_code) == (
        "failed",
        "opted_out_by_provider",
        "21610",
    )
    assert (push.status, push.reason, push.provider_code) == (
        "failed",
        "token_unregistered",
        "UNREGISTERED",
    )
    assert (sms.attempts, push.attempts) == (1, 1)


async def test_misconfiguration_is_its_own_reason(fake_fcm: FakeFcm) -> None:
    """SENDER_ID_MISMATCH is our fault, not the borrower's: reason provider_config_error."""
    fake_fcm.reject_next("SENDER_ID_MISMATCH")
    d = dispatcher({"push:fcm": fcm_sender(fake_fcm)}, RecordingSleep())
    try:
        outcome = await d.dispatch(push_message())
    finally:
        await d.aclose()
    assert (outcome.status, outcome.reason) == ("failed", "provider_config_error")


async def test_timeout_is_unknown_and_never_retried(fake_twilio: FakeTwilio) -> None:
    """A hung provider: the attempt times out, the outcome is unknown, nothing is resent."""
    fake_twilio.hang_next()
    sleep = RecordingSleep()
    ambiguous_before = sample(
        "notifier_provider_attempts_total", provider="twilio", outcome="ambiguous"
    )
    d = dispatcher({"sms": twilio_sender(fake_twilio, timeout_s=30)}, sleep, timeout_s=0.3)
    try:
        outcome = await d.dispatch(sms_message())
    finally:
        await d.aclose()
    assert outcome.status == "unknown"
    assert outcome.reason == "ambiguous_timeout"
    assert outcome.attempts == 1
    assert outcome.provider_message_id is None
    assert sleep.waits == []
    assert len(fake_twilio.requests) == 1
    assert (
        sample("notifier_provider_attempts_total", provider="twilio", outcome="ambiguous")
        == ambiguous_before + 1
    )


async def test_push_is_routed_by_provider_with_console_fallback(fake_fcm: FakeFcm) -> None:
    """FCM tokens go to the FCM route; APNs tokens without their own route use the "push" one."""
    out = io.StringIO()
    routes: dict[str, Sender] = {
        "push:fcm": fcm_sender(fake_fcm),
        "push": ConsoleSender(Channel.PUSH, out),
    }
    d = dispatcher(routes, RecordingSleep())
    try:
        fcm = await d.dispatch(push_message(provider=PushProvider.FCM))
        apns = await d.dispatch(push_message(token="apns-" + "a" * 60, provider=PushProvider.APNS))
    finally:
        await d.aclose()
    assert fcm.provider == "fcm"
    assert len(fake_fcm.delivered) == 1
    assert apns.provider == "console"
    assert f"apns:{mask_token('apns-' + 'a' * 60)}" in out.getvalue()


async def test_no_route_fails_without_raising() -> None:
    """A push with no push route configured fails with reason no_route and no provider."""
    d = dispatcher({"sms": ConsoleSender(Channel.SMS, io.StringIO())}, RecordingSleep())
    outcome = await d.dispatch(push_message(provider=PushProvider.JPUSH))
    await d.aclose()
    assert (outcome.status, outcome.reason, outcome.provider) == ("failed", "no_route", None)
    assert outcome.attempts == 0


class _BrokenSender:
    """An adapter with a bug: raises something outside the provider error taxonomy."""

    provider = "broken"
    channel = Channel.SMS
    closed = 0

    async def send(self, message: OutboundMessage) -> str:
        raise KeyError("sid")

    async def aclose(self) -> None:
        self.closed += 1


async def test_adapter_bug_is_unknown_not_a_crash() -> None:
    """An unexpected exception from an adapter becomes unknown (it may have sent), not a crash."""
    broken = _BrokenSender()
    d = dispatcher({"sms": broken, "push": broken}, RecordingSleep())
    outcome = await d.dispatch(sms_message())
    await d.aclose()
    assert (outcome.status, outcome.reason) == ("unknown", "ambiguous_adapter_error")
    assert outcome.attempts == 1
    assert broken.closed == 1  # one sender behind two routes is closed once


async def test_logs_carry_no_phone_or_token(
    fake_twilio: FakeTwilio, fake_fcm: FakeFcm, caplog: pytest.LogCaptureFixture
) -> None:
    """Across sent, retried, rejected, unknown and no-route outcomes, no log record holds the
    phone number or the push token, in its message or its structured fields."""
    caplog.set_level(logging.DEBUG)
    fake_twilio.fail_next(1)
    fake_fcm.reject_next("UNREGISTERED")
    routes: dict[str, Sender] = {
        "sms": twilio_sender(fake_twilio),
        "push:fcm": fcm_sender(fake_fcm),
    }
    d = dispatcher(routes, RecordingSleep(), timeout_s=1.0)
    try:
        outcomes = [await d.dispatch(sms_message()), await d.dispatch(push_message())]
        fake_twilio.reject_next(21211)
        outcomes.append(await d.dispatch(sms_message()))
        fake_twilio.hang_next()
        outcomes.append(await d.dispatch(sms_message()))
        outcomes.append(await d.dispatch(push_message(provider=PushProvider.JPUSH)))
    finally:
        await d.aclose()
    assert [o.reason for o in outcomes] == [
        "sent",
        "token_unregistered",
        "provider_rejected",
        "ambiguous_timeout",
        "no_route",
    ]
    assert caplog.records
    for record in caplog.records:
        text = f"{record.getMessage()} {vars(record)}"
        assert PHONE not in text
        assert PHONE[1:] not in text
        assert TOKEN not in text


def test_every_reason_is_documented() -> None:
    """Each reason code the dispatcher can return is listed in docs/channels.md."""
    from tests.conftest import REPO_ROOT

    doc = (REPO_ROOT / "docs" / "channels.md").read_text(encoding="utf-8")
    missing = [reason for reason in REASONS if f"`{reason}`" not in doc]
    assert missing == []


async def test_ambiguous_push_is_resent_once_with_the_same_collapse_id(
    fake_fcm: FakeFcm, fake_twilio: FakeTwilio
) -> None:
    """on_ambiguous resend (push): a timed-out push goes once more with the same collapse id,
    so the device shows one; SMS (hold) stays unknown with its single request."""
    fake_fcm.hang_next()
    fake_twilio.hang_next()
    d = Dispatcher(
        {"push:fcm": fcm_sender(fake_fcm), "sms": twilio_sender(fake_twilio, timeout_s=30)},
        timeout_s=0.3,
        max_attempts=4,
        backoff_max_s=30.0,
        clock=StepClock(step=timedelta(seconds=1)),
        sleep=RecordingSleep(),
        on_ambiguous={"sms": "hold", "push": "resend"},
    )
    try:
        push = await d.dispatch(push_message())
        sms = await d.dispatch(sms_message())
    finally:
        await d.aclose()
    assert (push.status, push.attempts) == ("sent", 2)
    sends = [r for r in fake_fcm.requests if r.json is not None and "message" in r.json]
    collapse = {r.json["message"]["android"]["collapse_key"] for r in sends if r.json}
    assert len(sends) == 2
    assert len(collapse) == 1
    assert (sms.status, sms.reason, len(fake_twilio.requests)) == (
        "unknown",
        "ambiguous_timeout",
        1,
    )
