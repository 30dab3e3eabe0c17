"""kafka-python (a pure-Python client, independent of librdkafka) against the real broker:
admin (create, describe, alter and delete topics and configs), produce and consume (assign +
seek_to_beginning; no consumer groups, which are a later issue)."""

from __future__ import annotations

import time
import uuid

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType
from kafka.errors import TopicAlreadyExistsError

from vaart_broker import broker_fixture

REQUEST_TIMEOUT_MS = 30_000
CONSUME_TIMEOUT_S = 60.0
# Kafka's topic-level defaults that a broker started without overrides must report.
KAFKA_TOPIC_DEFAULTS = {
    "cleanup.policy": "delete",
    "retention.ms": "604800000",
    "retention.bytes": "-1",
    "segment.bytes": "1073741824",
    "segment.ms": "604800000",
    "max.message.bytes": "1048588",
    "message.timestamp.type": "CreateTime",
}
# Kafka error codes.
INVALID_PARTITIONS = 37
INVALID_CONFIG = 40
TOPIC_ALREADY_EXISTS = 36
UNKNOWN_TOPIC_OR_PARTITION = 3


@pytest.fixture
def vaart(tmp_path):
    """A fresh broker (2 shards), stopped with SIGTERM afterwards (exit code 0 required)."""
    yield from broker_fixture(tmp_path, shards=2)


@pytest.fixture
def admin(vaart):
    client = KafkaAdminClient(bootstrap_servers=vaart.bootstrap, client_id="vaart-py-admin",
                              request_timeout_ms=REQUEST_TIMEOUT_MS)
    try:
        yield client
    finally:
        client.close()


def topic_configs(admin: KafkaAdminClient, topic: str, config_filter: str = "all") -> dict:
    """{name: {value, config_source, ...}} for one topic from DescribeConfigs."""
    described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)],
                                       config_filter=config_filter)
    return described["topic"][topic]


def values(configs: dict) -> dict[str, str | None]:
    return {name: entry["value"] for name, entry in configs.items()}


def test_admin_create_describe_alter_and_delete_topics(vaart, admin):
    result = admin.create_topics({"py-admin": {"num_partitions": 3, "replication_factor": 1,
                                               "configs": {"retention.ms": "3600000"}}})
    assert [(t["name"], t["error_code"]) for t in result["topics"]] == [("py-admin", 0)]
    with pytest.raises(TopicAlreadyExistsError):
        admin.create_topics({"py-admin": {"num_partitions": 3, "replication_factor": 1}})

    assert "py-admin" in admin.list_topics()
    cluster = admin.describe_cluster()
    assert [(b["broker_id"], b["host"], b["port"]) for b in cluster["brokers"]] == \
        [(1, "127.0.0.1", vaart.port)]
    assert cluster["controller_id"] == 1
    assert cluster["cluster_id"]
    (described,) = admin.describe_topics(["py-admin"])
    assert described["error_code"] == 0
    assert sorted(p["partition_index"] for p in described["partitions"]) == [0, 1, 2]
    assert all(p["error_code"] == 0 and p["leader_id"] >= 0 for p in described["partitions"])

    # Every Kafka default shows up, and the value set at creation is reported as a topic config.
    configs = topic_configs(admin, "py-admin")
    for name, default in KAFKA_TOPIC_DEFAULTS.items():
        if name != "retention.ms":
            assert configs[name]["value"] == default, f"default of {name}"
    assert configs["retention.ms"]["value"] == "3600000"
    assert configs["retention.ms"]["config_source"] == "DYNAMIC_TOPIC_CONFIG"
    assert values(topic_configs(admin, "py-admin", "modified")) == {"retention.ms": "3600000"}

    # IncrementalAlterConfigs: SET one key, the others stay.
    altered = admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, "py-admin",
                                                  configs={"retention.bytes": "1000000000"})],
                                  incremental=True)
    assert altered == {"topic": {"py-admin": "OK"}}
    assert values(topic_configs(admin, "py-admin", "modified")) == {
        "retention.ms": "3600000", "retention.bytes": "1000000000"}

    # AlterConfigs (non-incremental) replaces the set; kafka-python re-sends the other modified
    # keys, so all three are there afterwards.
    altered = admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, "py-admin",
                                                  configs={"segment.bytes": "2097152"})],
                                  incremental=False)
    assert altered == {"topic": {"py-admin": "OK"}}
    assert values(topic_configs(admin, "py-admin", "modified")) == {
        "retention.ms": "3600000", "retention.bytes": "1000000000", "segment.bytes": "2097152"}

    # DELETE (reset to default) through IncrementalAlterConfigs.
    reset = admin.reset_configs([ConfigResource(ConfigResourceType.TOPIC, "py-admin",
                                                configs={"retention.ms": None})], incremental=True)
    assert reset == {"topic": {"py-admin": "OK"}}
    configs = topic_configs(admin, "py-admin")
    assert configs["retention.ms"]["value"] == KAFKA_TOPIC_DEFAULTS["retention.ms"]
    assert "retention.ms" not in topic_configs(admin, "py-admin", "modified")

    deleted = admin.delete_topics(["py-admin"])
    assert [(t["name"], t["error_code"]) for t in deleted["topics"]] == [("py-admin", 0)]
    assert "py-admin" not in admin.list_topics()
    deleted = admin.delete_topics(["py-admin"], raise_errors=False)
    assert [t["error_code"] for t in deleted["topics"]] == [UNKNOWN_TOPIC_OR_PARTITION]


