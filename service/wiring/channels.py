"""Settings -> channel adapters: the dispatcher, its routes, senders, breakers and rate limits.

The adapters under service/channels take their own small frozen configs (`SmppConfig`,
`HttpGatewayConfig`, `ApnsConfig`, `JPushConfig`, `TwilioConfig`, `TwilioVoiceConfig`,
`FcmConfig`) and never see `Settings`; this module is where the NOTIFIER_ variables become
those values.

Configuration problems (an unknown provider name, a Twilio SID missing, an unreadable key
file) raise `ConfigError` (a ValueError) carrying the NOTIFIER_ `variable` and the `fix` when
`build_dispatcher` is *called*, before anything is opened (`config check` prints both), so
the service refuses to start instead of failing every send. Senders are opened on enter (the
SMPP session starts binding in the background) and closed on exit.

One sender per provider serves every route that names it, so a provider's circuit breaker and
rate limit are shared by all its routes and all tasks of the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import TextIO

import httpx

from service.channels.apns import ApnsConfig, ApnsSender
from service.channels.base import Sender
from service.channels.circuit import CircuitBreaker, CircuitConfig
from service.channels.console import ConsoleSender
from service.channels.dispatch import Dispatcher
from service.channels.fcm import FcmConfig, FcmSender
from service.channels.google_oauth import ServiceAccount, load_service_account
from service.channels.http_gateway import (
    HttpGatewayConfig,
    HttpGatewaySender,
    check_query_url,
    parse_body_template,
)
from service.channels.jpush import JPushConfig, JPushSender
from service.channels.ratelimit import TokenBucket
from service.channels.routing import (
    PUSH_PROVIDERS,
    SMS_PROVIDERS,
    parse_provider_list,
    parse_rate_limits,
    parse_sms_routes,
)
from service.channels.smpp import SmppConfig, SmppSender
from service.channels.twilio import TwilioConfig, TwilioSender
from service.channels.twilio_voice import TwilioVoiceConfig, TwilioVoiceSender
from service.channels.voice_gateway import VoiceGatewaySender, parse_voice_body_template
from service.compliance.opt_out import OptOutMatcher
from service.config import Settings
from service.errors import ConfigError
from service.events import Channel
from service.receipts.model import ReceiptSink
from service.receipts.voice_calls import VOICE_GATEWAY

__all__ = [
    "VOICE_PROVIDERS",
    "RoutePlan",
    "apns_config",
    "build_apns_sender",
    "build_dispatcher",
    "build_http_gateway_sender",
    "build_jpush_sender",
    "build_smpp_sender",
    "http_gateway_config",
    "jpush_config",
    "route_plan",
    "smpp_config",
    "voice_factories",
    "voice_gateway_config",
]

SenderFactory = Callable[[], Sender]

log = logging.getLogger(__name__)

_SMS = "NOTIFIER_SMS_PROVIDER"
_PUSH = "NOTIFIER_PUSH_PROVIDER"
_ROUTES = "NOTIFIER_SMS_ROUTES"
_RATES = "NOTIFIER_PROVIDER_RATE_LIMITS"
_VOICE = "NOTIFIER_VOICE_PROVIDER"
VOICE_PROVIDERS = ("console", "twilio_voice", "voice_gateway")

# The fixes `config check` prints with each ConfigError raised here.
_FIX_SET = "set it (in Kubernetes from the provider's Secret), or stop naming that provider"
_FIX_FILE = (
    "mount a readable file at that path (in Kubernetes the provider's Secret), or "
    "stop naming that provider"
)
_FIX_NAMES = "name only known providers, in the documented format"


@contextlib.contextmanager
def _names(variable: str) -> Iterator[None]:
    """A parser's ValueError about `variable` becomes a ConfigError naming it."""
    try:
        yield
    except ConfigError:
        raise
    except ValueError as exc:
        raise ConfigError(str(exc), variable=variable, fix=_FIX_NAMES) from None


