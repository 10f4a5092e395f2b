"""Options shared by every Kafka client of the service (consumer, producer, admin, CLI tools).

Connection security (TLS, SASL) is added here so that no client can be built without it:
build_consumer, build_producer, ensure_topics, the producer helper and the dlq commands all
pass `**client_options(settings)`.
"""

from __future__ import annotations

import logging
from typing import Any

from service.config import Settings

__all__ = ["client_options"]

log = logging.getLogger(__name__)


def client_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for AIOKafkaConsumer/AIOKafkaProducer/AIOKafkaAdminClient.

    The result may hold the SASL password: hand it to the client, never log or print it.
    Raises `KafkaSecurityError` (naming the variable) if the security settings cannot work.
    """
    security = settings.kafka_security
    if security.uses_tls and not security.check_hostname:
        log.warning("Kafka TLS hostname verification is off (NOTIFIER_KAFKA_SSL_CHECK_HOSTNAME)")
    return {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "client_id": settings.kafka_client_id,
        **security.client_security_options(),
    }
