"""kcat, the reference Kafka command-line client, against the real broker: `kcat -P` produce,
`kcat -C -e` consume, `kcat -L` metadata listing, and every compression codec.

Debian 12's kcat links librdkafka 2.0.2, which misreads an ApiVersions v3 response carrying
tagged fields at their default values: these tests only pass if the broker, like Kafka, leaves
such fields out. kcat is never skipped: the test command installs it; missing, the tests fail.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from vaart_broker import broker_fixture

KCAT_TIMEOUT_S = 60
NUM_PARTITIONS = 3


def kcat_binary() -> str:
    path = shutil.which("kcat") or shutil.which("kafkacat")
    if path is None:
        pytest.fail("kcat is not installed (Debian package `kcat`; scripts/test.sh installs it): "
                    "the kcat end-to-end tests cannot run", pytrace=False)
    return path


def _tail(output: bytes | str | None, limit: int = 4000) -> str:
    if output is None:
        return ""
    text = output.decode(errors="replace") if isinstance(output, bytes) else output
    return text if len(text) <= limit else "..." + text[-limit:]


def kcat(broker, *args: str, stdin: bytes | None = None) -> str:
    """Runs kcat against `broker` (bounded); fails with its output and the broker log."""
    command = [kcat_binary(), "-b", broker.bootstrap, *args]
    try:
        result = subprocess.run(command, input=stdin, capture_output=True,
                                timeout=KCAT_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as timeout:
        broker.fail(f"{command} still running after {KCAT_TIMEOUT_S}s\nstdout: "
                    f"{_tail(timeout.stdout)}\nstderr: {_tail(timeout.stderr)}")
    if result.returncode != 0:
        broker.fail(f"{command} exited with {result.returncode}\nstdout: "
                    f"{_tail(result.stdout)}\nstderr: {_tail(result.stderr)}")
    return result.stdout.decode()


@pytest.fixture
def vaart(tmp_path):
    """A fresh broker whose auto-created topics get 3 partitions; SIGTERM afterwards (exit 0)."""
    yield from broker_fixture(tmp_path, node_id=1, settings={"num.partitions": str(NUM_PARTITIONS)})


def produce_lines(vaart, topic: str, count: int, *extra: str) -> list[tuple[str, str]]:
    """`kcat -P` with `key:value` lines; returns the (key, value) pairs sent."""
    pairs = [(f"key-{i % 37:02d}", f"value-{i:05d}") for i in range(count)]
    stdin = "".join(f"{key}:{value}\n" for key, value in pairs).encode()
    # A delivery that fails is reported (and kcat exits non-zero) well before KCAT_TIMEOUT_S.
    kcat(vaart, "-P", "-t", topic, "-K", ":", "-H", "origin=kcat", "-X", "acks=all",
         "-X", "message.timeout.ms=20000", *extra, stdin=stdin)
    return pairs


def consume_lines(vaart, topic: str) -> list[tuple[int, int, str, str, str]]:
    """`kcat -C -e` from the beginning of every partition until the end; (partition, offset,
    key, value, headers) per message."""
    output = kcat(vaart, "-C", "-t", topic, "-o", "beginning", "-e", "-q",
                  "-f", "%p|%o|%k|%s|%h\n")
    rows = []
    for line in output.splitlines():
        partition, offset, key, value, headers = line.split("|")
        rows.append((int(partition), int(offset), key, value, headers))
    return rows


def check_round_trip(pairs, rows):
    assert len(rows) == len(pairs), "exactly one copy of each message"
    assert sorted((key, value) for _, _, key, value, _ in rows) == sorted(pairs)
    assert all(headers == "origin=kcat" for *_, headers in rows), "headers kept"
    by_partition = {}
    partition_of_key = {}
    for partition, offset, key, value, _ in rows:
        by_partition.setdefault(partition, []).append((offset, value))
        assert partition_of_key.setdefault(key, partition) == partition, f"{key} in two partitions"
    sent_order = {value: index for index, (_, value) in enumerate(pairs)}
    for partition, entries in by_partition.items():
        offsets = sorted(offset for offset, _ in entries)
        assert offsets == list(range(len(entries))), f"partition {partition}: offsets 0.."
        in_offset_order = [value for _, value in sorted(entries)]
        assert in_offset_order == sorted(in_offset_order, key=sent_order.__getitem__), \
            f"partition {partition}: produce order kept"
    assert len(by_partition) == NUM_PARTITIONS, "37 keys reach every partition"


def test_kcat_produce_then_consume(vaart):
    pairs = produce_lines(vaart, "kcat-plain", 1000)
    check_round_trip(pairs, consume_lines(vaart, "kcat-plain"))


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_kcat_compressed_produce_then_consume(vaart, codec):
    topic = f"kcat-{codec}"
    pairs = produce_lines(vaart, topic, 1000, "-z", codec)
    check_round_trip(pairs, consume_lines(vaart, topic))


def test_kcat_metadata_listing(vaart):
    produce_lines(vaart, "kcat-listed", 10)

    listing = json.loads(kcat(vaart, "-L", "-J"))
    assert listing["controllerid"] == 1
    assert [broker["id"] for broker in listing["brokers"]] == [1]
    assert listing["brokers"][0]["name"] == vaart.bootstrap
    topics = {topic["topic"]: topic for topic in listing["topics"]}
    assert "kcat-listed" in topics
    topic = topics["kcat-listed"]
    assert "error" not in topic, topic
    partitions = sorted(topic["partitions"], key=lambda partition: partition["partition"])
    assert [p["partition"] for p in partitions] == list(range(NUM_PARTITIONS))
    for partition in partitions:
        assert partition["leader"] == 1
        assert [replica["id"] for replica in partition["replicas"]] == [1]
        assert [isr["id"] for isr in partition["isrs"]] == [1]

    # The plain text listing too, as people read it.
    text = kcat(vaart, "-L", "-t", "kcat-listed")
    assert "1 brokers:" in text
    assert f'topic "kcat-listed" with {NUM_PARTITIONS} partitions:' in text
