"""The SMPP 3.4 ESME session: one bound transceiver link, kept alive, rebuilt when it breaks.

Lifecycle: `start()` launches a background task that connects, binds (bind_transceiver),
keeps the link alive with enquire_link and, when the link dies, fails the requests waiting on
it and reconnects with exponential backoff. `send()` never connects itself: it waits up to
`bind_wait_s` for a bound link, then submits one submit_sm per part. At most `window`
submit_sm wait for their submit_sm_resp at once, matched by sequence number.

Ambiguity: once a submit_sm has been written, a lost connection or a missing answer means the
SMSC may have accepted it; that is an `AmbiguousProviderError`, never a transient one. For a
long message the same holds from the second part on: parts already accepted make a resend a
duplicate.

deliver_sm from the SMSC are answered after the `ReceiptSink` has taken them (at-least-once:
a failing sink answers ESME_RX_T_APPN so the SMSC redelivers later).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import ssl
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Literal

from service.channels.base import OutboundMessage
from service.channels.errors import (
    AmbiguousProviderError,
    PermanentProviderError,
    TransientProviderError,
)
from service.channels.smpp.pdu import (
    HEADER,
    MAX_PDU_LENGTH,
    BindTransceiver,
    CommandId,
    CommandStatus,
    MessageIdResp,
    Pdu,
    PduError,
    ShortMessage,
    Tlv,
    TlvTag,
    decode_pdu,
    encode_pdu,
)
from service.channels.smpp.receipt import is_receipt, parse_receipt
from service.channels.smpp.status import (
    THROTTLING_STATUSES,
    error_for_status,
    status_code,
)
from service.channels.smpp.text import ESM_UDHI, concat_udh, decode_text, encode_text, split_for_udh
from service.clock import Clock, utc_now
from service.compliance.opt_out import OptOutMatcher
from service.events import Channel
from service.observability import metrics, tracing
from service.receipts.model import ProviderReceipt, ReceiptSink
from service.receipts.phone import reply_sender_e164s

__all__ = ["SmppConfig", "SmppSender"]

log = logging.getLogger(__name__)

_ESME_RX_P_APPN = 0x65  # permanent application error: do not redeliver
_PART_ID_MEMORY = 50_000


@dataclass(frozen=True, slots=True)
class SmppConfig:
    host: str
    port: int
    system_id: str
    password: str = field(repr=False)
    system_type: str = ""
    source_addr: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    dest_addr_ton: int = 1
    dest_addr_npi: int = 1
    tls: bool = False
    window: int = 10
    enquire_link_s: float = 30.0
    response_timeout_s: float = 10.0
    bind_wait_s: float = 5.0
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 60.0
    throttle_pause_s: float = 1.0
    long_message: Literal["udh", "message_payload"] = "udh"
    registered_delivery: bool = True
    opt_out: OptOutMatcher = field(default_factory=OptOutMatcher.with_extra)
    # Country code of senders in national format (source_addr_ton 0 or 2).
    country_code: str = "86"
    provider: str = "smpp"


class _LinkLost(Exception):
    """The TCP connection under a request went away."""


class _BindRefused(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"bind refused: {status_code(status)}")
        self.status = status


class _Link:
    """One TCP connection and the requests waiting for answers on it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.pending: dict[int, asyncio.Future[Pdu]] = {}
        self.alive = True

    def write(self, pdu: Pdu) -> None:
        if not self.alive or self.writer.is_closing():
            raise _LinkLost("link closed")
        self.writer.write(encode_pdu(pdu))

    def close(self) -> None:
        self.alive = False
        for fut in self.pending.values():
            if not fut.done():
                fut.set_exception(_LinkLost("connection lost"))
        self.pending.clear()
        self.writer.close()

    async def read_pdu(self) -> Pdu:
        header = await self.reader.readexactly(HEADER.size)
        length = int.from_bytes(header[:4], "big")
        if not HEADER.size <= length <= MAX_PDU_LENGTH:
            raise PduError("implausible command_length")
        return decode_pdu(header + await self.reader.readexactly(length - HEADER.size))


