"""Automated calls through the running service against the fake Twilio Voice API.

The app plans the call (early_overdue, high risk: SMS, push and a call), renders the script in
the borrower's locale, places it with Twilio Voice (machine detection on), and takes the call's
outcome from the StatusCallback the fake sends, signed with the official `twilio` library's
RequestValidator, through the receipt webhook into the ledger and the results topic.
"""

from __future__ import annotations

import asyncio
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from service.embedded_broker import EmbeddedBroker
from tests.builders import event_dict
from tests.clocks import fixed_clock
from tests.e2e.conftest import processed, results_of, running_app, service_settings
from tests.fakes import FakeFcm, FakeTwilio
from tests.fakes.twilio_voice import FakeTwilioVoice
from tests.kafka_tools import produce_events
from tests.waiting import eventually

# 17:00 in Shanghai, 09:00 in London: inside both borrowers' contact windows.
AFTERNOON_IN_SHANGHAI = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
OUTCOMES = ("human", "no-answer", "busy", "machine")
# (locale, zone, phone prefix): the en-US borrowers live in London.
LOCALES = (("zh-CN", "Asia/Shanghai", "+86138001"), ("en-US", "Europe/London", "+44770090"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def call_event(locale: str, zone: str, phone: str, outcome: str) -> dict[str, Any]:
    """Ten days overdue, high risk: the default policy texts, pushes and calls."""
    return event_dict(
        borrower_id=f"v-{locale}-{outcome}",
        event_id=f"evt-call-{locale}-{outcome}",
        days_past_due=10,
        risk_level="high",
        locale=locale,
        timezone=zone,
        phone=phone,
    )


async def test_calls_in_both_locales_end_with_the_outcome_their_callbacks_report(
    kafka_broker: EmbeddedBroker, tmp_path: Path
) -> None:
    """Eight calls (answered, no-answer, busy, machine; zh-CN and en-US): each result says
    `channel: voice`, `sent` by twilio_voice with the call sid, then `delivered` for the person
    who answered and `undelivered` with the status (or `machine`) otherwise; a person hears the
    script in their language after the limited-content message, a machine only the latter."""
    hooks = free_port()
    async with (
        FakeTwilio() as twilio,
        FakeFcm(tmp_path) as fcm,
        FakeTwilioVoice() as voice,
    ):
        settings = await service_settings(
            kafka_broker.bootstrap_servers,
            tmp_path,
            twilio,
            fcm,
            http_host="127.0.0.1",
            receipts_http_port=hooks,
            receipts_public_url=f"http://127.0.0.1:{hooks}",
            voice_provider="twilio_voice",
            twilio_voice_base_url=voice.base_url,
            twilio_voice_from="+15005550007",
            twilio_voice_detection_pause_s=1,
            scheduler_interval_s=0.2,
        )
        events, phones = [], {}
        for locale, zone, prefix in LOCALES:
            for n, outcome in enumerate(OUTCOMES):
                phone = f"{prefix}{n:04d}"
                voice.outcomes[phone] = outcome
                phones[phone] = (locale, outcome)
                events.append(call_event(locale, zone, phone, outcome))
        await produce_events(settings.kafka_bootstrap_servers, settings.input_topic, events)
        async with running_app(settings, clock=fixed_clock(AFTERNOON_IN_SHANGHAI)) as app:
            await eventually(lambda: processed(app) == len(events))
            await eventually(lambda: len(voice.calls) == len(events))
            async with asyncio.timeout(60):
                for call in voice.calls.values():
                    await call.done.wait()
            # 3 results per event (SMS, push, call) and one outcome per call.
            results = await results_of(settings, expect=4 * len(events))

    assert set(voice.callback_answers) == {204}
    calls = [r for r in results if r["channel"] == "voice"]
    by_borrower: dict[str, list[dict[str, Any]]] = {}
    for r in calls:
        by_borrower.setdefault(r["borrower_id"], []).append(r)
    assert len(by_borrower) == len(events)
    for call in voice.calls.values():
        locale, outcome = phones[call.to]
        mine = by_borrower[f"v-{locale}-{outcome}"]
        statuses = [(r["status"], r["provider_code"]) for r in mine]
        expected_final = {
            "human": ("delivered", None),
            "no-answer": ("undelivered", "no-answer"),
            "busy": ("undelivered", "busy"),
            "machine": ("undelivered", "machine"),
        }[outcome]
        assert sorted(statuses, key=str) == sorted([("sent", None), expected_final], key=str)
        assert {r["provider"] for r in mine} == {"twilio_voice"}
        assert {r["provider_message_id"] for r in mine} == {call.sid}
        assert {r["rule"] for r in mine if r["status"] == "sent"} == {"early_overdue/high/voice"}
        assert {r["template"]["name"] for r in mine} == {f"voice/{locale}/early_overdue.j2"}
        # What the callee heard: the limited message first (no amount), the script for a person.
        limited = call.heard[0]
        assert f'<Say language="{locale}">' in limited
        assert "1,239.70" not in limited
        assert "1239.70" not in limited
        if outcome == "human":
            assert len(call.heard) == 2
            script = call.heard[1]
            assert f'<Say language="{locale}">' in script
            assert ("1,239.70" in script) or ("1239.70" in script)
        else:
            assert len(call.heard) == 1