@dataclass(frozen=True, slots=True)
class RoutePlan:
    """The routing settings, parsed: provider names only, no senders yet."""

    sms: tuple[str, ...]
    sms_by_country: Mapping[str, tuple[str, ...]]
    push: tuple[str, ...]
    rate_limits: Mapping[str, float]
    voice: tuple[str, ...] = ()

    def sms_providers(self) -> list[str]:
        """Every SMS provider some route uses, each once."""
        names = list(self.sms)
        for providers in self.sms_by_country.values():
            names += [p for p in providers if p not in names]
        return names

    def route_keys(self) -> dict[str, tuple[str, ...]]:
        """Route key -> provider names, e.g. {"sms": ("smpp", "twilio"), "push:fcm": ("fcm",)}."""
        routes: dict[str, tuple[str, ...]] = {"sms": self.sms}
        for code, providers in self.sms_by_country.items():
            routes[f"sms:{code}"] = providers
        for name in self.push:
            routes["push" if name == "console" else f"push:{name}"] = (name,)
        return routes


def route_plan(settings: Settings) -> RoutePlan:
    """Parse and check the routing settings; ConfigError names the variable."""
    with _names(_SMS):
        sms = parse_provider_list(settings.sms_provider, variable=_SMS, allowed=SMS_PROVIDERS)
    with _names(_ROUTES):
        by_country = parse_sms_routes(settings.sms_routes, variable=_ROUTES, allowed=SMS_PROVIDERS)
    with _names(_PUSH):
        push = parse_provider_list(settings.push_provider, variable=_PUSH, allowed=PUSH_PROVIDERS)
    with _names(_RATES):
        rates = parse_rate_limits(
            settings.provider_rate_limits,
            variable=_RATES,
            allowed=sorted({*SMS_PROVIDERS, *PUSH_PROVIDERS, *VOICE_PROVIDERS}),
        )
    with _names(_VOICE):
        voice = parse_provider_list(
            settings.voice_provider, variable=_VOICE, allowed=VOICE_PROVIDERS
        )
    return RoutePlan(sms, by_country, push, rates, voice)


def build_dispatcher(
    settings: Settings,
    *,
    out: TextIO,
    clock: Callable[[], datetime],
    extra_routes: Mapping[str, Sender] | None = None,
    sink: ReceiptSink | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    monotonic: Callable[[], float] = time.monotonic,
) -> contextlib.AbstractAsyncContextManager[Dispatcher]:
    """Validate now; open senders on enter; close them (extra routes included) on exit.

    `extra_routes` override or add routes (e.g. "push:apns"); the dispatcher then owns and
    closes those senders too. `sink` receives the SMPP session's delivery receipts and replies;
    it is required when an SMS route uses smpp.
    """
    plan = route_plan(settings)
    factories: dict[tuple[Channel, str], SenderFactory] = {}
    for name in plan.sms_providers():
        factories[(Channel.SMS, name)] = _sms_factory(name, settings, out, clock, sink)
    for name in plan.push:
        factories[(Channel.PUSH, name)] = _push_factory(name, settings, out, clock)
    factories.update(voice_factories(settings, out, clock))
    _warn_if_lease_too_short(settings, plan)
    circuit = CircuitConfig(
        window_s=settings.circuit_window_s,
        min_calls=settings.circuit_min_calls,
        error_rate=settings.circuit_error_rate,
        cool_down_s=settings.circuit_cool_down_s,
    )
    return _running(
        settings, plan, factories, dict(extra_routes or {}), clock, sleep, monotonic, circuit
    )


@contextlib.asynccontextmanager
async def _running(
    settings: Settings,
    plan: RoutePlan,
    factories: Mapping[tuple[Channel, str], SenderFactory],
    extra: Mapping[str, Sender],
    clock: Callable[[], datetime],
    sleep: Callable[[float], Awaitable[None]],
    monotonic: Callable[[], float],
    circuit: CircuitConfig,
) -> AsyncIterator[Dispatcher]:
    senders: dict[tuple[Channel, str], Sender] = {}
    try:
        for sender_key, make in factories.items():
            senders[sender_key] = make()
    except BaseException:
        await _close_all([*senders.values(), *extra.values()])
        raise
    routes: dict[str, tuple[Sender, ...]] = {}
    for key, names in plan.route_keys().items():
        channel = Channel.SMS if key.startswith("sms") else Channel.PUSH
        routes[key] = tuple(senders[(channel, name)] for name in names)
    voice = tuple(sender for (ch, _), sender in senders.items() if ch is Channel.VOICE)
    if voice:
        routes["voice"] = voice
    for key, sender in extra.items():
        routes[key] = (sender,)
    providers = {s.provider for group in routes.values() for s in group}
    dispatcher = Dispatcher(
        routes,
        timeout_s=settings.send_timeout_s,
        max_attempts=settings.send_max_attempts,
        backoff_max_s=settings.send_backoff_max_s,
        clock=clock,
        sleep=sleep,
        circuits={p: CircuitBreaker(p, circuit, monotonic=monotonic) for p in providers},
        rate_limits={
            p: TokenBucket(rate, monotonic=monotonic) for p, rate in plan.rate_limits.items()
        },
        rate_limit_max_wait_s=settings.rate_limit_max_wait_s,
        max_concurrent=settings.provider_max_connections,
        on_ambiguous=settings.on_ambiguous,
    )
    try:
        for sender in senders.values():
            start = getattr(sender, "start", None)
            if start is not None:
                # The SMPP session: binds in the background, never fails on a down SMSC.
                await start()
        yield dispatcher
    finally:
        await dispatcher.aclose()


