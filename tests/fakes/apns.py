"""A local APNs speaking HTTP/2 (cleartext, prior knowledge) built directly on h2.

It checks the provider JWT (ES256 signature with the team's public key, kid, iss), records
every request, and answers with what the test queued: a status and an APNs `reason`, a hang,
or a dropped connection. Tokens marked expired get 403 ExpiredProviderToken, as APNs does.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any

import jwt
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import ConnectionTerminated, DataReceived, RequestReceived, StreamEnded


@dataclass(frozen=True)
class ApnsRequest:
    path: str
    headers: dict[str, str]
    payload: dict[str, Any]
    bearer: str


@dataclass(frozen=True)
class ApnsAnswer:
    status: int = 200
    reason: str | None = None
    retry_after: str | None = None
    hang: bool = False
    drop: bool = False


class _Protocol(asyncio.Protocol):
    def __init__(self, fake: FakeApns) -> None:
        self._fake = fake
        self._conn = H2Connection(H2Configuration(client_side=False, header_encoding="utf-8"))
        self._streams: dict[int, tuple[dict[str, str], bytearray]] = {}
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self._fake.connections += 1
        self._conn.initiate_connection()
        transport.write(self._conn.data_to_send())

    def data_received(self, data: bytes) -> None:
        for event in self._conn.receive_data(data):
            if isinstance(event, RequestReceived) and event.stream_id is not None:
                headers = {str(k): str(v) for k, v in event.headers or []}
                self._streams[event.stream_id] = (headers, bytearray())
            elif isinstance(event, DataReceived) and event.stream_id is not None:
                self._streams[event.stream_id][1].extend(event.data or b"")
                self._conn.acknowledge_received_data(
                    event.flow_controlled_length or 0, event.stream_id
                )
            elif isinstance(event, StreamEnded) and event.stream_id is not None:
                headers, body = self._streams.pop(event.stream_id)
                self._fake._handle(self, event.stream_id, headers, bytes(body))
            elif isinstance(event, ConnectionTerminated) and self.transport is not None:
                self.transport.close()
        self.flush()

    def flush(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(self._conn.data_to_send())

    def respond(self, stream_id: int, status: int, headers: dict[str, str], body: bytes) -> None:
        pairs = [(":status", str(status)), *headers.items()]
        self._conn.send_headers(stream_id, pairs, end_stream=not body)
        if body:
            self._conn.send_data(stream_id, body, end_stream=True)
        self.flush()


class FakeApns:
    def __init__(self, *, public_key_pem: str, key_id: str, team_id: str) -> None:
        self._public_key = public_key_pem
        self._key_id = key_id
        self._team_id = team_id
        self.requests: list[ApnsRequest] = []
        self.answers: deque[ApnsAnswer] = deque()
        self.expired_tokens: set[str] = set()
        self.connections = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._protocols: list[_Protocol] = []

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> FakeApns:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._new_protocol, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def _new_protocol(self) -> _Protocol:
        protocol = _Protocol(self)
        self._protocols.append(protocol)
        return protocol

    async def aclose(self) -> None:
        for protocol in self._protocols:
            if protocol.transport is not None:
                protocol.transport.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def expire_seen_tokens(self) -> None:
        """From now on, every provider token seen so far is answered as expired."""
        self.expired_tokens.update(r.bearer for r in self.requests)

    def _handle(
        self, proto: _Protocol, stream_id: int, headers: dict[str, str], body: bytes
    ) -> None:
        bearer = headers.get("authorization", "").removeprefix("bearer ")
        self.requests.append(
            ApnsRequest(headers[":path"], headers, json.loads(body or b"{}"), bearer)
        )
        refusal = self._check_token(bearer)
        if refusal is not None:
            self._answer(proto, stream_id, ApnsAnswer(403, refusal))
            return
        problem = invalid_headers(headers)
        if problem is not None:
            self._answer(proto, stream_id, ApnsAnswer(400, problem))
            return
        answer = self.answers.popleft() if self.answers else ApnsAnswer()
        if answer.hang:
            return
        if answer.drop and proto.transport is not None:
            proto.transport.close()
            return
        self._answer(proto, stream_id, answer, headers.get("apns-id"))

    def _check_token(self, bearer: str) -> str | None:
        if bearer in self.expired_tokens:
            return "ExpiredProviderToken"
        try:
            header = jwt.get_unverified_header(bearer)
            claims = jwt.decode(
                bearer, self._public_key, algorithms=["ES256"], options={"verify_iat": False}
            )
        except jwt.PyJWTError:
            return "InvalidProviderToken"
        if header.get("kid") != self._key_id or claims.get("iss") != self._team_id:
            return "InvalidProviderToken"
        return None

    def _answer(
        self, proto: _Protocol, stream_id: int, answer: ApnsAnswer, apns_id: str | None = None
    ) -> None:
        headers = {"apns-id": apns_id or str(uuid.uuid4())}
        if answer.retry_after is not None:
            headers["retry-after"] = answer.retry_after
        body = b""
        if answer.status != 200:
            headers["content-type"] = "application/json"
            body = json.dumps({"reason": answer.reason}).encode()
        proto.respond(stream_id, answer.status, headers, body)


def invalid_headers(headers: dict[str, str]) -> str | None:
    """The reason APNs gives for a malformed apns-collapse-id / apns-expiration, or None."""
    collapse = headers.get("apns-collapse-id")
    if collapse is not None and len(collapse.encode()) > 64:
        return "BadCollapseId"
    expiration = headers.get("apns-expiration")
    if expiration is not None and not expiration.isdigit():
        return "BadExpirationDate"
    return None
