"""OAuth2 access tokens for a Google service account (the JWT bearer grant, RFC 7523).

The service-account JSON file holds `client_email`, `private_key` (PEM), `private_key_id` and
`token_uri`. We sign an RS256 assertion {iss, scope, aud=token URL, iat, exp<=iat+3600}, POST it
to the token URL as `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`, and get
{"access_token", "expires_in", "token_type": "Bearer"}. The token is cached until shortly before
it expires; `invalidate` drops it (the send path calls it once on a 401).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import jwt

from service.channels.errors import ProviderError, ProviderMisconfigured, TransientProviderError
from service.channels.rest import HttpClient, HttpResponse, parse_retry_after
from service.clock import Clock

__all__ = [
    "FCM_SCOPE",
    "JWT_BEARER_GRANT",
    "AccessTokenSource",
    "ServiceAccount",
    "load_service_account",
]

FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
_ASSERTION_LIFETIME = timedelta(hours=1)  # Google's maximum
# Refresh this long before expiry so a token never dies in the middle of a send.
_REFRESH_MARGIN = timedelta(minutes=5)
_REQUIRED_KEYS = ("client_email", "private_key", "token_uri")


@dataclass(frozen=True, slots=True)
class ServiceAccount:
    client_email: str
    private_key: str
    private_key_id: str | None
    token_uri: str
    project_id: str | None

    def __repr__(self) -> str:  # the private key must never reach a log line
        return f"ServiceAccount(client_email={self.client_email!r}, project_id={self.project_id!r})"


def load_service_account(path: Path) -> ServiceAccount:
    """Read a service-account JSON file; ValueError (without the file's content) if unusable."""
    try:
        data: Any = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"cannot read service-account file {path}: {exc.strerror}") from None
    except json.JSONDecodeError:
        raise ValueError(f"service-account file {path} is not JSON") from None
    if not isinstance(data, dict):
        raise ValueError(f"service-account file {path} is not a JSON object")
    missing = [k for k in _REQUIRED_KEYS if not isinstance(data.get(k), str) or not data[k]]
    if missing:
        raise ValueError(f"service-account file {path} lacks {', '.join(missing)}")
    return ServiceAccount(
        client_email=data["client_email"],
        private_key=data["private_key"],
        private_key_id=data.get("private_key_id") or None,
        token_uri=data["token_uri"],
        project_id=data.get("project_id") or None,
    )


@dataclass(frozen=True, slots=True)
class _Token:
    value: str
    refresh_at: datetime


class AccessTokenSource:
    """Fetches and caches one access token; concurrent callers share one fetch."""

    def __init__(
        self,
        account: ServiceAccount,
        client: HttpClient,
        *,
        provider: str,
        clock: Clock,
        token_url: str | None = None,
        scope: str = FCM_SCOPE,
    ) -> None:
        self._account = account
        self._client = client
        self._provider = provider
        self._clock = clock
        self._token_url = token_url or account.token_uri
        self._scope = scope
        self._token: _Token | None = None
        self._lock = asyncio.Lock()

    async def get(self) -> str:
        token = self._token
        if token is not None and self._clock() < token.refresh_at:
            return token.value
        async with self._lock:
            token = self._token
            if token is None or self._clock() >= token.refresh_at:
                token = await self._fetch()
                self._token = token
            return token.value

    def invalidate(self, value: str) -> None:
        """Forget `value` (refused by the API) unless a newer token already replaced it."""
        if self._token is not None and self._token.value == value:
            self._token = None

    async def _fetch(self) -> _Token:
        now = self._clock()
        claims = {
            "iss": self._account.client_email,
            "scope": self._scope,
            "aud": self._token_url,
            "iat": int(now.timestamp()),
            "exp": int((now + _ASSERTION_LIFETIME).timestamp()),
        }
        headers = {"kid": self._account.private_key_id} if self._account.private_key_id else None
        try:
            assertion = jwt.encode(
                claims, self._account.private_key, algorithm="RS256", headers=headers
            )
        except (ValueError, TypeError, jwt.PyJWTError):
            raise ProviderMisconfigured(
                "service-account private key unusable",
                provider=self._provider,
                code="oauth_bad_key",
            ) from None
        # Half the attempt budget at most, so a hung token endpoint ends as a (retryable) token
        # failure before the dispatcher's attempt timeout would call the send ambiguous.
        try:
            response = await self._client.post(
                self._token_url,
                form={"grant_type": JWT_BEARER_GRANT, "assertion": assertion},
                timeout_s=self._client.timeout_s / 2,
            )
        except ProviderError as exc:
            # Nothing was sent to the push provider yet: a token failure is never ambiguous.
            raise TransientProviderError(
                f"token endpoint unreachable ({exc.code})",
                provider=self._provider,
                code="oauth_unreachable",
            ) from None
        if response.status_code == 200:
            return self._parse(response, now)
        retry_after = parse_retry_after(response.headers.get("Retry-After"), self._clock)
        if response.status_code == 429 or response.status_code >= 500:
            raise TransientProviderError(
                f"token endpoint answered {response.status_code}",
                provider=self._provider,
                code="oauth_unavailable",
                retry_after=retry_after,
            )
        error = _oauth_error(response)
        raise ProviderMisconfigured(
            f"token request refused ({response.status_code} {error})",
            provider=self._provider,
            code=f"oauth_{error}",
        )

    def _parse(self, response: HttpResponse, now: datetime) -> _Token:
        try:
            body = response.json()
            value = body["access_token"]
            lifetime = float(body.get("expires_in", 3600))
        except (ValueError, KeyError, TypeError):
            raise TransientProviderError(
                "token response unreadable", provider=self._provider, code="oauth_bad_response"
            ) from None
        if not isinstance(value, str) or not value:
            raise TransientProviderError(
                "token response without a token", provider=self._provider, code="oauth_bad_response"
            )
        refresh_at = now + max(timedelta(seconds=lifetime) - _REFRESH_MARGIN, timedelta(0))
        return _Token(value, refresh_at)


def _oauth_error(response: HttpResponse) -> str:
    try:
        body = response.json()
    except ValueError:
        return "error"
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, str) and error.isidentifier() else "error"
