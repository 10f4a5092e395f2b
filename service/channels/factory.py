"""Build the dispatcher and its senders from Settings; close them when the service stops.

Configuration problems (a Twilio SID missing, an unreadable service-account file) raise
ValueError naming the NOTIFIER_ variable when `build_dispatcher` is *called*, before anything
is opened, so the service refuses to start instead of failing every send.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import datetime
from typing import TextIO

from service.channels.base import Sender
from service.channels.console import ConsoleSender
from service.channels.dispatch import Dispatcher
from service.channels.fcm import FcmSender
from service.channels.google_oauth import ServiceAccount, load_service_account
from service.channels.twilio import TwilioSender
from service.config import Settings
from service.events import Channel

__all__ = ["build_dispatcher"]

SenderFactory = Callable[[], Sender]


def build_dispatcher(
    settings: Settings,
    *,
    out: TextIO,
    clock: Callable[[], datetime],
    extra_routes: Mapping[str, Sender] | None = None,
) -> contextlib.AbstractAsyncContextManager[Dispatcher]:
    """Validate now; open senders on enter; close them (extra routes included) on exit.

    Routes: "sms", and "push:<provider>" or the "push" fallback. `extra_routes` override or add
    routes (e.g. "push:apns"); the dispatcher then owns and closes those senders too.
    """
    factories: dict[str, SenderFactory] = {}
    factories["sms"] = _sms_factory(settings, out, clock)
    push_key, push_factory = _push_factory(settings, out, clock)
    factories[push_key] = push_factory
    return _running(settings, factories, dict(extra_routes or {}), clock)


@contextlib.asynccontextmanager
async def _running(
    settings: Settings,
    factories: Mapping[str, SenderFactory],
    extra: Mapping[str, Sender],
    clock: Callable[[], datetime],
) -> AsyncIterator[Dispatcher]:
    routes: dict[str, Sender] = {key: make() for key, make in factories.items()}
    routes.update(extra)
    dispatcher = Dispatcher(
        routes,
        timeout_s=settings.send_timeout_s,
        max_attempts=settings.send_max_attempts,
        backoff_max_s=settings.send_backoff_max_s,
        clock=clock,
        max_concurrent=settings.provider_max_connections,
    )
    try:
        yield dispatcher
    finally:
        await dispatcher.aclose()


def _require(value: str, variable: str, provider: str) -> str:
    if not value.strip():
        raise ValueError(f"{variable} is required when {provider} is the provider")
    return value


def _sms_factory(settings: Settings, out: TextIO, clock: Callable[[], datetime]) -> SenderFactory:
    if settings.sms_provider == "console":
        return lambda: ConsoleSender(Channel.SMS, out)
    where = "NOTIFIER_SMS_PROVIDER=twilio"
    sid = _require(settings.twilio_account_sid, "NOTIFIER_TWILIO_ACCOUNT_SID", where)
    token = _require(
        settings.twilio_auth_token.get_secret_value(), "NOTIFIER_TWILIO_AUTH_TOKEN", where
    )
    sender_id = _require(settings.twilio_from, "NOTIFIER_TWILIO_FROM", where)
    base_url = _require(settings.twilio_base_url, "NOTIFIER_TWILIO_BASE_URL", where)
    return lambda: TwilioSender(
        base_url=base_url,
        account_sid=sid,
        auth_token=token,
        from_=sender_id,
        status_callback=settings.twilio_status_callback,
        timeout_s=settings.send_timeout_s,
        clock=clock,
        max_connections=settings.provider_max_connections,
    )


def _push_factory(
    settings: Settings, out: TextIO, clock: Callable[[], datetime]
) -> tuple[str, SenderFactory]:
    if settings.push_provider == "console":
        return "push", lambda: ConsoleSender(Channel.PUSH, out)
    where = "NOTIFIER_PUSH_PROVIDER=fcm"
    path = settings.fcm_service_account_file
    if path is None:
        raise ValueError(f"NOTIFIER_FCM_SERVICE_ACCOUNT_FILE is required when {where}")
    try:
        account: ServiceAccount = load_service_account(path)
    except ValueError as exc:
        raise ValueError(f"NOTIFIER_FCM_SERVICE_ACCOUNT_FILE: {exc}") from None
    project_id = settings.fcm_project_id or account.project_id or ""
    _require(project_id, "NOTIFIER_FCM_PROJECT_ID", where)
    base_url = _require(settings.fcm_base_url, "NOTIFIER_FCM_BASE_URL", where)
    return "push:fcm", lambda: FcmSender(
        base_url=base_url,
        project_id=project_id,
        account=account,
        token_url=settings.fcm_token_url,
        timeout_s=settings.send_timeout_s,
        clock=clock,
        max_connections=settings.provider_max_connections,
    )
