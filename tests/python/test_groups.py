"""Consumer groups with kafka-python (KafkaConsumer with group_id) against the real broker:
members split a topic's partitions and consume every message once; a closed and a killed
member (a child process, SIGKILL) leave the survivor with every partition; a simple consumer
(manual assign, no generation) commits, the broker restarts, and a new consumer resumes at the
committed offset with its metadata string. Every wait is bounded; nothing asserts on timing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.structs import OffsetAndMetadata

from vaart_broker import broker_fixture

PHASE_TIMEOUT_S = 90.0
SESSION_TIMEOUT_MS = 6000


@pytest.fixture
def vaart(tmp_path):
    yield from broker_fixture(tmp_path, shards=2, settings={
        "group.initial.rebalance.delay.ms": "200",
        "offsets.topic.num.partitions": "10",
    })


def create_topic(vaart, name: str, partitions: int) -> None:
    admin = KafkaAdminClient(bootstrap_servers=vaart.bootstrap, request_timeout_ms=30_000)
    try:
        admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
    finally:
        admin.close()


def produce(vaart, topic: str, ids: range) -> None:
    producer = KafkaProducer(bootstrap_servers=vaart.bootstrap, acks="all", linger_ms=5)
    try:
        futures = [producer.send(topic, key=f"key-{i}".encode(), value=f"id-{i}".encode())
                   for i in ids]
        for future in futures:
            future.get(timeout=PHASE_TIMEOUT_S)
    finally:
        producer.close()


def member(vaart, topic: str, group: str, **extra) -> KafkaConsumer:
    config = dict(bootstrap_servers=vaart.bootstrap, group_id=group,
                  auto_offset_reset="earliest", session_timeout_ms=SESSION_TIMEOUT_MS,
                  heartbeat_interval_ms=300, enable_auto_commit=True,
                  auto_commit_interval_ms=200, metadata_max_age_ms=1000)
    config.update(extra)
    consumer = KafkaConsumer(**config)
    consumer.subscribe([topic])
    return consumer


def partitions_of(consumer: KafkaConsumer) -> set[int]:
    return {tp.partition for tp in consumer.assignment()}


def poll_once(consumers, received) -> None:
    for index, consumer in enumerate(consumers):
        for records in consumer.poll(timeout_ms=50).values():
            for record in records:
                received[index].append(int(record.value.decode().removeprefix("id-")))


def poll_until(vaart, consumers, received, what: str, done) -> None:
    deadline = time.monotonic() + PHASE_TIMEOUT_S
    while True:
        poll_once(consumers, received)
        if done():
            return
        if time.monotonic() > deadline:
            vaart.fail(f"{what}: not reached within {PHASE_TIMEOUT_S}s; assignments "
                       f"{[partitions_of(c) for c in consumers]}, received "
                       f"{[len(r) for r in received]}")


def disjoint_cover(sets, partitions: int) -> bool:
    union = set().union(*sets)
    return (all(sets) and sum(len(s) for s in sets) == len(union)
            and union == set(range(partitions)))


def test_three_members_split_the_partitions_and_consume_every_message_once(vaart):
    topic = "py-groups-three"
    create_topic(vaart, topic, 6)
    consumers = [member(vaart, topic, "py-three") for _ in range(3)]
    received = [[] for _ in consumers]
    try:
        poll_until(vaart, consumers, received, "three disjoint assignments",
                   lambda: disjoint_cover([partitions_of(c) for c in consumers], 6))
        count = 600
        produce(vaart, topic, range(count))
        poll_until(vaart, consumers, received, "every message consumed",
                   lambda: sum(len(r) for r in received) >= count)
        for _ in range(10):
            poll_once(consumers, received)
        assert sorted(i for r in received for i in r) == list(range(count))
        assert disjoint_cover([partitions_of(c) for c in consumers], 6)
        # DescribeGroups reports each member and its address as Kafka does ("/ip").
        admin = KafkaAdminClient(bootstrap_servers=vaart.bootstrap, request_timeout_ms=30_000)
        try:
            group = admin.describe_groups(["py-three"])["py-three"]
        finally:
            admin.close()
        assert len(group["members"]) == 3, group
        assert {m["client_host"] for m in group["members"]} == {"/127.0.0.1"}, group
    finally:
        for consumer in consumers:
            consumer.close()


CHILD_MEMBER = textwrap.dedent("""
    import sys, time
    from kafka import KafkaConsumer
    bootstrap, topic, group = sys.argv[1:4]
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                             auto_offset_reset="earliest", session_timeout_ms=6000,
                             heartbeat_interval_ms=300, metadata_max_age_ms=1000)
    consumer.subscribe([topic])
    last = None
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        consumer.poll(timeout_ms=100)
        now = sorted(tp.partition for tp in consumer.assignment())
        if now != last:
            print("assigned", now, flush=True)
            last = now
