"""Routing configuration: which providers serve a message, in which order.

Route keys of the dispatcher:
    "sms"            SMS providers in failover order
    "sms:<cc>"       SMS providers for recipients whose E.164 number starts with country code cc
                     (longest matching code wins, e.g. "sms:1" and "sms:86")
    "push:<p>"       push adapter(s) for tokens of push provider p (fcm, apns, jpush)
    "push"           fallback for push tokens without their own route (the console)

The settings are short strings, easy to put in a Kubernetes env var:
    NOTIFIER_SMS_PROVIDER=smpp,twilio
    NOTIFIER_SMS_ROUTES=86:smpp,http_gateway;1:twilio
    NOTIFIER_PUSH_PROVIDER=fcm,apns,jpush
    NOTIFIER_PROVIDER_RATE_LIMITS=smpp:50,twilio:10
Parsers raise ValueError naming the variable. Pure functions: no IO.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from service.channels.base import OutboundMessage
from service.events import Channel

__all__ = [
    "PUSH_PROVIDERS",
    "SMS_PROVIDERS",
    "country_codes",
    "parse_provider_list",
    "parse_rate_limits",
    "parse_sms_routes",
    "route_key_candidates",
    "route_key_candidates_for_sms",
]

SMS_PROVIDERS = ("console", "twilio", "smpp", "http_gateway")
PUSH_PROVIDERS = ("console", "fcm", "apns", "jpush")


def parse_provider_list(text: str, *, variable: str, allowed: Iterable[str]) -> tuple[str, ...]:
    """ "smpp, twilio" -> ("smpp", "twilio"): ordered, no repeats, each one we know."""
    known = tuple(allowed)
    names = tuple(part.strip().lower() for part in text.split(",") if part.strip())
    if not names:
        raise ValueError(f"{variable} names no provider (one of {', '.join(known)})")
    for name in names:
        if name not in known:
            raise ValueError(f"{variable}: unknown provider {name!r} (one of {', '.join(known)})")
    if len(set(names)) != len(names):
        raise ValueError(f"{variable}: a provider is listed twice")
    return names


def parse_sms_routes(
    text: str, *, variable: str, allowed: Iterable[str]
) -> dict[str, tuple[str, ...]]:
    """ "86:smpp,http_gateway;1:twilio" -> {"86": ("smpp", "http_gateway"), "1": ("twilio",)}."""
    known = tuple(allowed)
    routes: dict[str, tuple[str, ...]] = {}
    for entry in (e.strip() for e in text.split(";")):
        if not entry:
            continue
        code, sep, providers = entry.partition(":")
        code = code.strip().lstrip("+")
        if not sep or not code.isdigit() or not 1 <= len(code) <= 4 or code.startswith("0"):
            raise ValueError(
                f"{variable}: {entry!r} is not COUNTRY_CODE:provider[,provider] "
                "(e.g. 86:smpp,http_gateway)"
            )
        if code in routes:
            raise ValueError(f"{variable}: country code {code} is listed twice")
        routes[code] = parse_provider_list(
            providers, variable=f"{variable} ({code})", allowed=known
        )
    return routes


def parse_rate_limits(text: str, *, variable: str, allowed: Iterable[str]) -> dict[str, float]:
    """ "smpp:50,twilio:10" -> {"smpp": 50.0, "twilio": 10.0} messages per second."""
    known = tuple(allowed)
    limits: dict[str, float] = {}
    for entry in (e.strip() for e in text.split(",")):
        if not entry:
            continue
        name, sep, value = entry.partition(":")
        name = name.strip().lower()
        try:
            rate = float(value)
        except ValueError:
            rate = 0.0
        if not sep or name not in known or not rate > 0:
            raise ValueError(
                f"{variable}: {entry!r} is not provider:messages_per_second "
                f"(providers: {', '.join(known)}; e.g. smpp:50)"
            )
        limits[name] = rate
    return limits


def route_key_candidates(message: OutboundMessage, sms_codes: Sequence[str]) -> list[str]:
    """The route keys to look up for `message`, most specific first.

    `sms_codes` are the country codes that have routes, longest first.
    """
    if message.channel is Channel.SMS:
        return route_key_candidates_for_sms(message.recipient, sms_codes)
    keys = [f"push:{message.push_provider.value}"] if message.push_provider is not None else []
    return [*keys, "push"]


def route_key_candidates_for_sms(recipient: str, sms_codes: Sequence[str]) -> list[str]:
    """route_key_candidates() of an SMS to `recipient`."""
    digits = recipient.lstrip("+")
    matching = [f"sms:{code}" for code in sms_codes if digits.startswith(code)]
    return [*matching[:1], "sms"]


def country_codes(routes: Mapping[str, object]) -> list[str]:
    """Country codes of the "sms:<cc>" keys, longest first (so "1" never shadows "1876")."""
    codes = [key.split(":", 1)[1] for key in routes if key.startswith("sms:")]
    return sorted(codes, key=len, reverse=True)
