"""`overdue-notifier demo`: the whole path on embedded parts, in one process, in seconds.

Starts the embedded broker, a SQLite ledger and console providers; produces sample events that
cover every stage (plus one in quiet hours, one opted out and one invalid); runs the service
until every event has its results; prints what was sent and what was published.

The demo runs on a clock set to 10:00 in Asia/Shanghai so that its output does not depend on
the hour you run it; the New York borrower is then in quiet hours (21:00-22:00 local).
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from service.app import NotifierApp
from service.config import Settings
from service.embedded_broker import running_broker
from service.ledger.migrations import upgrade
from service.observability.logging import configure_logging
from service.wiring.kafka import ensure_topics

__all__ = ["demo_events", "run_demo"]

_SHANGHAI = ZoneInfo("Asia/Shanghai")


def demo_clock(at_local: int = 10) -> tuple[datetime, Any]:
    """A clock that reads `at_local`:00 Shanghai time today and then runs in real time."""
    real = datetime.now(UTC)
    start = datetime.combine(real.astimezone(_SHANGHAI).date(), datetime.min.time(), _SHANGHAI)
    start = start.replace(hour=at_local).astimezone(UTC)
    offset = start - real
    return start, lambda: datetime.now(UTC) + offset


def demo_events(today: date) -> list[dict[str, Any]]:
    def event(
        n: int, dpd: int, risk: str, locale: str, zone: str, **borrower: Any
    ) -> dict[str, Any]:
        zh = locale == "zh-CN"
        base_borrower: dict[str, Any] = {
            "borrower_id": f"demo-b{n}",
            "name": "王小明" if zh else "Alex Doe",
            "locale": locale,
            "timezone": zone,
            "phone": f"+86138001380{n:02d}" if zh else f"+1415555{n:04d}",
            "push_tokens": [{"provider": "fcm", "token": f"demo-fcm-token-{n:04d}-abcdefghij"}],
        }
        base_borrower.update(borrower)
        return {
            "event_id": f"demo-{n}",
            "occurred_at": datetime.now(UTC).isoformat(),
            "schema_version": "1",
            "loan": {
                "loan_id": f"JB2026{n:06d}",
                "product": "cash-loan",
                "currency": "CNY" if zh else "USD",
                "amount_due": "1239.70" if zh else "315.00",
                "penalty": "12.40" if dpd > 3 else "0",
                "due_date": (today - timedelta(days=dpd)).isoformat(),
                "days_past_due": dpd,
                "installment": {"number": 3, "total": 12},
            },
            "borrower": base_borrower,
            "risk_level": risk,
            "repayment": {"url": f"https://pay.example.cn/r/{n}", "methods": ["app", "bank"]},
            "upstream_trace_id": "forward-compatible: unknown fields are ignored",
        }

    return [
        event(1, -2, "low", "zh-CN", "Asia/Shanghai"),
        event(2, 0, "medium", "zh-CN", "Asia/Shanghai"),
        event(3, 2, "high", "en-US", "Asia/Singapore"),
        event(4, 10, "high", "zh-CN", "Asia/Shanghai"),
        event(5, 45, "medium", "zh-CN", "Asia/Shanghai"),
        event(6, 120, "low", "en-US", "Asia/Hong_Kong"),
        event(7, 5, "medium", "en-US", "America/New_York"),  # quiet hours there: deferred
        event(8, 10, "high", "zh-CN", "Asia/Shanghai", opted_out_channels=["sms"]),
    ]


async def _produce(settings: Settings, events: list[dict[str, Any]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        for e in events:
            await producer.send(
                settings.input_topic,
                key=e["borrower"]["borrower_id"].encode(),
                value=json.dumps(e, ensure_ascii=False).encode(),
            )
        await producer.send(settings.input_topic, key=b"demo-b9", value=b'{"event_id": "broken"')
        await producer.flush()
    finally:
        await producer.stop()


async def _read_results(settings: Settings) -> list[dict[str, Any]]:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(settings.results_topic) or set()
        tps = [TopicPartition(settings.results_topic, p) for p in partitions]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        out: list[dict[str, Any]] = []
        while [tp for tp in tps if await consumer.position(tp) < end[tp]]:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                out.extend(json.loads(r.value) for r in records)
        return out
    finally:
        await consumer.stop()


def _print_results(results: list[dict[str, Any]], out: Any) -> None:
    print("\n== delivery results published to the results topic ==", file=out)
    header = f"{'event':8} {'channel':7} {'status':10} {'reason':22} {'provider':9} rule"
    print(header, file=out)
    for r in sorted(results, key=lambda r: (r["event_id"], r["channel"] or "")):
        print(
            f"{r['event_id']:8} {r['channel'] or '-':7} {r['status']:10} {r['reason']:22} "
            f"{r['provider'] or '-':9} {r['rule'] or '-'}",
            file=out,
        )


async def run_demo(*, keep: bool = False, out: Any = sys.stdout) -> int:
    configure_logging("WARNING", "console")
    started_at, clock = demo_clock()
    workdir = Path(tempfile.mkdtemp(prefix="notifier-demo-"))
    with running_broker(workdir / "broker") as broker:
        settings = Settings(
            kafka_bootstrap_servers=broker.bootstrap_servers,
            kafka_idempotent_producer=False,
            database_url=f"sqlite+aiosqlite:///{workdir / 'ledger.sqlite3'}",
            sms_provider="console",
            push_provider="console",
            http_port=0,
            commit_interval_s=0.2,
            log_format="console",
            log_level="WARNING",
        )
        await upgrade(settings.database_url)
        await ensure_topics(settings, partitions=3)
        events = demo_events(started_at.astimezone(_SHANGHAI).date())
        await _produce(settings, events)
        print(
            f"demo: produced {len(events)} events and 1 invalid record; service clock set to "
            f"{started_at.astimezone(_SHANGHAI):%Y-%m-%d %H:%M} Asia/Shanghai\n",
            file=out,
        )
        print("== what the providers were asked to send (console sandbox) ==", file=out)
        app = NotifierApp(settings, clock=clock, out=out)
        task = asyncio.create_task(app.run())
        try:
            async with asyncio.timeout(60):
                while app.engine is None or (
                    app.engine.stats["processed"] + app.engine.stats["dead_lettered"]
                    < len(events) + 1
                ):
                    if task.done():
                        task.result()
                    await asyncio.sleep(0.1)
        finally:
            app.request_stop()
            await task
        stats = app.engine.stats if app.engine else {}
        results = await _read_results(settings)
    _print_results(results, out)
    print(
        f"\nevents processed: {stats.get('processed')}, dead-lettered: "
        f"{stats.get('dead_lettered')}, results published: {len(results)}",
        file=out,
    )
    if keep:
        print(f"files kept in {workdir}", file=out)
    return 0
