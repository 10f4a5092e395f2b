"""Settings -> the receipt webhook's config and routes."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from aiohttp import web

from service.compliance.opt_out import OptOutMatcher
from service.config import Settings
from service.receipts.model import ReceiptSink
from service.receipts.voice_calls import VOICE_GATEWAY, VoiceGatewayCallback
from service.receipts.webhook import WebhookConfig, build_receipt_routes

__all__ = ["receipt_routes", "voice_callback", "webhook_config"]


def webhook_config(settings: Settings) -> WebhookConfig:
    s = settings
    return WebhookConfig(
        public_url=s.receipts_public_url or "",
        twilio_auth_token=s.twilio_auth_token.get_secret_value(),
        twilio_webhook_shared_key=s.twilio_webhook_shared_key.get_secret_value(),
        gateway_secret=s.http_gateway_receipt_secret.get_secret_value(),
        gateway_signature_header=s.http_gateway_receipt_signature_header,
        gateway_id_path=s.http_gateway_receipt_id_path,
        gateway_status_path=s.http_gateway_receipt_status_path,
        gateway_error_path=s.http_gateway_receipt_error_path,
        gateway_pending=frozenset(s.http_gateway_receipt_pending),
        gateway_delivered=frozenset(s.http_gateway_receipt_delivered),
        gateway_inbound_phone_path=s.http_gateway_inbound_phone_path,
        gateway_inbound_text_path=s.http_gateway_inbound_text_path,
        gateway_country_code=s.http_gateway_country_code,
        opt_out=OptOutMatcher.with_extra(s.opt_out_keywords),
        voice_secret=s.voice_gateway_callback_secret.get_secret_value(),
        voice_signature_header=s.voice_gateway_callback_signature_header,
        voice_callback=voice_callback(s),
    )


def voice_callback(settings: Settings) -> VoiceGatewayCallback:
    """How the gateway's outcome callbacks read, from NOTIFIER_VOICE_GATEWAY_CALLBACK_*."""
    s = settings
    return VoiceGatewayCallback(
        provider=VOICE_GATEWAY,
        call_id_path=s.voice_gateway_callback_call_id_path,
        status_path=s.voice_gateway_callback_status_path,
        answered_by_path=s.voice_gateway_callback_answered_by_path or None,
        answered=frozenset(s.voice_gateway_callback_answered),
        pending=frozenset(s.voice_gateway_callback_pending),
        machine=frozenset(s.voice_gateway_callback_machine),
    )


def receipt_routes(
    settings: Settings,
    sink: ReceiptSink,
    *,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> list[web.RouteDef]:
    """The webhook's routes as the settings configure them (add them to an aiohttp app)."""
    return build_receipt_routes(webhook_config(settings), sink, clock=clock)
