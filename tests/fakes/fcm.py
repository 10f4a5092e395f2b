"""A local FCM HTTP v1 API and Google OAuth2 token endpoint.

POST /token          grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer, assertion=<JWT>.
                     The RS256 assertion is verified with the test service account's public key
                     (iss, aud = this URL, scope, kid, exp - iat <= 3600); answers
                     {"access_token", "expires_in", "token_type": "Bearer"} or
                     400 {"error": "invalid_grant", "error_description"}.
POST /v1/projects/{project}/messages:send
                     Bearer token must be one this fake issued and did not revoke; answers
                     200 {"name": "projects/{project}/messages/0:..."} or FCM's error JSON.
Expiry is not checked against the wall clock, so tests may drive the sender with their own
clock; `assertions` keeps the decoded claims for tests to inspect.
"""

from __future__ import annotations

import itertools
import re
import secrets
from pathlib import Path
from typing import Any

import jwt
from aiohttp import web

from tests.fakes._server import FakeProviderServer, ReceivedRequest, Reply
from tests.fakes.service_account import GeneratedServiceAccount, write_service_account

__all__ = ["FCM_ERRORS", "FakeFcm", "fcm_error", "fcm_unauthenticated"]

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
_FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError"

# FCM errorCode -> (HTTP status, google.rpc status, message)
FCM_ERRORS: dict[str, tuple[int, str, str]] = {
    "UNREGISTERED": (404, "NOT_FOUND", "Requested entity was not found."),
    "INVALID_ARGUMENT": (
        400,
        "INVALID_ARGUMENT",
        "The registration token is not a valid FCM registration token",
    ),
    "SENDER_ID_MISMATCH": (403, "PERMISSION_DENIED", "SenderId mismatch"),
    "THIRD_PARTY_AUTH_ERROR": (401, "UNAUTHENTICATED", "Auth error from APNS or Web Push Service"),
    "QUOTA_EXCEEDED": (429, "RESOURCE_EXHAUSTED", "Quota exceeded for sending messages."),
    "UNAVAILABLE": (503, "UNAVAILABLE", "The service is currently unavailable."),
    "INTERNAL": (500, "INTERNAL", "Internal error encountered."),
}


def fcm_error(error_code: str, *, status: int | None = None) -> dict[str, Any]:
    http_status, rpc_status, message = FCM_ERRORS.get(error_code, (400, error_code, "Error"))
    return {
        "error": {
            "code": status or http_status,
            "message": message,
            "status": rpc_status,
            "details": [{"@type": _FCM_ERROR_TYPE, "errorCode": error_code}],
        }
    }


def fcm_unauthenticated() -> dict[str, Any]:
    return {
        "error": {
            "code": 401,
            "message": "Request had invalid authentication credentials. Expected OAuth 2 access "
            "token, login cookie or other valid authentication credential.",
            "status": "UNAUTHENTICATED",
        }
    }


def _bad_request(field: str, description: str) -> dict[str, Any]:
    return {
        "error": {
            "code": 400,
            "message": description,
            "status": "INVALID_ARGUMENT",
            "details": [
                {
                    "@type": "type.googleapis.com/google.rpc.BadRequest",
                    "fieldViolations": [{"field": field, "description": description}],
                }
            ],
        }
    }


