"""A replica admitting through the real ledger, as a process (used by test_cross_process_admit).

    python -m tests.ledger.admit_worker URL MODE TAG COUNT NOW_ISO

Opens SqlLedger behind BatchingLedger (as `run` wires it), prints `ready`, waits for a line on
stdin (so that two processes start at the same moment), then either admits COUNT events for
each of the borrowers in BORROWERS, all at once (MODE `admit`; every second event of a borrower
is about one shared loan, so cadence is exercised as well as the caps), or claims up to COUNT x
len(BORROWERS) due deferred notifications and admits them again (MODE `release`, the
scheduler's path). Prints one JSON line: [[borrower, loan, kind], ...].
"""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import datetime

from service.events import LoanOverdueEvent
from service.ledger.batching import BatchingLedger
from service.ledger.sql import SqlLedger
from tests.builders import make_event, make_plan
from tests.ledger.conftest import HASH_KEY
from tests.ledger.helpers import RulesPolicy

# Several borrowers, so that a batch holds many borrowers (never two events of one) and every
# borrower is a separate chance for the two processes to race.
BORROWERS = [f"b-shared-{n}" for n in range(20)]


def shared_loan(borrower: str) -> str:
    return f"JB-SHARED-{borrower}"


def events(tag: str, count: int) -> list[LoanOverdueEvent]:
    out = []
    for i in range(count):
        for borrower in BORROWERS:
            loan = shared_loan(borrower) if i % 2 == 0 else f"JB-{tag}-{borrower}-{i}"
            out.append(
                make_event(borrower_id=borrower, event_id=f"{tag}-{borrower}-{i}", loan_id=loan)
            )
    return out


async def main(url: str, mode: str, tag: str, count: int, now: datetime) -> None:
    sql = await SqlLedger.connect(
        url, hash_key=HASH_KEY, policy=RulesPolicy(), default_timezone=None, timeout_s=30.0
    )
    ledger = BatchingLedger(sql, max_batch=50)
    plan = make_plan(cadence_days=1)
    try:
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        if mode == "admit":
            todo = [(event, plan) for event in events(tag, count)]
        else:
            due = await ledger.claim_due_deferred(now, count * len(BORROWERS))
            todo = [(item.event, item.plan) for item in due]
        answers = await asyncio.gather(*(ledger.admit(e, [p], now) for e, p in todo))
        rows = [
            [event.borrower.borrower_id, event.loan.loan_id, admission.kind.value]
            for (event, _), [admission] in zip(todo, answers, strict=True)
        ]
        print(json.dumps(rows), flush=True)
    finally:
        await ledger.aclose()


if __name__ == "__main__":
    url_, mode_, tag_, count_, now_ = sys.argv[1:6]
    asyncio.run(main(url_, mode_, tag_, int(count_), datetime.fromisoformat(now_)))
