"""Run events through the service's own processing on a simulated clock.

What runs is what `overdue-notifier run` wires, built by the same functions
(service/wiring/pipeline.py): the `Renderer`, a `SqlLedger` (a temporary SQLite file, migrated
like any ledger) behind the `BatchingLedger` when `NOTIFIER_LEDGER_BATCH_MAX` > 1, the real
`Dispatcher`, the `NotificationProcessor`, the `ResultPublisher` and the `DeferredScheduler`.
Three things differ, on purpose (and neither an operator pause nor collectors' tasks exist):

- Kafka is skipped: each event's bytes go through the pipeline's `decode_event` and then
  `NotificationProcessor.handle`, as the consumer engine does for a record, one borrower's
  events in order, different borrowers' concurrently; results go through the real
  `ResultPublisher` into an in-memory producer. A month of traffic through a broker would
  measure the broker, not the policy.
- Providers are recording sinks: every message the dispatcher hands to a "provider" is kept
  with the simulated time, its rendered text and SMS parts, and accepted.
- The clock is injected and jumps from one instant to the next: the next event's arrival
  (rounded up to `step`) or the next deferred notification's due time, so the scheduler
  releases deferred notifications exactly when the service would.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import io
import json
import logging
import tempfile
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from aiokafka import AIOKafkaProducer

from service.channels.base import OutboundMessage
from service.config import Settings
from service.events import Channel, DeliveryResult, DeliveryStatus
from service.ledger.migrations import upgrade
from service.pipeline.decode import UndecodableEvent, decode_event
from service.pipeline.handler import RetryLater
from service.pipeline.processor import NotificationProcessor
from service.pipeline.publisher import ResultPublisher
from service.pipeline.scheduler import DeferredScheduler
from service.policy import Policy
from service.rendering import Renderer
from service.wiring.channels import build_dispatcher
from service.wiring.pipeline import (
    build_processor,
    build_scheduler,
    connect_ledger,
    notification_ledger,
)

__all__ = ["InputEvent", "RunOutput", "SentMessage", "SimClock", "run_events"]

log = logging.getLogger(__name__)

_SCHEDULER_BATCH = 200  # DeferredScheduler's default batch_size


class SimClock:
    """The injected clock: every component reads `now` from here."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@dataclass(frozen=True, slots=True)
class InputEvent:
    """One record of the input topic: its JSON, its key and when it reaches the service."""

    raw: Mapping[str, Any]
    key: str
    arrives_at: datetime
    index: int

    @property
    def event_type(self) -> str:
        return str(self.raw.get("event_type") or "loan.overdue")


@dataclass(frozen=True, slots=True)
class SentMessage:
    """What one provider received, when (simulated), and what it said."""

    at: datetime
    notification_id: str
    channel: Channel
    template: str
    locale: str
    text: str
    sms_parts: int | None
    encoding: str | None
    push_data: Mapping[str, str]

    @property
    def event_id(self) -> str:
        # notification id = event id + ":" + channel + ":" + step (PlannedNotification).
        return self.notification_id.rsplit(":", 2)[0]

    @property
    def step(self) -> str:
        return self.notification_id.rsplit(":", 1)[1]


@dataclass
class RunOutput:
    sent: list[SentMessage] = field(default_factory=list)
    results: list[DeliveryResult] = field(default_factory=list)
    dead_letters: list[tuple[InputEvent, str]] = field(default_factory=list)
    still_deferred: int = 0
    # Failures of the service's own code during the run (time, what failed): always reported.
    service_errors: list[tuple[datetime, str]] = field(default_factory=list)
    instants: int = 0
    processed: int = 0


class RecordingSender:
    """A provider that accepts everything and remembers what it got (the simulator's sink)."""

    def __init__(self, channel: Channel, clock: SimClock, into: list[SentMessage]) -> None:
        self._channel = channel
        self._clock = clock
        self._into = into

    @property
    def provider(self) -> str:
        return "simulator"

    @property
    def channel(self) -> Channel:
        return self._channel

    async def send(self, message: OutboundMessage) -> str:
        content = message.content
        if content.sms is not None:
            text, parts, encoding = content.sms.text, content.sms.parts, content.sms.encoding
            data: Mapping[str, str] = {}
        elif content.voice is not None:
            # What a person who answers hears (the machine message states no debt).
            text, parts, encoding, data = content.voice.script, None, None, {}
        else:
            push = content.push
            text = f"{push.title}\n{push.body}" if push else ""
            parts, encoding = None, None
            data = dict(push.data) if push else {}
        self._into.append(
            SentMessage(
                at=self._clock(),
                notification_id=message.notification_id,
                channel=message.channel,
                template=content.template.name,
                locale=content.locale,
                text=text,
                sms_parts=parts,
                encoding=encoding,
                push_data=data,
            )
        )
        return f"sim-{len(self._into)}"

    async def aclose(self) -> None:
        return None


class _Future:
    """An already-acknowledged produce, awaitable like aiokafka's."""

    def __await__(self) -> Iterator[None]:
        return iter(())


