"""Dispatch: route a message to its sender, retry transient failures, and say how it ended.

`Dispatcher.dispatch` never raises for provider trouble; it returns a `DispatchOutcome` whose
`reason` is a machine-readable code (see docs/channels.md):

  sent      sent                  the provider accepted the message
  failed    provider_rejected     permanent error (invalid number, unregistered token, ...)
  failed    provider_config_error permanent error on our side (credentials, sender id): alert
  failed    retries_exhausted     transient errors until the attempt cap
  failed    provider_throttled    the provider asked us to wait longer than send_backoff_max_s
  failed    no_route              no sender for this channel / push provider
  unknown   ambiguous_timeout     an attempt timed out after the request may have been accepted
  unknown   ambiguous_connection_lost / ambiguous_unreadable_response / ambiguous_adapter_error

`unknown` is never retried: no provider offers an idempotency key, so a resend could deliver the
reminder twice. Tenacity retries `TransientProviderError` only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from service.channels.base import OutboundMessage, Sender
from service.channels.errors import (
    AmbiguousProviderError,
    PermanentProviderError,
    ProviderError,
    TransientProviderError,
)
from service.events import Channel
from service.observability import metrics

__all__ = ["REASONS", "DispatchOutcome", "Dispatcher"]

log = logging.getLogger(__name__)

DispatchStatus = Literal["sent", "failed", "unknown"]

REASONS: Mapping[str, str] = {
    "sent": "the provider accepted the message",
    "provider_rejected": "permanent provider error; provider_code says which",
    "provider_config_error": "permanent error caused by our configuration (credentials, sender)",
    "retries_exhausted": "transient errors on every allowed attempt",
    "provider_throttled": "Retry-After longer than send_backoff_max_s; not retried early",
    "no_route": "no sender configured for this channel or push provider",
    "ambiguous_timeout": "no answer within the attempt timeout; the provider may have sent it",
    "ambiguous_connection_lost": "connection lost after the request was sent",
    "ambiguous_unreadable_response": "accepted, but the answer carried no message id",
    "ambiguous_adapter_error": "the adapter failed unexpectedly mid-send",
}

_INITIAL_BACKOFF_S = 0.5


@dataclass(frozen=True, slots=True)
class DispatchOutcome:
    status: DispatchStatus
    reason: str
    provider: str | None
    provider_message_id: str | None = None
    provider_code: str | None = None
    attempts: int = 0
    first_attempt_at: datetime | None = None
    finished_at: datetime | None = None
    opt_out: bool = False
    dead_token: bool = False


class _RetryAfterTooLong(Exception):
    """The provider's Retry-After exceeds our longest wait: stop rather than retry early."""


