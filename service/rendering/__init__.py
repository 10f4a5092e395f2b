"""Rendering: Jinja2 sandbox, per channel and locale, SMS part counting, push payload limits."""

from service.rendering.filters import format_day, format_money, mask_loan_id
from service.rendering.model import PushContent, RenderedMessage, SmsContent
from service.rendering.renderer import (
    SUPPORTED_LOCALES,
    Renderer,
    RenderError,
    TemplateConfigError,
    resolve_locale,
    template_file,
)
from service.rendering.sms import sms_parts

__all__ = [
    "SUPPORTED_LOCALES",
    "PushContent",
    "RenderError",
    "RenderedMessage",
    "Renderer",
    "SmsContent",
    "TemplateConfigError",
    "format_day",
    "format_money",
    "mask_loan_id",
    "resolve_locale",
    "sms_parts",
    "template_file",
]
