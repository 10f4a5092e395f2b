"""A local Twilio Messaging API: POST /2010-04-01/Accounts/{Sid}/Messages.json, and the list
GET /2010-04-01/Accounts/{Sid}/Messages.json?To=...&DateSent>=YYYY-MM-DD&PageSize=N (newest
first, paged through `next_page_uri`; an accepted message appears in the list only
`list_delay_s` after it was accepted, as Twilio's list lags its create).

Checks Basic auth and the form like Twilio does, answers 201 with a Message resource, and
speaks Twilio's error JSON {"code", "message", "more_info", "status"}. Recipients listed in
`unsubscribed`, `invalid_numbers`, `non_mobile` or `landlines` always get the matching error,
so end-to-end tests can make one borrower fail deterministically.
"""

from __future__ import annotations

import itertools
import secrets
import time
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from tests.fakes._server import FakeProviderServer, ReceivedRequest, Reply

__all__ = ["TWILIO_ERRORS", "FakeTwilio", "twilio_error"]

FAKE_ACCOUNT_SID = "AC" + "0" * 32
FAKE_AUTH_TOKEN = "fake-twilio-token"

TWILIO_ERRORS: dict[int, tuple[int, str]] = {
    20003: (401, "Authenticate"),
    20404: (404, "The requested resource was not found"),
    20429: (429, "Too Many Requests"),
    20500: (500, "An internal server error has occurred"),
    21211: (400, "The 'To' number is not a valid phone number."),
    21602: (400, "Message body is required."),
    21603: (400, "A 'From' phone number is required."),
    21604: (400, "A 'To' phone number is required."),
    21610: (400, "Attempt to send to unsubscribed recipient"),
    21614: (400, "'To' number is not a valid mobile number"),
    30006: (400, "Landline or unreachable carrier"),
}


def twilio_error(code: int, *, status: int | None = None) -> dict[str, Any]:
    default_status, message = TWILIO_ERRORS.get(code, (400, "Error"))
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status or default_status,
    }