class Dispatcher:
    """Routes by channel ("sms") or push provider ("push:fcm", fallback "push"); owns senders."""

    def __init__(
        self,
        routes: Mapping[str, Sender],
        *,
        timeout_s: float,
        max_attempts: int,
        backoff_max_s: float,
        clock: Callable[[], datetime],
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        max_concurrent: int | None = None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self._routes = dict(routes)
        # Attempts at one sender at a time. Waiting for a slot happens *before* the attempt's
        # timeout starts: a message that never left must not time out as "ambiguous" (under
        # load, requests queued in httpx's pool did, and were reported `unknown`).
        self._slots: dict[int, asyncio.Semaphore] = (
            {id(s): asyncio.Semaphore(max_concurrent) for s in self._routes.values()}
            if max_concurrent
            else {}
        )
        self._timeout_s = timeout_s
        self._max_attempts = max_attempts
        self._backoff_max_s = backoff_max_s
        self._clock = clock
        self._sleep = sleep
        # 0.5 s, 1 s, 2 s, ... plus up to 0.5 s of jitter so retries of many lanes spread out.
        self._backoff = wait_exponential(
            multiplier=_INITIAL_BACKOFF_S, max=backoff_max_s
        ) + wait_random(0, _INITIAL_BACKOFF_S)

    def route_for(self, message: OutboundMessage) -> Sender | None:
        if message.channel is Channel.SMS:
            return self._routes.get("sms")
        if message.push_provider is not None:
            sender = self._routes.get(f"push:{message.push_provider.value}")
            if sender is not None:
                return sender
        return self._routes.get("push")

    async def dispatch(self, message: OutboundMessage) -> DispatchOutcome:
        sender = self.route_for(message)
        ctx = {"notification_id": message.notification_id, "channel": message.channel.value}
        if sender is None:
            log.warning("no sender for message", extra={**ctx, "push": _push_name(message)})
            return DispatchOutcome("failed", "no_route", None, finished_at=self._clock())
        provider = sender.provider
        ctx["provider"] = provider
        attempts = 0
        first_attempt_at: datetime | None = None

        slot = self._slots.get(id(sender))

        async def attempt() -> str:
            nonlocal attempts, first_attempt_at
            async with slot if slot is not None else contextlib.nullcontext():
                attempts += 1
                if first_attempt_at is None:
                    first_attempt_at = self._clock()
                return await self._attempt(sender, message)

        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._max_attempts),
            wait=self._wait,
            retry=retry_if_exception_type(TransientProviderError),
            sleep=self._sleep,
            before_sleep=lambda state: self._before_retry(state, ctx),
            reraise=True,
        )

        def outcome(
            status: DispatchStatus,
            reason: str,
            *,
            message_id: str | None = None,
            code: str | None = None,
            opt_out: bool = False,
            dead_token: bool = False,
        ) -> DispatchOutcome:
            return DispatchOutcome(
                status,
                reason,
                provider,
                provider_message_id=message_id,
                provider_code=code,
                attempts=attempts,
                first_attempt_at=first_attempt_at,
                finished_at=self._clock(),
                opt_out=opt_out,
                dead_token=dead_token,
            )

        try:
            message_id: str = await retrying(attempt)
        except _RetryAfterTooLong as exc:
            cause = exc.__cause__
            code = cause.code if isinstance(cause, ProviderError) else None
            log.warning("provider throttled beyond our backoff cap", extra={**ctx, "code": code})
            return outcome("failed", "provider_throttled", code=code)
        except TransientProviderError as exc:
            log.warning(
                "transient errors on every attempt",
                extra={**ctx, "code": exc.code, "attempts": attempts},
            )
            return outcome("failed", "retries_exhausted", code=exc.code)
        except PermanentProviderError as exc:
            reason = "provider_config_error" if exc.alert else "provider_rejected"
            level = logging.ERROR if exc.alert else logging.INFO
            log.log(level, "provider refused message", extra={**ctx, "code": exc.code})
            return outcome(
                "failed",
                reason,
                code=exc.code,
                opt_out=exc.opt_out,
                dead_token=exc.dead_token,
            )
        except AmbiguousProviderError as exc:
            reason = f"ambiguous_{exc.code}"
            if reason not in REASONS:
                reason = "ambiguous_timeout"
            log.warning("send outcome unknown; not resending", extra={**ctx, "code": exc.code})
            return outcome("unknown", reason, code=exc.code)
        return outcome("sent", "sent", message_id=message_id)

    async def _attempt(self, sender: Sender, message: OutboundMessage) -> str:
        provider = sender.provider
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._timeout_s):
                message_id = await sender.send(message)
        except TimeoutError:
            metrics.PROVIDER_ATTEMPTS.labels(provider=provider, outcome="ambiguous").inc()
            raise AmbiguousProviderError(
                "attempt timed out", provider=provider, code="timeout"
            ) from None
        except TransientProviderError:
            metrics.PROVIDER_ATTEMPTS.labels(provider=provider, outcome="transient").inc()
            raise
        except PermanentProviderError:
            metrics.PROVIDER_ATTEMPTS.labels(provider=provider, outcome="permanent").inc()
            raise
        except AmbiguousProviderError:
            metrics.PROVIDER_ATTEMPTS.labels(provider=provider, outcome="ambiguous").inc()
            raise
        except Exception as exc:
            # A bug in an adapter may strike after the request left: treat as ambiguous.
            metrics.PROVIDER_ATTEMPTS.labels(provider=provider, outcome="ambiguous").inc()
            log.error(
                "adapter failed unexpectedly",
                extra={"provider": provider, "error": type(exc).__name__},
            )
            raise AmbiguousProviderError(
                f"adapter error {type(exc).__name__}", provider=provider, code="adapter_error"
            ) from None
        finally:
            metrics.PROVIDER_LATENCY.labels(provider=provider).observe(
                time.perf_counter() - started
            )
        metrics.PROVIDER_ATTEMPTS.labels(provider=provider, outcome="ok").inc()
        return message_id

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
        for sender in self._routes.values():
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
