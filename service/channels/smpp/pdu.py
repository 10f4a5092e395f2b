"""SMPP 3.4 PDU codec: bytes <-> frozen dataclasses. No IO.

Layout (SMPP 3.4, section 3.2): a 16-octet header of four big-endian u32 (command_length,
command_id, command_status, sequence_number), then the mandatory body fields in their fixed
order, then optional TLVs (u16 tag, u16 length, value). C-Octet Strings end with NUL and have a
maximum length that includes it.

Only the PDUs an ESME transceiver needs are typed: bind_transceiver(_resp), submit_sm(_resp),
deliver_sm(_resp), enquire_link(_resp), unbind(_resp), generic_nack. Others still decode as a
raw `Pdu` so the session can answer them with generic_nack.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Self

__all__ = [
    "HEADER",
    "MAX_PDU_LENGTH",
    "BindTransceiver",
    "BindTransceiverResp",
    "CommandId",
    "CommandStatus",
    "MessageIdResp",
    "Pdu",
    "PduError",
    "ShortMessage",
    "Tlv",
    "TlvTag",
    "decode_pdu",
    "encode_pdu",
]

HEADER = struct.Struct(">IIII")
MAX_PDU_LENGTH = 64 * 1024  # far above any real PDU; guards against a garbage length field
_RESP = 0x80000000


class PduError(ValueError):
    """Bytes that are not a valid PDU of the expected kind."""


class CommandId:
    GENERIC_NACK = 0x80000000
    BIND_TRANSCEIVER = 0x00000009
    BIND_TRANSCEIVER_RESP = 0x80000009
    SUBMIT_SM = 0x00000004
    SUBMIT_SM_RESP = 0x80000004
    DELIVER_SM = 0x00000005
    DELIVER_SM_RESP = 0x80000005
    UNBIND = 0x00000006
    UNBIND_RESP = 0x80000006
    ENQUIRE_LINK = 0x00000015
    ENQUIRE_LINK_RESP = 0x80000015

    @staticmethod
    def is_response(command_id: int) -> bool:
        return bool(command_id & _RESP)


class CommandStatus:
    ESME_ROK = 0x00
    ESME_RINVMSGLEN = 0x01
    ESME_RINVCMDLEN = 0x02
    ESME_RINVCMDID = 0x03
    ESME_RINVBNDSTS = 0x04
    ESME_RALYBND = 0x05
    ESME_RSYSERR = 0x08
    ESME_RINVSRCADR = 0x0A
    ESME_RINVDSTADR = 0x0B
    ESME_RBINDFAIL = 0x0D
    ESME_RINVPASWD = 0x0E
    ESME_RINVSYSID = 0x0F
    ESME_RMSGQFUL = 0x14
    ESME_RSUBMITFAIL = 0x45
    ESME_RTHROTTLED = 0x58
    ESME_RX_T_APPN = 0x64


class TlvTag:
    RECEIPTED_MESSAGE_ID = 0x001E
    SAR_MSG_REF_NUM = 0x020C
    SAR_TOTAL_SEGMENTS = 0x020E
    SAR_SEGMENT_SEQNUM = 0x020F
    NETWORK_ERROR_CODE = 0x0423
    MESSAGE_PAYLOAD = 0x0424
    MESSAGE_STATE = 0x0427
    SC_INTERFACE_VERSION = 0x0210


@dataclass(frozen=True, slots=True)
class Pdu:
    """One PDU: header fields plus the raw body (decode it with the typed classes below)."""

    command_id: int
    command_status: int
    sequence: int
    body: bytes = b""


def encode_pdu(pdu: Pdu) -> bytes:
    return (
        HEADER.pack(HEADER.size + len(pdu.body), pdu.command_id, pdu.command_status, pdu.sequence)
        + pdu.body
    )


def decode_pdu(frame: bytes) -> Pdu:
    """Decode one whole frame (command_length included)."""
    if len(frame) < HEADER.size:
        raise PduError("frame shorter than the PDU header")
    length, command_id, status, sequence = HEADER.unpack_from(frame)
    if length != len(frame):
        raise PduError("command_length does not match the frame")
    return Pdu(command_id, status, sequence, bytes(frame[HEADER.size :]))


@dataclass(frozen=True, slots=True)
class Tlv:
    tag: int
    value: bytes


class _Reader:
    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def u8(self) -> int:
        if self._pos >= len(self._data):
            raise PduError("body ends inside a field")
        value = self._data[self._pos]
        self._pos += 1
        return value

    def octets(self, n: int) -> bytes:
        if self._pos + n > len(self._data):
            raise PduError("body ends inside a field")
        value = self._data[self._pos : self._pos + n]
        self._pos += n
        return value

    def cstring(self, max_len: int) -> str:
        end = self._data.find(b"\x00", self._pos)
        if end < 0:
            raise PduError("C-Octet String without its NUL terminator")
        if end - self._pos + 1 > max_len:
            raise PduError("C-Octet String longer than its maximum")
        raw = self._data[self._pos : end]
        self._pos = end + 1
        try:
            return raw.decode("ascii")
        except UnicodeDecodeError as exc:
            raise PduError("C-Octet String is not ASCII") from exc

    def at_end(self) -> bool:
        return self._pos >= len(self._data)

    def tlvs(self) -> tuple[Tlv, ...]:
        found: list[Tlv] = []
        while not self.at_end():
            header = self.octets(4)
            tag, length = struct.unpack(">HH", header)
            found.append(Tlv(tag, self.octets(length)))
        return tuple(found)


def _cstring(value: str, max_len: int) -> bytes:
    raw = value.encode("ascii")
    if b"\x00" in raw or len(raw) + 1 > max_len:
        raise PduError("C-Octet String too long or contains NUL")
    return raw + b"\x00"


def _tlvs(tlvs: tuple[Tlv, ...]) -> bytes:
    out = bytearray()
    for tlv in tlvs:
        if len(tlv.value) > 0xFFFF:
            raise PduError("TLV value too long")
        out += struct.pack(">HH", tlv.tag, len(tlv.value)) + tlv.value
    return bytes(out)


def find_tlv(tlvs: tuple[Tlv, ...], tag: int) -> bytes | None:
    for tlv in tlvs:
        if tlv.tag == tag:
            return tlv.value
    return None


@dataclass(frozen=True, slots=True)
class BindTransceiver:
    system_id: str
    password: str
    system_type: str = ""
    interface_version: int = 0x34
    addr_ton: int = 0
    addr_npi: int = 0
    address_range: str = ""

    def encode(self) -> bytes:
        return (
            _cstring(self.system_id, 16)
            + _cstring(self.password, 9)
            + _cstring(self.system_type, 13)
            + bytes((self.interface_version, self.addr_ton, self.addr_npi))
            + _cstring(self.address_range, 41)
        )

    @classmethod
    def decode(cls, body: bytes) -> Self:
        r = _Reader(body)
        value = cls(
            r.cstring(16), r.cstring(9), r.cstring(13), r.u8(), r.u8(), r.u8(), r.cstring(41)
        )
        if not r.at_end():
            raise PduError("trailing bytes after bind_transceiver")
        return value


@dataclass(frozen=True, slots=True)
class BindTransceiverResp:
    system_id: str
    tlvs: tuple[Tlv, ...] = ()

    def encode(self) -> bytes:
        return _cstring(self.system_id, 16) + _tlvs(self.tlvs)

    @classmethod
    def decode(cls, body: bytes) -> Self:
        if not body:  # an error response may carry no body at all
            return cls("")
        r = _Reader(body)
        return cls(r.cstring(16), r.tlvs())


@dataclass(frozen=True, slots=True)
class MessageIdResp:
    """submit_sm_resp and deliver_sm_resp: a message_id (empty in deliver_sm_resp)."""

    message_id: str

    def encode(self) -> bytes:
        return _cstring(self.message_id, 65)

    @classmethod
    def decode(cls, body: bytes) -> Self:
        if not body:  # SMPP 3.4 4.4.2: no body when command_status is not 0
            return cls("")
        r = _Reader(body)
        return cls(r.cstring(65))


@dataclass(frozen=True, slots=True)
class ShortMessage:
    """The common body of submit_sm and deliver_sm (SMPP 3.4, 4.4.1 and 4.6.1)."""

    destination_addr: str
    short_message: bytes = b""
    source_addr: str = ""
    service_type: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    esm_class: int = 0
    protocol_id: int = 0
    priority_flag: int = 0
    schedule_delivery_time: str = ""
    validity_period: str = ""
    registered_delivery: int = 0
    replace_if_present_flag: int = 0
    data_coding: int = 0
    sm_default_msg_id: int = 0
    tlvs: tuple[Tlv, ...] = field(default=())

    def encode(self) -> bytes:
        if len(self.short_message) > 254:
            raise PduError("short_message longer than 254 octets")
        return (
            _cstring(self.service_type, 6)
            + bytes((self.source_addr_ton, self.source_addr_npi))
            + _cstring(self.source_addr, 21)
            + bytes((self.dest_addr_ton, self.dest_addr_npi))
            + _cstring(self.destination_addr, 21)
            + bytes((self.esm_class, self.protocol_id, self.priority_flag))
            + _cstring(self.schedule_delivery_time, 17)
            + _cstring(self.validity_period, 17)
            + bytes(
                (
                    self.registered_delivery,
                    self.replace_if_present_flag,
                    self.data_coding,
                    self.sm_default_msg_id,
                    len(self.short_message),
                )
            )
            + self.short_message
            + _tlvs(self.tlvs)
        )

    @classmethod
    def decode(cls, body: bytes) -> Self:
        r = _Reader(body)
        service_type = r.cstring(6)
        source_ton, source_npi = r.u8(), r.u8()
        source_addr = r.cstring(21)
        dest_ton, dest_npi = r.u8(), r.u8()
        destination = r.cstring(21)
        esm_class, protocol_id, priority = r.u8(), r.u8(), r.u8()
        schedule, validity = r.cstring(17), r.cstring(17)
        registered, replace, coding, default_id, sm_length = (
            r.u8(),
            r.u8(),
            r.u8(),
            r.u8(),
            r.u8(),
        )
        short_message = r.octets(sm_length)
        return cls(
            destination_addr=destination,
            short_message=short_message,
            source_addr=source_addr,
            service_type=service_type,
            source_addr_ton=source_ton,
            source_addr_npi=source_npi,
            dest_addr_ton=dest_ton,
            dest_addr_npi=dest_npi,
            esm_class=esm_class,
            protocol_id=protocol_id,
            priority_flag=priority,
            schedule_delivery_time=schedule,
            validity_period=validity,
            registered_delivery=registered,
            replace_if_present_flag=replace,
            data_coding=coding,
            sm_default_msg_id=default_id,
            tlvs=r.tlvs(),
        )

    def tlv(self, tag: int) -> bytes | None:
        return find_tlv(self.tlvs, tag)