async def _close_all(senders: list[Sender]) -> None:
    for sender in senders:
        with contextlib.suppress(Exception):
            await sender.aclose()


def _warn_if_lease_too_short(settings: Settings, plan: RoutePlan) -> None:
    """A dispatch that outlives its ledger claim is reported `unknown` by a redelivery while it
    still runs: say so at start when the worst case (every provider of the longest route using
    its whole retry budget) exceeds the lease."""
    s = settings
    longest = max([len(plan.sms), *(len(p) for p in plan.sms_by_country.values()), 1])
    per_provider = (
        s.send_max_attempts * s.send_timeout_s
        + (s.send_max_attempts - 1) * s.send_backoff_max_s
        + (s.send_max_attempts * s.rate_limit_max_wait_s if plan.rate_limits else 0.0)
    )
    worst = longest * per_provider
    # One provider alone is the pre-failover trade-off (documented with the lease); failover
    # multiplies it, which is worth a line at start.
    if longest > 1 and worst > s.ledger_lease_s:
        log.warning(
            "NOTIFIER_LEDGER_LEASE_S is shorter than the longest possible dispatch",
            extra={"lease_s": s.ledger_lease_s, "worst_case_s": worst, "providers": longest},
        )


def _missing(variable: str, where: str) -> ConfigError:
    return ConfigError(f"{variable} is required {where}", variable=variable, fix=_FIX_SET)


def _require(value: str, variable: str, where: str) -> str:
    if not value.strip():
        raise _missing(variable, f"when {where}")
    return value


def _sms_factory(
    name: str,
    settings: Settings,
    out: TextIO,
    clock: Callable[[], datetime],
    sink: ReceiptSink | None,
) -> SenderFactory:
    where = f"{_SMS} or {_ROUTES} names {name}"
    if name == "console":
        return lambda: ConsoleSender(Channel.SMS, out)
    if name == "twilio":
        return _twilio_factory(settings, clock, where)
    if name == "smpp":
        _require(settings.smpp_system_id, "NOTIFIER_SMPP_SYSTEM_ID", where)
        if sink is None:
            raise ConfigError(
                f"smpp needs a receipt sink for its delivery receipts ({where})",
                variable=_SMS,
                fix=_FIX_NAMES,
            )
        receipts = sink
        config = smpp_config(settings)
        return lambda: SmppSender(config, receipts, clock=clock)
    if name == "http_gateway":
        gateway = http_gateway_config(settings)
        return lambda: HttpGatewaySender(gateway)
    raise ConfigError(f"{_SMS}: unknown provider {name!r}", variable=_SMS, fix=_FIX_NAMES)


def _twilio_factory(settings: Settings, clock: Callable[[], datetime], where: str) -> SenderFactory:
    sid = _require(settings.twilio_account_sid, "NOTIFIER_TWILIO_ACCOUNT_SID", where)
    token = _require(
        settings.twilio_auth_token.get_secret_value(), "NOTIFIER_TWILIO_AUTH_TOKEN", where
    )
    sender_id = _require(settings.twilio_from, "NOTIFIER_TWILIO_FROM", where)
    base_url = _require(settings.twilio_base_url, "NOTIFIER_TWILIO_BASE_URL", where)
    callback = settings.twilio_status_callback
    if callback is None and settings.receipts_public_url:
        # Receipts come back to our webhook unless another URL is configured.
        callback = settings.receipts_public_url.rstrip("/") + "/receipts/twilio/status"
    config = TwilioConfig(
        base_url=base_url,
        account_sid=sid,
        auth_token=token,
        from_=sender_id,
        status_callback=callback,
        timeout_s=settings.send_timeout_s,
        max_connections=settings.provider_max_connections,
    )
    return lambda: TwilioSender(config, clock=clock)


