"""`overdue-notifier run`, started as the container starts it, refuses a broken deployment in
one line that names the variable and the fix, and says what it runs and when it stops."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.embedded_broker import EmbeddedBroker, free_port
from tests.conftest import REPO_ROOT
from tests.kafka_tools import create_topics, unique

HASH_KEY = "a-test-hash-key-that-is-not-the-sample"


def service_env(tmp_path: Path, env: dict[str, str]) -> dict[str, str]:
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
    return {
        **inherited,
        "PYTHONPATH": str(REPO_ROOT),
        "NOTIFIER_HTTP_PORT": "0",
        "NOTIFIER_LOG_FORMAT": "console",
        "NOTIFIER_HASH_KEY": HASH_KEY,
        "NOTIFIER_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'ledger.sqlite3'}",
        "NOTIFIER_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
        **env,
    }


def run_service(
    tmp_path: Path, env: dict[str, str], *args: str
) -> subprocess.CompletedProcess[str]:
    """`python -m service run` (or another command) from an unrelated working directory."""
    return subprocess.run(
        [sys.executable, "-m", "service", *(args or ("run",))],
        env=service_env(tmp_path, env),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def one_cannot_start_line(done: subprocess.CompletedProcess[str], variable: str) -> str:
    assert "Traceback" not in done.stderr + done.stdout
    lines = [line for line in done.stderr.splitlines() if "cannot start:" in line]
    assert len(lines) == 1, done.stderr
    assert variable in lines[0]
    assert "fix:" in lines[0]
    return lines[0]


# Each is accepted by today's main `config check` and fails (or misbehaves) in `run`.
BAD_CONFIGURATIONS = [
    ({"NOTIFIER_SMS_PROVIDER": "twillio"}, "NOTIFIER_SMS_PROVIDER"),
    ({"NOTIFIER_SMS_PROVIDER": "twilio"}, "NOTIFIER_TWILIO_ACCOUNT_SID"),
    ({"NOTIFIER_PUSH_PROVIDER": "fcm"}, "NOTIFIER_FCM_SERVICE_ACCOUNT_FILE"),
    ({"NOTIFIER_SMS_ROUTES": "86-smpp"}, "NOTIFIER_SMS_ROUTES"),
    ({"NOTIFIER_TEMPLATES_DIR": "no-such-dir"}, "NOTIFIER_TEMPLATES_DIR"),
    ({"NOTIFIER_POLICY_FILE": "no-such-policy.yaml"}, "NOTIFIER_POLICY_FILE"),
    ({"NOTIFIER_DEFAULT_TIMEZONE": "China/Beijing"}, "NOTIFIER_DEFAULT_TIMEZONE"),
    ({"NOTIFIER_DATABASE_URL": "postgresql://postgres@127.0.0.1/test"}, "NOTIFIER_DATABASE_URL"),
    ({"NOTIFIER_DATABASE_URL": "not a url"}, "NOTIFIER_DATABASE_URL"),
    ({"NOTIFIER_HTTP_GATEWAY_SUCCESS_CODES": '["0",'}, "NOTIFIER_HTTP_GATEWAY_SUCCESS_CODES"),
    ({"NOTIFIER_HASH_KEY": "change-me"}, "NOTIFIER_HASH_KEY"),
    ({"NOTIFIER_MAX_IN_FLIGHT": "lots"}, "NOTIFIER_MAX_IN_FLIGHT"),
    (
        {"NOTIFIER_TWILIO_STATUS_CALLBACK": "https://hooks.example/receipts/twilio/status"},
        "NOTIFIER_RECEIPTS_PUBLIC_URL",
    ),
]


@pytest.mark.parametrize(
    ("env", "variable"), BAD_CONFIGURATIONS, ids=[v for _, v in BAD_CONFIGURATIONS]
)
def test_config_check_and_run_refuse_the_same_configuration(
    tmp_path: Path, env: dict[str, str], variable: str
) -> None:
    """`config check` and `run` both exit 2 naming the variable and the fix, without a
    traceback, for every configuration `run` cannot work with."""
    checked = run_service(tmp_path, env, "config", "check")
    assert checked.returncode == 2, checked.stderr
    assert variable in checked.stderr
    assert "fix:" in checked.stderr
    assert "Traceback" not in checked.stderr
    ran = run_service(tmp_path, env)
    assert ran.returncode == 2, ran.stderr
    one_cannot_start_line(ran, variable)


def test_comma_separated_lists_are_accepted(tmp_path: Path) -> None:
    """A list setting written as a,b,c is read as a list, as the table documents."""
    done = run_service(tmp_path, {"NOTIFIER_OPT_OUT_KEYWORDS": "STOP,TD"}, "config", "check")
    assert done.returncode == 0, done.stderr


def test_a_ledger_without_migrations_is_a_start_failure_naming_db_upgrade(tmp_path: Path) -> None:
    """A valid configuration whose ledger was never migrated exits 3 telling to run db upgrade."""
    done = run_service(tmp_path, {})
    assert done.returncode == 3
    assert "overdue-notifier db upgrade" in one_cannot_start_line(done, "NOTIFIER_DATABASE_URL")


def test_run_refuses_a_broken_template_and_names_the_file(tmp_path: Path) -> None:
    """A template with a syntax error stops the start with the template's name in the message."""
    templates = tmp_path / "templates"
    for source in (REPO_ROOT / "templates").rglob("*.j2"):
        target = templates / source.relative_to(REPO_ROOT / "templates")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(source.read_text(encoding="utf-8"), encoding="utf-8")
    broken = templates / "en-US" / "grace.sms.j2"
    broken.write_text("{% if %}unclosed", encoding="utf-8")
    done = run_service(tmp_path, {"NOTIFIER_TEMPLATES_DIR": str(templates)})
    assert done.returncode == 2
    assert "grace.sms.j2" in one_cannot_start_line(done, "NOTIFIER_TEMPLATES_DIR")


