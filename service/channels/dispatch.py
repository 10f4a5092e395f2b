"""Dispatch: route a message to its providers, retry transient failures, fail over, and say
how it ended.

`Dispatcher.dispatch` never raises for provider trouble; it returns a `DispatchOutcome` whose
`reason` is a machine-readable code (see docs/channels.md):

  sent      sent                  the provider accepted the message
  failed    provider_rejected     permanent error (invalid number, payload refused, ...)
  failed    opted_out_by_provider RecipientOptedOut: the ledger records the opt-out
  failed    token_unregistered    TokenUnregistered: upstream drops the push token
  failed    provider_config_error ProviderMisconfigured: our side (credentials, sender id)
  failed    retries_exhausted     transient errors until the attempt cap
  failed    provider_throttled    the provider asked us to wait longer than send_backoff_max_s
  failed    no_route              no sender for this channel / push provider
  failed    circuit_open          the provider's circuit breaker is open (and no other took it)
  failed    rate_limited          no rate-limit token within rate_limit_max_wait_s
  unknown   ambiguous_timeout     an attempt timed out after the request may have been accepted
  unknown   ambiguous_connection_lost / ambiguous_unreadable_response / ambiguous_adapter_error

Attempt journal: right before each attempt's request is handed to the sender (after the rate
limit token and the connection slot), `attempt_journal.attempt_started` records durably that
this claim may now reach the provider; after a transient refusal (nothing accepted),
`attempt_ended` records that it cannot have. So after a crash the ledger tells a claim that
never left (sent again) from one that may be on the wire (ambiguous). If the journal cannot
write, the attempt is not made: the error propagates and nothing is sent.

`unknown` is not retried by default: no provider offers an idempotency key, so a resend could
deliver the reminder twice. Tenacity retries `TransientProviderError` only. Where
`on_ambiguous` says `resend` for the channel (push with a collapse id: the device shows one
notification either way), an ambiguous attempt is made once more at the same provider; if that
one is ambiguous or refused too, the outcome stays `unknown`.

Failover (the same notification id, under the same ledger claim): the next provider of the
route is tried after retries_exhausted, provider_throttled, circuit_open, rate_limited and
provider_config_error (our credentials at that provider: it refused before accepting). Never
after an ambiguous outcome (the first provider may have sent it) nor after any other permanent
refusal (an invalid number is invalid everywhere). Each of these is an `except` on the error's
type (service/errors.py draws the tree), never a flag on it. The outcome names the provider that
decided it; `attempts` counts the attempts at every provider.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol, cast

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from service.channels.base import DispatchOutcome, OutboundMessage, Sender
from service.channels.circuit import CircuitBreaker
from service.channels.errors import (
    AmbiguousProviderError,
    PermanentProviderError,
    ProviderError,
    ProviderMisconfigured,
    RecipientOptedOut,
    TokenUnregistered,
    TransientProviderError,
)
from service.channels.ratelimit import TokenBucket
from service.channels.routing import (
    country_codes,
    route_key_candidates,
    route_key_candidates_for_sms,
)
from service.events import Channel, DeliveryStatus, PushProvider
from service.observability import metrics, tracing

__all__ = [
    "REASONS",
    "AttemptJournal",
    "DispatchOutcome",
    "Dispatcher",
    "OnAmbiguous",
    "resends_ambiguous",
]

log = logging.getLogger(__name__)

REASONS: Mapping[str, str] = {
    "sent": "the provider accepted the message",
    "provider_rejected": "permanent provider error; provider_code says which",
    "opted_out_by_provider": "the recipient opted out at the provider (e.g. Twilio 21610)",
    "token_unregistered": "the push token is no longer registered at the provider",
    "provider_config_error": "permanent error caused by our configuration (credentials, sender)",
    "retries_exhausted": "transient errors on every allowed attempt",
    "provider_throttled": "Retry-After longer than send_backoff_max_s; not retried early",
    "no_route": "no sender configured for this channel or push provider",
    "circuit_open": "the provider's circuit breaker is open and no other provider took it",
    "rate_limited": "no rate-limit token for the provider within rate_limit_max_wait_s",
    "ambiguous_timeout": "no answer within the attempt timeout; the provider may have sent it",
    "ambiguous_connection_lost": "connection lost after the request was sent",
    "ambiguous_unreadable_response": "accepted, but the answer carried no message id",
    "ambiguous_adapter_error": "the adapter failed unexpectedly mid-send",
}

_INITIAL_BACKOFF_S = 0.5

OnAmbiguous = Mapping[str, Literal["hold", "resend"]]


def resends_ambiguous(
    rules: OnAmbiguous, channel: Channel, push_provider: PushProvider | None
) -> bool:
    """Whether an ambiguous send of this channel (and push provider) is sent once more.

    The most specific key wins: "push:fcm", then "push"; nothing configured means hold.
    """
    if push_provider is not None:
        specific = rules.get(f"{channel.value}:{push_provider.value}")
        if specific is not None:
            return specific == "resend"
    return rules.get(channel.value, "hold") == "resend"


class AttemptJournal(Protocol):
    """Where the start and the certain end of each attempt is recorded (the ledger)."""

    async def attempt_started(self, notification_id: str, now: datetime) -> None: ...

    async def attempt_ended(self, notification_id: str, now: datetime) -> None: ...


class _RetryAfterTooLong(Exception):
    """The provider's Retry-After exceeds our longest wait: stop rather than retry early."""