def _push_factory(
    name: str, settings: Settings, out: TextIO, clock: Callable[[], datetime]
) -> SenderFactory:
    where = f"{_PUSH} names {name}"
    if name == "console":
        return lambda: ConsoleSender(Channel.PUSH, out)
    if name == "fcm":
        return _fcm_factory(settings, clock, where)
    if name == "apns":
        path = settings.apns_key_file
        if path is None or not path.is_file():
            raise ConfigError(
                f"NOTIFIER_APNS_KEY_FILE must name a readable .p8 file when {where}",
                variable="NOTIFIER_APNS_KEY_FILE",
                fix=_FIX_FILE,
            )
        _require(settings.apns_key_id, "NOTIFIER_APNS_KEY_ID", where)
        _require(settings.apns_team_id, "NOTIFIER_APNS_TEAM_ID", where)
        _require(settings.apns_topic, "NOTIFIER_APNS_TOPIC", where)
        apns = apns_config(settings)
        return lambda: ApnsSender(apns)
    if name == "jpush":
        _require(settings.jpush_app_key, "NOTIFIER_JPUSH_APP_KEY", where)
        _require(
            settings.jpush_master_secret.get_secret_value(), "NOTIFIER_JPUSH_MASTER_SECRET", where
        )
        jpush = jpush_config(settings)
        return lambda: JPushSender(jpush)
    raise ConfigError(f"{_PUSH}: unknown provider {name!r}", variable=_PUSH, fix=_FIX_NAMES)


def _fcm_factory(settings: Settings, clock: Callable[[], datetime], where: str) -> SenderFactory:
    path = settings.fcm_service_account_file
    if path is None:
        raise _missing("NOTIFIER_FCM_SERVICE_ACCOUNT_FILE", f"when {where}")
    try:
        account: ServiceAccount = load_service_account(path)
    except ValueError as exc:
        raise ConfigError(
            f"NOTIFIER_FCM_SERVICE_ACCOUNT_FILE: {exc}",
            variable="NOTIFIER_FCM_SERVICE_ACCOUNT_FILE",
            fix=_FIX_FILE,
        ) from None
    project_id = settings.fcm_project_id or account.project_id or ""
    _require(project_id, "NOTIFIER_FCM_PROJECT_ID", where)
    base_url = _require(settings.fcm_base_url, "NOTIFIER_FCM_BASE_URL", where)
    config = FcmConfig(
        base_url=base_url,
        project_id=project_id,
        account=account,
        token_url=settings.fcm_token_url,
        timeout_s=settings.send_timeout_s,
        max_connections=settings.provider_max_connections,
    )
    return lambda: FcmSender(config, clock=clock)


def voice_factories(
    settings: Settings, out: TextIO, clock: Callable[[], datetime]
) -> dict[tuple[Channel, str], SenderFactory]:
    """The voice route's senders in failover order (NOTIFIER_VOICE_PROVIDER), checked now;
    ConfigError names the variable. Self-contained: the dispatcher routes "voice" to them."""
    with _names(_VOICE):
        names = parse_provider_list(
            settings.voice_provider, variable=_VOICE, allowed=VOICE_PROVIDERS
        )
    where = f"{_VOICE} names"
    factories: dict[tuple[Channel, str], SenderFactory] = {}
    for name in names:
        if name == "console":
            factories[(Channel.VOICE, name)] = lambda: ConsoleSender(Channel.VOICE, out)
        elif name == "twilio_voice":
            factories[(Channel.VOICE, name)] = _twilio_voice_factory(
                settings, clock, f"{where} twilio_voice"
            )
        else:
            config = voice_gateway_config(settings)
            factories[(Channel.VOICE, name)] = partial(VoiceGatewaySender, config)
    return factories


