"""Rate limits toward a provider: sends are spaced at the configured rate across all tasks,
waiting is not an attempt, and a wait beyond the cap hands the message to the next provider."""

from __future__ import annotations

import asyncio
import io

from service.channels.base import OutboundMessage
from service.channels.console import ConsoleSender
from service.channels.dispatch import Dispatcher
from service.channels.ratelimit import TokenBucket
from service.config import Settings
from service.events import Channel
from service.wiring.channels import build_dispatcher
from tests.channels.conftest import ManualMonotonic, RecordingSleep, sms_message
from tests.clocks import StepClock


def test_bucket_spaces_reservations_at_the_rate() -> None:
    """At 2 per second with a burst of 1: the first goes now, then one every half second;
    a reservation that would wait beyond the cap takes nothing."""
    clock = ManualMonotonic()
    bucket = TokenBucket(2.0, burst=1, monotonic=clock)
    assert [bucket.reserve(10) for _ in range(4)] == [0.0, 0.5, 1.0, 1.5]
    assert bucket.reserve(1.9) is None
    assert bucket.reserve(2.0) == 2.0
    clock.advance(10)  # time refills the bucket, never beyond the burst
    assert bucket.reserve(0) == 0.0
    assert bucket.reserve(0) is None


async def test_concurrent_sends_share_one_bucket_and_wait_outside_the_attempt() -> None:
    """Five messages sent at once to a provider limited to 2/s wait 0, 0.5, 1, 1.5 and 2 s in
    total between them; each is still one attempt."""
    clock = ManualMonotonic()
    out = io.StringIO()
    sleep = RecordingSleep()
    dispatcher = Dispatcher(
        {"sms": ConsoleSender(Channel.SMS, out)},
        timeout_s=5,
        max_attempts=3,
        backoff_max_s=1,
        clock=StepClock(),
        sleep=sleep,
        rate_limits={"console": TokenBucket(2.0, burst=1, monotonic=clock)},
    )
    outcomes = await asyncio.gather(
        *(dispatcher.dispatch(sms_message(nid=f"e:sms:{n}")) for n in range(5))
    )
    assert [o.status for o in outcomes] == ["sent"] * 5
    assert [o.attempts for o in outcomes] == [1] * 5
    assert sorted(sleep.waits) == [0.5, 1.0, 1.5, 2.0]
    assert out.getvalue().count("[console] SMS") == 5


async def test_no_token_in_time_goes_to_the_next_provider_or_fails_as_rate_limited() -> None:
    """With no wait allowed, the second message skips the exhausted first provider; with no
    second provider it fails as rate_limited, sent nowhere."""
    clock = ManualMonotonic()
    first, second = io.StringIO(), io.StringIO()
    primary = ConsoleSender(Channel.SMS, first)
    backup = _Renamed(ConsoleSender(Channel.SMS, second), "backup")
    dispatcher = Dispatcher(
        {"sms": [primary, backup], "sms:1": primary},
        timeout_s=5,
        max_attempts=1,
        backoff_max_s=1,
        clock=StepClock(),
        sleep=RecordingSleep(),
        rate_limits={"console": TokenBucket(1.0, burst=1, monotonic=clock)},
        rate_limit_max_wait_s=0,
    )
    one = await dispatcher.dispatch(sms_message(nid="e:sms:1"))
    two = await dispatcher.dispatch(sms_message(nid="e:sms:2"))
    three = await dispatcher.dispatch(sms_message(phone="+14155550123", nid="e:sms:3"))
    assert (one.provider, two.provider) == ("console", "backup")
    assert two.providers_tried == ("backup",)
    assert (three.status, three.reason, three.attempts) == ("failed", "rate_limited", 0)
    assert first.getvalue().count("[console]") == 1
    assert second.getvalue().count("[console]") == 1


async def test_rate_limits_come_from_settings() -> None:
    """NOTIFIER_PROVIDER_RATE_LIMITS=console:4 spaces console sends a quarter second apart."""
    sleep = RecordingSleep()
    clock = ManualMonotonic()
    settings = Settings(provider_rate_limits="console:4")
    async with build_dispatcher(
        settings, out=io.StringIO(), clock=StepClock(), sleep=sleep, monotonic=clock
    ) as dispatcher:
        for n in range(6):
            await dispatcher.dispatch(sms_message(nid=f"e:sms:{n}"))
    # A burst of 4 (one second's worth), then a quarter second per message.
    assert sleep.waits == [0.25, 0.5]


class _Renamed:
    """A sender under another provider name (a second console standing in for a backup)."""

    def __init__(self, inner: ConsoleSender, name: str) -> None:
        self._inner = inner
        self._name = name

    @property
    def provider(self) -> str:
        return self._name

    @property
    def channel(self) -> Channel:
        return self._inner.channel

    async def send(self, message: OutboundMessage) -> str:
        return await self._inner.send(message)

    async def aclose(self) -> None:
        await self._inner.aclose()
