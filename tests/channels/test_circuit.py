"""Circuit breakers: open on an error rate, skip the provider while open, probe after the
cool-down, close on success; the state is the notifier_circuit_open metric. Time is moved by
hand, never waited for."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from service.channels.circuit import CircuitBreaker, CircuitConfig, CircuitState
from service.channels.dispatch import Dispatcher
from service.wiring.channels import build_http_gateway_sender
from tests.channels.conftest import (
    ManualMonotonic,
    RecordingSleep,
    provider_settings,
    sms_message,
    twilio_sender,
)
from tests.clocks import StepClock
from tests.fakes import FakeTwilio
from tests.fakes.http_gateway import FakeHttpGateway


def state_of(breaker: CircuitBreaker) -> CircuitState:
    """The breaker's state, read afresh (mypy would keep an earlier assertion's narrowing)."""
    return breaker.state


def circuit_gauge(provider: str) -> float | None:
    return REGISTRY.get_sample_value("notifier_circuit_open", {"provider": provider})


def test_opens_at_the_error_rate_only_after_the_minimum_calls() -> None:
    """Two failures alone do not open it (too few calls); at four calls with half failed it
    opens, refuses calls and says so on the metric."""
    clock = ManualMonotonic()
    breaker = CircuitBreaker(
        "unit-a", CircuitConfig(window_s=60, min_calls=4, error_rate=0.5), monotonic=clock
    )
    breaker.failure()
    breaker.failure()
    assert state_of(breaker) is CircuitState.CLOSED
    breaker.success()
    assert state_of(breaker) is CircuitState.CLOSED  # 2 of 3, below the minimum of 4 calls
    breaker.success()  # 2 of 4 = 50 %, but a success never opens it
    assert state_of(breaker) is CircuitState.CLOSED
    breaker.failure()  # 3 of 5
    assert state_of(breaker) is CircuitState.OPEN
    assert breaker.allow() is False
    assert circuit_gauge("unit-a") == 1


def test_old_failures_leave_the_window() -> None:
    """Failures older than the window no longer count toward the error rate."""
    clock = ManualMonotonic()
    breaker = CircuitBreaker(
        "unit-b", CircuitConfig(window_s=10, min_calls=3, error_rate=0.6), monotonic=clock
    )
    breaker.failure()
    breaker.failure()
    clock.advance(11)
    breaker.failure()
    breaker.success()
    breaker.success()
    assert state_of(breaker) is CircuitState.CLOSED  # 1 of 3 within the window


def test_half_opens_after_the_cool_down_with_one_probe_and_closes_on_success() -> None:
    """Open refuses until the cool-down has passed; then exactly one probe goes through; its
    success closes the circuit and the metric returns to 0."""
    clock = ManualMonotonic()
    breaker = CircuitBreaker(
        "unit-c", CircuitConfig(min_calls=1, error_rate=1.0, cool_down_s=30), monotonic=clock
    )
    breaker.failure()
    assert state_of(breaker) is CircuitState.OPEN
    clock.advance(29.9)
    assert breaker.allow() is False
    clock.advance(0.1)
    assert breaker.allow() is True
    assert state_of(breaker) is CircuitState.HALF_OPEN
    assert breaker.allow() is False  # one probe at a time
    assert circuit_gauge("unit-c") == 1
    breaker.success()
    assert state_of(breaker) is CircuitState.CLOSED
    assert breaker.allow() is True
    assert circuit_gauge("unit-c") == 0


def test_failed_probe_opens_again_for_a_new_cool_down() -> None:
    """A probe that fails re-opens the circuit, and the cool-down starts over."""
    clock = ManualMonotonic()
    breaker = CircuitBreaker(
        "unit-d", CircuitConfig(min_calls=1, error_rate=1.0, cool_down_s=30), monotonic=clock
    )
    breaker.failure()
    clock.advance(30)
    assert breaker.allow() is True
    breaker.failure()
    assert state_of(breaker) is CircuitState.OPEN
    clock.advance(20)
    assert breaker.allow() is False
    clock.advance(10)
    assert breaker.allow() is True


def test_an_abandoned_probe_frees_the_probe_slot() -> None:
    """A probe cancelled before it reached the provider lets the next call probe instead."""
    clock = ManualMonotonic()
    breaker = CircuitBreaker(
        "unit-e", CircuitConfig(min_calls=1, error_rate=1.0, cool_down_s=1), monotonic=clock
    )
    breaker.failure()
    clock.advance(1)
    assert breaker.allow() is True
    breaker.abandon()
    assert breaker.allow() is True


async def test_open_circuit_sends_to_the_next_provider_until_the_probe_succeeds(
    twilio: FakeTwilio, gateway: FakeHttpGateway
) -> None:
    """Twilio failing twice opens its circuit; the third message goes straight to the gateway
    without touching Twilio; after the cool-down a probe goes to Twilio, succeeds and closes
    the circuit."""
    clock = ManualMonotonic()
    breaker = CircuitBreaker(
        "twilio", CircuitConfig(min_calls=2, error_rate=0.5, cool_down_s=30), monotonic=clock
    )
    dispatcher = Dispatcher(
        {
            "sms": [
                twilio_sender(twilio),
                build_http_gateway_sender(provider_settings(gateway=gateway)),
            ]
        },
        timeout_s=5,
        max_attempts=1,
        backoff_max_s=1,
        clock=StepClock(),
        sleep=RecordingSleep(),
        circuits={"twilio": breaker},
    )
    try:
        twilio.fail_next(2)
        first = await dispatcher.dispatch(sms_message(nid="e:sms:1"))
        second = await dispatcher.dispatch(sms_message(nid="e:sms:2"))
        assert state_of(breaker) is CircuitState.OPEN
        assert circuit_gauge("twilio") == 1
        third = await dispatcher.dispatch(sms_message(nid="e:sms:3"))
        assert len(twilio.requests) == 2
        clock.advance(30)
        fourth = await dispatcher.dispatch(sms_message(nid="e:sms:4"))
    finally:
        await dispatcher.aclose()
    assert [o.provider for o in (first, second, third)] == ["http_gateway"] * 3
    assert first.providers_tried == ("twilio", "http_gateway")
    assert third.providers_tried == ("http_gateway",)
    assert third.attempts == 1
    assert (fourth.status, fourth.provider) == ("sent", "twilio")
    assert state_of(breaker) is CircuitState.CLOSED
    assert circuit_gauge("twilio") == 0
    assert len(twilio.sent) == 1
    assert len(gateway.requests) == 3


async def test_open_circuit_with_nowhere_to_go_fails_without_calling(twilio: FakeTwilio) -> None:
    """With a single provider whose circuit is open the message fails as circuit_open and the
    provider sees no request."""
    clock = ManualMonotonic()
    breaker = CircuitBreaker("twilio", CircuitConfig(min_calls=1, error_rate=1.0), monotonic=clock)
    breaker.failure()
    dispatcher = Dispatcher(
        {"sms": twilio_sender(twilio)},
        timeout_s=5,
        max_attempts=3,
        backoff_max_s=1,
        clock=StepClock(),
        sleep=RecordingSleep(),
        circuits={"twilio": breaker},
    )
    try:
        outcome = await dispatcher.dispatch(sms_message())
    finally:
        await dispatcher.aclose()
    assert (outcome.status, outcome.reason, outcome.attempts) == ("failed", "circuit_open", 0)
    assert twilio.requests == []


@settings(max_examples=200, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.booleans(), st.floats(min_value=0, max_value=4, allow_nan=False)),
        max_size=120,
    )
)
def test_opens_exactly_when_the_rolling_window_reaches_the_error_rate(
    steps: list[tuple[bool, float]],
) -> None:
    """Against a model that recounts every call in the window: the breaker opens on the same
    failure, never earlier or later, however calls and pauses interleave."""
    config = CircuitConfig(window_s=10, min_calls=5, error_rate=0.5)
    clock = ManualMonotonic()
    breaker = CircuitBreaker("unit-model", config, monotonic=clock)
    calls: list[tuple[int, bool]] = []  # (second, failed) since the last reset
    for failed, pause in steps:
        clock.advance(pause)
        second = int(clock())
        calls = [(s, f) for s, f in calls if s > second - config.window_s]
        calls.append((second, failed))
        (breaker.failure if failed else breaker.success)()
        total, failures = len(calls), sum(f for _, f in calls)
        should_open = failed and total >= config.min_calls and failures / total >= 0.5
        assert (state_of(breaker) is CircuitState.OPEN) is should_open
        if should_open:
            return  # what follows an opening is the cool-down's business (tests above)
