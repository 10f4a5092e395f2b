"""Audit trail (masked contact, keyed hash, never raw), retention purge, and the CLI commands."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from sqlalchemy import text

from service.cli import db as db_cli
from service.events import Channel
from service.ledger.audit import contact_hash
from service.ledger.engine import build_engine
from service.ledger.sql import SqlLedger
from tests.builders import make_event, make_plan
from tests.ledger.conftest import HASH_KEY, LedgerFactory
from tests.ledger.helpers import MORNING_NY, NEXT_OPENING_NY, NIGHT_NY, RulesPolicy, outcome

PHONE = "+8613812345678"
TOKEN = "fcm-token-abcdefghijklmnop"


async def _dump(url: str) -> str:
    """Every value of every ledger table, as one string."""
    engine = build_engine(url)
    try:
        async with engine.connect() as conn:
            parts: list[str] = []
            for table in (
                "ledger_notifications",
                "ledger_audit",
                "ledger_opt_outs",
                "ledger_loans",
                "ledger_holds",
                "ledger_loan_events",
            ):
                rows = (await conn.execute(text(f"SELECT * FROM {table}"))).all()  # noqa: S608
                parts.extend(str(value) for row in rows for value in row)
            return "\n".join(parts)
    finally:
        await engine.dispose()


async def test_every_decision_is_audited_with_masked_contact(
    ledger_url: str, make_ledger: LedgerFactory
) -> None:
    """Sent, deferred and suppressed decisions each leave a row; raw numbers and tokens never do."""
    ledger = await make_ledger()
    event = make_event(borrower_id="b-audit", phone=PHONE, timezone="Asia/Shanghai")
    # 23:00 in Shanghai: deferred; push opted out in the event: suppressed.
    night = NIGHT_NY.replace(hour=15)
    plans = [make_plan(Channel.SMS), make_plan(Channel.PUSH)]
    await ledger.admit(event, plans, night)
    opted = make_event(borrower_id="b-audit", opted_out_channels=["push"], push_tokens=[])
    await ledger.admit(opted, [make_plan(Channel.PUSH)], night)
    morning = night + timedelta(hours=10)
    for item in await ledger.claim_due_deferred(morning, 10):
        for admission in await ledger.admit(item.event, [item.plan], morning):
            await ledger.record(item.event, [outcome(item.event, admission, morning)])

    rows = await ledger.audit(borrower_id="b-audit")
    summary = [(r.channel, r.status, r.reason) for r in rows]
    assert ("sms", "deferred", "quiet_hours") in summary
    assert ("push", "suppressed", "opted_out") in summary
    assert ("sms", "sent", "sent") in summary
    sms_rows = [r for r in rows if r.channel == "sms"]
    assert {r.contact_masked for r in sms_rows} == {"+86*******5678"}
    assert {r.contact_hash for r in sms_rows} == {contact_hash(HASH_KEY, PHONE)}
    sent = next(r for r in rows if r.status == "sent")
    assert (sent.template_name, sent.template_version) == ("early_overdue_sms", "3")
    assert sent.rule == "policy.early_overdue.sms"
    deferred = next(r for r in rows if r.status == "deferred")
    assert deferred.rule == "compliance.contact_window:default"
    assert deferred.policy_rule == "policy.early_overdue.sms"
    # Once everything is decided the raw values are nowhere in the database.
    dump = await _dump(ledger_url)
    assert PHONE not in dump
    assert TOKEN not in dump
    assert "Alice" not in dump


async def test_purge_removes_old_history_and_keeps_live_rows(make_ledger: LedgerFactory) -> None:
    """Purge deletes audit rows and finished notifications older than the limit, nothing else."""
    ledger = await make_ledger()
    old = make_event(borrower_id="b-old")
    [a] = await ledger.admit(old, [make_plan()], MORNING_NY)
    await ledger.record(old, [outcome(old, a, MORNING_NY)])
    waiting = make_event(borrower_id="b-wait")
    await ledger.admit(waiting, [make_plan()], NIGHT_NY)
    await ledger.record_opt_out("b-old", Channel.PUSH, source="reply:STOP", at=MORNING_NY)

    removed = await ledger.purge(MORNING_NY + timedelta(days=400))
    # The sent notification and its audit row; the deferred one's audit row; both events'
    # entries in the loans' event log.
    assert removed == 5
    assert await ledger.audit(borrower_id="b-old") == []
    assert len(await ledger.opt_outs("b-old")) == 1
    assert len(await ledger.claim_due_deferred(NEXT_OPENING_NY, 10)) == 1
    assert await ledger.purge(MORNING_NY + timedelta(days=400)) == 0


def test_cli_upgrade_then_audit_prints_masked_history(
    empty_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`db upgrade` prepares the database; `audit --borrower` prints decisions without raw data."""
    import argparse
    import asyncio

    parser = argparse.ArgumentParser()
    db_cli.register(parser.add_subparsers(dest="command", required=True))
    monkeypatch.setenv("NOTIFIER_DATABASE_URL", empty_url)
    monkeypatch.setenv("NOTIFIER_HASH_KEY", HASH_KEY.decode())
    args = parser.parse_args(["db", "upgrade"])
    assert args.func(args) == 0

    async def seed() -> None:
        ledger = await SqlLedger.connect(
            empty_url,
            hash_key=HASH_KEY,
            policy=RulesPolicy(),
            default_timezone=None,
        )
        event = make_event(borrower_id="b-cli", phone=PHONE)
        [a] = await ledger.admit(event, [make_plan()], MORNING_NY)
        await ledger.record(event, [outcome(event, a, MORNING_NY)])
        await ledger.aclose()

    asyncio.run(seed())
    out = io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    args = parser.parse_args(["audit", "--borrower", "b-cli"])
    assert args.func(args) == 0
    printed = out.getvalue()
    assert "+86*******5678" in printed
    assert "sent" in printed
    assert PHONE not in printed
    args = parser.parse_args(["db", "purge", "--older-than-days", "3"])
    assert args.func(args) == 1
