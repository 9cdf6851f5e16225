"""Local infrastructure without Docker, run from Maven Central artifacts on loopback:

* `infra.local.kafka`: `LocalKafka`, a real Apache Kafka broker or N-broker KRaft cluster;
* `infra.local.registry`: `LocalSchemaRegistry`, a real Apicurio Schema Registry.

Their command lines are scripts/kafka_local.py and scripts/schema_registry.py.
"""
