"""SmppSender against a local SMSC: bind, send, error classes, hangs, reconnects, receipts."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from service.channels.errors import (
    AmbiguousProviderError,
    PermanentProviderError,
    TransientProviderError,
)
from service.channels.smpp import SmppConfig, SmppSender
from service.channels.smpp.pdu import CommandStatus, TlvTag
from tests.fakes.smpp import FakeSmsc
from tests.providers.conftest import FIXED_NOW, PHONE, RecordingSink, fixed_clock, sms_message
from tests.waiting import eventually

SenderFactory = Callable[..., Awaitable[SmppSender]]


@pytest.fixture
async def smsc() -> AsyncIterator[FakeSmsc]:
    server = await FakeSmsc().start()
    yield server
    await server.aclose()


@pytest.fixture
async def sink() -> RecordingSink:
    return RecordingSink()


@pytest.fixture
async def make_sender(smsc: FakeSmsc, sink: RecordingSink) -> AsyncIterator[SenderFactory]:
    senders: list[SmppSender] = []

    async def factory(*, wait: bool = True, **overrides: object) -> SmppSender:
        values: dict[str, object] = {
            "host": "127.0.0.1",
            "port": smsc.port,
            "system_id": "notifier",
            "password": "secret",
            "source_addr": "10690000",
            "response_timeout_s": 2.0,
            "bind_wait_s": 2.0,
            "reconnect_min_s": 0.05,
            "reconnect_max_s": 0.2,
            "throttle_pause_s": 0.2,
        }
        values.update(overrides)
        sender = SmppSender(SmppConfig(**values), sink, clock=fixed_clock)  # type: ignore[arg-type]
        senders.append(sender)
        await sender.start()
        if wait:
            assert await sender.wait_bound(5)
        return sender

    yield factory
    for sender in senders:
        await sender.aclose()


async def test_send_returns_the_smsc_message_id(make_sender: SenderFactory, smsc: FakeSmsc) -> None:
    """A GSM text is one submit_sm to the E.164 digits, with a receipt requested."""
    sender = await make_sender()
    message_id = await sender.send(sms_message("Your repayment is due today."))
    assert message_id == "00000001"
    [submit] = smsc.submits
    assert submit.destination_addr == PHONE.lstrip("+")
    assert (submit.dest_addr_ton, submit.dest_addr_npi) == (1, 1)
    assert submit.source_addr == "10690000"
    assert submit.data_coding == 0
    assert submit.registered_delivery == 1
    assert submit.short_message == b"Your repayment is due today."
    assert smsc.binds[0].interface_version == 0x34


async def test_chinese_text_is_sent_as_ucs2(make_sender: SenderFactory, smsc: FakeSmsc) -> None:
    """Chinese text goes out with data_coding 8 and decodes back to the same characters."""
    sender = await make_sender()
    text = "【借呗】您的借款今日到期, 请及时还款。"
    await sender.send(sms_message(text))
    [submit] = smsc.submits
    assert submit.data_coding == 8
    assert submit.short_message.decode("utf-16-be") == text


async def test_long_ucs2_text_is_split_with_udh(make_sender: SenderFactory, smsc: FakeSmsc) -> None:
    """150 Chinese characters become 3 parts of one concatenated SMS that reassemble exactly."""
    sender = await make_sender()
    text = ("【借呗】您的借款已逾期五天, 请尽快还款以免影响信用记录。" * 6)[:150]
    first_id = await sender.send(sms_message(text))
    assert first_id == "00000001"
    assert len(smsc.submits) == 3
    headers = [s.short_message[:6] for s in smsc.submits]
    assert all(s.esm_class & 0x40 for s in smsc.submits)
    assert {h[3] for h in headers} == {headers[0][3]}  # one reference for all parts
    assert [(h[4], h[5]) for h in headers] == [(3, 1), (3, 2), (3, 3)]
    body = b"".join(s.short_message[6:] for s in smsc.submits)
    assert body.decode("utf-16-be") == text


async def test_long_text_can_use_message_payload(
    make_sender: SenderFactory, smsc: FakeSmsc
) -> None:
    """In message_payload mode a long text is one submit_sm carrying the whole text in a TLV."""
    sender = await make_sender(long_message="message_payload")
    text = "还款提醒" * 40
    await sender.send(sms_message(text))
    [submit] = smsc.submits
    assert submit.short_message == b""
    payload = submit.tlv(TlvTag.MESSAGE_PAYLOAD)
    assert payload is not None
    assert payload.decode("utf-16-be") == text


@pytest.mark.parametrize(
    "status",
    [CommandStatus.ESME_RTHROTTLED, CommandStatus.ESME_RMSGQFUL, CommandStatus.ESME_RSYSERR],
)
async def test_busy_statuses_are_transient(
    make_sender: SenderFactory, smsc: FakeSmsc, status: int
) -> None:
    """Throttled, queue full and system error are retryable, with the status as the code."""
    sender = await make_sender()
    smsc.submit_statuses.append(status)
    with pytest.raises(TransientProviderError) as caught:
        await sender.send(sms_message("hello"))
    assert caught.value.code == f"0x{status:02X}"


@pytest.mark.parametrize(
    "status",
    [CommandStatus.ESME_RINVDSTADR, CommandStatus.ESME_RINVSRCADR, CommandStatus.ESME_RINVMSGLEN],
)
async def test_refusals_of_the_message_are_permanent(
    make_sender: SenderFactory, smsc: FakeSmsc, status: int
) -> None:
    """Bad destination, bad source and bad length fail the notification without retry."""
    sender = await make_sender()
    smsc.submit_statuses.append(status)
    with pytest.raises(PermanentProviderError) as caught:
        await sender.send(sms_message("hello"))
    assert caught.value.code == f"0x{status:02X}"


async def test_throttling_slows_the_next_send(make_sender: SenderFactory, smsc: FakeSmsc) -> None:
    """After ESME_RTHROTTLED the session waits the pause before its next submit_sm."""
    sender = await make_sender(throttle_pause_s=0.3)
    smsc.submit_statuses.append(CommandStatus.ESME_RTHROTTLED)
    loop = asyncio.get_running_loop()
    with pytest.raises(TransientProviderError) as caught:
        await sender.send(sms_message("hello"))
    assert caught.value.retry_after == pytest.approx(0.3)
    started = loop.time()
    await sender.send(sms_message("hello"))
    assert loop.time() - started >= 0.25


async def test_unanswered_submit_is_ambiguous(make_sender: SenderFactory, smsc: FakeSmsc) -> None:
    """A submit_sm the SMSC never answers may have been accepted: ambiguous, not transient."""
    sender = await make_sender(response_timeout_s=0.3)
    smsc.hang_submits = True
    with pytest.raises(AmbiguousProviderError):
        await sender.send(sms_message("hello"))
    assert len(smsc.submits) == 1


async def test_connection_lost_after_submit_is_ambiguous_then_reconnects(
    make_sender: SenderFactory, smsc: FakeSmsc
) -> None:
    """A drop between submit_sm and its answer is ambiguous; the session rebinds by itself."""
    sender = await make_sender()
    smsc.drop_on_submit = True
    with pytest.raises(AmbiguousProviderError):
        await sender.send(sms_message("hello"))
    smsc.drop_on_submit = False
    await smsc.wait_binds(2)
    assert await sender.send(sms_message("hello again"))
    assert smsc.bound_peers == 1


async def test_dropped_connection_is_rebuilt(make_sender: SenderFactory, smsc: FakeSmsc) -> None:
    """When the SMSC closes the link while idle, the session reconnects and sends again."""
    sender = await make_sender()
    await smsc.drop_connections()
    await smsc.wait_binds(2)
    assert await sender.send(sms_message("after reconnect")) == "00000001"


async def test_unreachable_smsc_fails_sends_as_transient(
    make_sender: SenderFactory, smsc: FakeSmsc
) -> None:
    """With no bound session a send fails transient (nothing was submitted) after bind_wait_s."""
    smsc.refuse_connections = True
    sender = await make_sender(wait=False, bind_wait_s=0.2)
    with pytest.raises(TransientProviderError):
        await sender.send(sms_message("hello"))
    assert smsc.submits == []
    smsc.refuse_connections = False
    assert await sender.wait_bound(5)


async def test_wrong_password_fails_sends_transient_naming_the_bind_status(
    make_sender: SenderFactory, smsc: FakeSmsc
) -> None:
    """A refused bind makes sends fail transient (the session keeps rebinding, the dispatcher
    fails over) with the refusing status as the code, so the log says why."""
    sender = await make_sender(wait=False, password="wrong", bind_wait_s=0.3)
    await eventually(lambda: len(smsc.binds) >= 1, interval=0.01)
    with pytest.raises(TransientProviderError) as caught:
        await sender.send(sms_message("hello"))
    assert caught.value.code == "0x0E"


async def test_window_bounds_outstanding_submits(
    make_sender: SenderFactory, smsc: FakeSmsc
) -> None:
    """With window 2, a third submit_sm waits until one of the first two is settled."""
    sender = await make_sender(window=2, response_timeout_s=0.5)
    smsc.hang_submits = True
    sends = [asyncio.create_task(sender.send(sms_message(f"m{i}"))) for i in range(3)]
    await eventually(lambda: len(smsc.submits) == 2, interval=0.01)
    await asyncio.sleep(0.1)  # give the third send every chance to overtake the window
    assert len(smsc.submits) == 2
    smsc.hang_submits = False
    results = await asyncio.gather(*sends, return_exceptions=True)
    assert sum(isinstance(r, AmbiguousProviderError) for r in results) == 2
    assert len(smsc.submits) == 3


async def test_enquire_link_keeps_alive_and_silence_drops_the_link(
    make_sender: SenderFactory, smsc: FakeSmsc
) -> None:
    """enquire_link goes out periodically; when unanswered the session reconnects."""
    await make_sender(enquire_link_s=0.05, response_timeout_s=0.2)
    await eventually(lambda: smsc.enquire_links >= 2, interval=0.01)
    smsc.answer_enquire_link = False
    await smsc.wait_binds(2)


async def test_delivery_receipts_reach_the_sink(
    make_sender: SenderFactory, smsc: FakeSmsc, sink: RecordingSink
) -> None:
    """DELIVRD and UNDELIV receipts are acknowledged and become delivered / undelivered."""
    sender = await make_sender()
    first = await sender.send(sms_message("one"))
    second = await sender.send(sms_message("two"))
    assert await smsc.send_receipt(first) == 0
    assert await smsc.send_receipt(second, "UNDELIV", "034", tlvs=True) == 0
    assert [(r.provider_message_id, r.status, r.error_code) for r in sink.receipts] == [
        (first, "delivered", "000"),
        (second, "undelivered", "034"),
    ]
    assert all(r.provider == "smpp" and r.received_at == FIXED_NOW for r in sink.receipts)


async def test_intermediate_receipts_are_acknowledged_only(
    make_sender: SenderFactory, smsc: FakeSmsc, sink: RecordingSink
) -> None:
    """ENROUTE is answered with ESME_ROK but reaches nobody."""
    sender = await make_sender()
    message_id = await sender.send(sms_message("one"))
    assert await smsc.send_receipt(message_id, "ENROUTE") == 0
    assert sink.receipts == []


async def test_receipt_of_a_later_part_names_the_first_part(
    make_sender: SenderFactory, smsc: FakeSmsc, sink: RecordingSink
) -> None:
    """Receipts for every part of a long SMS carry the id the send returned."""
    sender = await make_sender()
    first = await sender.send(sms_message("还" * 100))
    await smsc.send_receipt("00000002", "UNDELIV", "001")
    assert [r.provider_message_id for r in sink.receipts] == [first]


async def test_failing_sink_asks_for_redelivery(
    make_sender: SenderFactory, smsc: FakeSmsc, sink: RecordingSink
) -> None:
    """If the sink cannot take a receipt the SMSC gets ESME_RX_T_APPN and will redeliver."""
    sender = await make_sender()
    message_id = await sender.send(sms_message("one"))
    sink.fail = True
    assert await smsc.send_receipt(message_id) == CommandStatus.ESME_RX_T_APPN


async def test_stop_reply_opts_the_sender_out(
    make_sender: SenderFactory, smsc: FakeSmsc, sink: RecordingSink
) -> None:
    """A handset replying STOP (or TD) is reported as an opt-out with its E.164 number."""
    await make_sender()
    assert await smsc.send_mo("8613912345678", " stop ") == 0
    assert await smsc.send_mo("8613900000000", "你好") == 0
    assert [(o.provider, o.phone) for o in sink.opt_outs] == [("smpp", PHONE)]


@pytest.mark.parametrize(
    ("source_addr", "ton", "text"),
    [
        ("13912345678", 2, "TD"),
        ("13912345678", 0, "退订"),
        ("013912345678", 2, "stop"),
        ("8613912345678", 2, "\uff33\uff34\uff2f\uff30\uff01"),
        ("8613912345678", 0, "拒收"),
        ("008613912345678", 0, "T"),
    ],
)
async def test_stop_from_a_national_number_opts_out_the_e164_number(
    make_sender: SenderFactory,
    smsc: FakeSmsc,
    sink: RecordingSink,
    source_addr: str,
    ton: int,
    text: str,
) -> None:
    """A STOP/TD/退订 whose sender the SMSC reports in national or unknown format (ton 2 or 0)
    opts out the borrower's E.164 number, read with the configured country code."""
    await make_sender(country_code="86")
    assert await smsc.send_mo(source_addr, text, source_addr_ton=ton) == 0
    assert sink.opt_outs[0].phone == PHONE