def test_admin_rejects_invalid_topic_configs(vaart, admin):
    result = admin.create_topics(
        {"bad-value": {"num_partitions": 1, "replication_factor": 1,
                       "configs": {"retention.ms": "not-a-number"}},
         "bad-name": {"num_partitions": 1, "replication_factor": 1,
                      "configs": {"no.such.config": "1"}}},
        raise_errors=False)
    codes = {t["name"]: t["error_code"] for t in result["topics"]}
    assert codes == {"bad-value": INVALID_CONFIG, "bad-name": INVALID_CONFIG}
    listed = admin.list_topics()
    assert "bad-value" not in listed and "bad-name" not in listed


def offsets(vaart, topic: str, partitions: int):
    """(beginning offsets, end offsets) by partition number, through ListOffsets."""
    consumer = KafkaConsumer(bootstrap_servers=vaart.bootstrap, group_id=None,
                             enable_auto_commit=False, request_timeout_ms=REQUEST_TIMEOUT_MS)
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        beginnings = consumer.beginning_offsets(tps)
        ends = consumer.end_offsets(tps)
        return ({tp.partition: o for tp, o in beginnings.items()},
                {tp.partition: o for tp, o in ends.items()})
    finally:
        consumer.close()


def test_admin_create_partitions_delete_records_and_recreate(vaart, admin):
    topic = "py-grow"
    admin.create_topics({topic: {"num_partitions": 1, "replication_factor": 1}})
    producer = KafkaProducer(bootstrap_servers=vaart.bootstrap,
                             request_timeout_ms=REQUEST_TIMEOUT_MS)
    try:
        for i in range(10):
            producer.send(topic, value=f"v{i}".encode(), partition=0)
        producer.flush(timeout=60)
    finally:
        producer.close(timeout=10)

    # CreatePartitions: 1 -> 3; the existing partition keeps its data, the new ones are empty.
    result = admin.create_partitions({topic: 3})
    assert [r.error_code for r in result.results] == [0]
    (described,) = admin.describe_topics([topic])
    assert sorted(p["partition_index"] for p in described["partitions"]) == [0, 1, 2]
    assert offsets(vaart, topic, 3) == ({0: 0, 1: 0, 2: 0}, {0: 10, 1: 0, 2: 0})
    producer = KafkaProducer(bootstrap_servers=vaart.bootstrap,
                             request_timeout_ms=REQUEST_TIMEOUT_MS)
    try:
        assert producer.send(topic, value=b"new", partition=2).get(timeout=60).offset == 0
    finally:
        producer.close(timeout=10)
    # Partitions are never removed: asking for fewer is INVALID_PARTITIONS.
    result = admin.create_partitions({topic: 2}, raise_errors=False)
    assert [r.error_code for r in result.results] == [INVALID_PARTITIONS]

    # DeleteRecords moves the log start offset; reads start there.
    deleted = admin.delete_records({TopicPartition(topic, 0): 5})
    assert deleted[TopicPartition(topic, 0)]["low_watermark"] == 5
    assert offsets(vaart, topic, 3) == ({0: 5, 1: 0, 2: 0}, {0: 10, 1: 0, 2: 1})
    records, _, _ = consume_all(vaart, topic, 3, 6)
    assert sorted((r.partition, r.offset, r.value) for r in records) == \
        [(0, offset, f"v{offset}".encode()) for offset in range(5, 10)] + [(2, 0, b"new")]

    # A deleted topic's data does not come back when the name is created again.
    admin.delete_topics([topic])
    admin.create_topics({topic: {"num_partitions": 1, "replication_factor": 1}})
    assert offsets(vaart, topic, 1) == ({0: 0}, {0: 0})


def produce(vaart, topic: str, count: int, *, acks, compression_type=None) -> dict:
    """Sends `count` keyed messages with headers and explicit timestamps; returns
    {id: (record metadata, first timestamp)} (the offset is meaningless with acks=0, where the
    broker sends no answer)."""
    producer = KafkaProducer(bootstrap_servers=vaart.bootstrap, client_id="vaart-py-producer",
                             acks=acks, compression_type=compression_type, linger_ms=5,
                             request_timeout_ms=REQUEST_TIMEOUT_MS)
    try:
        first_ms = int(time.time() * 1000)
        futures = {}
        for message_id in range(count):
            key, value, headers, timestamp_ms = message(message_id, first_ms)
            futures[message_id] = producer.send(topic, value=value, key=key, headers=headers,
                                                timestamp_ms=timestamp_ms)
        producer.flush(timeout=60)
        return {message_id: (future.get(timeout=60), first_ms)
                for message_id, future in futures.items()}
    finally:
        producer.close(timeout=10)


