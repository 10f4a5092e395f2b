"""HttpGatewaySender against a local industry-style gateway: templated body, code mapping."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable

import pytest

from service.channels.errors import (
    AmbiguousProviderError,
    PermanentProviderError,
    ProviderError,
    ProviderMisconfigured,
    RecipientOptedOut,
    TransientProviderError,
)
from service.channels.http_gateway import HttpGatewaySender
from service.config import Settings
from service.wiring.channels import build_http_gateway_sender
from tests.channels.helpers import PHONE, sms_message
from tests.fakes.http_gateway import FakeHttpGateway, GatewayAnswer

TEXT = "【借呗】您的借款今日到期, 请及时还款。"
Factory = Callable[..., HttpGatewaySender]


@pytest.fixture
async def gateway() -> AsyncIterator[FakeHttpGateway]:
    server = await FakeHttpGateway().start()
    yield server
    await server.aclose()


@pytest.fixture
async def make_sender(gateway: FakeHttpGateway) -> AsyncIterator[Factory]:
    senders: list[HttpGatewaySender] = []

    def factory(**overrides: object) -> HttpGatewaySender:
        values: dict[str, object] = {
            "http_gateway_url": gateway.url,
            "http_gateway_account": "acct01",
            "http_gateway_password": "pw-secret",
            "http_gateway_message_id_path": "data.msgid",
            "http_gateway_transient_codes": ["101", "102"],
            "http_gateway_permanent_codes": ["201"],
            "http_gateway_opt_out_codes": ["301"],
            "http_gateway_alert_codes": ["401"],
            "send_timeout_s": 0.5,
        }
        values.update(overrides)
        sender = build_http_gateway_sender(Settings(**values))  # type: ignore[arg-type]
        senders.append(sender)
        return sender

    yield factory
    for sender in senders:
        await sender.aclose()


async def test_default_template_fits_a_typical_gateway(
    make_sender: Factory, gateway: FakeHttpGateway
) -> None:
    """The JSON body carries account, password, the national number and the text; id returned."""
    sender = make_sender()
    assert await sender.send(sms_message(TEXT, nid="e1:sms:0")) == "G1"
    [request] = gateway.requests
    assert request.method == "POST"
    assert request.body == {
        "account": "acct01",
        "password": "pw-secret",
        "mobile": "13912345678",
        "content": TEXT,
        "uid": "e1:sms:0",
    }


async def test_form_body_and_auth_header(make_sender: Factory, gateway: FakeHttpGateway) -> None:
    """A form-encoded gateway with a bearer header needs only settings."""
    sender = make_sender(
        http_gateway_body_format="form",
        http_gateway_body_template='{"to": "{phone}", "msg": "{text}", "from": "{sender}"}',
        http_gateway_sender="JieBei",
        http_gateway_auth_value="Bearer tok-1",
    )
    await sender.send(sms_message(TEXT))
    [request] = gateway.requests
    assert request.body == {"to": PHONE, "msg": TEXT, "from": "JieBei"}
    assert request.headers["Authorization"] == "Bearer tok-1"


async def test_get_sends_the_template_as_query(
    make_sender: Factory, gateway: FakeHttpGateway
) -> None:
    """With method GET the filled template becomes the query string."""
    sender = make_sender(http_gateway_method="GET")
    await sender.send(sms_message("hello"))
    assert gateway.requests[0].query["mobile"] == "13912345678"


@pytest.mark.parametrize(
    ("code", "error"),
    [
        ("101", TransientProviderError),
        ("201", PermanentProviderError),
        ("301", RecipientOptedOut),
        ("401", ProviderMisconfigured),
        ("999", PermanentProviderError),
    ],
)
async def test_result_codes_follow_the_configured_lists(
    make_sender: Factory,
    gateway: FakeHttpGateway,
    code: str,
    error: type[ProviderError],
) -> None:
    """Each configured code list maps to its error class; an unlisted code is permanent."""
    sender = make_sender()
    gateway.answers.append(GatewayAnswer(code=code))
    with pytest.raises(error) as caught:
        await sender.send(sms_message("hello"))
    assert caught.value.code == code
    assert type(caught.value) is error


async def test_unknown_code_can_be_configured_transient(
    make_sender: Factory, gateway: FakeHttpGateway
) -> None:
    """http_gateway_unknown_code=transient turns unlisted codes into retries."""
    sender = make_sender(http_gateway_unknown_code="transient")
    gateway.answers.append(GatewayAnswer(code="999"))
    with pytest.raises(TransientProviderError):
        await sender.send(sms_message("hello"))


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (GatewayAnswer(http_status=503), TransientProviderError),
        (GatewayAnswer(http_status=429), TransientProviderError),
        (GatewayAnswer(http_status=404), PermanentProviderError),
        (GatewayAnswer(hang=True), AmbiguousProviderError),
        (GatewayAnswer(drop=True), AmbiguousProviderError),
        (GatewayAnswer(not_json=True), AmbiguousProviderError),
    ],
)
async def test_http_failures_are_classified(
    make_sender: Factory,
    gateway: FakeHttpGateway,
    answer: GatewayAnswer,
    error: type[Exception],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """5xx/429 retry, other 4xx fail, and no readable answer after sending is ambiguous."""
    caplog.set_level(logging.DEBUG)
    sender = make_sender()
    gateway.answers.append(answer)
    with pytest.raises(error) as caught:
        await sender.send(sms_message("hello"))
    digits = PHONE.lstrip("+")[2:]
    assert digits not in caplog.text
    assert digits not in str(caught.value)
    assert "pw-secret" not in caplog.text


async def test_unreachable_gateway_is_transient(make_sender: Factory) -> None:
    """A refused connection means nothing was sent."""
    sender = make_sender(http_gateway_url="http://127.0.0.1:9/sms/send")
    with pytest.raises(TransientProviderError):
        await sender.send(sms_message("hello"))


def test_bad_template_is_refused_at_start() -> None:
    """A template with an unknown placeholder stops the service with the setting's name."""
    with pytest.raises(ValueError, match="NOTIFIER_HTTP_GATEWAY_BODY_TEMPLATE"):
        build_http_gateway_sender(
            Settings(http_gateway_url="http://x", http_gateway_body_template='{"a": "{pwd}"}')
        )
