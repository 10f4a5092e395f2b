"""Settings: every knob of the service, from environment variables prefixed NOTIFIER_.

Validated at start; a bad value stops the service with a message that names the variable.
Secrets are `SecretStr` (never printed) and may also be read from files (`*_file` variants),
which is how Kubernetes mounts Secrets.

The README's configuration table is generated from this class (`overdue-notifier config docs`),
so each field's description is user documentation.

The fields are grouped by concern, one model per group (`SETTINGS_GROUPS`, in the table's
order), and `Settings` inherits them all: the environment names are the field names, as before.
The groups are for the reader and for the wiring (service/wiring/), which hands each room only
the values it needs; no room below the wiring sees `Settings`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal, Self, get_origin

from pydantic import BaseModel, Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from service.kafka_security import KafkaSecurity

__all__ = ["DEFAULT_DATABASE_URL", "SETTINGS_GROUPS", "SHIPPED_TEMPLATES_DIR", "Settings"]

# Defaults never depend on the working directory: the templates ship inside the package
# (service/templates is a link to the repository's templates/ that wheels resolve into copies),
# and the embedded ledger's default file has an absolute path.
SHIPPED_TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
DEFAULT_DATABASE_URL = "sqlite+aiosqlite:////var/lib/overdue-notifier/notifier.sqlite3"


_ON_AMBIGUOUS_DEFAULT: dict[str, Literal["hold", "resend"]] = {
    "sms": "hold",
    "push": "resend",
    # JPush's Android side has no collapse key (service/channels/push_options.py).
    "push:jpush": "hold",
}


class KafkaSettings(BaseModel):
    """The brokers, the group, the topics and how records are produced and read."""

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
    tasks_topic: str = Field(
        "collections.tasks.v1",
        description="Topic of collector tasks (hand-off to human collectors), key = borrower id.",
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
    kafka_fetch_max_wait_ms: int = Field(
        100,
        ge=0,
        le=10_000,
        description="Longest a fetch waits on the broker for new events. An event arriving "
        "while a fetch waits is only read when it returns if the broker does not answer "
        "early; 100 (aiokafka's default is 500) keeps that wait out of the notification's "
        "latency at the cost of a few empty fetches per second when idle.",
    )
    kafka_compression: Literal["none", "gzip", "snappy", "lz4", "zstd"] = Field(
        "zstd",
        description="Codec of the records the service produces (results, DLQ). zstd: ~3 us of "
        "CPU and ~56 bytes per result against gzip's ~38 us and ~65 bytes (bench/results_codec.py"
        "); needs Kafka >= 2.1 and consumers of the results that read zstd.",
    )
    accept_schema_registry_json: bool = Field(
        True,
        description="Accept events in Confluent Schema Registry's JSON Schema wire format (byte 0, "
        "a 4-byte schema id, then the JSON): the frame is stripped and the schema id travels "
        "with the results. Off: such records are dead-lettered naming the frame.",
    )
    commit_interval_s: float = Field(
        1.0, gt=0, description="How often finished offsets are committed."
    )


class KafkaSecuritySettings(BaseModel):
    """TLS and SASL toward the brokers (service/kafka_security.py checks them)."""

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
    def _kafka_security_is_usable(self) -> Self:
        problems = self.kafka_security.problems()
        if problems:
            raise ValueError("; ".join(problems))
        return self


class ThroughputSettings(BaseModel):
    """How much work is in flight, and how the service starts, pauses and stops."""

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
    pause_poll_s: float = Field(
        2.0,
        gt=0,
        le=60,
        description="How often every replica reads the operator pause from the ledger "
        "(`overdue-notifier pause`); a pause stops sends within this interval.",
    )
    shutdown_grace_s: float = Field(
        20.0,
        gt=0,
        description="On SIGTERM: how long in-flight work may take before it is cancelled. Keep "
        "below the pod's terminationGracePeriodSeconds.",
    )


class ContentSettings(BaseModel):
    """The policy and the templates, and what they need to know of the lender."""

    policy_file: Path | None = Field(
        None, description="YAML collection policy; default: the policy shipped with the service."
    )
    templates_dir: Path = Field(
        SHIPPED_TEMPLATES_DIR,
        description="Directory of Jinja2 templates; default: the templates shipped with the "
        "service. A relative path is taken from the working directory at start.",
    )
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

    @field_validator("templates_dir", "policy_file")
    @classmethod
    def _absolute_path(cls, value: Path | None) -> Path | None:
        # Resolved once, at start, so every message names the directory actually used.
        return None if value is None else value.expanduser().absolute()


class LedgerSettings(BaseModel):
    """The ledger database: where, how claims are leased, batched and kept."""

    database_url: str = Field(
        DEFAULT_DATABASE_URL,
        description="SQLAlchemy async URL of the ledger: sqlite+aiosqlite:////ABSOLUTE/PATH "
        "(embedded default; a relative path is taken from the working directory at start) or "
        "postgresql+asyncpg://USER@HOST/DB (production).",
    )
    hash_key: SecretStr = Field(
        SecretStr("change-me"),
        description="Key of the HMAC stored instead of raw phone numbers and push tokens: a "
        "random secret (e.g. `openssl rand -hex 32`), the same on every replica and never "
        "changed (opt-outs and caps are looked up by it). `run` and `config check` refuse the "
        "default; only the demo uses a sample key.",
    )
    ledger_retention_days: int = Field(
        400,
        ge=8,
        description="Days of audit rows and finished notifications kept by `db purge`. Keep it "
        "above the input topic's retention, so a replayed event still finds its claims, and "
        "above 7 days, so the rolling caps still see their contacts.",
    )
    ledger_lease_s: float = Field(
        120.0,
        gt=0,
        description="Lease of a send claim (renewed when each attempt starts): after it, a "
        "claim left by a crashed worker is sent again if no attempt had started, else "
        "reported `unknown` (see NOTIFIER_ON_AMBIGUOUS). Keep above the longest attempt.",
    )
    ledger_timeout_s: float = Field(
        10.0, gt=0, description="Connect and statement timeout of the ledger database."
    )
    ledger_batch_max: int = Field(
        200,
        ge=1,
        le=10_000,
        description="Most events whose ledger admit (or record) calls share one transaction "
        "(group commit of concurrent calls; 1 = one transaction per event).",
    )

    @field_validator("database_url")
    @classmethod
    def _absolute_sqlite_path(cls, value: str) -> str:
        prefix, sep, path = value.partition(":///")
        if sep and prefix.startswith("sqlite") and path and not path.startswith(("/", ":memory:")):
            return f"{prefix}:///{Path(path).absolute()}"
        return value


class CoverageSettings(BaseModel):
    """Contact coverage: overdue loans with no confirmed contact."""

    coverage_stale_days: int = Field(
        3,
        ge=1,
        le=60,
        description="Contact coverage: a loan past the grace period whose last confirmed "
        "contact is older than this many days counts as not reached (alert, report).",
    )
    coverage_interval_s: float = Field(
        300.0,
        gt=0,
        description="How often contact coverage is computed (by one replica: a lease in the "
        "ledger).",
    )
    coverage_lookback_days: int = Field(
        30,
        ge=1,
        le=400,
        description="Contact coverage looks at loans with ledger activity in this many days.",
    )


class DispatchSettings(BaseModel):
    """Which providers serve which route, and how a send is retried, limited and broken off."""

    sms_provider: str = Field(
        "console",
        description="SMS providers in failover order, comma-separated, among console, twilio, "
        "smpp, http_gateway (e.g. smpp,twilio). See NOTIFIER_SMS_ROUTES for per-country lists.",
    )
    push_provider: str = Field(
        "console",
        description="Push adapters, comma-separated, among fcm, apns, jpush (each serves the "
        "tokens of its own provider) and console (serves any token without an adapter).",
    )
    sms_routes: str = Field(
        "",
        description="Per-country SMS provider lists by E.164 country code, overriding "
        "NOTIFIER_SMS_PROVIDER for those numbers: CC:provider[,provider];... (e.g. "
        "86:smpp,http_gateway;1:twilio). The longest matching code wins.",
    )
    provider_rate_limits: str = Field(
        "",
        description="Messages per second toward each provider, shared by all sends of the "
        "process: provider:rate,... (e.g. smpp:50,twilio:10). Unlisted providers: unlimited.",
    )
    rate_limit_max_wait_s: float = Field(
        5.0,
        ge=0,
        description="Longest wait for a rate-limit token before the send fails over to the next "
        "provider (or fails as rate_limited). The wait is not an attempt.",
    )
    circuit_window_s: int = Field(
        60, ge=1, le=3600, description="Sliding window of the circuit breakers' error rate."
    )
    circuit_min_calls: int = Field(
        20, ge=1, description="Calls within the window before a circuit breaker may open."
    )
    circuit_error_rate: float = Field(
        0.5,
        gt=0,
        le=1,
        description="Share of failed attempts (transient, ambiguous, our config) in the window "
        "that opens a provider's circuit breaker.",
    )
    circuit_cool_down_s: float = Field(
        30.0,
        ge=0,
        description="How long an open circuit refuses calls before letting one probe through.",
    )
    send_timeout_s: float = Field(10.0, gt=0, description="Timeout of one provider attempt.")
    send_max_attempts: int = Field(4, ge=1, le=20, description="Attempts per send, first included.")
    send_backoff_max_s: float = Field(30.0, gt=0, description="Longest wait between attempts.")
    provider_max_connections: int = Field(
        200,
        ge=1,
        le=10_000,
        description="Concurrent requests (and kept-alive connections) per HTTP provider. "
        "Throughput per provider is at most this divided by its latency (200 at 50 ms: "
        "4,000 sends/s); a send waiting for a slot has not started its timeout.",
    )
    on_ambiguous: dict[str, Literal["hold", "resend"]] = Field(
        default_factory=lambda: dict(_ON_AMBIGUOUS_DEFAULT),
        description="What an ambiguous send (timeout or crash with the request on the wire) "
        "becomes, per channel or channel:provider (e.g. push:fcm): hold = published unknown, "
        "then escalated; resend = sent once more under the same claim. resend only where "
        "the device shows one notification either way (push with a collapse id; not JPush "
        'Android). JSON, e.g. {"push": "resend"}.',
    )
    reconcile_delay_s: float = Field(
        60.0,
        ge=0,
        description="Seconds after an ambiguous Twilio SMS before its list API is asked "
        "whether the message was accepted (Twilio lists a message some time after "
        "accepting it); found -> `sent` replaces `unknown`.",
    )


class TwilioSettings(BaseModel):
    """Twilio Programmable Messaging."""

    twilio_base_url: str = Field("https://api.twilio.com", description="Twilio API base URL.")
    twilio_account_sid: str = Field("", description="Twilio account SID.")
    twilio_auth_token: SecretStr = Field(SecretStr(""), description="Twilio auth token.")
    twilio_webhook_shared_key: SecretStr = Field(
        SecretStr(""),
        description="Secret of the Twilio Webhooks SharedKey that signs callbacks carrying "
        "X-Twilio-Webhooks-Signature-Settings (HMAC-SHA256 or HMAC-SHA1); empty: refuse them.",
    )
    twilio_from: str = Field("", description="Sender number or messaging service SID.")
    twilio_status_callback: str | None = Field(None, description="StatusCallback URL for receipts.")


class SmppSettings(BaseModel):
    """An SMPP 3.4 SMSC (service/channels/smpp)."""

    smpp_host: str = Field("127.0.0.1", description="SMPP 3.4 SMSC (gateway) host.")
    smpp_port: int = Field(2775, ge=1, le=65535, description="SMPP SMSC port.")
    smpp_tls: bool = Field(False, description="Wrap the SMPP connection in TLS.")
    smpp_system_id: str = Field("", max_length=15, description="SMPP bind system_id (account).")
    smpp_password: SecretStr = Field(
        SecretStr(""), description="SMPP bind password (at most 8 characters per SMPP 3.4)."
    )
    smpp_system_type: str = Field("", max_length=12, description="SMPP bind system_type.")
    smpp_source_addr: str = Field(
        "", max_length=20, description="Sender address (service code such as 106xxxx) or name."
    )
    smpp_source_addr_ton: int = Field(
        0, ge=0, le=6, description="TON of the sender address (0 unknown, 5 alphanumeric)."
    )
    smpp_source_addr_npi: int = Field(0, ge=0, le=18, description="NPI of the sender address.")
    smpp_dest_addr_ton: int = Field(
        1, ge=0, le=6, description="TON of recipients (1 international: E.164 without '+')."
    )
    smpp_dest_addr_npi: int = Field(1, ge=0, le=18, description="NPI of recipients (1 E.164).")
    smpp_window: int = Field(
        10, ge=1, le=1000, description="Most submit_sm awaiting their submit_sm_resp at once."
    )
    smpp_enquire_link_s: float = Field(
        30.0, gt=0, description="Seconds between enquire_link keep-alives."
    )
    smpp_response_timeout_s: float = Field(
        10.0,
        gt=0,
        description="How long a submit_sm, bind or enquire_link may wait for its answer. A "
        "submit_sm without an answer in time is ambiguous (the SMSC may have accepted it).",
    )
    smpp_bind_wait_s: float = Field(
        5.0, ge=0, description="How long a send waits for a bound session before failing."
    )
    smpp_reconnect_min_s: float = Field(1.0, gt=0, description="First reconnect delay.")
    smpp_reconnect_max_s: float = Field(60.0, gt=0, description="Longest reconnect delay.")
    smpp_throttle_pause_s: float = Field(
        1.0,
        ge=0,
        description="After ESME_RTHROTTLED / ESME_RMSGQFUL every send of the session waits this "
        "long before its next submit_sm.",
    )
    smpp_long_message: Literal["udh", "message_payload"] = Field(
        "udh",
        description="Long text: several submit_sm with a concatenation UDH, or one submit_sm "
        "with the message_payload TLV (ask the gateway which it supports).",
    )
    smpp_registered_delivery: bool = Field(
        True, description="Ask the SMSC for delivery receipts (deliver_sm)."
    )
    smpp_country_code: str = Field(
        "86",
        pattern=r"^[1-9][0-9]{0,2}$",
        description="Country code of reply senders the SMSC reports in national format "
        "(source_addr_ton 0 or 2), so that their STOP finds the borrower.",
    )


class HttpGatewaySettings(BaseModel):
    """A configurable HTTP SMS gateway: its send call and how answers read."""

    http_gateway_url: str = Field("", description="HTTP SMS gateway: URL of the send call.")
    http_gateway_method: Literal["POST", "PUT", "GET"] = Field(
        "POST", description="HTTP method of the send call (GET sends the body as query)."
    )
    http_gateway_body_format: Literal["json", "form"] = Field(
        "json", description="Body encoding of the send call."
    )
    http_gateway_body_template: str = Field(
        '{"account": "{account}", "password": "{password}", "mobile": "{phone_national}", '
        '"content": "{text}", "uid": "{notification_id}"}',
        description="JSON object; string values may hold {account}, {password}, {phone} "
        "(E.164), {phone_digits} (no '+'), {phone_national} (country code stripped), {text}, "
        "{notification_id}, {sender}.",
    )
    http_gateway_account: str = Field("", description="Value of {account} in the body.")
    http_gateway_password: SecretStr = Field(
        SecretStr(""), description="Value of {password} in the body."
    )
    http_gateway_sender: str = Field("", description="Value of {sender} in the body.")
    http_gateway_country_code: str = Field(
        "86", description="Country code stripped for {phone_national}."
    )
    http_gateway_auth_header: str = Field(
        "Authorization", description="Name of the header carrying the credential, if any."
    )
    http_gateway_auth_value: SecretStr = Field(
        SecretStr(""), description="Value of the auth header (e.g. 'Bearer ...'); empty: none."
    )
    http_gateway_message_id_path: str = Field(
        "msgid", description="Dotted path of the message id in the JSON answer (e.g. data.0.id)."
    )
    http_gateway_code_path: str = Field(
        "code", description="Dotted path of the result code in the JSON answer; empty: none."
    )
    http_gateway_success_codes: list[str] = Field(
        ["0"], description="Result codes that mean accepted."
    )
    http_gateway_transient_codes: list[str] = Field(
        [], description="Result codes worth retrying (throttled, busy)."
    )
    http_gateway_permanent_codes: list[str] = Field(
        [], description="Result codes that fail the notification."
    )
    http_gateway_opt_out_codes: list[str] = Field(
        [], description="Result codes meaning the recipient refused SMS (blacklisted)."
    )
    http_gateway_alert_codes: list[str] = Field(
        [], description="Result codes meaning our account is misconfigured (page someone)."
    )
    http_gateway_unknown_code: Literal["transient", "permanent"] = Field(
        "permanent", description="How a result code in none of the lists is treated."
    )
    http_gateway_query_url: str = Field(
        "",
        description="Reconciliation (off when empty): URL template of the gateway's status "
        "query by our id, GET, placeholders {notification_id} {account} {password} {phone} "
        "{phone_digits} {phone_national} (URL-encoded), e.g. "
        "https://gw.example/sms/query?account={account}&uid={notification_id}. Needs "
        "{notification_id} in the send body. Asked for an ambiguous SMS after "
        "NOTIFIER_RECONCILE_DELAY_S: found -> sent; not found -> resent once.",
    )
    http_gateway_query_status_path: str = Field(
        "status", description="Dotted path of the message's status in the query's answer."
    )
    http_gateway_query_message_id_path: str = Field(
        "msgid", description="Dotted path of the gateway's message id in the query's answer."
    )
    http_gateway_query_found_statuses: list[str] = Field(
        default_factory=lambda: ["accepted", "sent", "delivered", "undelivered"],
        description="Query statuses meaning the gateway took the message (compared as text).",
    )
    http_gateway_query_not_found_statuses: list[str] = Field(
        default_factory=lambda: ["not_found"],
        description="Query statuses meaning the gateway never took it (HTTP 404 means the "
        "same); any other status leaves the send unknown.",
    )


class PushSettings(BaseModel):
    """Push providers: FCM, APNs, JPush."""

    fcm_base_url: str = Field("https://fcm.googleapis.com", description="FCM API base URL.")
    fcm_project_id: str = Field("", description="Firebase project id.")
    fcm_service_account_file: Path | None = Field(
        None, description="Service-account JSON file for FCM's OAuth2 token."
    )
    fcm_token_url: str | None = Field(
        None, description="OAuth2 token URL; default: the service account's token_uri."
    )
    apns_base_url: str = Field("https://api.push.apple.com", description="APNs base URL.")
    apns_key_file: Path | None = Field(None, description="APNs token-auth key (.p8, ES256).")
    apns_key_id: str = Field("", description="APNs key id (kid).")
    apns_team_id: str = Field("", description="Apple developer team id (iss).")
    apns_topic: str = Field("", description="apns-topic: the app's bundle id.")
    apns_jwt_refresh_s: float = Field(
        3000.0,
        gt=0,
        le=3600,
        description="Age at which the provider JWT is replaced (APNs refuses tokens older than "
        "an hour and throttles refreshing more often than every 20 minutes).",
    )
    jpush_base_url: str = Field("https://api.jpush.cn", description="JPush API base URL.")
    jpush_app_key: str = Field("", description="JPush appKey.")
    jpush_master_secret: SecretStr = Field(SecretStr(""), description="JPush masterSecret.")
    jpush_platform: list[Literal["android", "ios"]] = Field(
        ["android"], description="JPush platforms addressed."
    )
    jpush_time_to_live_s: int = Field(
        86_400,
        ge=0,
        le=864_000,
        description="Longest JPush keeps an offline message; each push's own expiry is sooner.",
    )
    jpush_apns_production: bool = Field(
        True, description="JPush options.apns_production (for iOS via JPush)."
    )


class VoiceSettings(BaseModel):
    """Automated calls (docs/voice.md): providers, Twilio Voice, the voice gateway, callbacks."""

    voice_provider: str = Field(
        "console",
        description="Voice (automated call) providers in failover order, comma-separated, "
        "among console, twilio_voice, voice_gateway. Calls are planned only where the policy "
        "lists the voice channel.",
    )
    twilio_voice_base_url: str = Field(
        "https://api.twilio.com",
        description="Twilio Voice API base URL (account and token: NOTIFIER_TWILIO_ACCOUNT_SID, "
        "NOTIFIER_TWILIO_AUTH_TOKEN, which also sign the call callbacks).",
    )
    twilio_voice_from: str = Field("", description="Caller id of automated calls (E.164).")
    twilio_voice_status_callback: str | None = Field(
        None,
        description="StatusCallback URL of calls; default: NOTIFIER_RECEIPTS_PUBLIC_URL + "
        "/receipts/twilio/voice-status.",
    )
    twilio_voice_machine_detection: bool = Field(
        True,
        description="Answering machine detection: the call starts with the limited-content "
        "message and says the script only to a person (off: the script plays at once).",
    )
    twilio_voice_detection_pause_s: int = Field(
        4, ge=0, le=30, description="Silence before the limited-content message plays."
    )
    twilio_voice_detection_timeout_s: float = Field(
        30.0, gt=0, description="How long a call's answered_by is polled before giving up."
    )
    voice_gateway_url: str = Field("", description="HTTP voice gateway: URL of the call API.")
    voice_gateway_method: Literal["POST", "PUT", "GET"] = Field(
        "POST", description="HTTP method of the voice gateway's call API."
    )
    voice_gateway_body_format: Literal["json", "form"] = Field(
        "json", description="Body encoding of the voice gateway's call API."
    )
    voice_gateway_body_template: str = Field(
        '{"account": "{account}", "password": "{password}", "mobile": "{phone_national}", '
        '"content": "{script}", "voicemail": "{limited_script}", "uid": "{notification_id}"}',
        description="JSON object; string values may hold the SMS gateway's placeholders "
        "(without {text}) and {script}, {limited_script}, {language}; {script} is required.",
    )
    voice_gateway_account: str = Field("", description="Value of {account} in the body.")
    voice_gateway_password: SecretStr = Field(
        SecretStr(""), description="Value of {password} in the body."
    )
    voice_gateway_sender: str = Field("", description="Value of {sender} (caller id).")
    voice_gateway_country_code: str = Field(
        "86", description="Country code stripped for {phone_national}."
    )
    voice_gateway_auth_header: str = Field(
        "Authorization", description="Name of the header carrying the credential, if any."
    )
    voice_gateway_auth_value: SecretStr = Field(
        SecretStr(""), description="Value of the auth header; empty: none."
    )
    voice_gateway_call_id_path: str = Field(
        "callid", description="Dotted path of the call id in the JSON answer."
    )
    voice_gateway_code_path: str = Field(
        "code", description="Dotted path of the result code in the JSON answer; empty: none."
    )
    voice_gateway_success_codes: list[str] = Field(
        ["0"], description="Result codes that mean the call was accepted."
    )
    voice_gateway_transient_codes: list[str] = Field(
        [], description="Result codes worth retrying (throttled, busy)."
    )
    voice_gateway_permanent_codes: list[str] = Field(
        [], description="Result codes that fail the call."
    )
    voice_gateway_alert_codes: list[str] = Field(
        [], description="Result codes meaning our account is misconfigured (page someone)."
    )
    voice_gateway_unknown_code: Literal["transient", "permanent"] = Field(
        "permanent", description="How a result code in none of the lists is treated."
    )
    voice_gateway_callback_secret: SecretStr = Field(
        SecretStr(""),
        description="HMAC-SHA256 key of the voice gateway's outcome callbacks "
        "(POST /receipts/voice-gateway); empty: refuse them all.",
    )
    voice_gateway_callback_signature_header: str = Field(
        "X-Signature", description="Header holding the hex HMAC-SHA256 of the callback body."
    )
    voice_gateway_callback_call_id_path: str = Field(
        "callid", description="Dotted path of the call id in one outcome callback."
    )
    voice_gateway_callback_status_path: str = Field(
        "status", description="Dotted path of the call outcome in one callback."
    )
    voice_gateway_callback_answered_by_path: str = Field(
        "", description="Dotted path of the answering party (person / machine); empty: none."
    )
    voice_gateway_callback_answered: list[str] = Field(
        ["answered"], description="Outcome values meaning a person answered (delivered)."
    )
    voice_gateway_callback_pending: list[str] = Field(
        ["ringing", "calling"], description="Outcome values that are not final (ignored)."
    )
    voice_gateway_callback_machine: list[str] = Field(
        ["voicemail", "machine"],
        description="Outcome or answering-party values meaning a machine answered "
        "(undelivered / machine); any other final value: undelivered with it as the code.",
    )


class ReceiptSettings(BaseModel):
    """Delivery receipts and opt-out replies: the webhook and how callbacks read."""

    http_gateway_receipt_secret: SecretStr = Field(
        SecretStr(""),
        description="HMAC-SHA256 key of the gateway's receipt callbacks; empty: refuse them all.",
    )
    http_gateway_receipt_signature_header: str = Field(
        "X-Signature", description="Header holding the hex HMAC-SHA256 of the callback body."
    )
    http_gateway_receipt_id_path: str = Field(
        "msgid", description="Dotted path of the message id in one receipt."
    )
    http_gateway_receipt_status_path: str = Field(
        "status", description="Dotted path of the delivery status in one receipt."
    )
    http_gateway_receipt_delivered: list[str] = Field(
        ["DELIVRD", "0"], description="Status values meaning delivered; others: undelivered."
    )
    http_gateway_receipt_pending: list[str] = Field(
        ["ENROUTE", "ACCEPTD"], description="Status values that are not final (ignored)."
    )
    http_gateway_receipt_error_path: str = Field(
        "err", description="Dotted path of the error code in one receipt; empty: none."
    )
    http_gateway_inbound_phone_path: str = Field(
        "mobile", description="Dotted path of the sender's number in an inbound reply."
    )
    http_gateway_inbound_text_path: str = Field(
        "content", description="Dotted path of the text in an inbound reply."
    )
    opt_out_keywords: list[str] = Field(
        [],
        description="Inbound replies (whole text; case, width, spaces and punctuation ignored) "
        "that opt the sender out, in addition to the built-in STOP, STOPALL, UNSUBSCRIBE, "
        "CANCEL, END, QUIT, REVOKE, OPTOUT, R, T, TD, 退订 and 拒收, which cannot be removed.",
    )
    receipts_public_url: str | None = Field(
        None,
        description="Public base URL of the receipt webhook as providers call it (behind a "
        "proxy the local URL differs, and Twilio signs the public one).",
    )
    receipts_http_port: int = Field(
        0,
        ge=0,
        le=65535,
        description="Port of the provider webhooks (/receipts/...: delivery receipts, STOP "
        "replies), served apart from /metrics and the probes so that the public Ingress never "
        "reaches them; bound on NOTIFIER_HTTP_HOST. 0 = webhooks off (the overlays set 8081).",
    )
    receipt_match_window_s: float = Field(
        300.0,
        ge=0,
        description="How long a delivery receipt whose message id is not (yet) in the ledger is "
        "kept and matched again (a receipt can overtake the recording of its send).",
    )


class OperationsSettings(BaseModel):
    """The HTTP endpoint of probes and metrics, logs, health timeouts."""

    http_host: str = Field("0.0.0.0", description="Bind address of /metrics, /healthz, /readyz.")
    http_port: int = Field(8080, ge=0, le=65535, description="Port of the HTTP endpoint; 0 = off.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Log level."
    )
    log_format: Literal["json", "console"] = Field("json", description="Log line format.")
    liveness_timeout_s: float = Field(
        60.0,
        gt=0,
        description="/healthz fails when the consumer's poll loop has not ticked for this long. "
        "Keep above NOTIFIER_REBALANCE_DRAIN_S (a revocation blocks the loop while it drains).",
    )
    readiness_check_timeout_s: float = Field(
        2.0, gt=0, description="Timeout of each /readyz dependency check (ledger, Kafka producer)."
    )


# The groups in the order of the README's table: pydantic lists the fields of the last base
# first, so the bases are named in reverse.
class Settings(
    OperationsSettings,
    ReceiptSettings,
    VoiceSettings,
    PushSettings,
    HttpGatewaySettings,
    SmppSettings,
    TwilioSettings,
    DispatchSettings,
    CoverageSettings,
    LedgerSettings,
    ContentSettings,
    ThroughputSettings,
    KafkaSecuritySettings,
    KafkaSettings,
    BaseSettings,
):
    """Every NOTIFIER_ variable, grouped by concern; the environment names are the field names."""

    model_config = SettingsConfigDict(
        env_prefix="NOTIFIER_",
        extra="ignore",
        frozen=True,
        validate_default=True,
        # A validation error must never echo what it was given: that may be a password.
        hide_input_in_errors=True,
        # Lists are read by `_split_lists` (JSON or comma-separated), not JSON-decoded by the
        # source, which would answer `a,b` with a traceback.
        enable_decoding=False,
    )

    @field_validator("*", mode="before")
    @classmethod
    def _split_lists(cls, value: Any, info: ValidationInfo) -> Any:
        """A list from the environment: a JSON array, or comma-separated values."""
        field = cls.model_fields.get(info.field_name or "")
        if field is None or get_origin(field.annotation) is not list or not isinstance(value, str):
            return value
        text = value.strip()
        if text.startswith("["):
            try:
                return json.loads(text)
            except json.JSONDecodeError:
                raise ValueError('not a JSON list; write a,b,c or ["a", "b"]') from None
        return [part.strip() for part in text.split(",") if part.strip()]

    @model_validator(mode="after")
    def _webhook_port_is_its_own(self) -> Settings:
        if self.receipts_http_port and self.receipts_http_port == self.http_port:
            raise ValueError(
                "NOTIFIER_RECEIPTS_HTTP_PORT must differ from NOTIFIER_HTTP_PORT: the public "
                "webhook port must never serve /metrics"
            )
        return self


SETTINGS_GROUPS: tuple[type[BaseModel], ...] = (
    KafkaSettings,
    KafkaSecuritySettings,
    ThroughputSettings,
    ContentSettings,
    LedgerSettings,
    CoverageSettings,
    DispatchSettings,
    TwilioSettings,
    SmppSettings,
    HttpGatewaySettings,
    PushSettings,
    VoiceSettings,
    ReceiptSettings,
    OperationsSettings,
)
