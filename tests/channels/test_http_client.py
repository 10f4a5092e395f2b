"""The REST adapters' HTTP client: what each way an exchange can fail means for a resend.

Raw asyncio servers play the misbehaving provider, so each failure happens at a known point:
before the request was read, after it was read with no answer, or half-way through the answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from service.channels.errors import AmbiguousProviderError, TransientProviderError
from service.channels.rest import HttpClient, basic_auth

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def raw_server(handler: Handler) -> AsyncIterator[str]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/send"
    finally:
        server.close()
        await server.wait_closed()


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return head + await reader.readexactly(length)


async def test_answer_is_read_whole_with_case_insensitive_headers() -> None:
    """Status, headers (any case) and body come back; form and credentials go out as sent."""
    seen: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await _read_request(reader))
        body = b'{"sid": "SM1"}'
        writer.write(
            b"HTTP/1.1 429 Too Many Requests\r\nretry-after: 7\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        await writer.drain()
        writer.close()

    async with raw_server(handler) as url:
        client = HttpClient(
            2.0, provider="p", headers={"Authorization": basic_auth("user", "pass")}
        )
        try:
            response = await client.post(url, form={"To": "+8613800000000", "Body": "a b"})
        finally:
            await client.aclose()
    assert response.status_code == 429
    assert response.headers.get("Retry-After") == "7"
    assert response.json() == {"sid": "SM1"}
    request = seen[0]
    assert b"Authorization: Basic dXNlcjpwYXNz" in request
    assert request.endswith(b"To=%2B8613800000000&Body=a+b")


async def test_connection_closed_after_the_request_was_read_is_ambiguous() -> None:
    """The provider read the whole request and hung up: it may have sent the message."""
    requests = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal requests
        await _read_request(reader)
        requests += 1
        writer.close()

    async with raw_server(handler) as url:
        client = HttpClient(2.0, provider="p")
        try:
            with pytest.raises(AmbiguousProviderError) as caught:
                await client.post(url, json={"a": 1})
        finally:
            await client.aclose()
    assert requests == 1
    assert caught.value.code == "connection_lost"
    assert "127.0.0.1" not in str(caught.value)


async def test_answer_cut_off_half_way_is_ambiguous() -> None:
    """A 200 whose body never arrives whole cannot be read as accepted or refused."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"name": ')
        await writer.drain()
        writer.close()

    async with raw_server(handler) as url:
        client = HttpClient(2.0, provider="p")
        try:
            with pytest.raises(AmbiguousProviderError):
                await client.post(url, json={"a": 1})
        finally:
            await client.aclose()


async def test_no_answer_in_time_is_ambiguous() -> None:
    """Read the request, never answer: a timeout after sending, never retried blindly."""
    release = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        await release.wait()
        writer.close()

    async with raw_server(handler) as url:
        client = HttpClient(0.2, provider="p")
        try:
            with pytest.raises(AmbiguousProviderError) as caught:
                await client.post(url, form={"a": "1"})
        finally:
            release.set()
            await client.aclose()
    assert caught.value.code == "timeout"


async def test_waiting_for_a_free_connection_is_transient() -> None:
    """All connections busy past the connect budget: this request never left, so retry it."""
    release = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        await release.wait()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
        await writer.drain()
        writer.close()

    async with raw_server(handler) as url:
        client = HttpClient(0.3, provider="p", max_connections=1)
        try:
            busy = asyncio.create_task(client.post(url, form={}, timeout_s=5.0))
            await asyncio.sleep(0.05)
            with pytest.raises(TransientProviderError) as caught:
                await client.post(url, form={})
            release.set()
            assert (await busy).status_code == 200
        finally:
            release.set()
            await client.aclose()
    assert caught.value.code == "connect"


async def test_closed_client_refuses_to_send() -> None:
    """After shutdown closed the client, a late send fails instead of reopening connections."""
    client = HttpClient(1.0, provider="p")
    await client.aclose()
    with pytest.raises(RuntimeError):
        await client.post("http://127.0.0.1:9/send", form={})
