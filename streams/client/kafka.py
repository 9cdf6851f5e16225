"""The one place `Settings` becomes Kafka client configuration, for the three client libraries the
project uses: confluent-kafka (librdkafka: publisher, readers, replay, admin), aiokafka (the
worker's `POST /transcribe` reader) and Faust (the worker). TLS and SASL are set here and
nowhere else; every client the project makes starts from one of these. So does the Avro codec
of what they write and read (`avro_codec`: the schema registry, versions pinned for an upgrade).

    producer = Producer(confluent_config(settings, **RELIABLE_PRODUCER))
    consumer = AIOKafkaConsumer(**aiokafka_config(settings), enable_auto_commit=False)
    app = faust.App(..., **faust_broker_config(settings))
"""

from __future__ import annotations

import ssl
from typing import Any

from callstt.schemas.codec import AvroCodec
from callstt.streams.settings import Settings

# Producer settings every publisher of the project uses: no loss, no duplicates from retries,
# and murmur2 partitioning (librdkafka's default crc32 disagrees with Java clients and Faust,
# so a call's chunks and its transcripts would land in other partitions than theirs expect).
RELIABLE_PRODUCER: dict[str, Any] = {"acks": "all", "enable.idempotence": True, "partitioner": "murmur2_random"}


def avro_codec(settings: Settings) -> AvroCodec:
    """The codec of the deployment: its schema registry (embedded ids without one) and the schema
    versions pinned for a rolling upgrade (CALLSTT_WRITE_SCHEMA_VERSIONS)."""
    return AvroCodec(settings.schema_registry_url or None, write_versions=settings.write_schema_versions)


def confluent_config(settings: Settings, **overrides: Any) -> dict[str, Any]:
    """librdkafka connection settings (bootstrap, security), plus `overrides` (dotted names
    are passed as keyword arguments through a dict: `confluent_config(s, **{"group.id": g})`)."""
    config: dict[str, Any] = {"bootstrap.servers": settings.kafka_bootstrap_servers,
                              "security.protocol": settings.kafka_security_protocol.upper()}
    if settings.uses_sasl:
        config.update({"sasl.mechanism": settings.kafka_sasl_mechanism,
                       "sasl.username": settings.kafka_sasl_username,
                       "sasl.password": settings.kafka_sasl_password})
    if settings.uses_tls:
        config.update({key: value for key, value in (("ssl.ca.location", settings.kafka_ssl_cafile),
                                                     ("ssl.certificate.location", settings.kafka_ssl_certfile),
                                                     ("ssl.key.location", settings.kafka_ssl_keyfile)) if value})
    config.update(overrides)
    return config


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context of the Python clients (aiokafka, Faust); None without TLS."""
    if not settings.uses_tls:
        return None
    context = ssl.create_default_context(cafile=settings.kafka_ssl_cafile or None)
    if settings.kafka_ssl_certfile:
        context.load_cert_chain(settings.kafka_ssl_certfile, settings.kafka_ssl_keyfile or None)
    return context


def aiokafka_config(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for an aiokafka client."""
    config: dict[str, Any] = {"bootstrap_servers": settings.kafka_bootstrap_servers,
                              "security_protocol": settings.kafka_security_protocol.upper()}
    if settings.uses_sasl:
        config.update(sasl_mechanism=settings.kafka_sasl_mechanism,
                      sasl_plain_username=settings.kafka_sasl_username,
                      sasl_plain_password=settings.kafka_sasl_password)
    if settings.uses_tls:
        config["ssl_context"] = ssl_context(settings)
    return config


def faust_credentials(settings: Settings):
    """Broker credentials for Faust (aiokafka underneath), or None for plaintext."""
    # call platforms embed the client without Faust; only the agents need this
    import faust

    if settings.uses_sasl:
        return faust.SASLCredentials(username=settings.kafka_sasl_username, password=settings.kafka_sasl_password,
                                     mechanism=settings.kafka_sasl_mechanism, ssl_context=ssl_context(settings))
    if settings.uses_tls:
        return faust.SSLCredentials(ssl_context(settings))
    return None


def faust_broker_config(settings: Settings) -> dict[str, Any]:
    """The broker part of the worker's `faust.App(...)` arguments."""
    return {
        "broker": f"kafka://{settings.kafka_bootstrap_servers}",
        "broker_credentials": faust_credentials(settings),  # TLS / SASL
        "producer_acks": -1,
        "consumer_auto_offset_reset": "earliest",
        "broker_session_timeout": settings.kafka_session_timeout_s,
        "broker_heartbeat_interval": min(3.0, settings.kafka_session_timeout_s / 3),  # Kafka wants < 1/3
        # the processes create their topics before Faust starts (streams/lifecycle.py), and with
        # ACLs on a role may not create topics at all: Faust must not try on its own
        "topic_allow_declare": False,
    }


def principal(client_config: dict[str, Any]) -> str:
    """The Kafka principal a client with this configuration (`confluent_config`) connects as, as
    a broker's ACLs name it: for the messages that say who was denied what."""
    if client_config.get("sasl.username"):
        return f"User:{client_config['sasl.username']}"
    if str(client_config.get("security.protocol", "")).upper() == "SSL":
        return "the client certificate's principal"
    return "User:ANONYMOUS"
