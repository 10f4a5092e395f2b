"""Settings: every knob of the service, from environment variables prefixed NOTIFIER_.

Validated at start; a bad value stops the service with a message that names the variable.
Secrets are `SecretStr` (never printed) and may also be read from files (`*_file` variants),
which is how Kubernetes mounts Secrets.

The README's configuration table is generated from this class (`overdue-notifier config docs`),
so each field's description is user documentation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from service.kafka_security import KafkaSecurity

__all__ = ["Settings"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="NOTIFIER_",
        extra="ignore",
        frozen=True,
        validate_default=True,
        # A validation error must never echo what it was given: that may be a password.
        hide_input_in_errors=True,
    )

    # --- Kafka --------------------------------------------------------------------------------
    kafka_bootstrap_servers: str = Field(
        "127.0.0.1:9092", description="Comma-separated host:port list of the Kafka brokers."
    )
    kafka_group_id: str = Field("overdue-notifier", description="Consumer group of all replicas.")
    kafka_group_instance_id: str | None = Field(
        None,
        description="Static membership id (e.g. the pod name) so restarts do not rebalance.",
    )
    kafka_client_id: str = Field("overdue-notifier", description="Client id sent to brokers.")
    input_topic: str = Field("loan.overdue.v1", description="Topic of loan events.")
    results_topic: str = Field(
        "notification.delivery.v1", description="Topic of delivery-result events."
    )
    dlq_topic: str = Field(
        "loan.overdue.v1.dlq", description="Dead-letter topic for events that cannot be decoded."
    )
    kafka_idempotent_producer: bool = Field(
        True,
        description="Idempotent producer (acks=all). Keep on against Apache Kafka; the embedded "
        "broker does not support it, so the demo turns it off.",
    )
    kafka_auto_offset_reset: Literal["earliest", "latest"] = Field(
        "earliest", description="Where a new consumer group starts."
    )
    kafka_session_timeout_ms: int = Field(30_000, ge=6_000, description="Group session timeout.")
    kafka_max_poll_interval_ms: int = Field(
        300_000, ge=10_000, description="Rebalance timeout: max time between polls."
    )
    commit_interval_s: float = Field(
        1.0, gt=0, description="How often finished offsets are committed."
    )

    # --- Throughput and lifecycle ---------------------------------------------------------------
    max_in_flight: int = Field(
        1000, ge=1, description="Ceiling of events in flight across all borrowers."
    )
    max_uncommitted: int = Field(
        20_000,
        ge=1,
        description="Per-partition backlog of fetched but uncommitted events before it pauses.",
    )
    rebalance_drain_s: float = Field(
        10.0,
        gt=0,
        description="On partition revocation: how long in-flight work of those partitions may "
        "finish before their offsets are committed. Keep well below the rebalance timeout.",
    )
    scheduler_interval_s: float = Field(
        5.0, gt=0, description="How often due deferred notifications are looked for."
    )
    shutdown_grace_s: float = Field(
        20.0,
        gt=0,
        description="On SIGTERM: how long in-flight work may take before it is cancelled. Keep "
        "below the pod's terminationGracePeriodSeconds.",
    )

    # --- Policy and templates ------------------------------------------------------------------
    policy_file: Path | None = Field(
        None, description="YAML collection policy; default: the policy shipped with the service."
    )
    templates_dir: Path = Field(Path("templates"), description="Directory of Jinja2 templates.")
    default_locale: Literal["zh-CN", "en-US"] = Field(
        "zh-CN", description="Locale for borrowers whose event has none or an unsupported one."
    )
    default_timezone: str | None = Field(
        "Asia/Shanghai",
        description="Zone for borrowers whose event has none. Empty: hold such messages.",
    )
    brand_name: str = Field("JieBei", description="Sender signature used by the templates.")
    customer_service: str = Field(
        "95188", description="Customer-service contact printed in every message."
    )

    # --- Ledger ---------------------------------------------------------------------------------
    database_url: str = Field(
        "sqlite+aiosqlite:///var/notifier.sqlite3",
        description="SQLAlchemy async URL of the ledger: sqlite+aiosqlite:///PATH (embedded "
        "default) or postgresql+asyncpg://USER@HOST/DB (production).",
    )
    hash_key: SecretStr = Field(
        SecretStr("change-me"),
        description="Key of the HMAC stored instead of raw phone numbers and push tokens.",
    )

    # --- Providers ------------------------------------------------------------------------------
    sms_provider: Literal["console", "twilio"] = Field("console", description="SMS adapter.")
    push_provider: Literal["console", "fcm"] = Field("console", description="Push adapter.")
    twilio_base_url: str = Field("https://api.twilio.com", description="Twilio API base URL.")
    twilio_account_sid: str = Field("", description="Twilio account SID.")
    twilio_auth_token: SecretStr = Field(SecretStr(""), description="Twilio auth token.")
    twilio_from: str = Field("", description="Sender number or messaging service SID.")
    twilio_status_callback: str | None = Field(None, description="StatusCallback URL for receipts.")
    fcm_base_url: str = Field("https://fcm.googleapis.com", description="FCM API base URL.")
    fcm_project_id: str = Field("", description="Firebase project id.")
    fcm_service_account_file: Path | None = Field(
        None, description="Service-account JSON file for FCM's OAuth2 token."
    )
    fcm_token_url: str | None = Field(
        None, description="OAuth2 token URL; default: the service account's token_uri."
    )
    send_timeout_s: float = Field(10.0, gt=0, description="Timeout of one provider attempt.")
    send_max_attempts: int = Field(4, ge=1, le=20, description="Attempts per send, first included.")
    send_backoff_max_s: float = Field(30.0, gt=0, description="Longest wait between attempts.")

    # --- Observability --------------------------------------------------------------------------
    http_host: str = Field("0.0.0.0", description="Bind address of /metrics, /healthz, /readyz.")
    http_port: int = Field(8080, ge=0, le=65535, description="Port of the HTTP endpoint; 0 = off.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Log level."
    )
    log_format: Literal["json", "console"] = Field("json", description="Log line format.")

    # --- kafka security -------------------------------------------------------------------------
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT",
        description="How every Kafka client connects: PLAINTEXT (embedded broker only), SSL "
        "(TLS, optionally mTLS), SASL_SSL (TLS + SASL login), SASL_PLAINTEXT (refused unless "
        "NOTIFIER_KAFKA_SASL_ALLOW_PLAINTEXT).",
    )
    kafka_ssl_cafile: Path | None = Field(
        None,
        description="PEM bundle of the CA(s) that signed the brokers' certificates; unset: the "
        "system trust store (enough for public CAs such as MSK or Confluent Cloud).",
    )
    kafka_ssl_certfile: Path | None = Field(
        None, description="PEM client certificate (chain) for mTLS, e.g. a Strimzi KafkaUser's."
    )
    kafka_ssl_keyfile: Path | None = Field(
        None, description="PEM private key of the client certificate (mTLS)."
    )
    kafka_ssl_key_password: SecretStr | None = Field(
        None, description="Password of an encrypted client key."
    )
    kafka_ssl_key_password_file: Path | None = Field(
        None, description="File holding the client key's password (a mounted Secret)."
    )
    kafka_ssl_check_hostname: bool = Field(
        True,
        description="Verify that each broker's certificate names the host connected to. Turn "
        "off only for brokers reached through addresses their certificates do not list.",
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        "SCRAM-SHA-512", description="SASL mechanism (with SASL_SSL)."
    )
    kafka_sasl_username: str | None = Field(None, description="SASL user name.")
    kafka_sasl_password: SecretStr | None = Field(None, description="SASL password.")
    kafka_sasl_password_file: Path | None = Field(
        None, description="File holding the SASL password (a mounted Secret)."
    )
    kafka_sasl_allow_plaintext: bool = Field(
        False,
        description="Allow SASL_PLAINTEXT, which sends credentials (PLAIN: the password itself) "
        "unencrypted. Only for isolated test clusters.",
    )

    @property
    def kafka_security(self) -> KafkaSecurity:
        """The connection-security settings as one value (what kafka_config builds from)."""
        return KafkaSecurity(
            protocol=self.kafka_security_protocol,
            cafile=self.kafka_ssl_cafile,
            certfile=self.kafka_ssl_certfile,
            keyfile=self.kafka_ssl_keyfile,
            key_password=self.kafka_ssl_key_password,
            key_password_file=self.kafka_ssl_key_password_file,
            check_hostname=self.kafka_ssl_check_hostname,
            sasl_mechanism=self.kafka_sasl_mechanism,
            sasl_username=self.kafka_sasl_username,
            sasl_password=self.kafka_sasl_password,
            sasl_password_file=self.kafka_sasl_password_file,
            sasl_allow_plaintext=self.kafka_sasl_allow_plaintext,
        )

    @model_validator(mode="after")
    def _kafka_security_is_usable(self) -> Settings:
        problems = self.kafka_security.problems()
        if problems:
            raise ValueError("; ".join(problems))
        return self