class InMemoryProducer:
    """Stands in for AIOKafkaProducer under the real ResultPublisher: keeps the records."""

    def __init__(self) -> None:
        self.records: list[tuple[str, bytes]] = []

    async def send(
        self, topic: str, *, key: bytes, value: bytes, headers: Sequence[tuple[str, bytes]]
    ) -> _Future:
        self.records.append((topic, value))
        return _Future()


def arrival_times(raw_events: Sequence[Mapping[str, Any]]) -> list[InputEvent]:
    """Each record arrives at its `occurred_at`, never before an earlier record of its key
    (the topic keeps one borrower's records in order, whatever their timestamps say)."""
    last: dict[str, datetime] = {}
    out: list[InputEvent] = []
    for index, raw in enumerate(raw_events):
        borrower = raw.get("borrower") if isinstance(raw.get("borrower"), Mapping) else None
        key = str((borrower or {}).get("borrower_id") or f"(no key {index})")
        try:
            at = datetime.fromisoformat(str(raw["occurred_at"]).replace("Z", "+00:00"))
            if at.tzinfo is None:
                raise ValueError
        except (KeyError, ValueError):
            at = last.get(key, datetime.min.replace(tzinfo=UTC))
        at = max(at, last.get(key, at))
        last[key] = at
        out.append(InputEvent(raw, key, at, index))
    out.sort(key=lambda e: (e.arrives_at, e.index))
    return out


