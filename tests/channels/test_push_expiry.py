"""Every push carries an expiry and a collapse id, in each provider's own fields, checked by
fakes that refuse what the real providers refuse; through the running app the expiry is the
end of the borrower's contact window that day, or the stage's push_ttl."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import yaml

from service.channels.base import OutboundMessage
from service.channels.fcm import FcmConfig, FcmSender
from service.channels.google_oauth import load_service_account
from service.channels.jpush import JPushConfig, JPushSender
from service.channels.push_options import collapse_id
from service.embedded_broker import EmbeddedBroker
from service.events import PushProvider
from service.policy import load_policy
from service.policy.config import PolicyError, parse_policy
from service.policy.expiry import push_expires_at
from service.policy.model import ContactWindow
from tests.builders import event_dict
from tests.channels.helpers import FIXED_NOW, fixed_clock, push_message
from tests.conftest import Closing
from tests.e2e.conftest import MORNING_IN_SHANGHAI, processed, running_app, service_settings
from tests.fakes import FakeFcm, FakeTwilio
from tests.fakes.jpush import FakeJPush
from tests.kafka_tools import produce_events
from tests.waiting import eventually

SHANGHAI = ZoneInfo("Asia/Shanghai")
WINDOW = ContactWindow()  # 08:00-21:00


def with_expiry(message: OutboundMessage, expires_at: datetime | None) -> OutboundMessage:
    return OutboundMessage(
        message.notification_id,
        message.channel,
        message.recipient,
        message.content,
        push_provider=message.push_provider,
        expires_at=expires_at,
    )


# --- the expiry itself (pure) ---------------------------------------------------------------


def test_default_expiry_is_the_end_of_the_local_contact_window() -> None:
    """A push sent at 10:00 in Shanghai expires at 21:00 Shanghai time the same day."""
    now = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai
    expires = push_expires_at(now, zone=SHANGHAI, window=WINDOW, ttl=None)
    assert expires == datetime(2026, 11, 20, 21, 0, tzinfo=SHANGHAI)


def test_stage_ttl_wins_and_a_late_send_expires_at_once() -> None:
    """A stage's push_ttl replaces the window end; a send after the window closed gets no
    storage time at all (expiry = now), never the next morning."""
    now = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)
    ttl = push_expires_at(now, zone=SHANGHAI, window=WINDOW, ttl=timedelta(hours=4))
    assert ttl == now + timedelta(hours=4)
    late = datetime(2026, 11, 20, 13, 30, tzinfo=UTC)  # 21:30 in Shanghai
    assert push_expires_at(late, zone=SHANGHAI, window=WINDOW, ttl=None) == late


def test_policy_push_ttl_is_validated() -> None:
    """push_ttl parses as an ISO 8601 duration per stage, and 0 or more than 10 days is a
    policy error naming the key."""
    base = load_policy(None).model_dump(mode="json", by_alias=True)
    base["stages"]["due_today"]["push_ttl"] = "PT4H"
    assert parse_policy(base).stages["due_today"].push_ttl == timedelta(hours=4)  # type: ignore[index]
    for bad in ("PT0S", "P11D"):
        base["stages"]["due_today"]["push_ttl"] = bad
        with pytest.raises(PolicyError, match=r"stages\.due_today\.push_ttl"):
            parse_policy(base)


# --- FCM ------------------------------------------------------------------------------------


def fcm_sender(fake: FakeFcm) -> FcmSender:
    return FcmSender(
        FcmConfig(
            base_url=fake.base_url,
            project_id=fake.project_id,
            account=load_service_account(fake.account.path),
            token_url=fake.token_url,
        ),
        clock=fixed_clock,
    )


async def test_fcm_push_carries_ttl_and_collapse_ids(tmp_path: Path, closing: Closing) -> None:
    """android.ttl counts down to the expiry, apns-expiration is its UNIX time, and
    collapse_key, notification tag and apns-collapse-id are one id derived from the
    notification id: the same for a repeated send, different for another notification."""
    message = with_expiry(push_message(PushProvider.FCM), FIXED_NOW + timedelta(hours=2))
    other = push_message(PushProvider.FCM, nid="evt-2:push:0")
    async with FakeFcm(tmp_path) as fake:
        sender = closing(fcm_sender(fake))
        await sender.send(message)
        await sender.send(message)
        await sender.send(other)
    first, again, third = fake.delivered
    android, headers = first["android"], first["apns"]["headers"]
    assert android["ttl"] == "7200s"
    assert headers["apns-expiration"] == str(int((FIXED_NOW + timedelta(hours=2)).timestamp()))
    cid = collapse_id(message.notification_id)
    assert android["collapse_key"] == android["notification"]["tag"] == cid
    assert headers["apns-collapse-id"] == cid
    assert len(cid.encode()) <= 64
    assert again["android"]["collapse_key"] == cid
    assert third["android"]["collapse_key"] != cid


async def test_fcm_ttl_never_exceeds_four_weeks_or_goes_negative(
    tmp_path: Path, closing: Closing
) -> None:
    """An expiry beyond FCM's 4 weeks is capped (the fake, like FCM, refuses more); one already
    passed is 0s (deliver now or never)."""
    far = with_expiry(push_message(PushProvider.FCM), FIXED_NOW + timedelta(days=60))
    past = with_expiry(push_message(PushProvider.FCM), FIXED_NOW - timedelta(minutes=1))
    async with FakeFcm(tmp_path) as fake:
        sender = closing(fcm_sender(fake))
        await sender.send(far)
        await sender.send(past)
    assert [m["android"]["ttl"] for m in fake.delivered] == ["2419200s", "0s"]


# --- JPush ----------------------------------------------------------------------------------


async def test_jpush_push_carries_time_to_live_and_apns_collapse_id() -> None:
    """options.time_to_live counts down to the expiry (capped by the configured TTL) and
    options.apns_collapse_id is the collapse id of the notification."""
    fake = await FakeJPush(app_key="k", master_secret="s").start()
    sender = JPushSender(JPushConfig(fake.base_url, "k", "s"), clock=fixed_clock)
    message = push_message(PushProvider.JPUSH)
    try:
        await sender.send(with_expiry(message, FIXED_NOW + timedelta(hours=3)))
        await sender.send(with_expiry(message, FIXED_NOW + timedelta(days=9)))
    finally:
        await sender.aclose()
        await fake.aclose()
    soon, far = (p["options"] for p in fake.pushes)
    assert soon["time_to_live"] == 3 * 3600
    assert far["time_to_live"] == 86_400  # JPUSH_TIME_TO_LIVE_S is the upper bound
    assert soon["apns_collapse_id"] == collapse_id(message.notification_id)


@pytest.mark.parametrize(
    "options",
    [{"time_to_live": 864_001}, {"time_to_live": "3600"}, {"apns_collapse_id": "x" * 65}],
)
async def test_fake_jpush_refuses_what_jpush_refuses(
    options: dict[str, Any], closing: Closing
) -> None:
    """The fake answers 1003 to a time_to_live beyond 10 days or not an integer, and to an
    apns_collapse_id over 64 bytes, as JPush does."""
    fake = closing(await FakeJPush(app_key="k", master_secret="s").start())
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{fake.base_url}/v3/push",
            json={"platform": ["android"], "options": options},
            auth=("k", "s"),
        )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == 1003


# --- through the running app ----------------------------------------------------------------


@pytest.mark.parametrize("push_ttl", [None, "PT2H"])
async def test_app_pushes_expire_at_the_window_end_or_after_the_stage_ttl(
    kafka_broker: EmbeddedBroker, tmp_path: Path, push_ttl: str | None
) -> None:
    """The service as `run` wires it sends a due-today push (10:00 in Shanghai) that FCM is
    told to drop at 21:00 local time (39600 s), or after the stage's push_ttl of 2 hours."""
    policy_file = None
    if push_ttl is not None:
        data = load_policy(None).model_dump(mode="json", by_alias=True)
        data["stages"]["due_today"]["push_ttl"] = push_ttl
        policy_file = tmp_path / "policy.yaml"
        policy_file.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    async with FakeTwilio() as twilio, FakeFcm(tmp_path) as fcm:
        settings = await service_settings(
            kafka_broker.bootstrap_servers,
            tmp_path,
            twilio,
            fcm,
            **({"policy_file": policy_file} if policy_file else {}),
        )
        event = event_dict(
            borrower_id="exp-1",
            event_id=f"exp-1-{push_ttl}",
            days_past_due=0,
            timezone="Asia/Shanghai",
        )
        await produce_events(settings.kafka_bootstrap_servers, settings.input_topic, [event])
        async with running_app(settings) as app:
            await eventually(lambda: processed(app) == 1)
    [push] = fcm.delivered
    expected = 2 * 3600 if push_ttl else 11 * 3600  # 10:00 -> 21:00 Shanghai
    assert push["android"]["ttl"] == f"{expected}s"
    expiry = MORNING_IN_SHANGHAI + timedelta(seconds=expected)
    assert push["apns"]["headers"]["apns-expiration"] == str(int(expiry.timestamp()))
    assert push["android"]["collapse_key"] == push["apns"]["headers"]["apns-collapse-id"]