def db_upgrade(tmp_path: Path, url: str) -> None:
    """`overdue-notifier db upgrade`, as the deployment's Job runs it."""
    done = run_service(tmp_path, {"NOTIFIER_DATABASE_URL": url}, "db", "upgrade")
    assert done.returncode == 0, done.stderr


@pytest.fixture
def migrated(tmp_path: Path) -> dict[str, str]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'ledger.sqlite3'}"
    db_upgrade(tmp_path, url)
    return {"NOTIFIER_DATABASE_URL": url}


def test_embedded_broker_with_an_idempotent_producer_says_what_to_set(
    tmp_path: Path, kafka_broker: EmbeddedBroker, migrated: dict[str, str]
) -> None:
    """Against a broker without InitProducerId the start exits 3 naming
    NOTIFIER_KAFKA_IDEMPOTENT_PRODUCER=false, not with aiokafka's UnknownError traceback."""
    env = {**migrated, "NOTIFIER_KAFKA_BOOTSTRAP_SERVERS": kafka_broker.bootstrap_servers}
    done = run_service(tmp_path, env)
    assert done.returncode == 3
    line = one_cannot_start_line(done, "NOTIFIER_KAFKA_IDEMPOTENT_PRODUCER")
    assert "NOTIFIER_KAFKA_IDEMPOTENT_PRODUCER=false" in line


def test_a_wrong_broker_address_is_one_line(tmp_path: Path, migrated: dict[str, str]) -> None:
    """No broker at the address: exit 3 naming NOTIFIER_KAFKA_BOOTSTRAP_SERVERS."""
    done = run_service(tmp_path, migrated)
    assert done.returncode == 3
    one_cannot_start_line(done, "NOTIFIER_KAFKA_BOOTSTRAP_SERVERS")


def test_a_busy_http_port_fails_before_kafka_is_touched(
    tmp_path: Path, migrated: dict[str, str]
) -> None:
    """A busy HTTP port is reported first (the broker address is wrong too, and never
    reached), so the member never joins the group only to leave it."""
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        done = run_service(
            tmp_path,
            {**migrated, "NOTIFIER_HTTP_HOST": "127.0.0.1", "NOTIFIER_HTTP_PORT": str(port)},
        )
    assert done.returncode == 3
    one_cannot_start_line(done, "NOTIFIER_HTTP_PORT")


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[None]:
    """`path` cannot be written by the service's user, root included (root ignores the mode
    bits, not the immutable attribute)."""
    if os.geteuid() != 0:
        mode = path.stat().st_mode
        path.chmod(0o555 if path.is_dir() else 0o444)
        try:
            yield
        finally:
            path.chmod(mode)
        return
    if shutil.which("chattr") is None:  # pragma: no cover
        pytest.skip("running as root without chattr: nothing is read-only to root")
    subprocess.run(["chattr", "+i", str(path)], check=True)
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def test_an_unwritable_ledger_directory_is_named(tmp_path: Path) -> None:
    """A SQLite ledger in a directory the service user cannot write exits 2 naming the
    variable and the absolute directory."""
    locked = tmp_path / "locked"
    locked.mkdir()
    url = f"sqlite+aiosqlite:///{locked / 'ledger.sqlite3'}"
    with read_only(locked):
        done = run_service(tmp_path, {"NOTIFIER_DATABASE_URL": url})
    assert done.returncode == 2, done.stderr
    assert str(locked) in one_cannot_start_line(done, "NOTIFIER_DATABASE_URL")


