"""FcmSender against a local fake FCM: OAuth2 token flow, request shape, and error mapping."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from service.channels.errors import (
    AmbiguousProviderError,
    PermanentProviderError,
    ProviderError,
    ProviderMisconfigured,
    TokenUnregistered,
    TransientProviderError,
)
from service.channels.fcm import FcmConfig, FcmSender
from service.channels.google_oauth import FCM_SCOPE, load_service_account
from tests.channels.conftest import TOKEN, FcmSenderFactory, push_message
from tests.clocks import StepClock
from tests.conftest import Closing
from tests.fakes import FakeFcm, Reply, fcm_unauthenticated, write_service_account


async def test_send_posts_v1_message_with_bearer_token(
    fake_fcm: FakeFcm, make_fcm_sender: FcmSenderFactory
) -> None:
    """A send fetches a token with a signed JWT, then posts the v1 message; the name comes back."""
    clock = StepClock()
    sender = make_fcm_sender(clock=clock)
    name = await sender.send(push_message())
    assert name.startswith(f"projects/{fake_fcm.project_id}/messages/")
    [send] = fake_fcm.sends
    assert send.path == f"/v1/projects/{fake_fcm.project_id}/messages:send"
    assert send.bearer == fake_fcm.issued_tokens[0]
    message = send.json["message"]
    assert message["token"] == TOKEN
    assert message["notification"] == {
        "title": "Repayment overdue",
        "body": "$1,239.70 was due on Nov 15, 2026. Tap to repay.",
    }
    assert message["data"] == {
        "stage": "early_overdue",
        "notification_id": "evt-1:push:early_overdue",
        "deep_link": "jiebei://repay/JB****0123",
    }
    # Expiry and collapse id: tests/channels/test_push_expiry.py.
    assert message["android"]["priority"] == "HIGH"
    assert message["apns"]["headers"]["apns-priority"] == "10"
    [claims] = fake_fcm.assertions
    assert claims["iss"] == fake_fcm.account.client_email
    assert claims["aud"] == fake_fcm.token_url
    assert claims["scope"] == FCM_SCOPE
    assert claims["iat"] == int(clock.now.timestamp())
    assert claims["exp"] - claims["iat"] == 3600


async def test_access_token_is_cached_until_shortly_before_expiry(
    fake_fcm: FakeFcm, make_fcm_sender: FcmSenderFactory
) -> None:
    """Sends reuse one token; once it is within minutes of expiry a new one is fetched."""
    clock = StepClock()
    sender = make_fcm_sender(clock=clock)
    await sender.send(push_message())
    clock.advance(30 * 60)
    await sender.send(push_message())
    assert len(fake_fcm.token_requests) == 1
    clock.advance(27 * 60)  # 57 minutes after a 3599 s token: inside the refresh margin
    await sender.send(push_message())
    assert len(fake_fcm.token_requests) == 2
    assert [s.bearer for s in fake_fcm.sends] == [
        fake_fcm.issued_tokens[0],
        fake_fcm.issued_tokens[0],
        fake_fcm.issued_tokens[1],
    ]


async def test_revoked_token_is_refreshed_once(
    fake_fcm: FakeFcm, make_fcm_sender: FcmSenderFactory
) -> None:
    """A 401 on a cached token fetches a new token and the message still goes out."""
    sender = make_fcm_sender()
    await sender.send(push_message())
    fake_fcm.revoke_access_tokens()
    name = await sender.send(push_message())
    assert name
    assert len(fake_fcm.token_requests) == 2
    assert [s.status for s in fake_fcm.sends] == [200, 401, 200]


async def test_second_401_is_permanent_and_alerts(
    fake_fcm: FakeFcm, make_fcm_sender: FcmSenderFactory
) -> None:
    """If the fresh token is refused too, stop: our credentials are wrong, page someone."""
    fake_fcm.script(Reply(401, fcm_unauthenticated()), count=2)
    sender = make_fcm_sender()
    with pytest.raises(ProviderMisconfigured) as caught:
        await sender.send(push_message())
    assert caught.value.code == "UNAUTHENTICATED"
    assert len(fake_fcm.token_requests) == 2
    assert len(fake_fcm.sends) == 2


@pytest.mark.parametrize(
    ("error_code", "error"),
    [
        ("UNREGISTERED", TokenUnregistered),
        ("INVALID_ARGUMENT", PermanentProviderError),
        ("SENDER_ID_MISMATCH", ProviderMisconfigured),
        ("THIRD_PARTY_AUTH_ERROR", ProviderMisconfigured),
    ],
)
async def test_permanent_errors(
    fake_fcm: FakeFcm,
    error_code: str,
    error: type[ProviderError],
    make_fcm_sender: FcmSenderFactory,
) -> None:
    """FCM's permanent errors are not retried; UNREGISTERED drops the token, auth errors alert."""
    fake_fcm.reject_next(error_code)
    sender = make_fcm_sender()
    with pytest.raises(PermanentProviderError) as caught:
        await sender.send(push_message())
    assert caught.value.code == error_code
    assert type(caught.value) is error
    assert len(fake_fcm.sends) == 1  # THIRD_PARTY_AUTH_ERROR (401) is not a token refresh
    assert len(fake_fcm.token_requests) == 1


