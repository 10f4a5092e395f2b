"""Twilio Programmable Voice: one automated reminder call per `send`, outcomes from callbacks.

Request: POST {base}/2010-04-01/Accounts/{AccountSid}/Calls.json, HTTP Basic auth, form fields
To, From, Twiml (inline), StatusCallback, StatusCallbackEvent (repeated: initiated, ringing,
answered, completed) and, with machine detection, MachineDetection=Enable and AsyncAmd=true.
Success: 201 with the Call resource; its `sid` (CA...) is the provider message id.

Machine detection, failing closed. The call starts with TwiML that says only the
limited-content message (who is calling, a number to call back; Reg F 1006.2(j)) after a short
pause. Meanwhile this sender polls the Call resource (GET .../Calls/{Sid}.json) for
`answered_by`; only when it reads `human` does it replace the running TwiML (POST
.../Calls/{Sid}.json with Twiml) with the full script. A machine, a fax, `unknown`, a poll that
fails or a process that dies in between: the callee hears the limited-content message and
nothing else. The state lives in the sending process, so any replica may receive the status
callbacks.

Outcomes (the StatusCallback, signature-checked by the receipt webhook, see `call_receipt`):
completed + AnsweredBy human (or absent, detection off) -> delivered; completed + machine_*,
fax or unknown -> undelivered / `machine` (a message was left, nobody was reached); busy,
no-answer, failed, canceled -> undelivered with that status as the code.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from xml.sax.saxutils import escape, quoteattr

from multidict import MultiDict

from service.channels.base import OutboundMessage
from service.channels.errors import (
    AmbiguousProviderError,
    PermanentProviderError,
    ProviderError,
)
from service.channels.rest import HttpClient, HttpResponse, basic_auth
from service.channels.twilio import classify_twilio_error
from service.clock import Clock, utc_now
from service.events import Channel
from service.receipts.twilio_calls import TWILIO_VOICE, UNANSWERED_CALL_STATUSES, call_receipt

__all__ = ["PROVIDER", "TwilioVoiceConfig", "TwilioVoiceSender", "call_receipt", "twiml_say"]

log = logging.getLogger(__name__)

PROVIDER = TWILIO_VOICE

# 21211 invalid To, 21214 To cannot be reached, 21215/21216 geo permission / blocked number,
# 21217 To not a valid phone number, 13224 invalid number (Voice): never callable as given.
_PERMANENT_RECIPIENT_CODES = frozenset({21211, 21214, 21215, 21216, 21217, 13224})
_STATUS_EVENTS = ("initiated", "ringing", "answered", "completed")
_UNANSWERED = UNANSWERED_CALL_STATUSES
_MACHINE = ("machine_start", "machine_end_beep", "machine_end_silence", "machine_end_other")


def twiml_say(text: str, language: str, *, pause_s: int = 0) -> str:
    """A TwiML document that (after `pause_s` seconds) says `text` in `language`, then hangs up."""
    pause = f'<Pause length="{pause_s}"/>' if pause_s > 0 else ""
    say = f"<Say language={quoteattr(language)}>{escape(text)}</Say>"
    return f'<?xml version="1.0" encoding="UTF-8"?><Response>{pause}{say}<Hangup/></Response>'


@dataclass(frozen=True, slots=True)
class TwilioVoiceConfig:
    """The account and caller id, the StatusCallback URL outcomes come back to (None: every
    call counts as unanswered) and machine detection: `detection_pause_s` of silence before
    the limited-content message, the Call resource polled every `detection_poll_s` for
    `detection_timeout_s` at most."""

    base_url: str
    account_sid: str
    auth_token: str = field(repr=False)
    from_: str
    status_callback: str | None = None
    machine_detection: bool = True
    detection_pause_s: int = 4
    detection_poll_s: float = 1.0
    detection_timeout_s: float = 30.0
    timeout_s: float = 10.0


class TwilioVoiceSender:
    """Automated calls through Twilio. Owns its HTTP client and the detection watchers."""

    def __init__(self, config: TwilioVoiceConfig, *, clock: Clock = utc_now) -> None:
        root = f"{config.base_url.rstrip('/')}/2010-04-01/Accounts/{config.account_sid}"
        self._calls_url = f"{root}/Calls.json"
        self._call_url = f"{root}/Calls/{{sid}}.json"
        self._from = config.from_
        self._status_callback = config.status_callback
        self._detect = config.machine_detection
        self._pause_s = config.detection_pause_s
        self._poll_s = config.detection_poll_s
        self._detect_timeout_s = config.detection_timeout_s
        self._clock = clock
        self._client = HttpClient(
            config.timeout_s,
            provider=PROVIDER,
            headers={"Authorization": basic_auth(config.account_sid, config.auth_token)},
        )
        self._watchers: set[asyncio.Task[None]] = set()

    @property
    def provider(self) -> str:
        return PROVIDER

    @property
    def channel(self) -> Channel:
        return Channel.VOICE

    async def send(self, message: OutboundMessage) -> str:
        voice = message.content.voice
        if voice is None:
            raise PermanentProviderError("no voice content", provider=PROVIDER, code="no_content")
        if self._detect:
            first = twiml_say(voice.limited_script, voice.language, pause_s=self._pause_s)
        else:
            first = twiml_say(voice.script, voice.language)
        form: MultiDict[str] = MultiDict(To=message.recipient, From=self._from, Twiml=first)
        if self._status_callback:
            form["StatusCallback"] = self._status_callback
            form["StatusCallbackMethod"] = "POST"
            for event in _STATUS_EVENTS:
                form.add("StatusCallbackEvent", event)
        if self._detect:
            form["MachineDetection"] = "Enable"
            form["AsyncAmd"] = "true"
        response = await self._client.post(self._calls_url, form=form)
        if response.status_code not in (200, 201):
            raise self._classify(response)
        sid = response.json_object().get("sid")
        if not isinstance(sid, str) or not sid:
            raise AmbiguousProviderError(
                "accepted without a call sid", provider=PROVIDER, code="unreadable_response"
            )
        if self._detect:
            task = asyncio.create_task(
                self._speak_to_humans_only(sid, voice.script, voice.language)
            )
            self._watchers.add(task)
            task.add_done_callback(self._watchers.discard)
        return sid

    async def _speak_to_humans_only(self, sid: str, script: str, language: str) -> None:
        """Poll the call's `answered_by`; replace the TwiML with the full script for a human."""
        url = self._call_url.format(sid=sid)
        try:
            async with asyncio.timeout(self._detect_timeout_s):
                while True:
                    await asyncio.sleep(self._poll_s)
                    call = (await self._client.request("GET", url)).json_object()
                    answered_by = call.get("answered_by")
                    if call.get("status") in ("completed", *_UNANSWERED):
                        return
                    if answered_by == "human":
                        await self._client.post(url, form={"Twiml": twiml_say(script, language)})
                        return
                    if answered_by in (*_MACHINE, "fax", "unknown"):
                        return  # the limited-content message plays, nothing more
        except (ProviderError, TimeoutError) as exc:
            # Fail closed: the limited-content message is all the callee hears.
            log.warning("call detection gave up: %s", type(exc).__name__)

    def _classify(self, response: HttpResponse) -> ProviderError:
        return classify_twilio_error(
            response,
            provider=PROVIDER,
            clock=self._clock,
            recipient_codes=_PERMANENT_RECIPIENT_CODES,
            recipient_refused="number cannot be called",
        )

    async def aclose(self) -> None:
        for task in list(self._watchers):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._client.aclose()
