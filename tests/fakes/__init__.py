"""Fake providers for tests: real local HTTP servers speaking each provider's protocol."""

from tests.fakes._server import FakeProviderServer, ReceivedRequest, Reply
from tests.fakes.fcm import FCM_ERRORS, FakeFcm, fcm_error, fcm_unauthenticated
from tests.fakes.service_account import GeneratedServiceAccount, write_service_account
from tests.fakes.twilio import TWILIO_ERRORS, FakeTwilio, twilio_error

__all__ = [
    "FCM_ERRORS",
    "TWILIO_ERRORS",
    "FakeFcm",
    "FakeProviderServer",
    "FakeTwilio",
    "GeneratedServiceAccount",
    "ReceivedRequest",
    "Reply",
    "fcm_error",
    "fcm_unauthenticated",
    "twilio_error",
    "write_service_account",
]
