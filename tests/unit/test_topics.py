"""Which failed topic creations are sent again: those that never got an answer, not refusals."""

from confluent_kafka import KafkaError

from callstt.streams.client.topics import _lost_on_the_way


def test_a_creation_lost_with_its_connection_is_sent_again_and_a_refusal_is_not():
    # seen in CI: a fresh admin client retired its bootstrap connection with the request on it
    assert _lost_on_the_way(KafkaError(KafkaError._DESTROY_BROKER))
    assert _lost_on_the_way(KafkaError(KafkaError._TRANSPORT))
    assert not _lost_on_the_way(KafkaError(KafkaError.POLICY_VIOLATION))
    assert not _lost_on_the_way(KafkaError(KafkaError.INVALID_REPLICATION_FACTOR))
    assert not _lost_on_the_way(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED))


def test_every_topic_setting_has_its_configuration():
    """The settings name the topics; project_topics says how each is kept: none forgotten."""
    from dataclasses import fields

    from callstt.streams.client.topics import project_topics
    from callstt.streams.settings import Settings

    settings = Settings()
    configured = {spec.name for spec in project_topics(settings)}
    assert {getattr(settings, f.name) for f in fields(Settings) if f.name.endswith("_topic")} <= configured
