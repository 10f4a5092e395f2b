"""`overdue-notifier test-send`: one message through the configured provider, no ledger."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT
from tests.fakes import FakeFcm, FakeTwilio
from tests.fakes.twilio import FAKE_ACCOUNT_SID, FAKE_AUTH_TOKEN

PHONE = "+8613800138000"


async def overdue_notifier(env: dict[str, str], *argv: str) -> tuple[int, str, str]:
    """Run the CLI in its own process (the event loop here keeps serving the fakes)."""
    full = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "NOTIFIER_LOG_FORMAT": "json",
        **env,
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "service",
        *argv,
        env=full,
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def twilio_env(twilio: FakeTwilio, tmp_path: Path, token: str = FAKE_AUTH_TOKEN) -> dict[str, str]:
    return {
        "NOTIFIER_SMS_PROVIDER": "twilio",
        "NOTIFIER_TWILIO_BASE_URL": twilio.base_url,
        "NOTIFIER_TWILIO_ACCOUNT_SID": FAKE_ACCOUNT_SID,
        "NOTIFIER_TWILIO_AUTH_TOKEN": token,
        "NOTIFIER_TWILIO_FROM": "+15005550006",
        "NOTIFIER_SEND_MAX_ATTEMPTS": "1",
        # No ledger exists at this path: test-send must not need one (it is nobody's contact).
        "NOTIFIER_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'absent' / 'ledger.db'}",
    }


async def test_test_send_sms_reaches_twilio_and_prints_the_number_masked(tmp_path: Path) -> None:
    """A test SMS goes to Twilio with the real configured credentials, exits 0, names the
    provider, never prints or logs the full number and touches no ledger."""
    async with FakeTwilio() as twilio:
        code, out, err = await overdue_notifier(
            twilio_env(twilio, tmp_path), "test-send", "--channel", "sms", "--to", PHONE
        )
    assert code == 0, err
    assert [r.form["To"] for r in twilio.sent] == [PHONE]
    assert "sent" in out
    assert "via twilio" in out
    assert PHONE not in out
    assert PHONE not in err
    assert not (tmp_path / "absent").exists()


async def test_test_send_reports_rejected_credentials_with_exit_1(tmp_path: Path) -> None:
    """With a wrong Twilio auth token the command fails (exit 1) and shows Twilio's code."""
    async with FakeTwilio() as twilio:
        code, out, _ = await overdue_notifier(
            twilio_env(twilio, tmp_path, token="wrong-token"),
            "test-send",
            "--channel",
            "sms",
            "--to",
            PHONE,
        )
    assert code == 1
    assert twilio.sent == []
    assert "failed" in out
    assert "20003" in out


async def test_test_send_push_reaches_fcm_with_the_token(tmp_path: Path) -> None:
    """A test push goes to FCM HTTP v1 for the given token; the token is printed masked."""
    token = "fcm-device-token-0123456789abcdef"
    async with FakeFcm(tmp_path) as fcm:
        env = {
            "NOTIFIER_PUSH_PROVIDER": "fcm",
            "NOTIFIER_FCM_BASE_URL": fcm.base_url,
            "NOTIFIER_FCM_SERVICE_ACCOUNT_FILE": str(fcm.account.path),
            "NOTIFIER_FCM_TOKEN_URL": fcm.token_url,
        }
        code, out, err = await overdue_notifier(
            env, "test-send", "--channel", "push", "--to", token
        )
    assert code == 0, err
    assert len(fcm.sends) == 1
    assert fcm.sends[0].json["message"]["token"] == token
    assert token not in out
    assert token not in err


async def test_test_send_refuses_a_number_that_is_not_e164(tmp_path: Path) -> None:
    """A local-format number is a usage error (exit 2), nothing is sent."""
    async with FakeTwilio() as twilio:
        code, _, err = await overdue_notifier(
            twilio_env(twilio, tmp_path), "test-send", "--channel", "sms", "--to", "13800138000"
        )
    assert code == 2
    assert "E.164" in err
    assert twilio.requests == []


def test_an_unreachable_ledger_is_one_error_line_and_exit_1_for_every_ledger_command() -> None:
    """pause, pause --show, resume and report coverage share one ledger call
    (service/cli/ledger_call.py): a refused connection is `error: ...` on stderr, exit 1,
    nothing on stdout and no traceback."""
    import io
    import socket

    from service.cli import build_parser

    with socket.socket() as probe:  # a port nobody listens on once it is closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{port}/test"
    for argv in (
        ["pause", "--reason", "incident", "--database-url", url],
        ["pause", "--show", "--database-url", url],
        ["resume", "--database-url", url],
        ["report", "coverage", "--database-url", url],
    ):
        args = build_parser().parse_args(argv)
        out, err = io.StringIO(), io.StringIO()
        assert args.func(args, out, err) == 1, argv
        assert out.getvalue() == "", argv
        assert err.getvalue() == (
            "error: ledger database unreachable during connect: ConnectionRefusedError\n"
        ), argv
