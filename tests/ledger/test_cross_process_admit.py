"""Caps and cadence hold across replicas: two OS processes admitting notifications of one
borrower at the same moment (as when a producer's partitioner puts that borrower on two
partitions owned by two replicas), through BatchingLedger on SQLite and PostgreSQL.

The ledger serialises one borrower's admissions with a transaction-scoped advisory lock on
PostgreSQL and with BEGIN IMMEDIATE (one writer) on SQLite (service/ledger/sql.py); these tests
are what shows that it holds between processes, for fresh events and for the scheduler's
release of deferred ones.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter
from datetime import datetime
from pathlib import Path

from service.ledger.api import AdmissionKind
from tests.builders import make_plan
from tests.ledger.admit_worker import BORROWERS, events, shared_loan
from tests.ledger.conftest import LedgerFactory
from tests.ledger.helpers import MORNING_NY, NEXT_OPENING_NY, NIGHT_NY

REPO = Path(__file__).resolve().parents[2]
PER_PROCESS = 6  # events per borrower and process


async def run_two_workers(url: str, mode: str, now: datetime) -> list[list[str]]:
    """Start two worker processes, release them together, return every admission they made."""
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.ledger.admit_worker",
            url,
            mode,
            tag,
            str(PER_PROCESS),
            now.isoformat(),
            cwd=REPO,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        for tag in ("replica-a", "replica-b")
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            assert (await asyncio.wait_for(proc.stdout.readline(), 60)).strip() == b"ready"
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write(b"go\n")
            await proc.stdin.drain()
        outputs = [await asyncio.wait_for(proc.communicate(), 90) for proc in procs]
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    assert [proc.returncode for proc in procs] == [0, 0]
    rows: list[list[str]] = []
    for stdout, _ in outputs:
        rows.extend(json.loads(stdout.decode().strip().splitlines()[-1]))
    return rows


def assert_caps_and_cadence_held(rows: list[list[str]]) -> None:
    """Per borrower: exactly 2 SMS that day (the default cap; many more were asked for) and at
    most one per loan and stage (cadence 1 day); no admission left BUSY."""
    for borrower in BORROWERS:
        mine = [(loan, kind) for b, loan, kind in rows if b == borrower]
        sends = [loan for loan, kind in mine if kind == AdmissionKind.SEND.value]
        assert len(sends) == 2, (borrower, Counter(kind for _, kind in mine))
        assert Counter(sends)[shared_loan(borrower)] <= 1, borrower
    assert all(kind != AdmissionKind.BUSY.value for *_, kind in rows)


async def test_two_processes_admitting_the_same_borrowers_keep_the_caps(ledger_url: str) -> None:
    """Two processes each admit 6 notifications for each of 20 borrowers at once
    (group-committed, as `run` does): per borrower exactly 2 are sent, at most one per loan."""
    rows = await run_two_workers(ledger_url, "admit", MORNING_NY)
    assert len(rows) == 2 * PER_PROCESS * len(BORROWERS)
    assert_caps_and_cadence_held(rows)


async def test_two_schedulers_releasing_the_same_borrowers_keep_the_caps(
    ledger_url: str, make_ledger: LedgerFactory
) -> None:
    """Notifications deferred overnight, released and admitted again by two processes'
    schedulers at the same opening moment: each released once, per borrower exactly 2 sent."""
    ledger = await make_ledger()
    plan = make_plan(cadence_days=1)
    for tag in ("night-a", "night-b"):
        for event in events(tag, PER_PROCESS):
            [admission] = await ledger.admit(event, [plan], NIGHT_NY)
            assert admission.kind is AdmissionKind.DEFER
    rows = await run_two_workers(ledger_url, "release", NEXT_OPENING_NY)
    assert len(rows) == 2 * PER_PROCESS * len(BORROWERS)  # each released exactly once
    assert_caps_and_cadence_held(rows)