class SmppSender:
    """`Sender` over one SMPP transceiver session. Start with `start()`, stop with `aclose()`."""

    def __init__(
        self,
        config: SmppConfig,
        sink: ReceiptSink,
        *,
        clock: Clock = utc_now,
    ) -> None:
        self._config = config
        self._sink = sink
        self._clock = clock
        self._window = asyncio.Semaphore(config.window)
        self._link: _Link | None = None
        self._bound = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._closing = False
        self._sequence = 0
        self._udh_reference = random.SystemRandom().randrange(256)
        self._throttled_until = 0.0
        self._last_bind_status: int | None = None
        self._part_ids: OrderedDict[str, str] = OrderedDict()
        self._deliveries: set[asyncio.Task[None]] = set()

    # --- Sender protocol ------------------------------------------------------------------------
    @property
    def provider(self) -> str:
        return self._config.provider

    @property
    def channel(self) -> Channel:
        return Channel.SMS

    @property
    def bound(self) -> bool:
        return self._bound.is_set()

    async def start(self) -> None:
        """Begin connecting in the background; an unreachable SMSC does not stop the service."""
        if self._runner is None:
            self._closing = False
            self._runner = asyncio.create_task(self._run(), name="smpp-session")

    async def wait_bound(self, within_s: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._bound.wait(), within_s)
        return self._bound.is_set()

    async def send(self, message: OutboundMessage) -> str:
        sms = message.content.sms
        if sms is None:
            raise PermanentProviderError("message has no SMS content", provider=self.provider)
        submits = self._build_submits(message.recipient, sms.text)
        first_id: str | None = None
        for index, submit in enumerate(submits):
            try:
                with tracing.span(
                    "submit_sm",
                    {
                        "rpc.system": "smpp",
                        "notifier.provider": self.provider,
                        "notifier.sms_part": index + 1,
                        "notifier.sms_parts": len(submits),
                    },
                    kind=tracing.SpanKind.CLIENT,
                ):
                    message_id = await self._submit(submit)
            except (TransientProviderError, PermanentProviderError) as exc:
                if first_id is None:
                    raise
                raise AmbiguousProviderError(
                    f"part {index + 1} of {len(submits)} failed after earlier parts were "
                    f"accepted: {exc.args[0]}",
                    provider=self.provider,
                    code=exc.code,
                ) from exc
            if first_id is None:
                first_id = message_id
            else:
                self._remember_part(message_id, first_id)
        assert first_id is not None
        return first_id

    async def aclose(self) -> None:
        self._closing = True
        link = self._link
        if link is not None and link.alive:
            with contextlib.suppress(_LinkLost, TimeoutError, OSError):
                await self._request(link, CommandId.UNBIND, b"", wait_s=1.0)
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
            self._runner = None
        for task in list(self._deliveries):
            task.cancel()
        await asyncio.gather(*self._deliveries, return_exceptions=True)

    # --- submitting -----------------------------------------------------------------------------
    def _build_submits(self, recipient: str, text: str) -> list[ShortMessage]:
        c = self._config
        encoded = encode_text(text)
        base = ShortMessage(
            destination_addr=recipient.lstrip("+"),
            source_addr=c.source_addr,
            source_addr_ton=c.source_addr_ton,
            source_addr_npi=c.source_addr_npi,
            dest_addr_ton=c.dest_addr_ton,
            dest_addr_npi=c.dest_addr_npi,
            registered_delivery=1 if c.registered_delivery else 0,
            data_coding=encoded.data_coding,
        )
        if encoded.fits_one_part:
            return [dataclasses.replace(base, short_message=encoded.octets)]
        if c.long_message == "message_payload":
            return [dataclasses.replace(base, tlvs=(Tlv(TlvTag.MESSAGE_PAYLOAD, encoded.octets),))]
        try:
            parts = split_for_udh(encoded)
        except ValueError as exc:
            raise PermanentProviderError(str(exc), provider=self.provider) from exc
        self._udh_reference = (self._udh_reference + 1) % 256
        return [
            dataclasses.replace(
                base,
                esm_class=ESM_UDHI,
                short_message=concat_udh(self._udh_reference, len(parts), i + 1) + part,
            )
            for i, part in enumerate(parts)
        ]

    async def _submit(self, submit: ShortMessage) -> str:
        loop = asyncio.get_running_loop()
        pause = self._throttled_until - loop.time()
        if pause > 0:
            await asyncio.sleep(pause)
        async with self._window:
            link = await self._wait_link()
            try:
                response = await self._request(
                    link, CommandId.SUBMIT_SM, submit.encode(), self._config.response_timeout_s
                )
            except _LinkLost as exc:
                raise AmbiguousProviderError(
                    "connection lost before submit_sm_resp", provider=self.provider
                ) from exc
            except TimeoutError as exc:
                raise AmbiguousProviderError(
                    "no submit_sm_resp in time", provider=self.provider
                ) from exc
        status = response.command_status
        if status == CommandStatus.ESME_ROK and response.command_id == CommandId.SUBMIT_SM_RESP:
            try:
                return MessageIdResp.decode(response.body).message_id
            except PduError as exc:
                raise AmbiguousProviderError(
                    "accepted, but the submit_sm_resp is unreadable", provider=self.provider
                ) from exc
        retry_after: float | None = None
        if status in THROTTLING_STATUSES:
            retry_after = self._config.throttle_pause_s
            self._throttled_until = loop.time() + retry_after
        if response.command_id == CommandId.GENERIC_NACK and status == CommandStatus.ESME_ROK:
            status = CommandStatus.ESME_RSYSERR
        raise error_for_status(status, provider=self.provider, retry_after=retry_after)

    async def _wait_link(self) -> _Link:
        if not await self.wait_bound(self._config.bind_wait_s) or self._link is None:
            # A refused bind (ALERT_STATUSES) stays transient: the session keeps rebinding, and
            # notifier_smpp_bound says it is down (see service/channels/errors.py).
            code = status_code(self._last_bind_status) if self._last_bind_status else None
            raise TransientProviderError("no bound SMPP session", provider=self.provider, code=code)
        return self._link

    def _next_sequence(self) -> int:
        self._sequence = self._sequence % 0x7FFFFFFF + 1
        return self._sequence

    async def _request(self, link: _Link, command_id: int, body: bytes, wait_s: float) -> Pdu:
        sequence = self._next_sequence()
        future: asyncio.Future[Pdu] = asyncio.get_running_loop().create_future()
        link.pending[sequence] = future
        try:
            link.write(Pdu(command_id, 0, sequence, body))
            return await asyncio.wait_for(future, wait_s)
        finally:
            link.pending.pop(sequence, None)

    def _remember_part(self, part_id: str, first_id: str) -> None:
        self._part_ids[part_id] = first_id
        while len(self._part_ids) > _PART_ID_MEMORY:
            self._part_ids.popitem(last=False)

    # --- the session loop -----------------------------------------------------------------------
    async def _run(self) -> None:
        c = self._config
        delay = c.reconnect_min_s
        while not self._closing:
            try:
                link = await self._connect_and_bind()
            except (
                OSError,
                TimeoutError,
                PduError,
                _BindRefused,
                asyncio.IncompleteReadError,
            ) as exc:
                metrics.SMPP_RECONNECTS.labels(self.provider).inc()
                log.warning("smpp connect/bind failed: %s; retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay * random.SystemRandom().uniform(0.8, 1.0))
                delay = min(delay * 2, c.reconnect_max_s)
                continue
            delay = c.reconnect_min_s
            self._link = link
            self._bound.set()
            metrics.SMPP_BOUND.labels(self.provider).set(1)
            log.info("smpp session bound")
            try:
                await self._serve(link)
            finally:
                self._bound.clear()
                self._link = None
                metrics.SMPP_BOUND.labels(self.provider).set(0)
                link.close()
            if not self._closing:
                log.warning("smpp link lost; reconnecting")
                await asyncio.sleep(c.reconnect_min_s)

    async def _connect_and_bind(self) -> _Link:
        c = self._config
        context = ssl.create_default_context() if c.tls else None
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(c.host, c.port, ssl=context), c.response_timeout_s
        )
        link = _Link(reader, writer)
        try:
            bind = BindTransceiver(c.system_id, c.password, c.system_type)
            sequence = self._next_sequence()
            link.write(Pdu(CommandId.BIND_TRANSCEIVER, 0, sequence, bind.encode()))
            async with asyncio.timeout(c.response_timeout_s):
                while True:
                    pdu = await link.read_pdu()
                    if pdu.sequence == sequence and CommandId.is_response(pdu.command_id):
                        break
            self._last_bind_status = pdu.command_status
            if pdu.command_status != CommandStatus.ESME_ROK:
                raise _BindRefused(pdu.command_status)
        except BaseException:
            link.close()
            raise
        return link

    async def _serve(self, link: _Link) -> None:
        tasks = [
            asyncio.create_task(self._read_loop(link), name="smpp-read"),
            asyncio.create_task(self._keepalive(link), name="smpp-enquire-link"),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _read_loop(self, link: _Link) -> None:
        try:
            while True:
                pdu = await link.read_pdu()
                if not self._dispatch(link, pdu):
                    return
        except (asyncio.IncompleteReadError, OSError, PduError, _LinkLost) as exc:
            log.warning("smpp link read ended: %s", type(exc).__name__)

    def _dispatch(self, link: _Link, pdu: Pdu) -> bool:
        """Route one inbound PDU; False when the peer ended the session."""
        if CommandId.is_response(pdu.command_id):
            future = link.pending.get(pdu.sequence)
            if future is not None and not future.done():
                future.set_result(pdu)
            return True
        if pdu.command_id == CommandId.ENQUIRE_LINK:
            link.write(Pdu(CommandId.ENQUIRE_LINK_RESP, 0, pdu.sequence))
        elif pdu.command_id == CommandId.DELIVER_SM:
            task = asyncio.create_task(self._on_deliver(link, pdu))
            self._deliveries.add(task)
            task.add_done_callback(self._deliveries.discard)
        elif pdu.command_id == CommandId.UNBIND:
            link.write(Pdu(CommandId.UNBIND_RESP, 0, pdu.sequence))
            return False
        else:
            link.write(Pdu(CommandId.GENERIC_NACK, CommandStatus.ESME_RINVCMDID, pdu.sequence))
        return True

    async def _keepalive(self, link: _Link) -> None:
        c = self._config
        while True:
            await asyncio.sleep(c.enquire_link_s)
            try:
                await self._request(link, CommandId.ENQUIRE_LINK, b"", c.response_timeout_s)
            except (TimeoutError, _LinkLost):
                log.warning("smpp enquire_link unanswered; dropping the link")
                return

    async def _on_deliver(self, link: _Link, pdu: Pdu) -> None:
        status = CommandStatus.ESME_ROK
        try:
            await self._take_delivery(ShortMessage.decode(pdu.body))
        except PduError:
            log.warning("smpp deliver_sm unreadable; refused")
            status = _ESME_RX_P_APPN
        except Exception:
            log.exception("receipt sink failed; asking the SMSC to redeliver")
            status = CommandStatus.ESME_RX_T_APPN
        with contextlib.suppress(_LinkLost):
            link.write(
                Pdu(CommandId.DELIVER_SM_RESP, status, pdu.sequence, MessageIdResp("").encode())
            )

    async def _take_delivery(self, deliver: ShortMessage) -> None:
        now = self._clock()
        if is_receipt(deliver):
            receipt = parse_receipt(deliver)
            if receipt is None or receipt.outcome is None:
                return
            message_id = self._part_ids.get(receipt.message_id, receipt.message_id)
            metrics.RECEIPTS.labels(self.provider, receipt.outcome).inc()
            await self._sink.on_receipt(
                ProviderReceipt(self.provider, message_id, receipt.outcome, receipt.err, now)
            )
            return
        text = decode_text(deliver.short_message, deliver.data_coding)
        if not text:
            payload = deliver.tlv(TlvTag.MESSAGE_PAYLOAD)
            text = decode_text(payload, deliver.data_coding) if payload else ""
        if self._config.opt_out.matches(text):
            phones = reply_sender_e164s(
                deliver.source_addr, self._config.country_code, ton=deliver.source_addr_ton
            )
            for phone in phones:
                await self._sink.on_opt_out(self.provider, phone, now)
            metrics.RECEIPTS.labels(self.provider, "opt_out").inc()
