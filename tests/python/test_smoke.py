"""Smoke test: a real Kafka admin client talks to a freshly started broker."""

from kafka import KafkaAdminClient


def test_admin_client_lists_topics_of_a_new_broker(broker):
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, client_id="vaart-smoke",
                             request_timeout_ms=10_000, bootstrap_timeout_ms=10_000)
    try:
        topics = admin.list_topics()
    finally:
        admin.close()
    # A new broker has no user topics; internal topics (`__consumer_offsets`) may exist.
    assert [topic for topic in topics if not topic.startswith("__")] == []