class _CircuitOpen(Exception):
    """The provider's circuit breaker refused the call: nothing was sent."""


class _RateLimited(Exception):
    """No rate-limit token within the wait cap: nothing was sent."""


@dataclass(slots=True)
class _Tally:
    """Attempts of one dispatch across every provider it tried."""

    attempts: int = 0
    first_attempt_at: datetime | None = None
    tried: list[str] = field(default_factory=list)


class Dispatcher:
    """Routes a message to its providers in failover order; owns the senders.

    `routes` maps a route key (see service/channels/routing.py: "sms", "sms:86", "push:fcm",
    "push") to one sender or to senders in failover order. `circuits` and `rate_limits` are per
    provider name (`Sender.provider`); a provider without one is never short-circuited or
    limited.
    """

    def __init__(
        self,
        routes: Mapping[str, Sender | Sequence[Sender]],
        *,
        timeout_s: float,
        max_attempts: int,
        backoff_max_s: float,
        clock: Callable[[], datetime],
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        circuits: Mapping[str, CircuitBreaker] | None = None,
        rate_limits: Mapping[str, TokenBucket] | None = None,
        rate_limit_max_wait_s: float = 5.0,
        max_concurrent: int | None = None,
        attempt_journal: AttemptJournal | None = None,
        on_ambiguous: OnAmbiguous | None = None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self._routes: dict[str, tuple[Sender, ...]] = {
            key: _as_tuple(value) for key, value in routes.items()
        }
        self._sms_codes = country_codes(self._routes)
        # Attempts at one sender at a time. Waiting for a slot happens *before* the attempt's
        # timeout starts: a message that never left must not time out as "ambiguous" (under
        # load, requests queued in httpx's pool did, and were reported `unknown`).
        senders = {id(s): s for group in self._routes.values() for s in group}
        self._slots: dict[int, asyncio.Semaphore] = (
            {key: asyncio.Semaphore(max_concurrent) for key in senders} if max_concurrent else {}
        )
        self._timeout_s = timeout_s
        # Set by the composition root once the ledger exists (service/app.py).
        self.attempt_journal = attempt_journal
        self._on_ambiguous = dict(on_ambiguous or {})
        self._max_attempts = max_attempts
        self._backoff_max_s = backoff_max_s
        self._clock = clock
        self._sleep = sleep
        self._circuits = dict(circuits or {})
        self._rate_limits = dict(rate_limits or {})
        self._rate_limit_max_wait_s = rate_limit_max_wait_s
        # 0.5 s, 1 s, 2 s, ... plus up to 0.5 s of jitter so retries of many lanes spread out.
        self._backoff = wait_exponential(
            multiplier=_INITIAL_BACKOFF_S, max=backoff_max_s
        ) + wait_random(0, _INITIAL_BACKOFF_S)
        # Built once: a dispatch runs per notification, and tenacity's strategies cost more to
        # build than the successful first attempt costs to make.
        self._stop = stop_after_attempt(max_attempts)
        self._retry_transient = retry_if_exception_type(TransientProviderError)

    def routes_for(self, message: OutboundMessage) -> tuple[Sender, ...]:
        """The senders for `message`, in failover order (empty: no route)."""
        for key in route_key_candidates(message, self._sms_codes):
            senders = self._routes.get(key)
            if senders:
                return senders
        return ()

    def sms_providers_for(self, recipient: str) -> tuple[str, ...]:
        """The providers an SMS to `recipient` may go through, in failover order."""
        for key in route_key_candidates_for_sms(recipient, self._sms_codes):
            senders = self._routes.get(key)
            if senders:
                return tuple(sender.provider for sender in senders)
        return ()

    def sender_named(self, provider: str) -> Sender | None:
        """The sender of this provider, if a route uses it (e.g. for reconciliation)."""
        for senders in self._routes.values():
            for sender in senders:
                if sender.provider == provider:
                    return sender
        return None

    async def dispatch(self, message: OutboundMessage) -> DispatchOutcome:
        senders = self.routes_for(message)
        ctx: dict[str, object] = {
            "notification_id": message.notification_id,
            "channel": message.channel.value,
        }
        if not senders:
            log.warning("no sender for message", extra={**ctx, "push": _push_name(message)})
            return DispatchOutcome(
                DeliveryStatus.FAILED, "no_route", None, finished_at=self._clock()
            )
        tally = _Tally()
        outcome: DispatchOutcome | None = None
        for index, sender in enumerate(senders):
            outcome, may_fail_over = await self._dispatch_to(sender, message, tally, ctx)
            if not may_fail_over or index + 1 == len(senders):
                break
            nxt = senders[index + 1].provider
            metrics.FAILOVERS.labels(from_provider=sender.provider, to_provider=nxt).inc()
            log.warning(
                "failing over to the next provider",
                extra={**ctx, "provider": sender.provider, "next": nxt, "reason": outcome.reason},
            )
        assert outcome is not None
        return dataclasses.replace(outcome, providers_tried=tuple(tally.tried))

    async def _dispatch_to(
        self,
        sender: Sender,
        message: OutboundMessage,
        tally: _Tally,
        base_ctx: Mapping[str, object],
    ) -> tuple[DispatchOutcome, bool]:
        """One provider with its retries. Returns the outcome and whether failing over to the
        next provider is safe (the message cannot have been accepted by this one)."""
        provider = sender.provider
        ctx = {**base_ctx, "provider": provider}
        circuit = self._circuits.get(provider)
        bucket = self._rate_limits.get(provider)

        slot = self._slots.get(id(sender))

        async def attempt() -> str:
            if circuit is not None and not circuit.allow():
                raise _CircuitOpen()
            if bucket is not None:
                wait = bucket.reserve(self._rate_limit_max_wait_s)
                if wait is None:
                    if circuit is not None:
                        circuit.abandon()
                    raise _RateLimited()
                if wait > 0:
                    try:
                        await self._sleep(wait)
                    except BaseException:
                        if circuit is not None:
                            circuit.abandon()
                        raise
            async with slot if slot is not None else contextlib.nullcontext():
                if not tally.tried or tally.tried[-1] != provider:
                    tally.tried.append(provider)
                tally.attempts += 1
                if tally.first_attempt_at is None:
                    tally.first_attempt_at = self._clock()
                journal = self.attempt_journal
                if journal is not None:
                    try:
                        await journal.attempt_started(message.notification_id, self._clock())
                    except BaseException:
                        if circuit is not None:
                            circuit.abandon()
                        raise
                attrs = {"notifier.provider": provider, "notifier.attempt": tally.attempts}
                try:
                    with tracing.span("provider attempt", attrs):
                        return await self._attempt(sender, message, circuit)
                except TransientProviderError:
                    if journal is not None:
                        await self._attempt_ended(journal, message.notification_id)
                    raise

        def outcome(
            status: DeliveryStatus,
            reason: str,
            *,
            message_id: str | None = None,
            code: str | None = None,
        ) -> DispatchOutcome:
            return DispatchOutcome(
                status,
                reason,
                provider,
                provider_message_id=message_id,
                provider_code=code,
                attempts=tally.attempts,
                first_attempt_at=tally.first_attempt_at,
                finished_at=self._clock(),
            )

        failed, unknown = DeliveryStatus.FAILED, DeliveryStatus.UNKNOWN

        try:
            try:
                message_id = await self._with_retries(attempt, ctx)
            except AmbiguousProviderError as exc:
                if not resends_ambiguous(
                    self._on_ambiguous, message.channel, message.push_provider
                ):
                    raise
                # The device shows one notification either way (collapse id): once more.
                log.warning("ambiguous send; resending once", extra={**ctx, "code": exc.code})
                try:
                    message_id = await attempt()
                except (ProviderError, _CircuitOpen, _RateLimited) as again:
                    # The first may have arrived: whatever the resend met, it stays ambiguous.
                    raise exc from again
        except _CircuitOpen:
            log.warning("circuit open; provider not called", extra=ctx)
            return outcome(failed, "circuit_open"), True
        except _RateLimited:
            log.warning("no rate-limit token within the wait cap", extra=ctx)
            return outcome(failed, "rate_limited"), True
        except _RetryAfterTooLong as exc:
            cause = exc.__cause__
            code = cause.code if isinstance(cause, ProviderError) else None
            log.warning("provider throttled beyond our backoff cap", extra={**ctx, "code": code})
            return outcome(failed, "provider_throttled", code=code), True
        except TransientProviderError as exc:
            log.warning(
                "transient errors on every attempt",
                extra={**ctx, "code": exc.code, "attempts": tally.attempts},
            )
            return outcome(failed, "retries_exhausted", code=exc.code), True
        except ProviderMisconfigured as exc:
            log.error("provider refused message", extra={**ctx, "code": exc.code})
            # Our own misconfiguration at this provider says nothing about the recipient, and
            # the provider refused before accepting: the next one may send it.
            return outcome(failed, "provider_config_error", code=exc.code), True
        except PermanentProviderError as exc:
            log.info("provider refused message", extra={**ctx, "code": exc.code})
            # A refusal about the recipient (invalid number, opted out, dead token) or the
            # message holds at every provider: no failover.
            if isinstance(exc, RecipientOptedOut):
                reason = "opted_out_by_provider"
            elif isinstance(exc, TokenUnregistered):
                reason = "token_unregistered"
            else:
                reason = "provider_rejected"
            return outcome(failed, reason, code=exc.code), False
        except AmbiguousProviderError as exc:
            reason = f"ambiguous_{exc.code}"
            if reason not in REASONS:
                reason = "ambiguous_timeout"
            log.warning("send outcome unknown; not resending", extra={**ctx, "code": exc.code})
            # Never fail over: this provider may have accepted it.
            return outcome(unknown, reason, code=exc.code), False
        return outcome(DeliveryStatus.SENT, "sent", message_id=message_id), False

    async def _with_retries(
        self, attempt: Callable[[], Awaitable[str]], ctx: Mapping[str, object]
    ) -> str:
        """`attempt()`, retried on transient errors as tenacity decides (stop, wait, log).

        The first attempt is made outside tenacity: nearly every send succeeds at once, and an
        `AsyncRetrying` (with its strategies wrapped, its state and its loop) cost more CPU
        than the successful attempt itself. After a first transient failure tenacity takes
        over from that failure, exactly as if it had made the first attempt: it is handed the
        failure as attempt 1 (waits, logs and counts as before), then calls `attempt` again.
        """
        try:
            return await attempt()
        except TransientProviderError as exc:
            if self._max_attempts == 1:
                raise
            first: list[BaseException] = [exc]

        async def from_the_first_failure() -> str:
            if first:
                raise first.pop()
            return await attempt()

        retrying = AsyncRetrying(
            stop=self._stop,
            wait=self._wait,
            retry=self._retry_transient,
            sleep=self._sleep,
            before_sleep=lambda state: self._before_retry(state, ctx),
            reraise=True,
        )
        message_id: str = await retrying(from_the_first_failure)
        return message_id

    async def _attempt(
        self, sender: Sender, message: OutboundMessage, circuit: CircuitBreaker | None
    ) -> str:
        provider = sender.provider
        started = time.perf_counter()
        healthy: bool | None = None
        try:
            async with asyncio.timeout(self._timeout_s):
                message_id = await sender.send(message)
        except TimeoutError:
            healthy = False
            metrics.labelled(
                metrics.PROVIDER_ATTEMPTS, provider=provider, outcome="ambiguous"
            ).inc()
            raise AmbiguousProviderError(
                "attempt timed out", provider=provider, code="timeout"
            ) from None
        except TransientProviderError:
            healthy = False
            metrics.labelled(
                metrics.PROVIDER_ATTEMPTS, provider=provider, outcome="transient"
            ).inc()
            raise
        except ProviderMisconfigured:
            healthy = False  # our fault, but every message fails until it is fixed
            metrics.labelled(
                metrics.PROVIDER_ATTEMPTS, provider=provider, outcome="permanent"
            ).inc()
            raise
        except PermanentProviderError:
            healthy = True  # a sensible answer about this message or recipient
            metrics.labelled(
                metrics.PROVIDER_ATTEMPTS, provider=provider, outcome="permanent"
            ).inc()
            raise
        except AmbiguousProviderError:
            healthy = False
            metrics.labelled(
                metrics.PROVIDER_ATTEMPTS, provider=provider, outcome="ambiguous"
            ).inc()
            raise
        except Exception as exc:
            # A bug in an adapter may strike after the request left: treat as ambiguous.
            healthy = False
            metrics.labelled(
                metrics.PROVIDER_ATTEMPTS, provider=provider, outcome="ambiguous"
            ).inc()
            log.error(
                "adapter failed unexpectedly",
                extra={"provider": provider, "error": type(exc).__name__},
            )
            raise AmbiguousProviderError(
                f"adapter error {type(exc).__name__}", provider=provider, code="adapter_error"
            ) from None
        else:
            healthy = True
        finally:
            metrics.labelled(metrics.PROVIDER_LATENCY, provider=provider).observe(
                time.perf_counter() - started
            )
            if circuit is not None:
                if healthy is None:
                    circuit.abandon()  # cancelled: says nothing about the provider
                elif healthy:
                    circuit.success()
                else:
                    circuit.failure()
        metrics.labelled(metrics.PROVIDER_ATTEMPTS, provider=provider, outcome="ok").inc()
        return message_id

    async def _attempt_ended(self, journal: AttemptJournal, notification_id: str) -> None:
        try:
            await journal.attempt_ended(notification_id, self._clock())
        except Exception as exc:
            # The row stays "attempt started": after a crash it is reported ambiguous, the
            # safe side (never a second send).
            log.warning(
                "could not record the end of a refused attempt",
                extra={"notification_id": notification_id, "error": type(exc).__name__},
            )

    def _wait(self, state: RetryCallState) -> float:
        backoff = min(self._backoff(state), self._backoff_max_s)
        exc = state.outcome.exception() if state.outcome else None
        retry_after = exc.retry_after if isinstance(exc, ProviderError) else None
        if retry_after is None or state.attempt_number >= self._max_attempts:
            # (on the last attempt the stop condition ends it: the reason is retries_exhausted)
            return backoff
        if retry_after > self._backoff_max_s:
            raise _RetryAfterTooLong() from exc
        return max(retry_after, backoff)

    def _before_retry(self, state: RetryCallState, ctx: Mapping[str, object]) -> None:
        exc = state.outcome.exception() if state.outcome else None
        code = exc.code if isinstance(exc, ProviderError) else None
        metrics.RETRIES.labels(provider=str(ctx["provider"])).inc()
        log.info(
            "retrying after transient error",
            extra={**ctx, "code": code, "attempt": state.attempt_number},
        )

    async def aclose(self) -> None:
        """Close every sender once (a sender may serve several routes)."""
        seen: set[int] = set()
        for senders in self._routes.values():
            for sender in senders:
                if id(sender) in seen:
                    continue
                seen.add(id(sender))
                try:
                    await sender.aclose()
                except Exception as exc:
                    log.warning(
                        "sender failed to close",
                        extra={"provider": sender.provider, "error": type(exc).__name__},
                    )


def _push_name(message: OutboundMessage) -> str | None:
    return message.push_provider.value if message.push_provider else None


def _as_tuple(value: Sender | Sequence[Sender]) -> tuple[Sender, ...]:
    if isinstance(value, list | tuple):
        return tuple(value)
    return (cast("Sender", value),)
