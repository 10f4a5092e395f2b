"""Kafka connection security settings: what the clients are built with, and what start-up refuses.

The embedded broker has no SASL, so SASL is proven here at the level of the client configuration
(mechanism, credentials, TLS context); TLS itself is proven end to end in test_tls.py.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import pydantic
import pytest

from service.cli import build_parser, main
from service.cli.settings_docs import SettingsError, load_settings, settings_table
from service.config import Settings
from service.kafka_config import client_options
from service.kafka_security import KafkaSecurityError
from service.wiring.kafka import build_consumer, build_producer
from tests.kafka.certs import Pki, make_pki

SECRET = "s3cr3t-Value-never-printed"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def _secret_file(tmp_path: Path, text: str, name: str = "password") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _rejected(**values: Any) -> str:
    """The message start-up prints for these settings."""
    with pytest.raises(SettingsError) as info:
        load_settings(**values)
    return str(info.value)


def test_default_is_plaintext_with_no_tls_or_sasl_options() -> None:
    """Without security settings the clients connect in plaintext, as to the embedded broker."""
    options = client_options(Settings())
    assert options["security_protocol"] == "PLAINTEXT"
    assert "ssl_context" not in options
    assert "sasl_plain_password" not in options


def test_ssl_uses_the_ca_bundle_and_verifies_hostnames(pki: Pki) -> None:
    """SSL builds a context that requires a certificate signed by the CA and checks the name."""
    options = client_options(Settings(kafka_security_protocol="SSL", kafka_ssl_cafile=pki.ca))
    context: ssl.SSLContext = options["ssl_context"]
    assert options["security_protocol"] == "SSL"
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname is True
    assert "overdue-notifier test CA" in str(context.get_ca_certs())


def test_hostname_check_can_be_turned_off_explicitly(pki: Pki) -> None:
    """NOTIFIER_KAFKA_SSL_CHECK_HOSTNAME=false keeps certificate verification, drops the name
    check."""
    context = client_options(
        Settings(
            kafka_security_protocol="SSL",
            kafka_ssl_cafile=pki.ca,
            kafka_ssl_check_hostname=False,
        )
    )["ssl_context"]
    assert context.check_hostname is False
    assert context.verify_mode is ssl.CERT_REQUIRED


def test_mtls_key_password_may_come_from_a_mounted_file(pki: Pki, tmp_path: Path) -> None:
    """An encrypted client key is unlocked with the password read from a Secret file."""
    password_file = _secret_file(tmp_path, pki.client_key_password + "\n")
    settings = Settings(
        kafka_security_protocol="SSL",
        kafka_ssl_cafile=pki.ca,
        kafka_ssl_certfile=pki.client_cert,
        kafka_ssl_keyfile=pki.encrypted_client_key,
        kafka_ssl_key_password_file=password_file,
    )
    assert isinstance(client_options(settings)["ssl_context"], ssl.SSLContext)


def test_wrong_key_password_stops_start_up_naming_the_setting(pki: Pki) -> None:
    """A key password that does not unlock the key is reported at start, not at first connect."""
    message = _rejected(
        kafka_security_protocol="SSL",
        kafka_ssl_cafile=pki.ca,
        kafka_ssl_certfile=pki.client_cert,
        kafka_ssl_keyfile=pki.encrypted_client_key,
        kafka_ssl_key_password=SECRET,
    )
    assert "NOTIFIER_KAFKA_SSL_KEY_PASSWORD" in message
    assert SECRET not in message


@pytest.mark.parametrize(
    ("values", "named"),
    [
        (
            {"kafka_security_protocol": "SSL", "kafka_ssl_cafile": "/no/such/ca.pem"},
            "NOTIFIER_KAFKA_SSL_CAFILE: no such file /no/such/ca.pem",
        ),
        (
            {"kafka_ssl_cafile": "/etc/hostname"},
            "NOTIFIER_KAFKA_SSL_CAFILE set but NOTIFIER_KAFKA_SECURITY_PROTOCOL=PLAINTEXT",
        ),
        (
            {"kafka_security_protocol": "SASL_SSL", "kafka_sasl_password": SECRET},
            "NOTIFIER_KAFKA_SASL_USERNAME is required with SASL_SSL",
        ),
        (
            {"kafka_security_protocol": "SASL_SSL", "kafka_sasl_username": "svc"},
            "NOTIFIER_KAFKA_SASL_PASSWORD or NOTIFIER_KAFKA_SASL_PASSWORD_FILE is required",
        ),
        (
            {
                "kafka_security_protocol": "SASL_SSL",
                "kafka_sasl_username": "svc",
                "kafka_sasl_password": SECRET,
                "kafka_sasl_password_file": "/etc/hostname",
            },
            "set only one of NOTIFIER_KAFKA_SASL_PASSWORD and NOTIFIER_KAFKA_SASL_PASSWORD_FILE",
        ),
        (
            {
                "kafka_security_protocol": "SASL_SSL",
                "kafka_sasl_username": "svc",
                "kafka_sasl_password_file": "/run/secrets/missing",
            },
            "NOTIFIER_KAFKA_SASL_PASSWORD_FILE: no such file /run/secrets/missing",
        ),
        (
            {
                "kafka_security_protocol": "SASL_PLAINTEXT",
                "kafka_sasl_username": "svc",
                "kafka_sasl_password": SECRET,
            },
            "NOTIFIER_KAFKA_SASL_ALLOW_PLAINTEXT",
        ),
        (
            {"kafka_sasl_username": "svc", "kafka_sasl_password": SECRET},
            "does not use SASL (use SASL_SSL)",
        ),
        (
            {"kafka_security_protocol": "SASL_SSL", "kafka_sasl_mechanism": "GSSAPI"},
            "NOTIFIER_KAFKA_SASL_MECHANISM",
        ),
    ],
)
def test_a_setting_that_cannot_work_stops_start_up_naming_it(
    values: dict[str, Any], named: str
) -> None:
    """Each impossible combination is refused with a message naming the NOTIFIER_ variable,
    and the password given is never echoed."""
    message = _rejected(**values)
    assert named in message
    assert SECRET not in message


def test_sasl_plaintext_is_accepted_only_with_the_explicit_allow_flag() -> None:
    """SASL_PLAINTEXT works for a test cluster once NOTIFIER_KAFKA_SASL_ALLOW_PLAINTEXT is set."""
    options = client_options(
        Settings(
            kafka_security_protocol="SASL_PLAINTEXT",
            kafka_sasl_allow_plaintext=True,
            kafka_sasl_mechanism="PLAIN",
            kafka_sasl_username="svc",
            kafka_sasl_password=SECRET,
        )
    )
    assert options["security_protocol"] == "SASL_PLAINTEXT"
    assert "ssl_context" not in options
    assert (options["sasl_mechanism"], options["sasl_plain_password"]) == ("PLAIN", SECRET)


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
async def test_sasl_ssl_clients_get_mechanism_credentials_from_file_and_tls(
    mechanism: str, pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """From the environment (as in a pod), consumer and producer are built with the SASL
    mechanism, the user, the password read from the mounted file and the TLS context."""
    monkeypatch.setenv("NOTIFIER_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("NOTIFIER_KAFKA_SASL_MECHANISM", mechanism)
    monkeypatch.setenv("NOTIFIER_KAFKA_SASL_USERNAME", "overdue-notifier")
    monkeypatch.setenv(
        "NOTIFIER_KAFKA_SASL_PASSWORD_FILE", str(_secret_file(tmp_path, SECRET + "\n"))
    )
    monkeypatch.setenv("NOTIFIER_KAFKA_SSL_CAFILE", str(pki.ca))
    settings = load_settings(kafka_idempotent_producer=False)
    consumer, producer = build_consumer(settings), build_producer(settings)
    for client in (consumer._client, producer.client):
        assert client._security_protocol == "SASL_SSL"
        assert client._sasl_mechanism == mechanism
        assert client._sasl_plain_username == "overdue-notifier"
        assert client._sasl_plain_password == SECRET
        assert client._ssl_context.verify_mode is ssl.CERT_REQUIRED
    await consumer.stop()
    await producer.stop()


def test_secrets_appear_in_no_repr_error_table_or_help(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The SASL and key passwords are masked in repr, absent from validation errors (even raw
    pydantic ones), from the configuration table and from --help."""
    settings = Settings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_username="svc",
        kafka_sasl_password=SECRET,
    )
    assert SECRET not in repr(settings)
    assert SECRET not in repr(settings.kafka_security)
    assert SECRET not in str(settings.model_dump())
    with pytest.raises(pydantic.ValidationError) as info:
        Settings(kafka_security_protocol="SASL_SSL", kafka_sasl_password=SECRET)
    assert SECRET not in str(info.value)
    assert SECRET not in settings_table()
    build_parser()  # every command registers
    with pytest.raises(SystemExit):
        main(["--help"])
    with pytest.raises(SystemExit):
        main(["config", "check", "--help"])
    assert SECRET not in capsys.readouterr().out


def test_client_options_refuses_settings_built_without_validation() -> None:
    """Even Settings that skipped validation cannot produce an unusable client."""
    settings = Settings.model_construct(
        **{**Settings().model_dump(), "kafka_security_protocol": "SASL_SSL"}
    )
    with pytest.raises(KafkaSecurityError, match="NOTIFIER_KAFKA_SASL_USERNAME"):
        client_options(settings)
