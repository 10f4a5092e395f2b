"""Provider calls as spans, against local providers speaking the real protocols: one span per
SMPP submit_sm (each part of a long text), one HTTP span per APNs request, and neither names
the recipient."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from service.channels.apns import ApnsConfig, ApnsSender
from service.channels.errors import PermanentProviderError
from service.channels.smpp import SmppConfig, SmppSender
from service.events import PushProvider
from service.observability import tracing
from tests.channels.helpers import (
    DEVICE_TOKEN,
    PHONE,
    RecordingSink,
    fixed_clock,
    push_message,
    sms_message,
)
from tests.fakes.apns import ApnsAnswer, FakeApns
from tests.fakes.smpp import FakeSmsc

# Three UCS-2 parts (67 characters each at most).
LONG_TEXT = "您的借款已逾期请尽快还款以免影响信用记录。" * 8


async def test_each_submit_sm_of_a_long_sms_is_a_client_span(
    span_exporter: InMemorySpanExporter,
) -> None:
    """A three-part SMS is three submit_sm spans under the attempt, numbered 1..3, with the
    SMSC's answer; the destination number appears in none of them."""
    span_exporter.clear()
    smsc = await FakeSmsc().start()
    sender = SmppSender(
        SmppConfig(
            host="127.0.0.1",
            port=smsc.port,
            system_id="notifier",
            password="secret",
            source_addr="10690000",
        ),
        RecordingSink(),
        clock=fixed_clock,
    )
    await sender.start()
    try:
        assert await sender.wait_bound(5)
        with tracing.span("provider attempt") as attempt:
            await sender.send(sms_message(LONG_TEXT))
    finally:
        await sender.aclose()
        await smsc.aclose()
    assert len(smsc.submits) == 3
    submits = [s for s in span_exporter.get_finished_spans() if s.name == "submit_sm"]
    assert [s.attributes["notifier.sms_part"] for s in submits if s.attributes] == [1, 2, 3]
    for submit in submits:
        assert submit.kind is SpanKind.CLIENT
        assert submit.parent is not None
        assert submit.parent.span_id == attempt.get_span_context().span_id
        assert submit.status.status_code is not StatusCode.ERROR
    dump = "".join(s.to_json() for s in span_exporter.get_finished_spans())
    assert PHONE.lstrip("+") not in dump
    assert PHONE[3:] not in dump


async def test_an_apns_request_is_an_http_span_without_the_device_token(
    span_exporter: InMemorySpanExporter,
) -> None:
    """APNs' 410 Unregistered is a failed POST span with the status and host, and the device
    token (in the request path) is nowhere in it."""
    span_exporter.clear()
    key = ec.generate_private_key(ec.SECP256R1())
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    apns = await FakeApns(public_key_pem=public, key_id="ABC123DEFG", team_id="TEAM123456").start()
    sender = ApnsSender(
        ApnsConfig(apns.base_url, private, "ABC123DEFG", "TEAM123456", "com.example.jiebei")
    )
    apns.answers.append(ApnsAnswer(410, "Unregistered"))
    try:
        with tracing.span("provider attempt"), pytest.raises(PermanentProviderError):
            await sender.send(push_message(PushProvider.APNS))
    finally:
        await sender.aclose()
        await apns.aclose()
    (post,) = [s for s in span_exporter.get_finished_spans() if s.name == "POST"]
    assert post.kind is SpanKind.CLIENT
    assert post.attributes is not None
    assert post.attributes["http.response.status_code"] == 410
    assert post.attributes["server.address"] == "127.0.0.1"
    assert post.attributes["notifier.provider"] == "apns"
    assert post.status.status_code is StatusCode.ERROR
    dump = "".join(s.to_json() for s in span_exporter.get_finished_spans())
    assert DEVICE_TOKEN not in dump
    assert DEVICE_TOKEN[:12] not in dump
