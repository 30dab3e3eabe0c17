"""kafka-python's default producer is idempotent (KIP-679: enable_idempotence defaults to True
with acks=all): it asks for a producer id with InitProducerId and numbers its batches. Against
the real broker, every message must arrive exactly once, in order per partition."""

from __future__ import annotations

import time
import uuid

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

from vaart_broker import broker_fixture

REQUEST_TIMEOUT_MS = 30_000
CONSUME_TIMEOUT_S = 60.0
PARTITIONS = 3
COUNT = 3000


@pytest.fixture
def vaart(tmp_path):
    yield from broker_fixture(tmp_path, shards=2)


def consume_all(vaart, topic: str, expected: int):
    consumer = KafkaConsumer(bootstrap_servers=vaart.bootstrap, group_id=None,
                             enable_auto_commit=False, auto_offset_reset="none",
                             request_timeout_ms=REQUEST_TIMEOUT_MS)
    try:
        assignment = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(assignment)
        consumer.seek_to_beginning()
        ends = consumer.end_offsets(assignment)
        records = []
        deadline = time.monotonic() + CONSUME_TIMEOUT_S
        while len(records) < expected or any(consumer.position(tp) < ends[tp] for tp in assignment):
            if time.monotonic() > deadline:
                vaart.fail(f"consumed {len(records)} of {expected} records within "
                           f"{CONSUME_TIMEOUT_S:.0f}s (end offsets {ends})")
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


def test_default_producer_is_idempotent_and_delivers_exactly_once(vaart):
    topic = f"py-idempotent-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=vaart.bootstrap,
                             request_timeout_ms=REQUEST_TIMEOUT_MS)
    try:
        admin.create_topics({topic: {"num_partitions": PARTITIONS, "replication_factor": 1}})
    finally:
        admin.close()

    # No settings beyond the address: the defaults are what users get.
    producer = KafkaProducer(bootstrap_servers=vaart.bootstrap,
                             request_timeout_ms=REQUEST_TIMEOUT_MS)
    try:
        futures = [producer.send(topic, key=f"k{i % 31}".encode(), value=f"m{i:06d}".encode())
                   for i in range(COUNT)]
        producer.flush(timeout=60)
        acknowledged = {i: future.get(timeout=60) for i, future in enumerate(futures)}
        manager = producer._transaction_manager
        assert manager is not None, "kafka-python's default producer is idempotent"
        assert manager.producer_id_and_epoch.producer_id >= 0, "the broker handed out an id"
    finally:
        producer.close(timeout=10)

    records = consume_all(vaart, topic, COUNT)
    assert len(records) == COUNT, "exactly one copy of each message"
    by_value = {}
    next_offset = {p: 0 for p in range(PARTITIONS)}
    for record in records:
        assert record.value not in by_value, f"{record.value!r} consumed twice"
        by_value[record.value] = record
        assert record.offset == next_offset[record.partition], "contiguous offsets"
        next_offset[record.partition] += 1
    for i, metadata in acknowledged.items():
        record = by_value[f"m{i:06d}".encode()]
        assert (metadata.partition, metadata.offset) == (record.partition, record.offset)
