"""Kafka clients built from `Settings`, so every process talks to the cluster the same way.

Producers always use acks=all: a record counts as written only once every in-sync replica has it.
"""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from worker.settings import Settings

__all__ = ["connection_options", "make_admin", "make_consumer", "make_producer"]


def connection_options(settings: Settings) -> dict[str, Any]:
    """Bootstrap, client id and security options shared by every client."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "client_id": settings.kafka_client_id,
        "security_protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_sasl_mechanism:
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism
        options["sasl_plain_username"] = settings.kafka_sasl_username
        if settings.kafka_sasl_password is not None:
            options["sasl_plain_password"] = settings.kafka_sasl_password.get_secret_value()
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        from aiokafka.helpers import create_ssl_context

        options["ssl_context"] = create_ssl_context()
    return options


def make_producer(settings: Settings, **overrides: Any) -> AIOKafkaProducer:
    """An acks=all producer; idempotence per `KAFKA_ENABLE_IDEMPOTENCE`."""
    options: dict[str, Any] = {
        **connection_options(settings),
        "acks": "all",
        "enable_idempotence": settings.kafka_enable_idempotence,
        "linger_ms": settings.kafka_linger_ms,
        **overrides,
    }
    return AIOKafkaProducer(**options)


def make_consumer(settings: Settings, *topics: str, **overrides: Any) -> AIOKafkaConsumer:
    """A consumer with manual commits: offsets move only when our code says the work is durable."""
    options: dict[str, Any] = {
        **connection_options(settings),
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        **overrides,
    }
    return AIOKafkaConsumer(*topics, **options)


def make_admin(settings: Settings, **overrides: Any) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(**connection_options(settings), **overrides)
