"""Settings -> the event pipeline: content, ledger, processor, scheduler, engine config.

The one place where these are built from the settings. `NotifierApp` (service/app.py) calls
each in its start-up order; the simulation (service/simulate/runner.py) and the naive bench
consumer (bench/consumers.py) call the same functions with their own producer and providers,
so what they run is what `run` wires, down to the ledger's lease and timeout.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable
from datetime import datetime
from functools import partial
from typing import Literal

from service.channels.dispatch import resends_ambiguous
from service.config import Settings
from service.events import Channel, LoanOverdueEvent
from service.handoff import EventEscalation
from service.ledger.api import NotificationLedger
from service.ledger.batching import BatchingLedger
from service.ledger.errors import LedgerUnavailableError, SchemaOutOfDateError
from service.ledger.sql import SqlLedger
from service.pipeline.engine import EngineConfig
from service.pipeline.pause import PauseGate
from service.pipeline.processor import Dispatch, NotificationProcessor
from service.pipeline.publisher import ResultPublisher
from service.pipeline.push_expiry import push_expiry_for
from service.pipeline.reconcile import Reconciler
from service.pipeline.scheduler import DeferredScheduler
from service.policy import Policy, load_policy, plan_notifications
from service.policy.model import PlannedNotification
from service.rendering import Renderer, resolve_locale
from service.settings_check import StartupError

__all__ = [
    "build_processor",
    "build_scheduler",
    "connect_ledger",
    "engine_config",
    "load_content",
    "notification_ledger",
]


def load_content(settings: Settings) -> tuple[Policy, Renderer]:
    """The policy and the templates, checked to cover each other (errors name the file)."""
    s = settings
    policy = load_policy(s.policy_file)
    renderer = Renderer.load(
        s.templates_dir, brand=s.brand_name, customer_service=s.customer_service
    )
    renderer.check_covers(policy)
    return policy, renderer


def default_zone(settings: Settings) -> str | None:
    return settings.default_timezone or None


async def connect_ledger(settings: Settings, policy: Policy) -> SqlLedger:
    """The ledger with every setting that shapes it; StartupError names the variable."""
    s = settings
    try:
        return await SqlLedger.connect(
            s.database_url,
            hash_key=s.hash_key.get_secret_value().encode(),
            # The contact rules, and the stages a released notification is re-staged by for
            # the day it goes out (lifecycle).
            policy=policy,
            default_timezone=default_zone(s),
            lease_s=s.ledger_lease_s,
            timeout_s=s.ledger_timeout_s,
            resend_ambiguous=partial(_resend_after_crash, dict(s.on_ambiguous)),
            # Who holds a claim: checked at each attempt's start. A restarted static member
            # takes over its dead predecessor's claims at once (same member id, new boot id);
            # without a member id the process's own id matches no predecessor.
            owner=(
                s.kafka_group_instance_id
                or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}",
                uuid.uuid4().hex,
            ),
        )
    except SchemaOutOfDateError as exc:
        raise StartupError(
            str(exc).split(": run ")[0],
            variable="NOTIFIER_DATABASE_URL",
            fix="run `overdue-notifier db upgrade` with the same NOTIFIER_DATABASE_URL (in "
            "Kubernetes: the db-upgrade Job) before `run`",
        ) from None
    except LedgerUnavailableError as exc:
        raise StartupError(
            f"the ledger database cannot be reached ({exc})",
            variable="NOTIFIER_DATABASE_URL",
            fix="check the host, port, credentials and that the database is up "
            "(NOTIFIER_LEDGER_TIMEOUT_S bounds each attempt)",
        ) from None


def _resend_after_crash(
    rules: dict[str, Literal["hold", "resend"]], event: LoanOverdueEvent, channel: Channel
) -> bool:
    """on_ambiguous for a claim a crash left ambiguous (the push goes to the first token)."""
    tokens = event.borrower.push_tokens
    provider = tokens[0].provider if channel is Channel.PUSH and tokens else None
    return resends_ambiguous(rules, channel, provider)


def notification_ledger(settings: Settings, ledger: SqlLedger) -> NotificationLedger:
    """The ledger the pipeline uses: batched when NOTIFIER_LEDGER_BATCH_MAX > 1."""
    if settings.ledger_batch_max > 1:
        return BatchingLedger(ledger, max_batch=settings.ledger_batch_max)
    return ledger


def build_processor(
    settings: Settings,
    *,
    policy: Policy,
    renderer: Renderer,
    ledger: NotificationLedger,
    dispatcher: Dispatch,
    clock: Callable[[], datetime],
    pause: PauseGate | None = None,
    escalation: EventEscalation | None = None,
    reconciler: Reconciler | None = None,
) -> NotificationProcessor:
    """The processor `run` uses; without `pause` and `escalation` (a simulation, a bench)
    nothing is held for an operator and no collector task is published."""
    zone = default_zone(settings)

    def planner(event: LoanOverdueEvent, now: datetime) -> list[PlannedNotification]:
        return plan_notifications(event, policy, now, default_timezone=zone)

    return NotificationProcessor(
        planner=planner,
        ledger=ledger,
        renderer=renderer,
        locale_for=partial(resolve_locale, default=settings.default_locale),
        dispatcher=dispatcher,
        pause=pause,
        clock=clock,
        unavailable=(LedgerUnavailableError,),
        push_expiry=push_expiry_for(policy, zone),
        after_event=escalation,
        after_lifecycle=None if escalation is None else escalation.after_lifecycle,
        # Unreached events (issue 15): a collector task each (docs/handoff.md).
        escalate=None if escalation is None else escalation.unreached,
        reconciler=reconciler,
    )


def build_scheduler(
    settings: Settings,
    *,
    ledger: NotificationLedger,
    processor: NotificationProcessor,
    publisher: ResultPublisher,
    clock: Callable[[], datetime],
    pause: PauseGate | None = None,
    batch_size: int = 200,
) -> DeferredScheduler:
    return DeferredScheduler(
        ledger,
        processor,
        publisher,
        clock=clock,
        interval_s=settings.scheduler_interval_s,
        batch_size=batch_size,
        pause=pause,
    )


def engine_config(settings: Settings) -> EngineConfig:
    s = settings
    return EngineConfig(
        max_in_flight=s.max_in_flight,
        max_uncommitted=s.max_uncommitted,
        commit_interval_s=s.commit_interval_s,
        shutdown_grace_s=s.shutdown_grace_s,
        rebalance_drain_s=s.rebalance_drain_s,
        schema_registry_json=s.accept_schema_registry_json,
    )
