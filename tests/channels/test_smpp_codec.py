"""SMPP 3.4 codec: PDUs, text encoding and segmentation, delivery-receipt parsing."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.channels.smpp.pdu import (
    BindTransceiver,
    CommandId,
    MessageIdResp,
    Pdu,
    PduError,
    ShortMessage,
    Tlv,
    TlvTag,
    decode_pdu,
    encode_pdu,
)
from service.channels.smpp.receipt import parse_receipt
from service.channels.smpp.text import (
    DATA_CODING_DEFAULT,
    DATA_CODING_UCS2,
    decode_text,
    encode_text,
    split_for_udh,
)

_ascii = st.characters(min_codepoint=1, max_codepoint=127)


def cstr(max_len: int) -> st.SearchStrategy[str]:
    return st.text(_ascii, max_size=max_len - 1)


octet = st.integers(0, 255)
tlvs = st.lists(st.builds(Tlv, st.integers(0, 0xFFFF), st.binary(max_size=64)), max_size=3).map(
    tuple
)

short_messages = st.builds(
    ShortMessage,
    destination_addr=cstr(21),
    short_message=st.binary(max_size=254),
    source_addr=cstr(21),
    service_type=cstr(6),
    source_addr_ton=octet,
    source_addr_npi=octet,
    dest_addr_ton=octet,
    dest_addr_npi=octet,
    esm_class=octet,
    protocol_id=octet,
    priority_flag=octet,
    schedule_delivery_time=cstr(17),
    validity_period=cstr(17),
    registered_delivery=octet,
    replace_if_present_flag=octet,
    data_coding=octet,
    sm_default_msg_id=octet,
    tlvs=tlvs,
)


@given(short_messages)
def test_submit_sm_body_round_trips(message: ShortMessage) -> None:
    """Every field of submit_sm / deliver_sm, TLVs included, survives encode -> decode."""
    assert ShortMessage.decode(message.encode()) == message


@given(st.builds(BindTransceiver, cstr(16), cstr(9), cstr(13), octet, octet, octet, cstr(41)))
def test_bind_transceiver_round_trips(bind: BindTransceiver) -> None:
    """bind_transceiver fields survive encode -> decode."""
    assert BindTransceiver.decode(bind.encode()) == bind


@given(
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**32 - 1),
    st.integers(1, 0x7FFFFFFF),
    st.binary(max_size=300),
)
def test_pdu_frame_round_trips(command_id: int, status: int, seq: int, body: bytes) -> None:
    """The 16-octet header and the body survive encode -> decode."""
    pdu = Pdu(command_id, status, seq, body)
    assert decode_pdu(encode_pdu(pdu)) == pdu


@given(st.binary(max_size=400))
def test_garbage_bodies_raise_only_pdu_error(data: bytes) -> None:
    """Arbitrary bytes never crash the decoder with anything but PduError."""
    for decoder in (ShortMessage.decode, BindTransceiver.decode, MessageIdResp.decode):
        with contextlib.suppress(PduError):
            decoder(data)


def test_enquire_link_matches_the_spec_bytes() -> None:
    """An enquire_link is exactly the 16-octet header of SMPP 3.4 section 4.11.1."""
    frame = encode_pdu(Pdu(CommandId.ENQUIRE_LINK, 0, 1))
    assert frame == bytes.fromhex("00000010000000150000000000000001")


def test_submit_sm_resp_without_body_on_error() -> None:
    """An error submit_sm_resp may omit the message_id entirely and still decode."""
    assert MessageIdResp.decode(b"").message_id == ""
    assert MessageIdResp.decode(b"abc\x00").message_id == "abc"


def test_overlong_c_string_is_refused() -> None:
    """A source address longer than 20 characters cannot be encoded."""
    with pytest.raises(PduError):
        ShortMessage(destination_addr="1", source_addr="x" * 21).encode()


def test_gsm_text_uses_default_alphabet_with_escapes() -> None:
    """GSM text is data_coding 0; extension characters take two septets."""
    encoded = encode_text("Pay {now} 5€")
    assert encoded.data_coding == DATA_CODING_DEFAULT
    assert len(encoded.octets) == len("Pay {now} 5€") + 3
    assert decode_text(encoded.octets, DATA_CODING_DEFAULT) == "Pay {now} 5€"


def test_chinese_text_uses_ucs2() -> None:
    """Any Chinese character switches the whole text to UCS-2 (data_coding 8)."""
    encoded = encode_text("【借呗】您好")
    assert encoded.data_coding == DATA_CODING_UCS2
    assert encoded.octets == "【借呗】您好".encode("utf-16-be")


@pytest.mark.parametrize(
    ("text", "sizes"),
    [
        ("a" * 160, [160]),
        ("a" * 161, [153, 8]),
        ("还" * 70, [140]),
        ("还" * 71, [134, 8]),
        ("还" * 134, [134, 134]),
    ],
)
def test_segment_sizes_follow_the_sms_limits(text: str, sizes: list[int]) -> None:
    """Single SMS up to 160 GSM / 70 UCS-2 characters, else 153 / 67 per part."""
    assert [len(p) for p in split_for_udh(encode_text(text))] == sizes


def test_split_never_breaks_a_gsm_escape_or_a_surrogate_pair() -> None:
    """A part boundary falls before an escape pair or an emoji, never inside it."""
    gsm_parts = split_for_udh(encode_text("a" * 152 + "€" + "b" * 10))
    assert gsm_parts[0] == b"a" * 152
    emoji_parts = split_for_udh(encode_text("还" * 66 + "😀" + "还" * 10))
    assert emoji_parts[0] == ("还" * 66).encode("utf-16-be")
    assert "".join(p.decode("utf-16-be") for p in emoji_parts) == "还" * 66 + "😀" + "还" * 10


def _receipt(text: str, *tlv: Tlv) -> ShortMessage:
    return ShortMessage(
        destination_addr="1", esm_class=0x04, short_message=text.encode(), tlvs=tuple(tlv)
    )


def test_receipt_text_is_parsed() -> None:
    """The Appendix B receipt text yields the message id, state and error."""
    receipt = parse_receipt(
        _receipt(
            "id:0A1B sub:001 dlvrd:000 submit date:2601151010 done date:2601151011 "
            "stat:UNDELIV err:034 text:"
        )
    )
    assert receipt is not None
    assert (receipt.message_id, receipt.outcome, receipt.err) == ("0A1B", "undelivered", "034")


def test_receipt_tlvs_win_over_text() -> None:
    """receipted_message_id and message_state TLVs override the text fields."""
    receipt = parse_receipt(
        _receipt(
            "id:999 stat:UNDELIV err:000",
            Tlv(TlvTag.RECEIPTED_MESSAGE_ID, b"ABC\x00"),
            Tlv(TlvTag.MESSAGE_STATE, b"\x02"),
        )
    )
    assert receipt is not None
    assert (receipt.message_id, receipt.outcome) == ("ABC", "delivered")


def test_intermediate_receipt_has_no_outcome() -> None:
    """ENROUTE / ACCEPTD receipts are not final and carry no delivered/undelivered outcome."""
    receipt = parse_receipt(_receipt("id:1 stat:ENROUTE err:000"))
    assert receipt is not None
    assert receipt.outcome is None


@pytest.mark.parametrize(
    "text",
    [
        "id:0A1B sub:001 dlvrd:001 submit date:2601151010 done date:2601151011 "
        "stat:DELIVRD err:000 text:Rapid: pay now",
        "id:0A1B sub:001 dlvrd:001 stat:DELIVRD err:000 text:id:FAKE stat:UNDELIV err:999",
        "id:0A1B stat:DELIVRD err:000 Text:Valid: see ID: 42 stat: REJECTD",
    ],
)
def test_receipt_keys_are_anchored_and_the_free_text_is_not_read(text: str) -> None:
    """Only keys that start the text or follow a space, before `text:`, count: the copy of the
    message after `text:` ("Rapid: pay now") never supplies the id, state or error."""
    receipt = parse_receipt(_receipt(text))
    assert receipt is not None
    assert (receipt.message_id, receipt.stat, receipt.err) == ("0A1B", "DELIVRD", "000")
