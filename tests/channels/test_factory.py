"""build_dispatcher: senders from settings, early configuration errors, closing on exit."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from pydantic import SecretStr

from service.channels.base import OutboundMessage
from service.config import Settings
from service.events import Channel, PushProvider
from service.observability.masking import mask_token
from service.pipeline.processor import Dispatch
from service.wiring.channels import build_dispatcher
from tests.channels.conftest import PHONE, TOKEN, push_message, sms_message
from tests.clocks import StepClock
from tests.fakes import FakeFcm, FakeTwilio


class _RecordingSender:
    """A stand-in for a future APNs adapter: accepts everything, counts closes."""

    provider = "apns-test"
    channel = Channel.PUSH

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.closed = 0

    async def send(self, message: OutboundMessage) -> str:
        self.sent.append(message.notification_id)
        return f"apns-{len(self.sent)}"

    async def aclose(self) -> None:
        self.closed += 1


async def test_console_defaults_print_sms_and_any_push() -> None:
    """With default settings SMS and every push provider go to the console, masked."""
    out = io.StringIO()
    async with build_dispatcher(Settings(), out=out, clock=StepClock()) as dispatcher:
        sms = await dispatcher.dispatch(sms_message())
        push = await dispatcher.dispatch(push_message(provider=PushProvider.JPUSH))
    assert (sms.status, sms.provider) == ("sent", "console")
    assert (push.status, push.provider) == ("sent", "console")
    printed = out.getvalue()
    assert "+86*******5678" in printed
    assert f"jpush:{mask_token(TOKEN)}" in printed
    assert PHONE not in printed
    assert TOKEN not in printed


@pytest.mark.parametrize(
    ("settings", "variable"),
    [
        (Settings(sms_provider="twilio"), "NOTIFIER_TWILIO_ACCOUNT_SID"),
        (
            Settings(sms_provider="twilio", twilio_account_sid="AC1"),
            "NOTIFIER_TWILIO_AUTH_TOKEN",
        ),
        (
            Settings(
                sms_provider="twilio", twilio_account_sid="AC1", twilio_auth_token=SecretStr("t")
            ),
            "NOTIFIER_TWILIO_FROM",
        ),
        (Settings(push_provider="fcm"), "NOTIFIER_FCM_SERVICE_ACCOUNT_FILE"),
        (
            Settings(push_provider="fcm", fcm_service_account_file=Path("/nonexistent/sa.json")),
            "NOTIFIER_FCM_SERVICE_ACCOUNT_FILE",
        ),
    ],
)
def test_missing_credentials_are_refused_when_building(settings: Settings, variable: str) -> None:
    """A provider without its credentials stops start-up with a message naming the variable."""
    with pytest.raises(ValueError, match=variable):
        build_dispatcher(settings, out=io.StringIO(), clock=StepClock())


def test_project_id_falls_back_to_the_service_account(tmp_path: Path) -> None:
    """Without NOTIFIER_FCM_PROJECT_ID the file's project_id is used; with neither, refuse."""
    path = tmp_path / "sa.json"
    path.write_text(
        '{"client_email": "a@b", "private_key": "k", "token_uri": "http://t/token"}',
        encoding="utf-8",
    )
    settings = Settings(push_provider="fcm", fcm_service_account_file=path)
    with pytest.raises(ValueError, match="NOTIFIER_FCM_PROJECT_ID"):
        build_dispatcher(settings, out=io.StringIO(), clock=StepClock())


async def test_real_providers_send_and_are_closed_on_exit(
    fake_twilio: FakeTwilio, fake_fcm: FakeFcm
) -> None:
    """Twilio and FCM built from settings reach their fakes; extra routes are used and closed."""
    settings = Settings(
        sms_provider="twilio",
        push_provider="fcm",
        twilio_base_url=fake_twilio.base_url,
        twilio_account_sid=fake_twilio.account_sid,
        twilio_auth_token=SecretStr(fake_twilio.auth_token),
        twilio_from="+15005550006",
        fcm_base_url=fake_fcm.base_url,
        fcm_service_account_file=fake_fcm.account.path,
        send_timeout_s=5,
        send_max_attempts=2,
    )
    apns = _RecordingSender()
    out = io.StringIO()
    async with build_dispatcher(
        settings, out=out, clock=StepClock(), extra_routes={"push:apns": apns}
    ) as dispatcher:
        seam: Dispatch = dispatcher  # mypy: fits the processor's seam as is
        sms = await seam.dispatch(sms_message())
        fcm = await dispatcher.dispatch(push_message())
        apns_outcome = await dispatcher.dispatch(push_message(provider=PushProvider.APNS))
        jpush = await dispatcher.dispatch(push_message(provider=PushProvider.JPUSH))
    assert (sms.status, sms.provider) == ("sent", "twilio")
    assert (fcm.status, fcm.provider) == ("sent", "fcm")
    assert (apns_outcome.status, apns_outcome.provider) == ("sent", "apns-test")
    assert (jpush.status, jpush.reason) == ("failed", "no_route")
    assert len(fake_twilio.sent) == 1
    assert len(fake_fcm.delivered) == 1
    assert out.getvalue() == ""
    assert apns.closed == 1
    # After exit the HTTP clients are closed: a late send cannot reach the provider.
    late = await dispatcher.dispatch(sms_message())
    assert late.status == "unknown"
    assert len(fake_twilio.requests) == 1
