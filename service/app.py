"""The running service: settings in, a consumer-group member out.

Each part is built by the composition root (service/wiring/: channels, kafka, receipts,
pipeline); this module puts them together in start-up order and owns their lifecycle.

Lifecycle (arq-style): start every dependency or fail naming it; consume until asked to stop;
on SIGTERM stop fetching, give in-flight work `shutdown_grace_s`, cancel the rest, commit,
close, and log the counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from functools import partial
from typing import TextIO

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaError
from sqlalchemy.engine import make_url

from service import __version__
from service.channels.dispatch import Dispatcher
from service.channels.http_gateway import HttpGatewaySender
from service.channels.twilio import TwilioSender
from service.config import Settings
from service.coverage import CoverageMonitor
from service.events import DeliveryResult, LoanOverdueEvent
from service.handoff import CollectorTasks, EventEscalation, TaskStore, initialise_task_series
from service.kafka_preflight import check_tls
from service.ledger.api import NotificationLedger
from service.ledger.coverage import CoverageLease, CoverageStore
from service.ledger.reconcile_queue import ReconcileQueue
from service.ledger.sql import SqlLedger
from service.observability import metrics
from service.observability.health import Health
from service.observability.http import build_http_app, build_webhook_app, serve_http
from service.observability.looplag import watch_loop_lag
from service.pipeline.engine import ConsumerEngine
from service.pipeline.pause import PauseGate
from service.pipeline.publisher import ResultPublisher
from service.pipeline.readiness import GroupMembership, producer_connected
from service.pipeline.reconcile import Reconciler, SmsFinder, resend_under_claim
from service.policy.model import PlannedNotification
from service.receipts.sink import LedgerReceiptSink
from service.settings_check import StartupError
from service.wiring.channels import build_dispatcher, route_plan
from service.wiring.kafka import build_consumer, build_producer
from service.wiring.pipeline import (
    build_processor,
    build_scheduler,
    connect_ledger,
    engine_config,
    load_content,
    notification_ledger,
)
from service.wiring.receipts import receipt_routes

__all__ = ["NotifierApp", "utc_now"]

log = logging.getLogger(__name__)


def utc_now() -> datetime:
    return datetime.now(UTC)


class NotifierApp:
    """The service: one consumer-group member with its ledger, providers and HTTP endpoint."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], datetime] = utc_now,
        out: TextIO = sys.stdout,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.out = out
        self.health = Health(
            liveness_timeout_s=settings.liveness_timeout_s,
            check_timeout_s=settings.readiness_check_timeout_s,
        )
        self.engine: ConsumerEngine | None = None
        self.http_port: int | None = None
        self.receipts_http_port: int | None = None
        self.collector_tasks: CollectorTasks | None = None
        self.coverage: CoverageMonitor | None = None
        # What the app built, for the operator's start-up line and for tests that check that
        # every setting reached the object it configures.
        self.ledger: SqlLedger | None = None
        self.notification_ledger: NotificationLedger | None = None
        self.producer: AIOKafkaProducer | None = None
        self.consumer: AIOKafkaConsumer | None = None
        self.dispatcher: Dispatcher | None = None
        self.membership: GroupMembership | None = None
        self._stop = asyncio.Event()

    def request_stop(self) -> None:
        self._stop.set()
        self.health.mark_stopping()
        if self.engine is not None:
            self.engine.request_stop()

    async def run(self) -> None:
        async with self._started() as engine:
            await engine.run()

    @contextlib.asynccontextmanager
    async def _started(self) -> AsyncIterator[ConsumerEngine]:
        s = self.settings
        # Configuration first: a bad policy or template stops the start naming the file.
        policy, renderer = load_content(s)
        default_zone = s.default_timezone or None
        # aiokafka reports a refused certificate as "Unable to bootstrap"; this names the cause.
        await check_tls(s)
        async with contextlib.AsyncExitStack() as stack:
            # The HTTP port is bound before anything joins the group: a busy port must stop the
            # start at once, not after this member took partitions from the others.
            http_socket = hooks_socket = None
            if s.http_port:
                http_socket = _bind(s.http_host, s.http_port, "NOTIFIER_HTTP_PORT")
                stack.callback(http_socket.close)
            if s.receipts_http_port:
                hooks_socket = _bind(
                    s.http_host, s.receipts_http_port, "NOTIFIER_RECEIPTS_HTTP_PORT"
                )
                stack.callback(hooks_socket.close)
            sql_ledger = await connect_ledger(s, policy)
            self.ledger = sql_ledger
            ledger = notification_ledger(s, sql_ledger)
            stack.push_async_callback(ledger.aclose)
            self.notification_ledger = ledger
            producer = build_producer(s)
            self.producer = producer
            stack.push_async_callback(producer.stop)
            await _start_kafka(producer.start(), s, producer=True)
            publisher = ResultPublisher(
                producer, results_topic=s.results_topic, dlq_topic=s.dlq_topic
            )
            # Receipts (webhook, SMPP deliver_sm) -> ledger + delivered/undelivered results.
            receipts = LedgerReceiptSink(
                sql_ledger.receipts(),
                publisher,
                clock=self.clock,
                match_window_s=s.receipt_match_window_s,
            )
            dispatcher = await stack.enter_async_context(
                build_dispatcher(s, out=self.out, clock=self.clock, sink=receipts)
            )
            self.dispatcher = dispatcher
            # Each attempt's start is in the ledger before its request goes out (issue 15).
            dispatcher.attempt_journal = ledger
            # Every series known now exists from the start (alerts must see an outage that
            # begins with a restart).
            plan = route_plan(s)
            metrics.initialise_series([*plan.sms_providers(), *plan.push, *plan.voice])

            # Operator pause (overdue-notifier pause/resume): read once now, then polled.
            pause = PauseGate.on_ledger(
                sql_ledger.engine,
                hash_key=s.hash_key.get_secret_value().encode(),
                poll_s=s.pause_poll_s,
            )
            await pause.start()
            self.health.add_detail("pause", pause.describe)

            # Hand-off to collectors: the policy's rule and the automatic escalations.
            collector_tasks = CollectorTasks(
                producer,
                TaskStore(sql_ledger.engine),
                topic=s.tasks_topic,
                clock=self.clock,
            )
            self.collector_tasks = collector_tasks
            initialise_task_series()
            escalation = EventEscalation(collector_tasks, policy, default_timezone=default_zone)
            # Ambiguous SMS: asked of the providers that can say (Twilio's list API, an HTTP
            # gateway's status query when configured) in the background (issue 15).
            reconciler = None
            finders: dict[str, SmsFinder] = {}
            twilio = dispatcher.sender_named("twilio")
            if isinstance(twilio, TwilioSender):
                finders[twilio.provider] = twilio
            gateway = dispatcher.sender_named("http_gateway")
            if isinstance(gateway, HttpGatewaySender) and gateway.can_query:
                finders[gateway.provider] = gateway
            if finders:

                async def send_again(
                    event: LoanOverdueEvent, plan: PlannedNotification, nid: str
                ) -> DeliveryResult:
                    return await processor.send_again(event, plan, nid)

                reconciler = Reconciler(
                    finders,
                    ledger,
                    publisher.publish_results,
                    clock=self.clock,
                    delay_s=s.reconcile_delay_s,
                    # Not found after the delay, on every provider of its route: sent once
                    # more under the same id.
                    resend=resend_under_claim(
                        take=sql_ledger.take_resend,
                        send=send_again,
                        records=ledger,
                        clock=self.clock,
                    ),
                    providers_for=dispatcher.sms_providers_for,
                    # Durable: swept from the ledger at start-up and periodically (0008).
                    store=ReconcileQueue(sql_ledger.engine, lease_s=s.ledger_lease_s),
                )
                reconcile_task = asyncio.create_task(reconciler.run(self._stop), name="reconcile")
                stack.push_async_callback(_cancel, reconcile_task)
            processor = build_processor(
                s,
                policy=policy,
                renderer=renderer,
                ledger=ledger,
                dispatcher=dispatcher,
                clock=self.clock,
                pause=pause,
                escalation=escalation,
                reconciler=reconciler,
            )
            consumer = build_consumer(s)
            engine = ConsumerEngine(
                consumer,
                publisher,
                processor,
                engine_config(s),
                clock=self.clock,
                on_tick=self.health.tick,
            )
            membership = GroupMembership(engine.rebalance_listener)
            self.consumer, self.membership = consumer, membership
            consumer.subscribe([s.input_topic], listener=membership)
            stack.push_async_callback(consumer.stop)
            await _start_kafka(consumer.start(), s, producer=False)
            self.health.add_check("ledger", ledger.ping)
            self.health.add_check("kafka", partial(producer_connected, producer))
            self.health.add_check("consumer_group", membership.check)
            if http_socket is not None:
                server = await stack.enter_async_context(
                    serve_http(
                        build_http_app(self.health), s.http_host, s.http_port, sock=http_socket
                    )
                )
                self.http_port = server.port
            if hooks_socket is not None:
                # Provider webhooks on their own port: the Ingress routes here, never to /metrics.
                hooks = await stack.enter_async_context(
                    serve_http(
                        build_webhook_app(receipt_routes(s, receipts, clock=self.clock)),
                        s.http_host,
                        s.receipts_http_port,
                        sock=hooks_socket,
                    )
                )
                self.receipts_http_port = hooks.port
            scheduler = build_scheduler(
                s,
                ledger=ledger,
                processor=processor,
                publisher=publisher,
                clock=self.clock,
                pause=pause,
            )
            scheduler_task = asyncio.create_task(scheduler.run(self._stop))
            stack.push_async_callback(_cancel, scheduler_task)
            rematch_task = asyncio.create_task(
                receipts.run(self._stop, interval_s=s.scheduler_interval_s)
            )
            stack.push_async_callback(_cancel, rematch_task)
            pause_task = asyncio.create_task(pause.run(self._stop), name="pause-poll")
            stack.push_async_callback(_cancel, pause_task)
            # Contact coverage: one replica at a time (the lease), every coverage_interval_s.
            coverage = CoverageMonitor(
                CoverageStore(sql_ledger.engine, lookback_days=s.coverage_lookback_days),
                CoverageLease(
                    sql_ledger.engine,
                    holder=s.kafka_group_instance_id
                    or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}",
                    ttl_s=max(60.0, 3 * s.coverage_interval_s),
                ),
                stale_days=s.coverage_stale_days,
                interval_s=s.coverage_interval_s,
                clock=self.clock,
            )
            self.coverage = coverage
            coverage_task = asyncio.create_task(coverage.run(self._stop), name="coverage")
            stack.push_async_callback(_cancel, coverage_task)
            lag_task = asyncio.create_task(watch_loop_lag(), name="loop-lag")
            stack.push_async_callback(_cancel, lag_task)
            self.engine = engine
            if self._stop.is_set():
                engine.request_stop()
            _tune_gc_for_serving()
            log.info(
                "started: consuming",
                extra={
                    "version": __version__,
                    "http_port": self.http_port,
                    "paused": pause.paused,
                },
            )
            yield engine


