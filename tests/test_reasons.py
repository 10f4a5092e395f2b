"""One list of reason codes: `service.events.Reason` is every code a result can carry, and the
published JSON Schema and AsyncAPI document list exactly it.

Three angles: the schemas against the enum; the source (every code the dispatcher can return,
and no result built from a free string); and paths driven for real (compliance verdicts, the
processor over a SQLite ledger with every dispatch outcome, an unknown code from a buggy
adapter).
"""

from __future__ import annotations

import ast
import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]  # (no stubs in the dev set; test only)
import pydantic
import pytest
import yaml

from service.channels.base import DispatchOutcome, OutboundMessage
from service.channels.dispatch import REASONS
from service.compliance import Candidate, Contact, decide
from service.events import Channel, DeliveryResult, DeliveryStatus, Reason, result_id_for
from service.ledger.errors import LedgerUnavailableError
from service.ledger.migrations import upgrade
from service.ledger.sql import SqlLedger
from service.pipeline.processor import NotificationProcessor
from service.policy.model import ContactRules, ContactWindow, Stage
from tests.builders import make_event, make_plan
from tests.conftest import REPO_ROOT
from tests.ledger.helpers import MORNING_NY, RulesPolicy
from tests.ledger.test_with_processor import Renderer

SERVICE = REPO_ROOT / "service"
ENUM = [r.value for r in Reason]


def _result(reason: object) -> dict[str, Any]:
    nid = "evt-1:sms:s1"
    return {
        "result_id": result_id_for(nid, DeliveryStatus.FAILED),
        "notification_id": nid,
        "event_id": "evt-1",
        "loan_id": "L1",
        "borrower_id": "b-1",
        "channel": "sms",
        "status": "failed",
        "reason": reason,
        "occurred_at": "2026-11-20T15:00:00+00:00",
    }


def test_the_published_schema_and_asyncapi_list_exactly_the_reason_enum() -> None:
    """schemas/delivery-result.v1.json and asyncapi.yaml give `reason` the enum's values, in
    its order, and nothing else; the schema refuses a code outside it, as the model does."""
    schema = json.loads((REPO_ROOT / "schemas" / "delivery-result.v1.json").read_text())
    assert schema["$defs"]["Reason"]["enum"] == ENUM
    assert schema["properties"]["reason"]["$ref"] == "#/$defs/Reason"
    assert "reason" in schema["required"]

    document = yaml.safe_load((REPO_ROOT / "asyncapi.yaml").read_text())
    components = document["components"]["schemas"]
    assert components["Reason"]["enum"] == ENUM
    assert components["DeliveryResult"]["properties"]["reason"]["$ref"] == (
        "#/components/schemas/Reason"
    )

    jsonschema.validate(_result("provider_rejected"), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(_result("invalid_number"), schema)
    with pytest.raises(pydantic.ValidationError):
        DeliveryResult.model_validate(_result("invalid_number"))
    assert DeliveryResult.model_validate(_result("provider_rejected")).reason is (
        Reason.PROVIDER_REJECTED
    )


def _modules() -> list[tuple[Path, ast.Module]]:
    return [(p, ast.parse(p.read_text(encoding="utf-8"))) for p in sorted(SERVICE.rglob("*.py"))]


def _dispatch_codes(tree: ast.Module) -> set[str]:
    """String codes dispatch.py hands to an outcome or assigns to `reason`."""
    codes: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name | ast.Attribute):
            name = node.func.id if isinstance(node.func, ast.Name) else node.func.attr
            if name in ("outcome", "DispatchOutcome") and len(node.args) >= 2:
                arg = node.args[1]
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    codes.add(arg.value)
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            targets = [t.id for t in node.targets if isinstance(t, ast.Name)]
            if "reason" in targets and isinstance(node.value.value, str):
                codes.add(node.value.value)
    return codes


def test_every_code_the_dispatcher_can_return_is_a_reason() -> None:
    """dispatch.REASONS and every literal code in dispatch.py (outcome arguments, `reason = ...`)
    are members of Reason: a dispatch outcome always maps onto the contract."""
    tree = ast.parse((SERVICE / "channels" / "dispatch.py").read_text(encoding="utf-8"))
    codes = _dispatch_codes(tree)
    assert {"sent", "circuit_open", "ambiguous_timeout"} <= codes  # the scan sees them
    assert sorted(set(REASONS) - set(ENUM)) == []
    assert sorted(codes - set(ENUM)) == []


_DECIDING_FIELDS = {"result_id", "status", "reason"}


def _results_built_elsewhere(path: Path, tree: ast.Module) -> list[str]:
    """Results made outside the builder: a `DeliveryResult(...)` call, or a `model_copy` (which
    skips validation) that changes what a result decided; `reason=` given a string literal to
    the builder."""
    found: list[str] = []
    where = path.relative_to(REPO_ROOT)
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
        if name == "DeliveryResult" and path != SERVICE / "events.py":
            found.append(f"{where}:{node.lineno} DeliveryResult(...)")
        if name in ("for_notification", "followed_by", "DeliveryResult"):
            for keyword in node.keywords:
                if keyword.arg == "reason" and isinstance(keyword.value, ast.Constant):
                    found.append(f"{where}:{node.lineno} reason={keyword.value.value!r}")
        if name == "model_copy":
            for keyword in node.keywords:
                if keyword.arg != "update" or not isinstance(keyword.value, ast.Dict):
                    continue
                keys = {str(k.value) for k in keyword.value.keys if isinstance(k, ast.Constant)}
                if keys & _DECIDING_FIELDS:
                    found.append(f"{where}:{node.lineno} model_copy({sorted(keys)})")
    return found


