"""A local SMSC speaking SMPP 3.4 over TCP, with switches for the failures a real one shows.

It binds transceivers, answers submit_sm (with a status chosen by the test, or not at all),
answers enquire_link, records everything it received, and can push deliver_sm (delivery
receipts or mobile-originated replies) to the bound client.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from dataclasses import dataclass, field

from service.channels.smpp.pdu import (
    HEADER,
    BindTransceiver,
    BindTransceiverResp,
    CommandId,
    CommandStatus,
    MessageIdResp,
    Pdu,
    ShortMessage,
    Tlv,
    TlvTag,
    decode_pdu,
    encode_pdu,
)


@dataclass
class _Peer:
    writer: asyncio.StreamWriter
    bound: bool = False
    pending: dict[int, asyncio.Future[Pdu]] = field(default_factory=dict)


class FakeSmsc:
    # A fixed fake credential: the fake is only ever bound to 127.0.0.1 in tests.
    def __init__(self, *, system_id: str = "notifier", password: str = "secret") -> None:  # noqa: S107
        self.system_id = system_id
        self.password = password
        self.port = 0
        # Recorded traffic.
        self.binds: list[BindTransceiver] = []
        self.submits: list[ShortMessage] = []
        self.enquire_links = 0
        self.unbinds = 0
        self.connections = 0
        # Switches.
        self.submit_statuses: deque[int] = deque()  # answers for the next submit_sm, then ROK
        self.hang_submits = False  # read submit_sm, never answer
        self.drop_on_submit = False  # close the connection on reading a submit_sm
        self.answer_enquire_link = True
        self.refuse_connections = False
        self._server: asyncio.Server | None = None
        self._peers: list[_Peer] = []
        self._sequence = 0
        self._message_counter = 0
        self._bind_count = 0
        self._bind_changed = asyncio.Condition()

    async def start(self) -> FakeSmsc:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def aclose(self) -> None:
        await self.drop_connections()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def drop_connections(self) -> None:
        """Close every client connection abruptly, as a crashing SMSC or a firewall would."""
        for peer in list(self._peers):
            peer.writer.close()
            with contextlib.suppress(OSError, ConnectionError):
                await peer.writer.wait_closed()

    async def wait_binds(self, count: int, within_s: float = 10.0) -> None:
        """Wait until `count` successful binds have happened since the start."""
        async with asyncio.timeout(within_s), self._bind_changed:
            await self._bind_changed.wait_for(lambda: self._bind_count >= count)

    @property
    def bound_peers(self) -> int:
        return sum(1 for p in self._peers if p.bound)

    async def send_receipt(
        self, message_id: str, stat: str = "DELIVRD", err: str = "000", *, tlvs: bool = False
    ) -> int:
        """Push a delivery receipt to the bound client; returns its deliver_sm_resp status."""
        text = (
            f"id:{message_id} sub:001 dlvrd:001 submit date:2601151012 "
            f"done date:2601151013 stat:{stat} err:{err} text:"
        )
        extra: tuple[Tlv, ...] = ()
        if tlvs:
            extra = (Tlv(TlvTag.RECEIPTED_MESSAGE_ID, message_id.encode() + b"\x00"),)
        deliver = ShortMessage(
            destination_addr="10690000",
            source_addr="8613800000000",
            esm_class=0x04,
            short_message=text.encode("ascii"),
            tlvs=extra,
        )
        return await self._deliver(deliver)

    async def send_mo(self, source_addr: str, text: str, *, source_addr_ton: int = 1) -> int:
        """Push a reply from a handset (mobile originated); returns the deliver_sm_resp status.

        `source_addr_ton` 1 is international (8613800138000); SMSCs in China often report
        national numbers (13800138000) with ton 2 (national) or 0 (unknown)."""
        ascii_ok = text.isascii()
        deliver = ShortMessage(
            destination_addr="10690000",
            source_addr=source_addr,
            source_addr_ton=source_addr_ton,
            data_coding=0 if ascii_ok else 8,
            short_message=text.encode("ascii" if ascii_ok else "utf-16-be"),
        )
        return await self._deliver(deliver)

    async def _deliver(self, deliver: ShortMessage) -> int:
        peer = next(p for p in self._peers if p.bound)
        self._sequence += 1
        future: asyncio.Future[Pdu] = asyncio.get_running_loop().create_future()
        peer.pending[self._sequence] = future
        peer.writer.write(
            encode_pdu(Pdu(CommandId.DELIVER_SM, 0, self._sequence, deliver.encode()))
        )
        async with asyncio.timeout(10):
            response = await future
        return response.command_status

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self.refuse_connections:
            writer.close()
            return
        peer = _Peer(writer)
        self._peers.append(peer)
        try:
            while True:
                header = await reader.readexactly(HEADER.size)
                length = int.from_bytes(header[:4], "big")
                pdu = decode_pdu(header + await reader.readexactly(length - HEADER.size))
                if not await self._handle(peer, pdu):
                    break
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            self._peers.remove(peer)
            writer.close()

    def _answer(self, peer: _Peer, command_id: int, status: int, seq: int, body: bytes) -> None:
        peer.writer.write(encode_pdu(Pdu(command_id, status, seq, body)))

    async def _handle(self, peer: _Peer, pdu: Pdu) -> bool:
        cid, seq = pdu.command_id, pdu.sequence
        if CommandId.is_response(cid):
            future = peer.pending.pop(seq, None)
            if future is not None and not future.done():
                future.set_result(pdu)
        elif cid == CommandId.BIND_TRANSCEIVER:
            bind = BindTransceiver.decode(pdu.body)
            self.binds.append(bind)
            ok = bind.system_id == self.system_id and bind.password == self.password
            status = CommandStatus.ESME_ROK if ok else CommandStatus.ESME_RINVPASWD
            body = BindTransceiverResp("FAKESMSC").encode() if ok else b""
            self._answer(peer, CommandId.BIND_TRANSCEIVER_RESP, status, seq, body)
            if ok:
                peer.bound = True
                async with self._bind_changed:
                    self._bind_count += 1
                    self._bind_changed.notify_all()
        elif cid == CommandId.SUBMIT_SM:
            self.submits.append(ShortMessage.decode(pdu.body))
            if self.drop_on_submit:
                return False
            if not self.hang_submits:
                status = self.submit_statuses.popleft() if self.submit_statuses else 0
                body = b""
                if status == 0:
                    self._message_counter += 1
                    body = MessageIdResp(f"{self._message_counter:08X}").encode()
                self._answer(peer, CommandId.SUBMIT_SM_RESP, status, seq, body)
        elif cid == CommandId.ENQUIRE_LINK:
            self.enquire_links += 1
            if self.answer_enquire_link:
                self._answer(peer, CommandId.ENQUIRE_LINK_RESP, 0, seq, b"")
        elif cid == CommandId.UNBIND:
            self.unbinds += 1
            self._answer(peer, CommandId.UNBIND_RESP, 0, seq, b"")
            return False
        else:
            self._answer(peer, CommandId.GENERIC_NACK, CommandStatus.ESME_RINVCMDID, seq, b"")
        return True