def _tune_gc_for_serving() -> None:
    """Keep the garbage collector from stopping the event loop for long.

    Measured with the bench (PostgreSQL, 100 events/s, 2 cores): full (generation 2)
    collections walked every long-lived object, modules, compiled templates, policy,
    SQLAlchemy metadata, clients, and stopped the loop for 80-190 ms each time, and the default
    threshold of 700 allocations ran ~60 collections a second. Start-up garbage is collected
    once, the survivors frozen (never scanned, never freed), and a collection starts after
    10,000 net allocations instead of 700: GC time fell by half, CPU per event by ~20%
    (3.3 -> 2.7 ms). Cyclic garbage made while serving is still collected, a little later.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


def startup_summary(settings: Settings) -> dict[str, object]:
    """What the operator needs to see in the first line: which build, which group and topics,
    which providers, which ledger (password masked)."""
    s = settings
    plan = route_plan(s)
    return {
        "version": __version__,
        "group": s.kafka_group_id,
        "group_instance_id": s.kafka_group_instance_id,
        "input_topic": s.input_topic,
        "results_topic": s.results_topic,
        "dlq_topic": s.dlq_topic,
        "sms_providers": ",".join(plan.sms),
        "sms_routes": ";".join(f"{c}:{','.join(p)}" for c, p in plan.sms_by_country.items()),
        "push_providers": ",".join(plan.push),
        "voice_providers": ",".join(plan.voice),
        "ledger": make_url(s.database_url).render_as_string(hide_password=True),
        "http_port": s.http_port,
        "receipts_http_port": s.receipts_http_port,
    }


def _bind(host: str, port: int, variable: str) -> socket.socket:
    try:
        return socket.create_server(
            (host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET
        )
    except OSError as exc:
        raise StartupError(
            f"cannot listen on {host}:{port} ({exc.strerror})",
            variable=variable,
            fix="stop what uses the port or choose another one (NOTIFIER_HTTP_HOST for the "
            "address)",
        ) from None


async def _start_kafka(start: Awaitable[None], settings: Settings, *, producer: bool) -> None:
    try:
        await start
    except KafkaConnectionError:
        raise StartupError(
            f"no Kafka broker answers at {settings.kafka_bootstrap_servers}",
            variable="NOTIFIER_KAFKA_BOOTSTRAP_SERVERS",
            fix="name reachable brokers as host:port,... (and check "
            "NOTIFIER_KAFKA_SECURITY_PROTOCOL matches the listener)",
        ) from None
    except KafkaError as exc:
        if producer and settings.kafka_idempotent_producer:
            raise StartupError(
                f"the Kafka broker refused an idempotent producer ({type(exc).__name__} on "
                "InitProducerId)",
                variable="NOTIFIER_KAFKA_IDEMPOTENT_PRODUCER",
                fix="set NOTIFIER_KAFKA_IDEMPOTENT_PRODUCER=false for brokers without "
                "idempotent producing (the embedded Tansu broker); keep it on against Apache "
                "Kafka",
            ) from None
        raise StartupError(
            f"the Kafka {'producer' if producer else 'consumer'} could not start "
            f"({type(exc).__name__})",
            variable="NOTIFIER_KAFKA_BOOTSTRAP_SERVERS",
            fix="check the brokers, the security settings and the ACLs of this client",
        ) from None


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