class FakeTwilio(FakeProviderServer):
    """`async with FakeTwilio() as fake:` then point a TwilioSender at `fake.base_url`."""

    def __init__(
        self, *, account_sid: str = FAKE_ACCOUNT_SID, auth_token: str = FAKE_AUTH_TOKEN
    ) -> None:
        super().__init__()
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.unsubscribed: set[str] = set()
        self.invalid_numbers: set[str] = set()
        self.non_mobile: set[str] = set()
        self.landlines: set[str] = set()
        self._ids = itertools.count(1)
        # Accepted messages, oldest first: (listed from, on the monotonic clock; resource).
        self.accepted: list[tuple[float, dict[str, Any]]] = []
        self.list_delay_s = 0.0
        self.list_requests = 0

    # --- switches ---------------------------------------------------------------------------
    def fail_next(self, count: int = 1, *, status: int = 503) -> None:
        """The next `count` sends get a 5xx (transient)."""
        self.script(Reply(status, twilio_error(20500, status=status)), count)

    def throttle_next(self, count: int = 1, *, retry_after: str | None = "1") -> None:
        """The next `count` sends get 429 / code 20429, with Retry-After if given."""
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        self.script(Reply(429, twilio_error(20429), headers), count)

    def reject_next(self, code: int = 21211, *, count: int = 1, status: int | None = None) -> None:
        """The next `count` sends get Twilio error `code` (e.g. 21211, 21610, 20003)."""
        body = twilio_error(code, status=status)
        self.script(Reply(body["status"], body), count)

    def _transient_reply(self) -> Reply:
        return Reply(503, twilio_error(20500, status=503))

    # --- what was received ------------------------------------------------------------------
    @property
    def sent(self) -> list[ReceivedRequest]:
        """Accepted sends (201), in order."""
        return [r for r in self.requests if r.status == 201]

    # --- protocol ---------------------------------------------------------------------------
    def _add_routes(self, app: web.Application) -> None:
        app.router.add_post("/2010-04-01/Accounts/{sid}/Messages.json", self._create_message)
        app.router.add_get("/2010-04-01/Accounts/{sid}/Messages.json", self._list_messages)

    async def _list_messages(self, request: web.Request) -> web.Response:
        self.list_requests += 1
        received = await self._record(request)
        if received.basic_auth != (self.account_sid, self.auth_token):
            return self._answer(received, Reply(401, twilio_error(20003)))
        query = request.query
        to, since = query.get("To"), query.get("DateSent>")
        size = max(1, min(int(query.get("PageSize", "50")), 1000))
        page = int(query.get("Page", "0"))
        now = time.monotonic()
        listed = [
            m
            for at, m in reversed(self.accepted)
            if at <= now
            and (to is None or m["to"] == to)
            and (since is None or m["date_sent_day"] >= since)
        ]
        chunk = listed[page * size : (page + 1) * size]
        base = f"/2010-04-01/Accounts/{self.account_sid}/Messages.json"
        params = {k: v for k, v in query.items() if k not in ("Page", "PageToken")}
        next_uri = None
        if (page + 1) * size < len(listed):
            params.update(Page=str(page + 1), PageToken=f"PA{page + 1}")
            next_uri = f"{base}?{urlencode(params)}"
        body = {
            "messages": [{k: v for k, v in m.items() if k != "date_sent_day"} for m in chunk],
            "page": page,
            "page_size": size,
            "uri": str(request.rel_url),
            "next_page_uri": next_uri,
        }
        return self._answer(received, Reply(200, body))

    async def _create_message(self, request: web.Request) -> web.Response:
        received = await self._record(request)
        sid = request.match_info["sid"]
        if received.basic_auth != (self.account_sid, self.auth_token) or sid != self.account_sid:
            return self._answer(received, Reply(401, twilio_error(20003)))
        scripted = await self._scripted(received)
        if scripted is not None:
            return scripted
        form = received.form
        problem = self._refusal(form)
        if problem is not None:
            error = twilio_error(problem)
            return self._answer(received, Reply(error["status"], error))
        resource = self._message_resource(form)
        listed = {
            **resource,
            "status": "sent",
            "date_sent": resource["date_created"],
            "date_sent_day": datetime.now(UTC).date().isoformat(),
        }
        self.accepted.append((time.monotonic() + self.list_delay_s, listed))
        return self._answer(received, Reply(201, resource))

    def _refusal(self, form: dict[str, str]) -> int | None:
        """The Twilio error code this form earns, checked in Twilio's order, or None."""
        to = form.get("To", "")
        checks = [
            (not to, 21604),
            (not form.get("Body"), 21602),
            (not (form.get("From") or form.get("MessagingServiceSid")), 21603),
            (to in self.unsubscribed, 21610),
            (to in self.invalid_numbers or not to.startswith("+"), 21211),
            (to in self.non_mobile, 21614),
            (to in self.landlines, 30006),
        ]
        return next((code for failed, code in checks if failed), None)

    def _message_resource(self, form: dict[str, str]) -> dict[str, Any]:
        message_sid = f"SM{next(self._ids):08x}{secrets.token_hex(12)}"
        now = format_datetime(datetime.now(UTC), usegmt=True)
        uri = f"/2010-04-01/Accounts/{self.account_sid}/Messages/{message_sid}"
        return {
            "account_sid": self.account_sid,
            "api_version": "2010-04-01",
            "body": form.get("Body"),
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": form.get("From"),
            "messaging_service_sid": form.get("MessagingServiceSid"),
            "num_media": "0",
            "num_segments": "1",
            "price": None,
            "price_unit": "USD",
            "sid": message_sid,
            "status": "queued",
            "subresource_uris": {"media": f"{uri}/Media.json"},
            "to": form.get("To"),
            "uri": f"{uri}.json",
        }