def test_a_read_only_ledger_file_is_named(tmp_path: Path) -> None:
    """A migrated SQLite ledger file the service user cannot write exits 2 naming the file."""
    path = tmp_path / "ledger.sqlite3"
    db_upgrade(tmp_path, f"sqlite+aiosqlite:///{path}")
    with read_only(path):
        done = run_service(tmp_path, {})
    assert done.returncode == 2, done.stderr
    assert str(path) in one_cannot_start_line(done, "NOTIFIER_DATABASE_URL")


def test_json_mode_writes_only_json_lines(tmp_path: Path, migrated: dict[str, str]) -> None:
    """In JSON log mode a failed start writes JSON lines only, on both streams, the failure
    among them as a `cannot start` record."""
    done = run_service(tmp_path, {**migrated, "NOTIFIER_LOG_FORMAT": "json"})
    assert done.returncode == 3
    records = []
    for line in (done.stdout + done.stderr).splitlines():
        records.append(json.loads(line))
    assert any(
        r["event"].startswith("cannot start: NOTIFIER_KAFKA_BOOTSTRAP_SERVERS") for r in records
    )
    bad = run_service(tmp_path, {"NOTIFIER_LOG_FORMAT": "json", "NOTIFIER_MAX_IN_FLIGHT": "x"})
    assert bad.returncode == 2
    assert [json.loads(line)["variable"] for line in bad.stderr.splitlines()] == [
        "NOTIFIER_MAX_IN_FLIGHT"
    ]
    assert bad.stdout == ""


def test_start_line_and_sigterm_are_logged_from_any_working_directory(
    tmp_path: Path, kafka_broker: EmbeddedBroker, migrated: dict[str, str]
) -> None:
    """Started from an unrelated directory with the shipped templates, the service logs one
    start-up line (version, group, topics, providers, ledger), acknowledges SIGTERM when it
    arrives and exits 0."""
    topic = unique("startline")
    group = unique("startline-group")
    asyncio.run(create_topics(kafka_broker.bootstrap_servers, [topic, f"{topic}.r", f"{topic}.d"]))
    env = service_env(
        tmp_path,
        {
            **migrated,
            "NOTIFIER_LOG_FORMAT": "json",
            "NOTIFIER_KAFKA_BOOTSTRAP_SERVERS": kafka_broker.bootstrap_servers,
            "NOTIFIER_KAFKA_IDEMPOTENT_PRODUCER": "false",
            "NOTIFIER_KAFKA_GROUP_ID": group,
            "NOTIFIER_INPUT_TOPIC": topic,
            "NOTIFIER_RESULTS_TOPIC": f"{topic}.r",
            "NOTIFIER_DLQ_TOPIC": f"{topic}.d",
            "NOTIFIER_KAFKA_SESSION_TIMEOUT_MS": "6000",
        },
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "service", "run"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    records: list[dict[str, object]] = []
    try:
        assert process.stderr is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = process.stderr.readline()
            if not line:
                break
            records.append(json.loads(line))
            if str(records[-1]["event"]).startswith("started"):
                break
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:  # pragma: no cover
            process.kill()
    records += [json.loads(line) for line in err.splitlines()]
    assert process.returncode == 0, err
    assert out == ""
    start = next(r for r in records if r["event"] == "starting")
    assert start["group"] == group
    assert start["input_topic"] == topic
    assert start["sms_providers"] == "console"
    assert start["version"]
    assert str(start["ledger"]).startswith("sqlite+aiosqlite:///")
    started = next(r for r in records if str(r["event"]).startswith("started"))
    assert started["paused"] is False
    stop = next(r for r in records if str(r["event"]).startswith("stop requested"))
    assert stop["signal"] == "SIGTERM"


def test_config_check_for_the_migration_job_needs_only_the_ledger_url(tmp_path: Path) -> None:
    """`config check --command db-upgrade` ignores what only `run` needs (providers, hash key)
    and still refuses a ledger URL `db upgrade` cannot use."""
    only_run_needs = {"NOTIFIER_SMS_PROVIDER": "twilio", "NOTIFIER_HASH_KEY": "change-me"}
    done = run_service(tmp_path, only_run_needs, "config", "check", "--command", "db-upgrade")
    assert done.returncode == 0, done.stderr
    bad_url = {**only_run_needs, "NOTIFIER_DATABASE_URL": "postgresql://postgres@127.0.0.1/test"}
    done = run_service(tmp_path, bad_url, "config", "check", "--command", "db-upgrade")
    assert done.returncode == 2
    assert "NOTIFIER_DATABASE_URL" in done.stderr


def test_run_refuses_an_unknown_trace_sampler_and_names_the_variable(tmp_path: Path) -> None:
    """A misspelt OTEL_TRACES_SAMPLER stops the start (exit 2) naming it, where the SDK alone
    would fall back to sampling everything with a warning."""
    env = {"OTEL_TRACES_SAMPLER": "ratio", "OTEL_TRACES_EXPORTER": "console"}
    done = run_service(tmp_path, env)
    assert done.returncode == 2
    one_cannot_start_line(done, "OTEL_TRACES_SAMPLER")


# Failures `config check` cannot foresee reach the start-up net in service/cli/run.py, which
# decides by the error tree (service/errors.py): each still ends in one line and its exit code.


@contextlib.contextmanager
def plaintext_listener() -> Iterator[int]:
    """A TCP port that answers anything with a line of plain text and hangs up (not TLS)."""

    class Answer(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            self.request.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")

    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), Answer) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield server.server_address[1]
        finally:
            server.shutdown()