def test_results_are_built_in_one_place_and_never_from_a_free_string_reason() -> None:
    """Nowhere in service/ but the builder itself (DeliveryResult.for_notification and
    .followed_by in events.py) is a result constructed, or copied into a new decision with
    `model_copy`; no builder call gives a string literal as the reason."""
    modules = _modules()
    assert any(p.name == "events.py" for p, _ in modules)
    found = [hit for path, tree in modules for hit in _results_built_elsewhere(path, tree)]
    assert found == []


def _candidate(**overrides: object) -> Candidate:
    values: dict[str, object] = {
        "channel": Channel.SMS,
        "stage": Stage.EARLY_OVERDUE,
        "loan_id": "L1",
        "has_address": True,
        "opted_out": False,
        "zone": "America/New_York",
        "phone": "+14155550123",
        "first_seen_at": MORNING_NY,
    }
    values.update(overrides)
    return Candidate(**values)  # type: ignore[arg-type]


_NIGHT = datetime(2026, 11, 21, 3, 0, tzinfo=UTC)  # 22:00 in New York


@pytest.mark.parametrize(
    ("candidate", "rules", "contacts", "now", "expected"),
    [
        (_candidate(opted_out=True), ContactRules(), [], MORNING_NY, Reason.OPTED_OUT),
        (_candidate(has_address=False), ContactRules(), [], MORNING_NY, Reason.NO_CONTACT_ADDRESS),
        (_candidate(zone=None), ContactRules(), [], MORNING_NY, Reason.TIMEZONE_UNKNOWN),
        (_candidate(), ContactRules(), [], _NIGHT, Reason.QUIET_HOURS),
        (
            _candidate(not_before=MORNING_NY + timedelta(hours=2)),
            ContactRules(),
            [],
            MORNING_NY,
            Reason.PREFERRED_TIME,
        ),
        (
            _candidate(),
            ContactRules(window=ContactWindow(MORNING_NY.time(), MORNING_NY.time())),
            [],
            MORNING_NY,
            Reason.NO_CONTACT_WINDOW,
        ),
        (
            _candidate(cadence_days=3),
            ContactRules(),
            [Contact(MORNING_NY - timedelta(hours=1), Channel.SMS, "L1", "early_overdue")],
            MORNING_NY,
            Reason.CADENCE,
        ),
        (
            _candidate(first_seen_at=_NIGHT - timedelta(days=30)),
            ContactRules(),
            [],
            _NIGHT,
            Reason.STALE,
        ),
    ],
)
def test_every_compliance_verdict_names_a_reason_member(
    candidate: Candidate,
    rules: ContactRules,
    contacts: list[Contact],
    now: datetime,
    expected: Reason,
) -> None:
    """Each suppress / defer path of decide() answers with a Reason member (not a string)."""
    decision = decide(candidate, rules, contacts, now)
    assert decision.reason is expected


class _Scripted:
    def __init__(self, outcome: DispatchOutcome) -> None:
        self.outcome = outcome

    async def dispatch(self, message: OutboundMessage) -> DispatchOutcome:
        return self.outcome


def _outcome(code: str, status: DeliveryStatus | None = None) -> DispatchOutcome:
    if status is None:
        status = (
            DeliveryStatus.SENT
            if code == "sent"
            else DeliveryStatus.UNKNOWN
            if code.startswith("ambiguous_")
            else DeliveryStatus.FAILED
        )
    return DispatchOutcome(status, code, "recorder", attempts=1)


_CASES = [
    *((_outcome(code), Reason(code)) for code in REASONS),
    # A code no contract lists (an adapter bug): the send keeps a result, with the nearest.
    (_outcome("invalid_number", DeliveryStatus.FAILED), Reason.PROVIDER_REJECTED),
    (_outcome("ambiguous_gremlins", DeliveryStatus.UNKNOWN), Reason.AMBIGUOUS_ADAPTER_ERROR),
]


@pytest.mark.parametrize(("outcome", "expected"), _CASES, ids=lambda c: getattr(c, "reason", c))
async def test_every_dispatch_outcome_ends_in_a_published_reason_member(
    outcome: DispatchOutcome,
    expected: Reason,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The real processor over a SQLite ledger turns each dispatch outcome into a result whose
    reason is a Reason member that the published schema accepts; a code outside the contract
    still gets its result (never lost after a send), logged as an error."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'ledger.sqlite3'}"
    await upgrade(url)
    ledger = await SqlLedger.connect(
        url,
        hash_key=b"k",
        policy=RulesPolicy(),
        default_timezone=None,
        lease_s=120.0,
        timeout_s=5.0,
    )
    try:
        processor = NotificationProcessor(
            planner=lambda _event, _now: [make_plan(Channel.SMS)],
            ledger=ledger,
            renderer=Renderer(),
            locale_for=lambda _event: "en-US",
            dispatcher=_Scripted(outcome),
            clock=lambda: MORNING_NY,
            unavailable=(LedgerUnavailableError,),
        )
        with caplog.at_level(logging.ERROR, logger="service.pipeline.processor"):
            results = await processor.handle(make_event())
        audit = await ledger.audit(borrower_id="b-1")
    finally:
        await ledger.aclose()
    sent = [r for r in results if r.channel is Channel.SMS]
    assert [r.reason for r in sent] == [expected]
    assert all(isinstance(r.reason, Reason) for r in results)
    assert [a.reason for a in audit if a.channel == "sms"] == [expected.value]
    schema = json.loads((REPO_ROOT / "schemas" / "delivery-result.v1.json").read_text())
    for result in results:
        jsonschema.validate(json.loads(result.model_dump_json()), schema)
    unlisted = outcome.reason not in ENUM
    assert any("not in the contract" in r.getMessage() for r in caplog.records) is unlisted
