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