""")


def test_a_closed_and_a_killed_member_leave_the_survivor_with_every_partition(vaart):
    topic = "py-groups-failover"
    group = "py-failover"
    create_topic(vaart, topic, 6)
    survivor = member(vaart, topic, group)
    leaving = member(vaart, topic, group)
    child = subprocess.Popen([sys.executable, "-c", CHILD_MEMBER, vaart.bootstrap, topic, group],
                             stdout=subprocess.PIPE, text=True)
    os.set_blocking(child.stdout.fileno(), False)
    child_lines = []
    received = [[], []]
    try:
        def three_members() -> bool:
            line = child.stdout.readline()
            if line:
                child_lines.append(line.strip())
            child_has = bool(child_lines) and child_lines[-1] not in ("assigned []",)
            ours = partitions_of(survivor) | partitions_of(leaving)
            return (child_has and partitions_of(survivor) and partitions_of(leaving)
                    and len(ours) < 6)

        poll_until(vaart, [survivor, leaving], received, "three members", three_members)
        leaving.close()
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        count = 300
        produce(vaart, topic, range(count))
        received = [[]]
        poll_until(vaart, [survivor], received, "the survivor owns every partition and got "
                   "everything", lambda: partitions_of(survivor) == set(range(6))
                   and set(received[0]) >= set(range(count)))
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        survivor.close()


def test_simple_consumer_commit_survives_a_broker_restart(vaart):
    topic = "py-groups-simple"
    group = "py-simple"
    create_topic(vaart, topic, 1)
    produce(vaart, topic, range(100))
    tp = TopicPartition(topic, 0)
    consumer = KafkaConsumer(bootstrap_servers=vaart.bootstrap, group_id=group,
                             enable_auto_commit=False)
    try:
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        seen = []
        deadline = time.monotonic() + PHASE_TIMEOUT_S
        while len(seen) < 60 and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=100, max_records=60 - len(seen)).values():
                seen.extend(r.offset for r in records)
        assert seen[:60] == list(range(60))
        # Manual assignment: generation -1, no member id.
        consumer.commit({tp: OffsetAndMetadata(60, "checkpoint-60", -1)})
        assert consumer.committed(tp) == 60
    finally:
        consumer.close()

    vaart.stop()
    vaart.restart()

    resumed = KafkaConsumer(bootstrap_servers=vaart.bootstrap, group_id=group,
                            enable_auto_commit=False, auto_offset_reset="earliest")
    admin = KafkaAdminClient(bootstrap_servers=vaart.bootstrap, request_timeout_ms=30_000)
    try:
        # OffsetFetch v8+ with a null topic list: every committed partition of the group.
        offsets = admin.list_group_offsets({group: None})[group]
        assert offsets[tp].offset == 60
        assert offsets[tp].metadata == "checkpoint-60"
        resumed.assign([tp])
        assert resumed.position(tp) == 60
        got = []
        deadline = time.monotonic() + PHASE_TIMEOUT_S
        while len(got) < 40 and time.monotonic() < deadline:
            for records in resumed.poll(timeout_ms=100).values():
                got.extend(r.offset for r in records)
        assert got == list(range(60, 100))
    finally:
        admin.close()
        resumed.close()


def test_static_member_rejoins_without_rebalancing_the_other(vaart):
    topic = "py-groups-static"
    group = "py-static"
    create_topic(vaart, topic, 4)
    a = member(vaart, topic, group, group_instance_id="py-a", session_timeout_ms=30_000)
    b = member(vaart, topic, group, group_instance_id="py-b", session_timeout_ms=30_000)
    received = [[], []]
    try:
        poll_until(vaart, [a, b], received, "both static members assigned",
                   lambda: disjoint_cover([partitions_of(a), partitions_of(b)], 4))
        mine = partitions_of(a)
        generation_before = b._coordinator._generation.generation_id
        # Static members do not leave on close (leave_group_on_close defaults to False for
        # them); a restarted process with the same instance id takes over.
        a.close(autocommit=False)
        a = member(vaart, topic, group, group_instance_id="py-a", session_timeout_ms=30_000)
        poll_until(vaart, [a, b], received, "A has its partitions back",
                   lambda: partitions_of(a) == mine)
        for _ in range(30):
            poll_once([a, b], received)
        assert b._coordinator._generation.generation_id == generation_before
        assert partitions_of(a) == mine
    finally:
        a.close()
        b.close()