async def test_close_unbinds(make_sender: SenderFactory, smsc: FakeSmsc) -> None:
    """aclose() sends unbind so the SMSC frees the session at once."""
    sender = await make_sender()
    await sender.aclose()
    assert smsc.unbinds == 1
    assert not sender.bound


async def test_no_phone_number_in_logs_or_errors(
    make_sender: SenderFactory, smsc: FakeSmsc, caplog: pytest.LogCaptureFixture
) -> None:
    """Across failures and reconnects neither logs nor error texts contain the number."""
    caplog.set_level(logging.DEBUG)
    sender = await make_sender(response_timeout_s=0.3)
    errors: list[str] = []
    for status in (CommandStatus.ESME_RINVDSTADR, CommandStatus.ESME_RTHROTTLED):
        smsc.submit_statuses.append(status)
        with pytest.raises((TransientProviderError, PermanentProviderError)) as caught:
            await sender.send(sms_message("hello"))
        errors.append(str(caught.value))
    smsc.drop_on_submit = True
    with pytest.raises(AmbiguousProviderError) as ambiguous:
        await sender.send(sms_message("hello"))
    errors.append(str(ambiguous.value))
    digits = PHONE.lstrip("+")
    assert digits not in caplog.text
    assert not any(digits in e for e in errors)