class FakeFcm(FakeProviderServer):
    """`async with FakeFcm(tmp_path) as fake:`; the service-account file is `fake.account.path`."""

    def __init__(
        self, directory: Path, *, project_id: str = "notifier-demo", token_lifetime_s: int = 3599
    ) -> None:
        super().__init__()
        self.directory = directory
        self.project_id = project_id
        self.token_lifetime_s = token_lifetime_s
        self.token_requests: list[ReceivedRequest] = []
        self.assertions: list[dict[str, Any]] = []
        self.issued_tokens: list[str] = []
        self.unregistered_tokens: set[str] = set()
        self._valid_tokens: set[str] = set()
        self._token_script: list[Reply] = []
        self._ids = itertools.count(1)
        self._account: GeneratedServiceAccount | None = None

    @property
    def account(self) -> GeneratedServiceAccount:
        assert self._account is not None, "FakeFcm is not started"
        return self._account

    @property
    def token_url(self) -> str:
        return f"{self.base_url}/token"

    # --- switches ---------------------------------------------------------------------------
    def fail_next(
        self, count: int = 1, *, error_code: str = "UNAVAILABLE", retry_after: str | None = None
    ) -> None:
        """The next `count` sends get a transient error (UNAVAILABLE, INTERNAL, QUOTA_EXCEEDED)."""
        self.reject_next(error_code, count=count, retry_after=retry_after)

    def throttle_next(self, count: int = 1, *, retry_after: str | None = "1") -> None:
        """The next `count` sends get 429 QUOTA_EXCEEDED, with Retry-After if given."""
        self.reject_next("QUOTA_EXCEEDED", count=count, retry_after=retry_after)

    def reject_next(
        self,
        error_code: str,
        *,
        count: int = 1,
        status: int | None = None,
        retry_after: str | None = None,
    ) -> None:
        """The next `count` sends get FCM error `error_code` (e.g. UNREGISTERED)."""
        body = fcm_error(error_code, status=status)
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        self.script(Reply(body["error"]["code"], body, headers), count)

    def fail_token_next(self, count: int = 1, *, status: int = 503) -> None:
        """The next `count` token requests fail (5xx transient, 400 invalid_grant permanent)."""
        body = (
            {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
            if status < 500
            else {"error": "internal_failure", "error_description": "Backend Error"}
        )
        self._token_script.extend([Reply(status, body)] * count)

    def hang_token_next(self, count: int = 1) -> None:
        """The next `count` token requests get no answer until the fake stops."""
        self._token_script.extend([Reply(504, hang=True)] * count)

    def revoke_access_tokens(self) -> None:
        """Every token issued so far is refused from now on (401 UNAUTHENTICATED)."""
        self._valid_tokens.clear()

    def _transient_reply(self) -> Reply:
        return Reply(503, fcm_error("UNAVAILABLE"))

    # --- what was received ------------------------------------------------------------------
    @property
    def sends(self) -> list[ReceivedRequest]:
        return [r for r in self.requests if r.path.endswith("messages:send")]

    @property
    def delivered(self) -> list[dict[str, Any]]:
        """The `message` objects of accepted sends, in order."""
        return [r.json["message"] for r in self.sends if r.status == 200]

    # --- protocol ---------------------------------------------------------------------------
    async def _started(self) -> None:
        self._account = write_service_account(
            self.directory, token_uri=self.token_url, project_id=self.project_id
        )

    def _add_routes(self, app: web.Application) -> None:
        app.router.add_post("/token", self._token)
        app.router.add_post("/v1/projects/{project}/messages:send", self._send)

    async def _token(self, request: web.Request) -> web.Response:
        received = await self._record(request)
        self.token_requests.append(received)
        if self._token_script:
            reply = self._token_script.pop(0)
            if reply.hang:
                await self._release.wait()
            return self._answer(received, reply)
        if received.form.get("grant_type") != JWT_BEARER:
            return self._answer(received, _oauth_error("unsupported_grant_type", "Invalid grant"))
        try:
            claims = self._verify(received.form.get("assertion", ""), str(request.url))
        except (jwt.PyJWTError, ValueError) as exc:
            return self._answer(received, _oauth_error("invalid_grant", str(exc)))
        self.assertions.append(claims)
        token = f"ya29.fake-{next(self._ids)}-{secrets.token_urlsafe(12)}"
        self.issued_tokens.append(token)
        self._valid_tokens.add(token)
        body = {"access_token": token, "expires_in": self.token_lifetime_s, "token_type": "Bearer"}
        return self._answer(received, Reply(200, body))

    def _verify(self, assertion: str, audience: str) -> dict[str, Any]:
        account = self.account
        header = jwt.get_unverified_header(assertion)
        if header.get("kid") != account.private_key_id:
            raise ValueError("unknown key id")
        claims: dict[str, Any] = jwt.decode(
            assertion,
            account.public_key_pem,
            algorithms=["RS256"],
            audience=audience,
            issuer=account.client_email,
            options={
                "verify_exp": False,
                "verify_iat": False,
                "require": ["iss", "aud", "iat", "exp", "scope"],
            },
        )
        if FCM_SCOPE not in str(claims["scope"]).split():
            raise ValueError("scope lacks firebase.messaging")
        if not 0 < int(claims["exp"]) - int(claims["iat"]) <= 3600:
            raise ValueError("assertion lifetime must be at most one hour")
        return claims

    async def _send(self, request: web.Request) -> web.Response:
        received = await self._record(request)
        if received.bearer not in self._valid_tokens:
            return self._answer(received, Reply(401, fcm_unauthenticated()))
        if request.match_info["project"] != self.project_id:
            return self._answer(received, Reply(403, fcm_error("SENDER_ID_MISMATCH")))
        scripted = await self._scripted(received)
        if scripted is not None:
            return scripted
        problem = _invalid(received.json)
        if problem is not None:
            return self._answer(received, Reply(400, _bad_request(*problem)))
        message = received.json["message"]
        if message["token"] in self.unregistered_tokens:
            return self._answer(received, Reply(404, fcm_error("UNREGISTERED")))
        name = f"projects/{self.project_id}/messages/0:{next(self._ids)}%{secrets.token_hex(8)}"
        return self._answer(received, Reply(200, {"name": name}))


def _oauth_error(error: str, description: str) -> Reply:
    return Reply(400, {"error": error, "error_description": description})


def _invalid(body: Any) -> tuple[str, str] | None:
    """The first field violation of a send request, as FCM would name it, or None."""
    if not isinstance(body, dict) or not isinstance(body.get("message"), dict):
        return ("message", "Message is required")
    message = body["message"]
    if not isinstance(message.get("token"), str) or not message["token"]:
        return ("message.token", "A target (token, topic or condition) is required")
    data = message.get("data", {})
    if not isinstance(data, dict):
        return ("message.data", "data must be a map")
    for i, (key, value) in enumerate(data.items()):
        if not isinstance(value, str):
            return (f"message.data[{i}].value", f"Invalid value at 'message.data[{i}].value'")
        if key.startswith(("google", "gcm")) or key == "from":
            return (f"message.data[{i}].key", f"Invalid data key '{key}'")
    notification = message.get("notification")
    if notification is not None and not isinstance(notification, dict):
        return ("message.notification", "notification must be an object")
    return _invalid_android(message.get("android")) or _invalid_apns(message.get("apns"))


# google.protobuf.Duration in JSON: seconds with up to nine fractional digits, then "s".
_DURATION = re.compile(r"^\d+(\.\d{1,9})?s$")
_FCM_MAX_TTL_S = 28 * 24 * 3600


def _invalid_android(android: Any) -> tuple[str, str] | None:
    if android is None:
        return None
    if not isinstance(android, dict):
        return ("message.android", "android must be an object")
    ttl = android.get("ttl")
    if ttl is not None:
        if not isinstance(ttl, str) or not _DURATION.match(ttl):
            return ("message.android.ttl", f"Invalid value at 'message.android.ttl' ({ttl!r})")
        if float(ttl[:-1]) > _FCM_MAX_TTL_S:
            return ("message.android.ttl", "TTL must not exceed 4 weeks")
    collapse = android.get("collapse_key")
    if collapse is not None and not isinstance(collapse, str):
        return ("message.android.collapse_key", "collapse_key must be a string")
    notification = android.get("notification")
    if notification is not None and (
        not isinstance(notification, dict) or not isinstance(notification.get("tag", ""), str)
    ):
        return ("message.android.notification.tag", "tag must be a string")
    return None


def _invalid_apns(apns: Any) -> tuple[str, str] | None:
    """FCM passes apns.headers to APNs, which refuses what tests/fakes/apns.py refuses."""
    if apns is None:
        return None
    headers = apns.get("headers", {}) if isinstance(apns, dict) else None
    if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
        return ("message.apns.headers", "apns headers must be a map of strings")
    if len(headers.get("apns-collapse-id", "").encode()) > 64:
        return ("message.apns.headers", "apns-collapse-id must be at most 64 bytes")
    if not headers.get("apns-expiration", "0").isdigit():
        return ("message.apns.headers", "apns-expiration must be a UNIX time in seconds")
    return None
