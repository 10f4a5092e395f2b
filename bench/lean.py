"""The lean consumer (issue 19): what sending costs with no guarantee beyond watermark commits.

Per event: decode the bytes with pydantic (one `model_validate_json`), plan with the policy
(a pure function, the one decision of which templates to use), render the two messages with the
service's renderer (compiled Jinja2 sandbox templates, SMS parts counted), make the two
provider requests concurrently with one aiohttp session (Twilio's form, FCM's JSON with the
push options the service sends), build two `DeliveryResult`s and hand them to the producer, and
mark the offset finished once both are acknowledged. A commit every `commit_interval_s` moves
each partition to its low-water mark of finished offsets (service.pipeline.offsets), as the
service's engine does.

Not done, on purpose (they are what the service's guarantees cost): no ledger (no claims,
attempt records, caps, windows, lifecycle checks, audit), no retries or failover (a refused
send is a `failed` result), no per-borrower order (events run as they come, at most
`max_in_flight` at once), no circuit breaker, rate limit, metrics, tracing or logs per event,
no dead-letter topic (an undecodable record is skipped), no rebalance handling. It is one
process in its own consumer group on its own topics, like the other baselines.

The garbage collector is tuned as the service tunes it at start (collect, freeze, threshold
10,000), so the ratio of the two compares the work per event, not the GC settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlencode

import aiohttp
import orjson

__all__ = ["Progress", "run_lean"]

# How often the count of finished events is reported (as the service's child reports it).
_REPORT_EVERY_S = 0.005


class Progress(Protocol):
    def ready(self) -> None:
        """The consumer is set up: its CPU from now on is what is measured."""

    def update(self, done: int) -> bool:
        """Report `done` finished events; True once the parent has said stop."""


async def run_lean(
    settings: dict[str, Any], clock: Callable[[], datetime], progress: Progress
) -> dict[str, Any]:
    """Consume until `progress` says stop; the stats of the run."""
    from aiokafka import TopicPartition
    from aiokafka.structs import ConsumerRecord, OffsetAndMetadata

    from service.channels.google_oauth import AccessTokenSource, load_service_account
    from service.channels.push_options import collapse_id
    from service.channels.rest import HttpClient, basic_auth
    from service.config import Settings
    from service.events import (
        Channel,
        DeliveryResult,
        DeliveryStatus,
        LoanOverdueEvent,
        Reason,
        result_id_for,
    )
    from service.pipeline.offsets import OffsetTracker
    from service.policy import load_policy, plan_notifications
    from service.policy.model import PlannedNotification
    from service.rendering import Renderer, resolve_locale
    from service.rendering.model import RenderedMessage
    from service.wiring.kafka import build_consumer, build_producer

    s = Settings(**settings)
    policy = load_policy(s.policy_file)
    renderer = Renderer.load(
        s.templates_dir, brand=s.brand_name, customer_service=s.customer_service
    )
    zone = s.default_timezone or None
    twilio_url = (
        f"{s.twilio_base_url.rstrip('/')}/2010-04-01/Accounts/{s.twilio_account_sid}/Messages.json"
    )
    fcm_url = f"{s.fcm_base_url.rstrip('/')}/v1/projects/{s.fcm_project_id}/messages:send"
    secret = s.twilio_auth_token.get_secret_value()
    twilio_form = {
        "Authorization": basic_auth(s.twilio_account_sid, secret),
        # Encoded by hand: aiohttp makes a FormData (and a multipart writer) of a dict.
        "Content-Type": "application/x-www-form-urlencoded",
    }
    assert s.fcm_service_account_file is not None
    token_client = HttpClient(s.send_timeout_s, provider="fcm")
    tokens = AccessTokenSource(
        load_service_account(Path(s.fcm_service_account_file)),
        token_client,
        provider="fcm",
        clock=clock,
        token_url=s.fcm_token_url,
    )
    in_flight = asyncio.Semaphore(s.max_in_flight)
    trackers: dict[TopicPartition, OffsetTracker] = {}
    done = 0
    tasks: set[asyncio.Task[None]] = set()

    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(token_client.aclose)
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=s.provider_max_connections, limit_per_host=0),
            timeout=aiohttp.ClientTimeout(total=s.send_timeout_s),
            trust_env=False,
        )
        stack.push_async_callback(session.close)
        producer = build_producer(s)
        await producer.start()
        stack.push_async_callback(producer.stop)
        consumer = build_consumer(s)
        consumer.subscribe([s.input_topic])
        await consumer.start()
        stack.push_async_callback(consumer.stop)

        async def sms(nid: str, to: str, rendered: RenderedMessage) -> tuple[str | None, int]:
            assert rendered.sms is not None
            form = urlencode({"To": to, "Body": rendered.sms.text, "From": s.twilio_from}).encode()
            async with session.post(twilio_url, data=form, headers=twilio_form) as response:
                body = await response.read()
                if response.status in (200, 201):
                    return str(orjson.loads(body)["sid"]), response.status
                return None, response.status

        async def push(
            nid: str, token: str, rendered: RenderedMessage, now: datetime
        ) -> tuple[str | None, int]:
            content = rendered.push
            assert content is not None
            data = {**content.data, "notification_id": nid}
            if content.deep_link:
                data["deep_link"] = content.deep_link
            collapse = collapse_id(nid)
            expires = int((now + timedelta(hours=1)).timestamp())
            body = {
                "message": {
                    "token": token,
                    "notification": {"title": content.title, "body": content.body},
                    "data": data,
                    "android": {
                        "priority": "HIGH",
                        "ttl": "3600s",
                        "collapse_key": collapse,
                        "notification": {"tag": collapse},
                    },
                    "apns": {
                        "headers": {
                            "apns-priority": "10",
                            "apns-expiration": str(expires),
                            "apns-collapse-id": collapse,
                        }
                    },
                }
            }
            headers = {
                "Authorization": f"Bearer {await tokens.get()}",
                "Content-Type": "application/json",
            }
            async with session.post(fcm_url, data=orjson.dumps(body), headers=headers) as response:
                answer = await response.read()
                if response.status == 200:
                    return str(orjson.loads(answer)["name"]), response.status
                return None, response.status

        def result(
            event: LoanOverdueEvent,
            plan: PlannedNotification,
            rendered: RenderedMessage,
            answer: tuple[str | None, int] | BaseException,
            started: datetime,
        ) -> DeliveryResult:
            nid = plan.notification_id(event.event_id)
            message_id: str | None = None
            code: str | None = None
            # No retries: a refusal ends the notification at its first answer.
            if isinstance(answer, BaseException):
                status = DeliveryStatus.UNKNOWN
                reason = (
                    Reason.AMBIGUOUS_TIMEOUT
                    if isinstance(answer, TimeoutError)
                    else Reason.AMBIGUOUS_CONNECTION_LOST
                )
            elif answer[0] is not None:
                message_id, status, reason = answer[0], DeliveryStatus.SENT, Reason.SENT
            else:
                code, status = f"http_{answer[1]}", DeliveryStatus.FAILED
                transient = answer[1] >= 500 or answer[1] == 429
                reason = Reason.RETRIES_EXHAUSTED if transient else Reason.PROVIDER_REJECTED
            now = clock()
            return DeliveryResult(
                result_id=result_id_for(nid, status),
                notification_id=nid,
                event_id=event.event_id,
                loan_id=event.loan.loan_id,
                borrower_id=event.borrower.borrower_id,
                channel=plan.channel,
                provider="twilio" if plan.channel is Channel.SMS else "fcm",
                template=rendered.template,
                locale=rendered.locale,
                status=status,
                reason=reason,
                rule=plan.rule,
                attempts=1,
                provider_message_id=message_id,
                provider_code=code,
                sms_parts=rendered.sms.parts if rendered.sms else None,
                occurred_at=now,
                first_attempt_at=started,
                finished_at=now,
            )

        async def handle(record: ConsumerRecord[bytes, bytes], tracker: OffsetTracker) -> None:
            nonlocal done
            try:
                try:
                    event = LoanOverdueEvent.model_validate_json(record.value or b"")
                except ValueError:
                    return  # no DLQ: the lean consumer skips what it cannot read
                now = clock()
                plans = plan_notifications(event, policy, now, default_timezone=zone)
                locale = resolve_locale(event, default=s.default_locale)
                work = []
                for plan in plans:
                    rendered = renderer.render(event, plan, locale=locale)
                    nid = plan.notification_id(event.event_id)
                    if plan.channel is Channel.SMS and event.borrower.phone:
                        work.append((plan, rendered, sms(nid, event.borrower.phone, rendered)))
                    elif plan.channel is Channel.PUSH and event.borrower.push_tokens:
                        token = event.borrower.push_tokens[0].token
                        work.append((plan, rendered, push(nid, token, rendered, now)))
                answers = await asyncio.gather(*(w[2] for w in work), return_exceptions=True)
                key = event.borrower.borrower_id.encode()
                headers = [
                    ("content-type", b"application/json"),
                    ("event_id", event.event_id.encode()),
                ]
                futures = [
                    await producer.send(
                        s.results_topic,
                        key=key,
                        value=result(event, plan, rendered, answer, now).model_dump_json().encode(),
                        headers=headers,
                    )
                    for (plan, rendered, _), answer in zip(work, answers, strict=True)
                ]
                await asyncio.gather(*futures)
            finally:
                tracker.finish(record.offset)
                in_flight.release()
                done += 1

        async def commit() -> None:
            offsets = {}
            for tp, tracker in trackers.items():
                position = tracker.committable()
                if position is not None:
                    offsets[tp] = OffsetAndMetadata(position, "")
            if offsets:
                await consumer.commit(offsets)
                for tp, meta in offsets.items():
                    trackers[tp].mark_committed(meta.offset)

        # As the service does once started (service.app._tune_gc_for_serving).
        gc.collect()
        gc.freeze()
        gc.set_threshold(10_000, 10, 10)
        stop = asyncio.Event()

        async def reporting() -> None:
            # Polled (a count that changes in many tasks), as the service's child polls it.
            while True:
                if progress.update(done):
                    break
                await asyncio.sleep(_REPORT_EVERY_S)
            stop.set()

        progress.ready()
        reporter = asyncio.create_task(reporting())
        stack.push_async_callback(_cancel, reporter)
        loop = asyncio.get_running_loop()
        last_commit = loop.time()
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=100, max_records=500)
            for tp, records in batches.items():
                tracker = trackers.get(tp)
                if tracker is None:
                    tracker = trackers[tp] = OffsetTracker()
                for record in records:
                    tracker.add(record.offset)
                    await in_flight.acquire()
                    task = asyncio.create_task(handle(record, tracker))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
            if loop.time() - last_commit >= s.commit_interval_s:
                await commit()
                last_commit = loop.time()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        await commit()
    return {"processed": done}


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
