"""The label values initialised at start cover every value the code can emit."""

from __future__ import annotations

import re

from service.config import Settings
from service.events import Channel
from service.observability import metrics
from service.receipts.voice_calls import VOICE_GATEWAY
from service.wiring.channels import route_plan
from tests.conftest import REPO_ROOT

SERVICE = REPO_ROOT / "service"


def _literals(pattern: str) -> set[str]:
    found: set[str] = set()
    for path in SERVICE.rglob("*.py"):
        found.update(re.findall(pattern, path.read_text(encoding="utf-8")))
    return found


def test_every_webhook_refusal_reason_is_initialised() -> None:
    """A new refusal reason in the webhook code must be added to the series created at start."""
    reasons = _literals(r'_refuse\("[a-z_]+", "([a-z_]+)"\)') | _literals(
        r'WEBHOOK_REJECTED\.labels\("[a-z_]+", "([a-z_]+)"\)'
    )
    assert reasons, "no refusal reason found in the source"
    assert reasons <= set(metrics.WEBHOOK_REJECT_REASONS), reasons - set(
        metrics.WEBHOOK_REJECT_REASONS
    )


def test_every_dead_letter_class_and_attempt_outcome_is_initialised() -> None:
    """DLQ error classes and provider-attempt outcomes in the code are all created at start."""
    classes = _literals(r'UndecodableEvent\(\s*"([A-Za-z]+)"')
    # metrics.PROVIDER_ATTEMPTS.labels(..., outcome="x") or labelled(PROVIDER_ATTEMPTS, ...)
    outcomes = _literals(r'PROVIDER_ATTEMPTS(?:\.labels\(|,)[^)]*outcome="([a-z_]+)"')
    assert classes
    assert outcomes
    assert classes <= set(metrics.DLQ_ERROR_CLASSES), classes
    assert outcomes <= set(metrics.ATTEMPT_OUTCOMES), outcomes


def test_every_channel_and_callback_provider_is_initialised() -> None:
    """Calls have their last-send series and the voice gateway its webhook refusals from start,
    so a dashboard or alert on them sees a voice outage that begins with a restart."""
    assert {channel.value for channel in Channel} <= set(metrics.CHANNELS)
    assert {"twilio", "http_gateway", VOICE_GATEWAY} <= set(metrics.WEBHOOK_PROVIDERS)


def test_the_voice_providers_are_in_the_route_plan_the_app_initialises() -> None:
    """app.py creates the series of `route_plan(settings)`'s providers: calls' included."""
    plan = route_plan(Settings(voice_provider="twilio_voice,console"))
    assert plan.voice == ("twilio_voice", "console")