def _twilio_voice_factory(
    settings: Settings, clock: Callable[[], datetime], where: str
) -> SenderFactory:
    s = settings
    sid = _require(s.twilio_account_sid, "NOTIFIER_TWILIO_ACCOUNT_SID", where)
    token = _require(s.twilio_auth_token.get_secret_value(), "NOTIFIER_TWILIO_AUTH_TOKEN", where)
    caller = _require(s.twilio_voice_from, "NOTIFIER_TWILIO_VOICE_FROM", where)
    base_url = _require(s.twilio_voice_base_url, "NOTIFIER_TWILIO_VOICE_BASE_URL", where)
    callback = s.twilio_voice_status_callback
    if callback is None and s.receipts_public_url:
        callback = s.receipts_public_url.rstrip("/") + "/receipts/twilio/voice-status"
    if callback is None:
        # Without outcomes every call counts as unanswered and no call is ever confirmed.
        log.warning(
            "twilio_voice has no StatusCallback: set NOTIFIER_RECEIPTS_PUBLIC_URL or "
            "NOTIFIER_TWILIO_VOICE_STATUS_CALLBACK"
        )
    config = TwilioVoiceConfig(
        base_url=base_url,
        account_sid=sid,
        auth_token=token,
        from_=caller,
        status_callback=callback,
        machine_detection=s.twilio_voice_machine_detection,
        detection_pause_s=s.twilio_voice_detection_pause_s,
        detection_timeout_s=s.twilio_voice_detection_timeout_s,
        timeout_s=s.send_timeout_s,
    )
    return lambda: TwilioVoiceSender(config, clock=clock)


def voice_gateway_config(settings: Settings) -> HttpGatewayConfig:
    """The gateway's configuration from NOTIFIER_VOICE_GATEWAY_*; ConfigError names the key."""
    s = settings
    if not s.voice_gateway_url:
        raise _missing("NOTIFIER_VOICE_GATEWAY_URL", "for the voice gateway adapter")
    variable = "NOTIFIER_VOICE_GATEWAY_BODY_TEMPLATE"
    try:
        template = parse_voice_body_template(s.voice_gateway_body_template)
    except ValueError as exc:
        raise ConfigError(f"{variable}: {exc}", variable=variable, fix=_FIX_NAMES) from None
    return HttpGatewayConfig(
        url=s.voice_gateway_url,
        body_template=template,
        method=s.voice_gateway_method,
        body_format=s.voice_gateway_body_format,
        account=s.voice_gateway_account,
        password=s.voice_gateway_password.get_secret_value(),
        sender=s.voice_gateway_sender,
        country_code=s.voice_gateway_country_code,
        auth_header=s.voice_gateway_auth_header,
        auth_value=s.voice_gateway_auth_value.get_secret_value(),
        message_id_path=s.voice_gateway_call_id_path,
        code_path=s.voice_gateway_code_path,
        success_codes=frozenset(s.voice_gateway_success_codes),
        transient_codes=frozenset(s.voice_gateway_transient_codes),
        permanent_codes=frozenset(s.voice_gateway_permanent_codes),
        alert_codes=frozenset(s.voice_gateway_alert_codes),
        unknown_code=s.voice_gateway_unknown_code,
        timeout_s=s.send_timeout_s,
        max_connections=s.provider_max_connections,
        # The receipts of its calls are matched by this name (VoiceGatewayCallback.provider).
        provider=VOICE_GATEWAY,
    )


# --- one adapter's config from the settings ---------------------------------------------------


def smpp_config(settings: Settings) -> SmppConfig:
    s = settings
    return SmppConfig(
        host=s.smpp_host,
        port=s.smpp_port,
        system_id=s.smpp_system_id,
        password=s.smpp_password.get_secret_value(),
        system_type=s.smpp_system_type,
        source_addr=s.smpp_source_addr,
        source_addr_ton=s.smpp_source_addr_ton,
        source_addr_npi=s.smpp_source_addr_npi,
        dest_addr_ton=s.smpp_dest_addr_ton,
        dest_addr_npi=s.smpp_dest_addr_npi,
        tls=s.smpp_tls,
        window=s.smpp_window,
        enquire_link_s=s.smpp_enquire_link_s,
        response_timeout_s=s.smpp_response_timeout_s,
        bind_wait_s=s.smpp_bind_wait_s,
        reconnect_min_s=s.smpp_reconnect_min_s,
        reconnect_max_s=s.smpp_reconnect_max_s,
        throttle_pause_s=s.smpp_throttle_pause_s,
        long_message=s.smpp_long_message,
        registered_delivery=s.smpp_registered_delivery,
        opt_out=OptOutMatcher.with_extra(s.opt_out_keywords),
        country_code=s.smpp_country_code,
    )


