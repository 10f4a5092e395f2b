"""Rendering: Jinja2 sandbox, per channel and locale, SMS part counting, push payload limits."""

from service.rendering.model import PushContent, RenderedMessage, SmsContent

__all__ = ["PushContent", "RenderedMessage", "SmsContent"]