def test_tls_against_a_plaintext_port_is_one_line(tmp_path: Path) -> None:
    """NOTIFIER_KAFKA_SECURITY_PROTOCOL=SSL against a broker port that does not speak TLS
    (a KafkaSecurityError, under NotifierError) exits 3 in one line naming the setting."""
    with plaintext_listener() as port:
        env = {
            "NOTIFIER_KAFKA_SECURITY_PROTOCOL": "SSL",
            "NOTIFIER_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}",
        }
        done = run_service(tmp_path, env)
    assert done.returncode == 3, done.stderr
    line = one_cannot_start_line(done, "NOTIFIER_KAFKA_SECURITY_PROTOCOL")
    assert "does that port speak TLS" in line


def test_a_corrupt_ledger_file_is_one_line(tmp_path: Path) -> None:
    """A SQLite ledger file that is not a database passes `config check` (it exists and is
    writable) and fails to connect: a LedgerError, exit 3 in one line, no traceback."""
    (tmp_path / "ledger.sqlite3").write_bytes(b"not a database, " * 256)
    done = run_service(tmp_path, {})
    assert done.returncode == 3, done.stderr
    assert "ledger connect failed" in one_cannot_start_line(done, "NOTIFIER_*")


def test_an_image_without_a_kafka_codec_is_a_configuration_error(
    tmp_path: Path, kafka_broker: EmbeddedBroker, migrated: dict[str, str]
) -> None:
    """A service installed without zstd support (cramjam missing, simulated in the started
    process) stops at the consumer with MissingCodecError, a ConfigError: exit 2, one line
    saying what to install."""
    env = service_env(
        tmp_path,
        {
            **migrated,
            "NOTIFIER_KAFKA_BOOTSTRAP_SERVERS": kafka_broker.bootstrap_servers,
            "NOTIFIER_KAFKA_IDEMPOTENT_PRODUCER": "false",
        },
    )
    without_zstd = (
        "import sys, aiokafka.codec as codec; codec.has_zstd = lambda: False; "
        "from service.cli import main; sys.exit(main(['run']))"
    )
    done = subprocess.run(
        [sys.executable, "-c", without_zstd],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    line = one_cannot_start_line(done, "NOTIFIER_*")
    assert "Kafka codecs zstd are not available" in line
    assert "fix: install the service with its dependencies" in line