def _ceil(at: datetime, step: timedelta) -> datetime:
    epoch = datetime(2000, 1, 1, tzinfo=UTC)
    steps = -((epoch - at) // step)
    return epoch + steps * step


async def run_events(
    events: Sequence[InputEvent],
    *,
    policy: Policy,
    settings: Settings,
    start: datetime,
    end: datetime,
    step: timedelta = timedelta(minutes=5),
    max_in_flight: int = 500,
) -> RunOutput:
    """Feed `events` to the service's processing between `start` and `end` (simulated)."""
    out = RunOutput()
    clock = SimClock(start)
    with tempfile.TemporaryDirectory(prefix="notifier-sim-", dir=_fast_tmp()) as tmp:
        url = f"sqlite+aiosqlite:///{Path(tmp) / 'ledger.sqlite3'}"
        await upgrade(url)
        settings = settings.model_copy(
            update={"database_url": url, "sms_provider": "console", "push_provider": "console"}
        )
        with _quiet_service_logs():
            await _run(events, policy, settings, clock, start, end, step, max_in_flight, out)
    return out


def _describe(exc: BaseException) -> str:
    """Type and field locations only: validation messages would echo event values."""
    errors = getattr(exc, "errors", None)
    if callable(errors):
        with contextlib.suppress(Exception):
            locs = sorted({".".join(str(p) for p in e["loc"]) for e in errors()})
            return f"{type(exc).__name__} at {', '.join(locs)}"
    return type(exc).__name__


def _fast_tmp() -> str | None:
    # tmpfs: the ledger file is thrown away after the run, its fsyncs are wasted time.
    shm = Path("/dev/shm")  # noqa: S108 - a private TemporaryDirectory is made inside
    return str(shm) if shm.is_dir() else None


@contextlib.contextmanager
def _quiet_service_logs() -> Iterator[None]:
    # The publisher logs one line per decision; a month of them would drown the report.
    logger = logging.getLogger("service")
    before = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(before)


async def _run(
    events: Sequence[InputEvent],
    policy: Policy,
    s: Settings,
    clock: SimClock,
    start: datetime,
    end: datetime,
    step: timedelta,
    max_in_flight: int,
    out: RunOutput,
) -> None:
    renderer = Renderer.load(
        s.templates_dir, brand=s.brand_name, customer_service=s.customer_service
    )
    renderer.check_covers(policy)
    # Connected, batched and wired as `run` does it (service/wiring/pipeline.py).
    ledger = notification_ledger(s, await connect_ledger(s, policy))
    producer = InMemoryProducer()
    publisher = ResultPublisher(
        cast(AIOKafkaProducer, producer), results_topic=s.results_topic, dlq_topic=s.dlq_topic
    )
    sinks = {
        "sms": RecordingSender(Channel.SMS, clock, out.sent),
        "push": RecordingSender(Channel.PUSH, clock, out.sent),
        "voice": RecordingSender(Channel.VOICE, clock, out.sent),
    }
    try:
        async with build_dispatcher(
            s, out=io.StringIO(), clock=clock, extra_routes=sinks
        ) as dispatcher:
            # No operator pause in a simulation (nobody pauses a campaign that is not live) and
            # no hand-off to collectors (the report counts reminders, not collectors' tasks).
            processor = build_processor(
                s,
                policy=policy,
                renderer=renderer,
                ledger=ledger,
                dispatcher=dispatcher,
                clock=clock,
            )
            scheduler = build_scheduler(
                s,
                ledger=ledger,
                processor=processor,
                publisher=publisher,
                clock=clock,
                batch_size=_SCHEDULER_BATCH,
            )
            loop = _Loop(
                events, processor, publisher, scheduler, producer, clock, out, s.ledger_lease_s
            )
            await loop.run(start, end, step, max_in_flight)
    finally:
        await ledger.aclose()


class _Loop:
    def __init__(
        self,
        events: Sequence[InputEvent],
        processor: NotificationProcessor,
        publisher: ResultPublisher,
        scheduler: DeferredScheduler,
        producer: InMemoryProducer,
        clock: SimClock,
        out: RunOutput,
        lease_s: float,
    ) -> None:
        self.events = events
        self.processor = processor
        self.publisher = publisher
        self.scheduler = scheduler
        self.producer = producer
        self.clock = clock
        self.out = out
        self.read = 0
        # Deferred notifications still waiting: id -> due time, and a heap of due times.
        self.pending: dict[str, datetime] = {}
        self.heap: list[tuple[datetime, str]] = []
        self.unreleased: dict[str, int] = {}
        self.lease = timedelta(seconds=lease_s + 1)

    async def run(
        self, start: datetime, end: datetime, step: timedelta, max_in_flight: int
    ) -> None:
        i = 0
        n = len(self.events)
        retry: list[InputEvent] = []
        while True:
            candidates = []
            if retry:
                candidates.append(self.clock.now + step)
            if i < n:
                candidates.append(max(start, _ceil(self.events[i].arrives_at, step)))
            due = self._next_due()
            if due is not None:
                candidates.append(max(due, self.clock.now))
            if not candidates:
                break
            now = min(candidates)
            if now > end:
                break
            self.clock.now = now
            self.out.instants += 1
            batch, retry = retry, []
            while i < n and _ceil(self.events[i].arrives_at, step) <= now:
                batch.append(self.events[i])
                i += 1
            if batch:
                retry = await self._process(batch, max_in_flight)
            due = self._next_due()
            if due is not None and due <= now:
                # An empty pass releases nothing; the service's idle passes are skipped.
                await self._release_due()
            self._collect()
            self._rearm_unreleased(now)
        self.out.still_deferred = len(self.pending)

    async def _release_due(self) -> None:
        for _ in range(10_000):
            try:
                # As the scheduler's own loop: a pass short of a full batch means "caught up".
                if await self.scheduler.run_once() < _SCHEDULER_BATCH:
                    return
            except Exception as exc:
                # The service's own scheduler logs these and tries again on its next pass.
                self.out.service_errors.append(
                    (self.clock.now, f"deferred scheduler pass failed: {_describe(exc)}")
                )
                return

    def _rearm_unreleased(self, now: datetime) -> None:
        """Deferred notifications due but not released (a failed pass leaves them leased): look
        again when their lease has run out, as the service would, a few times."""
        while self.heap and self.heap[0][0] <= now:
            due, nid = heapq.heappop(self.heap)
            if self.pending.get(nid) != due:
                continue
            tries = self.unreleased[nid] = self.unreleased.get(nid, 0) + 1
            if tries > 3:
                continue  # stays in `pending`: reported as never released
            again = now + self.lease
            self.pending[nid] = again
            heapq.heappush(self.heap, (again, nid))

    def _next_due(self) -> datetime | None:
        while self.heap:
            due, nid = self.heap[0]
            if self.pending.get(nid) == due:
                return due
            heapq.heappop(self.heap)
        return None

    def _collect(self) -> None:
        records = self.producer.records
        for topic, value in records[self.read :]:
            if topic != self.publisher._results_topic:
                continue
            result = DeliveryResult.model_validate_json(value)
            self.out.results.append(result)
            nid = result.notification_id
            if nid is None:
                continue
            if result.status is DeliveryStatus.DEFERRED and result.not_before is not None:
                self.pending[nid] = result.not_before
                heapq.heappush(self.heap, (result.not_before, nid))
            else:
                self.pending.pop(nid, None)
        self.read = len(records)

    async def _process(self, batch: Sequence[InputEvent], max_in_flight: int) -> list[InputEvent]:
        lanes: dict[str, list[InputEvent]] = defaultdict(list)
        for event in batch:
            lanes[event.key].append(event)
        gate = asyncio.Semaphore(max_in_flight)
        retry: list[InputEvent] = []

        async def lane(items: list[InputEvent]) -> None:
            async with gate:
                for k, item in enumerate(items):
                    if not await self._process_one(item):
                        # The rest of this borrower's events wait behind it, in order.
                        retry.extend(items[k:])
                        return

        await asyncio.gather(*(lane(items) for items in lanes.values()))
        retry.sort(key=lambda e: (e.arrives_at, e.index))
        return retry

    async def _process_one(self, item: InputEvent) -> bool:
        """As the consumer engine's `_process_record`: False means "retry later"."""
        value = json.dumps(item.raw).encode()
        decoded = decode_event(value)
        if isinstance(decoded, UndecodableEvent):
            self.out.dead_letters.append((item, decoded.error_class))
            return True
        try:
            results = await self.processor.handle(decoded)
        except RetryLater:
            return False
        except Exception as exc:  # the engine dead-letters these as ProcessingError
            log.warning("event handling failed", extra={"error": type(exc).__name__})
            self.out.dead_letters.append((item, f"ProcessingError:{type(exc).__name__}"))
            return True
        await self.publisher.publish_results(results)
        self.out.processed += 1
        return True