@pytest.mark.parametrize("error_code", ["QUOTA_EXCEEDED", "UNAVAILABLE", "INTERNAL"])
async def test_transient_errors_carry_retry_after(
    fake_fcm: FakeFcm, error_code: str, make_fcm_sender: FcmSenderFactory
) -> None:
    """429/503/500 are transient and pass on the provider's Retry-After."""
    fake_fcm.fail_next(error_code=error_code, retry_after="5")
    sender = make_fcm_sender()
    with pytest.raises(TransientProviderError) as caught:
        await sender.send(push_message())
    assert caught.value.code == error_code
    assert caught.value.retry_after == 5.0


async def test_unregistered_device_is_reported_dead(
    fake_fcm: FakeFcm, make_fcm_sender: FcmSenderFactory
) -> None:
    """A token FCM no longer knows answers 404 UNREGISTERED: TokenUnregistered, so upstream
    drops it."""
    fake_fcm.unregistered_tokens.add(TOKEN)
    sender = make_fcm_sender()
    with pytest.raises(TokenUnregistered) as caught:
        await sender.send(push_message())
    assert TOKEN not in str(caught.value)


async def test_token_endpoint_outage_is_transient(
    fake_fcm: FakeFcm, make_fcm_sender: FcmSenderFactory
) -> None:
    """A 5xx from the token endpoint is transient (no push was sent) and nothing is cached."""
    fake_fcm.fail_token_next(status=503)
    sender = make_fcm_sender()
    with pytest.raises(TransientProviderError) as caught:
        await sender.send(push_message())
    assert caught.value.code == "oauth_unavailable"
    assert await sender.send(push_message())
    assert len(fake_fcm.token_requests) == 2


async def test_refused_assertion_is_permanent_and_alerts(
    fake_fcm: FakeFcm, make_fcm_sender: FcmSenderFactory
) -> None:
    """invalid_grant (bad key, wrong account) cannot heal by retrying: permanent, alert."""
    fake_fcm.fail_token_next(status=400)
    sender = make_fcm_sender()
    with pytest.raises(ProviderMisconfigured) as caught:
        await sender.send(push_message())
    assert caught.value.code == "oauth_invalid_grant"
    assert fake_fcm.sends == []


async def test_token_url_setting_overrides_the_file(fake_fcm: FakeFcm, closing: Closing) -> None:
    """fcm_token_url wins over the service account's token_uri."""
    account = dataclasses.replace(
        load_service_account(fake_fcm.account.path), token_uri="http://127.0.0.1:9/nowhere"
    )
    sender = closing(
        FcmSender(
            FcmConfig(
                base_url=fake_fcm.base_url,
                project_id=fake_fcm.project_id,
                account=account,
                token_url=fake_fcm.token_url,
            )
        )
    )
    assert await sender.send(push_message())
    assert fake_fcm.assertions[0]["aud"] == fake_fcm.token_url


async def test_hung_send_is_ambiguous(fake_fcm: FakeFcm, make_fcm_sender: FcmSenderFactory) -> None:
    """No answer to the send after the token was fetched: ambiguous, the push may have gone."""
    fake_fcm.hang_next()
    sender = make_fcm_sender(timeout_s=0.3)
    with pytest.raises(AmbiguousProviderError):
        await sender.send(push_message())


def test_service_account_errors_do_not_leak_the_key(tmp_path: Path) -> None:
    """A broken service-account file is refused with a message naming what is missing only."""
    path = tmp_path / "sa.json"
    path.write_text('{"private_key": "-----BEGIN PRIVATE KEY-----secret", "token_uri": "x"}')
    with pytest.raises(ValueError, match="client_email") as caught:
        load_service_account(path)
    assert "secret" not in str(caught.value)
    assert "secret" not in repr(
        load_service_account(
            write_service_account(tmp_path / "ok", token_uri="http://t/token").path
        )
    )


async def test_hung_token_endpoint_is_transient(
    fake_fcm: FakeFcm, make_fcm_sender: FcmSenderFactory
) -> None:
    """A token endpoint that never answers is a retryable token failure: no push went out."""
    fake_fcm.hang_token_next()
    sender = make_fcm_sender(timeout_s=0.4)
    with pytest.raises(TransientProviderError) as caught:
        await sender.send(push_message())
    assert caught.value.code == "oauth_unreachable"
    assert fake_fcm.sends == []