def message(message_id: int, first_ms: int):
    key = f"key-{message_id % 101:03d}".encode()
    value = f"value-{message_id:06d}-".encode() + b"x" * (message_id % 50)
    # kafka-python only sends bytes header values (no null ones).
    headers = [("id", str(message_id).encode()), ("empty", b"")] if message_id % 5 else []
    return key, value, headers, first_ms + message_id


def consume_all(vaart, topic: str, partitions: int, expected: int):
    """All records of `topic` from the beginning, reading until `expected` arrived and the end
    offsets are reached (bounded)."""
    consumer = KafkaConsumer(bootstrap_servers=vaart.bootstrap, client_id="vaart-py-consumer",
                             group_id=None, enable_auto_commit=False,
                             auto_offset_reset="none", request_timeout_ms=REQUEST_TIMEOUT_MS)
    try:
        assignment = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(assignment)
        consumer.seek_to_beginning()
        beginnings = consumer.beginning_offsets(assignment)
        ends = consumer.end_offsets(assignment)
        records = []
        deadline = time.monotonic() + CONSUME_TIMEOUT_S
        while len(records) < expected or any(consumer.position(tp) < ends[tp] for tp in assignment):
            if time.monotonic() > deadline:
                vaart.fail(f"consumed {len(records)} of {expected} records from {topic} within "
                           f"{CONSUME_TIMEOUT_S:.0f}s (end offsets {ends})")
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
        return records, beginnings, ends
    finally:
        consumer.close()


@pytest.mark.parametrize("acks,compression_type", [("all", None), (1, "gzip"), (0, None)])
def test_produce_and_consume_with_assign(vaart, admin, acks, compression_type):
    topic = f"py-data-{uuid.uuid4().hex[:8]}"
    admin.create_topics({topic: {"num_partitions": 3, "replication_factor": 1}})
    count = 2000
    sent = produce(vaart, topic, count, acks=acks, compression_type=compression_type)
    if acks == 0:
        # With acks=0 the answer is not awaited: wait (bounded) until the broker has it all.
        deadline = time.monotonic() + CONSUME_TIMEOUT_S
        while True:
            probe = KafkaConsumer(bootstrap_servers=vaart.bootstrap, group_id=None,
                                  enable_auto_commit=False)
            try:
                tps = [TopicPartition(topic, p) for p in range(3)]
                if sum(probe.end_offsets(tps).values()) >= count:
                    break
            finally:
                probe.close()
            if time.monotonic() > deadline:
                vaart.fail(f"acks=0: fewer than {count} records reached {topic}")
            time.sleep(0.2)
    records, beginnings, ends = consume_all(vaart, topic, 3, count)

    assert len(records) == count, "exactly one copy of each message"
    assert all(offset == 0 for offset in beginnings.values())
    assert sum(ends.values()) == count
    seen = {}
    partition_of_key = {}
    next_offset = {p: 0 for p in range(3)}
    for record in records:
        message_id = int(record.value[6:12])
        assert message_id not in seen, f"message {message_id} consumed twice"
        seen[message_id] = (record.partition, record.offset)
        assert record.offset == next_offset[record.partition], "contiguous offsets from 0"
        next_offset[record.partition] += 1
        metadata, first_ms = sent[message_id]
        key, value, headers, timestamp_ms = message(message_id, first_ms)
        assert (record.key, record.value) == (key, value)
        assert list(record.headers) == headers
        assert (record.timestamp, record.timestamp_type) == (timestamp_ms, 0)
        assert partition_of_key.setdefault(key, record.partition) == record.partition, \
            f"key {key!r} in two partitions"
        if acks != 0:
            assert (metadata.partition, metadata.offset) == (record.partition, record.offset), \
                f"message {message_id}: acknowledged vs consumed position"
    assert sorted(seen) == list(range(count))
    assert all(next_offset[p] > 0 for p in range(3)), "101 keys reach every partition"


@pytest.fixture
def vaart_two_partitions(tmp_path):
    """A fresh broker whose auto-created topics get 2 partitions (`num.partitions`)."""
    yield from broker_fixture(tmp_path, settings={"num.partitions": "2"})


def test_metadata_request_auto_creates_a_topic_with_num_partitions(vaart_two_partitions):
    producer = KafkaProducer(bootstrap_servers=vaart_two_partitions.bootstrap,
                             request_timeout_ms=REQUEST_TIMEOUT_MS)
    try:
        metadata = producer.send("py-auto-created", value=b"first").get(timeout=60)
        assert metadata.offset == 0
        assert producer.partitions_for("py-auto-created") == {0, 1}
    finally:
        producer.close(timeout=10)