def build_smpp_sender(
    settings: Settings, sink: ReceiptSink, *, clock: Callable[[], datetime]
) -> SmppSender:
    """An unstarted session; the caller awaits `start()` at boot and `aclose()` at shutdown."""
    return SmppSender(smpp_config(settings), sink, clock=clock)


def http_gateway_config(settings: Settings) -> HttpGatewayConfig:
    """Raises ConfigError naming the setting when the configuration cannot work."""
    s = settings
    if not s.http_gateway_url:
        raise _missing("NOTIFIER_HTTP_GATEWAY_URL", "for the HTTP gateway adapter")
    with _names("NOTIFIER_HTTP_GATEWAY_QUERY_URL"):
        check_query_url(s.http_gateway_query_url, s.http_gateway_body_template)
    with _names("NOTIFIER_HTTP_GATEWAY_BODY_TEMPLATE"):
        body_template = parse_body_template(s.http_gateway_body_template)
    return HttpGatewayConfig(
        url=s.http_gateway_url,
        body_template=body_template,
        method=s.http_gateway_method,
        body_format=s.http_gateway_body_format,
        account=s.http_gateway_account,
        password=s.http_gateway_password.get_secret_value(),
        sender=s.http_gateway_sender,
        country_code=s.http_gateway_country_code,
        auth_header=s.http_gateway_auth_header,
        auth_value=s.http_gateway_auth_value.get_secret_value(),
        message_id_path=s.http_gateway_message_id_path,
        code_path=s.http_gateway_code_path,
        success_codes=frozenset(s.http_gateway_success_codes),
        transient_codes=frozenset(s.http_gateway_transient_codes),
        permanent_codes=frozenset(s.http_gateway_permanent_codes),
        opt_out_codes=frozenset(s.http_gateway_opt_out_codes),
        alert_codes=frozenset(s.http_gateway_alert_codes),
        unknown_code=s.http_gateway_unknown_code,
        timeout_s=s.send_timeout_s,
        max_connections=s.provider_max_connections,
        query_url=s.http_gateway_query_url,
        query_status_path=s.http_gateway_query_status_path,
        query_message_id_path=s.http_gateway_query_message_id_path,
        query_found_statuses=frozenset(s.http_gateway_query_found_statuses),
        query_not_found_statuses=frozenset(s.http_gateway_query_not_found_statuses),
    )


def build_http_gateway_sender(settings: Settings) -> HttpGatewaySender:
    return HttpGatewaySender(http_gateway_config(settings))


def apns_config(settings: Settings) -> ApnsConfig:
    """Reads the .p8 key named by NOTIFIER_APNS_KEY_FILE (ConfigError when none is named or it
    cannot be read)."""
    variable = "NOTIFIER_APNS_KEY_FILE"
    if settings.apns_key_file is None:
        raise _missing(variable, "for the APNs adapter")
    try:
        key_pem = Path(settings.apns_key_file).read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or "not an ASCII .p8 key"
        raise ConfigError(
            f"{variable}: cannot read {settings.apns_key_file}: {reason}",
            variable=variable,
            fix=_FIX_FILE,
        ) from None
    return ApnsConfig(
        base_url=settings.apns_base_url,
        key_pem=key_pem,
        key_id=settings.apns_key_id,
        team_id=settings.apns_team_id,
        topic=settings.apns_topic,
        jwt_refresh_s=settings.apns_jwt_refresh_s,
        timeout_s=settings.send_timeout_s,
    )


def build_apns_sender(
    settings: Settings,
    *,
    client: httpx.AsyncClient | None = None,
    clock: Callable[[], float] = time.time,
) -> ApnsSender:
    return ApnsSender(apns_config(settings), client=client, clock=clock)


def jpush_config(settings: Settings) -> JPushConfig:
    return JPushConfig(
        base_url=settings.jpush_base_url,
        app_key=settings.jpush_app_key,
        master_secret=settings.jpush_master_secret.get_secret_value(),
        platform=tuple(settings.jpush_platform),
        time_to_live_s=settings.jpush_time_to_live_s,
        apns_production=settings.jpush_apns_production,
        timeout_s=settings.send_timeout_s,
        max_connections=settings.provider_max_connections,
    )


def build_jpush_sender(settings: Settings) -> JPushSender:
    return JPushSender(jpush_config(settings))
