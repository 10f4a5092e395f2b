"""Options shared by every Kafka client of the service (consumer, producer, admin).

Connection security (TLS, SASL) is added here so that no client can be built without it.
"""

from __future__ import annotations

from typing import Any

from service.config import Settings

__all__ = ["client_options"]


def client_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for AIOKafkaConsumer/AIOKafkaProducer/AIOKafkaAdminClient."""
    return {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "client_id": settings.kafka_client_id,
    }
