"""A local Twilio Programmable Voice API: Calls.json, the Call resource, signed callbacks.

POST /2010-04-01/Accounts/{Sid}/Calls.json       create a call (To, From, Twiml, StatusCallback,
                                                 StatusCallbackEvent..., MachineDetection, AsyncAmd)
GET  /2010-04-01/Accounts/{Sid}/Calls/{CallSid}.json   the Call resource (status, answered_by)
POST /2010-04-01/Accounts/{Sid}/Calls/{CallSid}.json   update a live call (Twiml)

Each call then runs the outcome scripted for its To number (`outcomes`, default `human`):
initiated, ringing, then `busy` / `no-answer` as the final status, or answered (in-progress)
with `answered_by` human or machine_start, and completed. Status callbacks go to StatusCallback
as Twilio sends them, signed with the official `twilio` library's RequestValidator. What the
callee heard is kept per call in `heard` (the TwiML documents that played, in order).
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from twilio.request_validator import RequestValidator

from tests.fakes._server import FakeProviderServer, Reply
from tests.fakes.twilio import FAKE_ACCOUNT_SID, FAKE_AUTH_TOKEN, twilio_error

__all__ = ["FakeCall", "FakeTwilioVoice"]


@dataclass
class FakeCall:
    sid: str
    to: str
    from_: str
    outcome: str
    callback: str | None
    events: list[str]
    detection: bool
    status: str = "queued"
    answered_by: str | None = None
    heard: list[str] = field(default_factory=list)
    callbacks: list[dict[str, str]] = field(default_factory=list)
    updated: asyncio.Event = field(default_factory=asyncio.Event)
    polled_after_answer: asyncio.Event = field(default_factory=asyncio.Event)
    done: asyncio.Event = field(default_factory=asyncio.Event)


class FakeTwilioVoice(FakeProviderServer):
    def __init__(
        self, *, account_sid: str = FAKE_ACCOUNT_SID, auth_token: str = FAKE_AUTH_TOKEN
    ) -> None:
        super().__init__()
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.outcomes: dict[str, str] = {}  # To -> human | machine | no-answer | busy
        self.invalid_numbers: set[str] = set()
        self.calls: dict[str, FakeCall] = {}
        self.callback_answers: list[int] = []
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()

    def fail_next_with(self, status: int, code: int) -> None:
        """The next create request gets Twilio error `code` with HTTP `status`."""
        self.script(Reply(status, twilio_error(code, status=status)))

    def _add_routes(self, app: web.Application) -> None:
        base = "/2010-04-01/Accounts/{sid}"
        app.router.add_post(f"{base}/Calls.json", self._create)
        app.router.add_get(f"{base}/Calls/{{call}}.json", self._fetch)
        app.router.add_post(f"{base}/Calls/{{call}}.json", self._update)

    def _transient_reply(self) -> Reply:
        return Reply(503, twilio_error(20500, status=503))

    def _authorised(self, request: web.Request, auth: tuple[str, str] | None) -> bool:
        sid = request.match_info["sid"]
        return auth == (self.account_sid, self.auth_token) and sid == self.account_sid

    async def _create(self, request: web.Request) -> web.Response:
        received = await self._record(request)
        if not self._authorised(request, received.basic_auth):
            return self._answer(received, Reply(401, twilio_error(20003)))
        scripted = await self._scripted(received)
        if scripted is not None:
            return scripted
        form = await request.post()
        to, from_ = str(form.get("To", "")), str(form.get("From", ""))
        twiml = str(form.get("Twiml", ""))
        if not to:
            return self._answer(received, Reply(400, twilio_error(21201)))
        if not from_:
            return self._answer(received, Reply(400, twilio_error(21213)))
        if not twiml and not form.get("Url"):
            return self._answer(received, Reply(400, twilio_error(21205)))
        if to in self.invalid_numbers or not to.startswith("+"):
            return self._answer(received, Reply(400, twilio_error(21211)))
        call = FakeCall(
            sid=f"CA{next(self._ids):032x}",
            to=to,
            from_=from_,
            outcome=self.outcomes.get(to, "human"),
            callback=str(form["StatusCallback"]) if "StatusCallback" in form else None,
            events=[str(e) for e in form.getall("StatusCallbackEvent", [])],
            detection=form.get("MachineDetection") in ("Enable", "DetectMessageEnd"),
        )
        call.heard.append(twiml)
        self.calls[call.sid] = call
        task = asyncio.create_task(self._run(call))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return self._answer(received, Reply(201, self._resource(call)))

    async def _fetch(self, request: web.Request) -> web.Response:
        received = await self._record(request)
        if not self._authorised(request, received.basic_auth):
            return self._answer(received, Reply(401, twilio_error(20003)))
        call = self.calls.get(request.match_info["call"])
        if call is None:
            return self._answer(received, Reply(404, twilio_error(20404)))
        if call.answered_by is not None:
            call.polled_after_answer.set()
        return self._answer(received, Reply(200, self._resource(call)))

    async def _update(self, request: web.Request) -> web.Response:
        received = await self._record(request)
        if not self._authorised(request, received.basic_auth):
            return self._answer(received, Reply(401, twilio_error(20003)))
        call = self.calls.get(request.match_info["call"])
        if call is None:
            return self._answer(received, Reply(404, twilio_error(20404)))
        if call.status != "in-progress":
            # Twilio: 21220 "Call is not in-progress. Cannot redirect."
            return self._answer(received, Reply(400, twilio_error(21220)))
        call.heard.append(received.form.get("Twiml", ""))
        call.updated.set()
        return self._answer(received, Reply(200, self._resource(call)))

    def _resource(self, call: FakeCall) -> dict[str, Any]:
        return {
            "sid": call.sid,
            "account_sid": self.account_sid,
            "to": call.to,
            "from": call.from_,
            "status": call.status,
            "answered_by": call.answered_by,
            "direction": "outbound-api",
            "api_version": "2010-04-01",
        }

    async def _run(self, call: FakeCall) -> None:
        try:
            await self._progress(call, "initiated", "queued")
            await self._progress(call, "ringing", "ringing")
            if call.outcome in ("busy", "no-answer"):
                await self._progress(call, "completed", call.outcome)
                return
            call.status = "in-progress"
            await self._progress(call, "answered", "in-progress")
            if call.detection:
                call.answered_by = "human" if call.outcome == "human" else "machine_start"
                # The sender reacts to answered_by: a human gets the script (an update), a
                # machine gets nothing more. Wait for that reaction, bounded.
                wait_for = call.updated if call.outcome == "human" else call.polled_after_answer
                try:
                    async with asyncio.timeout(10):
                        await wait_for.wait()
                except TimeoutError:
                    pass
            await self._progress(call, "completed", "completed", duration="21")
        finally:
            call.done.set()

    async def _progress(
        self, call: FakeCall, event: str, status: str, *, duration: str | None = None
    ) -> None:
        call.status = status
        if call.callback is None or event not in call.events:
            return
        params = {
            "AccountSid": self.account_sid,
            "ApiVersion": "2010-04-01",
            "CallSid": call.sid,
            "CallStatus": status,
            "CallbackSource": "call-progress-events",
            "Direction": "outbound-api",
            "From": call.from_,
            "To": call.to,
            "SequenceNumber": str(len(call.callbacks)),
        }
        if call.answered_by is not None:
            params["AnsweredBy"] = call.answered_by
        if duration is not None:
            params["CallDuration"] = duration
        signature = RequestValidator(self.auth_token).compute_signature(call.callback, params)
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                call.callback, data=params, headers={"X-Twilio-Signature": signature}
            ) as response,
        ):
            self.callback_answers.append(response.status)
        call.callbacks.append(params)

    async def __aexit__(self, *exc: Any) -> None:
        for task in list(self._tasks):
            task.cancel()
        await super().__aexit__(*exc)
