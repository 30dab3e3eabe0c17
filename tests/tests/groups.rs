//! Consumer groups and committed offsets against the real broker, driven by librdkafka
//! (`BaseConsumer` + `subscribe`) and, for error codes, by raw protocol requests:
//!
//! - three members of one group split a 6-partition topic and consume every message once;
//! - one member closes and another is killed (a child process, SIGKILL): the survivor ends up
//!   owning every partition and nothing is lost;
//! - commit, restart the broker, restart the consumer: it resumes at the committed offset;
//! - static membership: a member restarting with its `group.instance.id` gets its partitions
//!   back and the other member is not rebalanced;
//! - log compaction: a compacted topic shrinks to the latest value per key;
//! - bad input: commits and heartbeats of unknown members and stale generations get Kafka's
//!   error codes.
//!
//! Every wait has an overall deadline; nothing asserts on timing.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ApiKey, DeleteGroupsRequest, DescribeGroupsRequest, FindCoordinatorRequest, GroupId,
    HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest, ListGroupsRequest, OffsetCommitRequest,
    OffsetFetchRequest, SyncGroupRequest,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, Producer};
use rdkafka::ClientContext;
use vaart_tests::clients::{self, Admin};
use vaart_tests::wire::{topic_name, KafkaConn};
use vaart_tests::{Broker, BrokerOptions};

/// Overall bound for each phase of a test (never a timing assertion).
const PHASE_TIMEOUT: Duration = Duration::from_secs(90);
const POLL: Duration = Duration::from_millis(50);
/// Kafka's minimum allowed session timeout (group.min.session.timeout.ms default).
const SESSION_TIMEOUT_MS: &str = "6000";

/// Env var that turns this test binary into a group member process (see
/// [`group_member_child_process`]).
const CHILD_ENV: &str = "VAART_GROUPS_CHILD";

mod code {
    pub const NONE: i16 = 0;
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    pub const ILLEGAL_GENERATION: i16 = 22;
    pub const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
    pub const INVALID_GROUP_ID: i16 = 24;
    pub const UNKNOWN_MEMBER_ID: i16 = 25;
    pub const INVALID_SESSION_TIMEOUT: i16 = 26;
    pub const REBALANCE_IN_PROGRESS: i16 = 27;
    pub const NON_EMPTY_GROUP: i16 = 68;
    pub const GROUP_ID_NOT_FOUND: i16 = 69;
    pub const MEMBER_ID_REQUIRED: i16 = 79;
    pub const FENCED_INSTANCE_ID: i16 = 82;
}

fn broker() -> Broker {
    BrokerOptions::new()
        .shards(2)
        .set("group.initial.rebalance.delay.ms", "200")
        .set("offsets.topic.num.partitions", "10")
        .start()
}

/// Counts rebalances (assign and revoke callbacks) of one consumer.
#[derive(Clone, Default)]
struct CountingContext {
    rebalances: Arc<AtomicUsize>,
}

impl ClientContext for CountingContext {}

impl ConsumerContext for CountingContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if !matches!(rebalance, Rebalance::Error(_)) {
            self.rebalances.fetch_add(1, Ordering::SeqCst);
        }
    }
}

type GroupConsumer = BaseConsumer<CountingContext>;

fn group_config(bootstrap: &str, group: &str) -> ClientConfig {
    let mut config = clients::client_config(bootstrap);
    config
        .set("group.id", group)
        .set("session.timeout.ms", SESSION_TIMEOUT_MS)
        .set("heartbeat.interval.ms", "300")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "200")
        .set("fetch.wait.max.ms", "100")
        .set("topic.metadata.refresh.interval.ms", "1000");
    config
}

fn subscribed(config: &ClientConfig, topic: &str) -> GroupConsumer {
    let consumer: GroupConsumer = config
        .create_with_context(CountingContext::default())
        .expect("create an rdkafka consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    consumer
}

fn assignment(consumer: &GroupConsumer) -> BTreeSet<i32> {
    consumer
        .assignment()
        .map(|list| list.elements().iter().map(|e| e.partition()).collect())
        .unwrap_or_default()
}

/// Message ids received, by consumer.
type Received = Vec<Vec<usize>>;

fn id_of(payload: Option<&[u8]>) -> Option<usize> {
    std::str::from_utf8(payload?)
        .ok()?
        .strip_prefix("id-")?
        .parse()
        .ok()
}

/// Polls every consumer once; records the ids of messages received.
fn poll_all(consumers: &[&GroupConsumer], received: &mut Received) {
    for (index, consumer) in consumers.iter().enumerate() {
        if let Some(Ok(message)) = consumer.poll(POLL) {
            if let Some(id) = id_of(message.payload()) {
                received[index].push(id);
            }
        }
    }
}

/// Polls until `done` holds (failing after the deadline with `what`).
fn poll_until(
    broker: &Broker,
    consumers: &[&GroupConsumer],
    received: &mut Received,
    what: &str,
    mut done: impl FnMut(&Received) -> bool,
) {
    let deadline = Instant::now() + PHASE_TIMEOUT;
    loop {
        poll_all(consumers, received);
        if done(received) {
            return;
        }
        if Instant::now() > deadline {
            let assignments: Vec<BTreeSet<i32>> = consumers.iter().map(|c| assignment(c)).collect();
            broker.fail(format!(
                "{what}: not reached within {PHASE_TIMEOUT:?}; assignments {assignments:?}, received {:?}",
                received.iter().map(Vec::len).collect::<Vec<_>>()
            ));
        }
    }
}

fn produce(broker: &Broker, topic: &str, ids: std::ops::Range<usize>) {
    let producer = clients::recording_producer(&broker.bootstrap(), "all", "none", &[]);
    let deadline = Instant::now() + PHASE_TIMEOUT;
    for id in ids.clone() {
        let key = format!("key-{id}");
        let payload = format!("id-{id}");
        let record = BaseRecord::with_opaque_to(topic, id)
            .key(key.as_bytes())
            .payload(payload.as_bytes());
        broker.check(
            clients::send_with_retry(&producer, record, deadline),
            "send",
        );
    }
    broker.check(producer.flush(PHASE_TIMEOUT), "flush");
    let failed = producer
        .context()
        .deliveries()
        .values()
        .filter(|outcome| outcome.is_err())
        .count();
    assert_eq!(failed, 0, "every message delivered");
}

fn create_topic(broker: &Broker, topic: &str, partitions: i32, configs: &[(&str, &str)]) {
    let admin = Admin::new(&broker.bootstrap());
    broker.check(
        admin.create_topic(topic, partitions, configs),
        "create topic",
    );
}

fn disjoint_cover(sets: &[BTreeSet<i32>], partitions: i32) -> bool {
    let total: usize = sets.iter().map(BTreeSet::len).sum();
    let union: BTreeSet<i32> = sets.iter().flatten().copied().collect();
    sets.iter().all(|s| !s.is_empty())
        && total == union.len()
        && union == (0..partitions).collect::<BTreeSet<i32>>()
}

#[test]
fn three_members_split_six_partitions_and_consume_every_message_once() {
    let broker = broker();
    let topic = "groups-three";
    create_topic(&broker, topic, 6, &[]);
    let config = group_config(&broker.bootstrap(), "three");
    let members: Vec<GroupConsumer> = (0..3).map(|_| subscribed(&config, topic)).collect();
    let refs: Vec<&GroupConsumer> = members.iter().collect();
    let mut received: Received = vec![Vec::new(); 3];
    poll_until(
        &broker,
        &refs,
        &mut received,
        "three members with disjoint assignments",
        |_| {
            let sets: Vec<BTreeSet<i32>> = refs.iter().map(|c| assignment(c)).collect();
            disjoint_cover(&sets, 6)
        },
    );
    let count = 600;
    produce(&broker, topic, 0..count);
    poll_until(
        &broker,
        &refs,
        &mut received,
        "every message consumed",
        |received| received.iter().map(Vec::len).sum::<usize>() >= count,
    );
    // A little more polling would reveal duplicates; then check.
    for _ in 0..20 {
        poll_all(&refs, &mut received);
    }
    let mut all: Vec<usize> = received.iter().flatten().copied().collect();
    all.sort_unstable();
    assert_eq!(
        all,
        (0..count).collect::<Vec<_>>(),
        "each message exactly once"
    );
    let sets: Vec<BTreeSet<i32>> = refs.iter().map(|c| assignment(c)).collect();
    assert!(disjoint_cover(&sets, 6), "assignments {sets:?}");
}

/// Not a test of its own: run as a child process by
/// [`a_closed_and_a_killed_member_leave_the_survivor_with_every_partition`] (with
/// `VAART_GROUPS_CHILD=bootstrap,topic,group`), it joins the group and prints its assignment
/// until it is killed. Without the variable it does nothing.
#[test]
fn group_member_child_process() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let parts: Vec<&str> = spec.split(',').collect();
    let [bootstrap, topic, group] = parts[..] else {
        panic!("{CHILD_ENV} must be bootstrap,topic,group");
    };
    let consumer = subscribed(&group_config(bootstrap, group), topic);
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut last = BTreeSet::new();
    while Instant::now() < deadline {
        let _ = consumer.poll(POLL);
        let now = assignment(&consumer);
        if now != last {
            println!("assigned {now:?}");
            last = now;
        }
    }
}

/// Starts this test binary as a group member process; returns it and a channel of its
/// assignment lines.
fn spawn_member(broker: &Broker, topic: &str, group: &str) -> (Child, mpsc::Receiver<String>) {
    let exe = std::env::current_exe().expect("test executable path");
    let mut child = Command::new(exe)
        .args([
            "--exact",
            "group_member_child_process",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD_ENV, format!("{},{topic},{group}", broker.bootstrap()))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the member process");
    let stdout = child.stdout.take().expect("child stdout");
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            eprintln!("member process: {line}");
            if sender.send(line).is_err() {
                return;
            }
        }
    });
    (child, receiver)
}

#[test]
fn a_closed_and_a_killed_member_leave_the_survivor_with_every_partition() {
    let broker = broker();
    let topic = "groups-failover";
    let group = "failover";
    create_topic(&broker, topic, 6, &[]);
    let config = group_config(&broker.bootstrap(), group);
    let survivor = subscribed(&config, topic);
    let leaving = subscribed(&config, topic);
    let (mut child, lines) = spawn_member(&broker, topic, group);
    let mut received: Received = vec![Vec::new(); 2];
    let mut child_assignment = String::new();
    {
        let refs = [&survivor, &leaving];
        poll_until(
            &broker,
            &refs,
            &mut received,
            "three members share the partitions",
            |_| {
                while let Ok(line) = lines.try_recv() {
                    child_assignment = line;
                }
                let ours = assignment(&survivor).len() + assignment(&leaving).len();
                !assignment(&survivor).is_empty()
                && !assignment(&leaving).is_empty()
                // libtest prints "test <name> ... " before the first line of output.
                && child_assignment.contains("assigned {")
                && !child_assignment.ends_with("assigned {}")
                && ours < 6
            },
        );
    }
    // One leaves properly (LeaveGroup), the other dies without a word.
    drop(leaving);
    child.kill().expect("SIGKILL the member process");
    let _ = child.wait();
    let count = 300;
    produce(&broker, topic, 0..count);
    let refs = [&survivor];
    let mut received: Received = vec![Vec::new()];
    poll_until(
        &broker,
        &refs,
        &mut received,
        "the survivor owns every partition and got everything",
        |received| {
            let ids: BTreeSet<usize> = received[0].iter().copied().collect();
            assignment(&survivor) == (0..6).collect::<BTreeSet<i32>>() && ids.len() == count
        },
    );
}

#[test]
fn committed_offsets_survive_a_broker_restart() {
    let mut broker = broker();
    let topic = "groups-restart";
    let group = "restart";
    create_topic(&broker, topic, 2, &[]);
    produce(&broker, topic, 0..100);
    let mut config = group_config(&broker.bootstrap(), group);
    config.set("enable.auto.commit", "false");
    {
        let consumer = subscribed(&config, topic);
        let refs = [&consumer];
        let mut received: Received = vec![Vec::new()];
        poll_until(&broker, &refs, &mut received, "first 100 consumed", |r| {
            r[0].len() >= 100
        });
        broker.check(
            consumer.commit_consumer_state(CommitMode::Sync),
            "commit the consumer's position",
        );
        let committed = broker.check(
            consumer.committed(Duration::from_secs(30)),
            "read the committed offsets back",
        );
        let total: i64 = committed
            .elements()
            .iter()
            .map(|e| match e.offset() {
                rdkafka::Offset::Offset(offset) => offset,
                other => panic!("partition {} committed {other:?}", e.partition()),
            })
            .sum();
        assert_eq!(total, 100, "committed offsets cover the 100 messages");
    }
    broker.stop();
    broker.restart();
    produce(&broker, topic, 100..150);
    let consumer = subscribed(&config, topic);
    let refs = [&consumer];
    let mut received: Received = vec![Vec::new()];
    poll_until(&broker, &refs, &mut received, "the 50 new messages", |r| {
        r[0].len() >= 50
    });
    for _ in 0..20 {
        poll_all(&refs, &mut received);
    }
    let mut ids = received[0].clone();
    ids.sort_unstable();
    assert_eq!(
        ids,
        (100..150).collect::<Vec<_>>(),
        "resumed at the committed offsets"
    );
}

#[test]
fn a_static_member_gets_its_partitions_back_without_rebalancing_the_others() {
    let broker = broker();
    let topic = "groups-static";
    let group = "static";
    create_topic(&broker, topic, 4, &[]);
    let mut config_a = group_config(&broker.bootstrap(), group);
    config_a
        .set("group.instance.id", "member-a")
        .set("session.timeout.ms", "30000");
    let mut config_b = group_config(&broker.bootstrap(), group);
    config_b
        .set("group.instance.id", "member-b")
        .set("session.timeout.ms", "30000");
    let a = subscribed(&config_a, topic);
    let b = subscribed(&config_b, topic);
    let mut received: Received = vec![Vec::new(); 2];
    poll_until(
        &broker,
        &[&a, &b],
        &mut received,
        "both static members assigned",
        |_| disjoint_cover(&[assignment(&a), assignment(&b)], 4),
    );
    let a_partitions = assignment(&a);
    // Let the group settle (a rebalance in flight would show up in B's counter).
    for _ in 0..40 {
        poll_all(&[&a, &b], &mut received);
    }
    let b_rebalances = b.context().rebalances.load(Ordering::SeqCst);
    // A restarts: static members do not send LeaveGroup on close.
    drop(a);
    let a = subscribed(&config_a, topic);
    poll_until(
        &broker,
        &[&a, &b],
        &mut received,
        "A has its partitions again",
        |_| assignment(&a) == a_partitions,
    );
    for _ in 0..60 {
        poll_all(&[&a, &b], &mut received);
    }
    assert_eq!(
        b.context().rebalances.load(Ordering::SeqCst),
        b_rebalances,
        "B was not rebalanced"
    );
    assert_eq!(assignment(&a), a_partitions);
    assert!(disjoint_cover(&[assignment(&a), assignment(&b)], 4));
}

/// (key, value) of every record in a partition, read from the beginning with a fresh
/// assign-only consumer.
fn read_all(broker: &Broker, topic: &str) -> Vec<(String, String)> {
    let consumer = clients::assigned_consumer(&broker.bootstrap(), topic, &[0]);
    let received = broker.check(
        clients::consume(&consumer, &[0], 0, PHASE_TIMEOUT),
        "read the compacted topic",
    );
    received
        .into_iter()
        .map(|r| {
            (
                String::from_utf8_lossy(&r.key.unwrap_or_default()).into_owned(),
                String::from_utf8_lossy(&r.payload.unwrap_or_default()).into_owned(),
            )
        })
        .collect()
}

fn log_bytes(broker: &Broker, topic: &str) -> u64 {
    let dir = broker.data_dir().join(format!("{topic}-0"));
    std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

#[test]
fn a_compacted_topic_shrinks_to_the_latest_value_per_key() {
    let broker = BrokerOptions::new()
        .shards(2)
        .set("log.cleaner.backoff.ms", "200")
        .set("log.retention.check.interval.ms", "200")
        .start();
    let topic = "groups-compacted";
    create_topic(
        &broker,
        topic,
        1,
        &[
            ("cleanup.policy", "compact"),
            ("segment.bytes", "4096"),
            ("segment.ms", "500"),
            ("min.cleanable.dirty.ratio", "0.01"),
        ],
    );
    let keys = 20;
    let versions = 50;
    let producer = clients::recording_producer(&broker.bootstrap(), "all", "none", &[]);
    let deadline = Instant::now() + PHASE_TIMEOUT;
    for version in 0..versions {
        for key in 0..keys {
            let k = format!("key-{key:02}");
            let v = format!("value-{key:02}-{version:03}");
            let record = BaseRecord::with_opaque_to(topic, version * keys + key)
                .key(k.as_bytes())
                .payload(v.as_bytes())
                .partition(0);
            broker.check(
                clients::send_with_retry(&producer, record, deadline),
                "send",
            );
        }
        // Several batches per version, so that segments roll many times.
        broker.check(producer.flush(PHASE_TIMEOUT), "flush");
    }
    let before = log_bytes(&broker, topic);
    let latest: BTreeMap<String, String> = (0..keys)
        .map(|key| {
            (
                format!("key-{key:02}"),
                format!("value-{key:02}-{:03}", versions - 1),
            )
        })
        .collect();
    let deadline = Instant::now() + PHASE_TIMEOUT;
    loop {
        let records = read_all(&broker, topic);
        let mut last: BTreeMap<String, String> = BTreeMap::new();
        for (key, value) in &records {
            last.insert(key.clone(), value.clone());
        }
        assert_eq!(last, latest, "the latest value of every key is readable");
        if records.len() == keys {
            break;
        }
        if Instant::now() > deadline {
            broker.fail(format!(
                "the topic still has {} records for {keys} keys after {PHASE_TIMEOUT:?}",
                records.len()
            ));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let after = log_bytes(&broker, topic);
    assert!(after * 4 < before, "log shrank: {before} -> {after} bytes");
}

// ---- bad input over the raw protocol -------------------------------------------------------

fn str(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_string())
}

fn join_request(member_id: &str, session_timeout_ms: i32, protocol_type: &str) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(GroupId(str("raw")))
        .with_session_timeout_ms(session_timeout_ms)
        .with_rebalance_timeout_ms(10_000)
        .with_member_id(str(member_id))
        .with_protocol_type(str(protocol_type))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(str("range"))
            .with_metadata(Bytes::from_static(&[0, 0, 0, 0, 0, 0]))])
}

fn commit_request(
    group: &str,
    generation: i32,
    member_id: &str,
    topic: &str,
) -> OffsetCommitRequest {
    OffsetCommitRequest::default()
        .with_group_id(GroupId(str(group)))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(str(member_id))
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(vec![OffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(7)
                .with_committed_metadata(Some(str("meta")))])])
}

fn commit_code(conn: &mut KafkaConn, broker: &Broker, request: OffsetCommitRequest) -> i16 {
    let response = broker.check(conn.round_trip(8, &request), "OffsetCommit v8");
    response.topics[0].partitions[0].error_code
}

#[test]
fn bad_commits_and_heartbeats_get_kafkas_error_codes() {
    let broker = broker();
    create_topic(&broker, "raw-topic", 1, &[]);
    let mut conn = broker.check(KafkaConn::connect(broker.addr()), "connect");
    let versions = broker.check(conn.advertised(ApiKey::JoinGroup), "JoinGroup advertised");
    assert!(versions.1 >= 5, "JoinGroup versions {versions:?}");

    // FindCoordinator v4 (batched keys): this node for every group.
    let found = broker.check(
        conn.round_trip(
            4,
            &FindCoordinatorRequest::default()
                .with_key_type(0)
                .with_coordinator_keys(vec![str("raw"), str("other")]),
        ),
        "FindCoordinator v4",
    );
    assert_eq!(found.coordinators.len(), 2);
    assert!(found
        .coordinators
        .iter()
        .all(|c| c.error_code == code::NONE && c.port == i32::from(broker.port())));

    // A commit with a generation for a group that does not exist.
    assert_eq!(
        commit_code(
            &mut conn,
            &broker,
            commit_request("raw", 5, "nobody", "raw-topic")
        ),
        code::ILLEGAL_GENERATION
    );
    // Session timeout out of range; empty group id.
    let bad = broker.check(
        conn.round_trip(5, &join_request("", 1000, "consumer")),
        "JoinGroup",
    );
    assert_eq!(bad.error_code, code::INVALID_SESSION_TIMEOUT);
    let bad = broker.check(
        conn.round_trip(
            5,
            &join_request("", 10_000, "consumer").with_group_id(GroupId(str(""))),
        ),
        "JoinGroup",
    );
    assert_eq!(bad.error_code, code::INVALID_GROUP_ID);

    // Member id handshake (v4+), then the join completes with this member as leader.
    let first = broker.check(
        conn.round_trip(5, &join_request("", 10_000, "consumer")),
        "JoinGroup",
    );
    assert_eq!(first.error_code, code::MEMBER_ID_REQUIRED);
    let member = first.member_id.to_string();
    assert!(!member.is_empty());
    let joined = broker.check(
        conn.round_trip(5, &join_request(&member, 10_000, "consumer")),
        "JoinGroup",
    );
    assert_eq!(joined.error_code, code::NONE);
    assert_eq!(joined.leader.as_str(), member);
    let generation = joined.generation_id;
    assert!(generation >= 1);
    // Not the group's protocol type.
    let other = broker.check(
        conn.round_trip(5, &join_request("", 10_000, "connect")),
        "JoinGroup",
    );
    assert_eq!(other.error_code, code::INCONSISTENT_GROUP_PROTOCOL);

    // Before SyncGroup completes, a commit gets REBALANCE_IN_PROGRESS.
    assert_eq!(
        commit_code(
            &mut conn,
            &broker,
            commit_request("raw", generation, &member, "raw-topic")
        ),
        code::REBALANCE_IN_PROGRESS
    );
    let synced = broker.check(
        conn.round_trip(
            3,
            &SyncGroupRequest::default()
                .with_group_id(GroupId(str("raw")))
                .with_generation_id(generation)
                .with_member_id(str(&member))
                .with_assignments(vec![SyncGroupRequestAssignment::default()
                    .with_member_id(str(&member))
                    .with_assignment(Bytes::from_static(b"assignment"))]),
        ),
        "SyncGroup",
    );
    assert_eq!(synced.error_code, code::NONE);
    assert_eq!(&synced.assignment[..], b"assignment");

    let heartbeat = |conn: &mut KafkaConn, member: &str, generation: i32| {
        let request = HeartbeatRequest::default()
            .with_group_id(GroupId(str("raw")))
            .with_generation_id(generation)
            .with_member_id(str(member));
        broker
            .check(conn.round_trip(3, &request), "Heartbeat")
            .error_code
    };
    assert_eq!(heartbeat(&mut conn, &member, generation), code::NONE);
    assert_eq!(
        heartbeat(&mut conn, &member, generation - 1),
        code::ILLEGAL_GENERATION
    );
    assert_eq!(
        heartbeat(&mut conn, "stranger", generation),
        code::UNKNOWN_MEMBER_ID
    );

    // Commits: unknown member, stale generation, simple commit into an active group, unknown
    // topic, then a good one.
    assert_eq!(
        commit_code(
            &mut conn,
            &broker,
            commit_request("raw", generation, "stranger", "raw-topic")
        ),
        code::UNKNOWN_MEMBER_ID
    );
    assert_eq!(
        commit_code(
            &mut conn,
            &broker,
            commit_request("raw", generation - 1, &member, "raw-topic")
        ),
        code::ILLEGAL_GENERATION
    );
    assert_eq!(
        commit_code(
            &mut conn,
            &broker,
            commit_request("raw", -1, "", "raw-topic")
        ),
        code::UNKNOWN_MEMBER_ID
    );
    assert_eq!(
        commit_code(
            &mut conn,
            &broker,
            commit_request("raw", generation, &member, "no-such-topic")
        ),
        code::UNKNOWN_TOPIC_OR_PARTITION
    );
    assert_eq!(
        commit_code(
            &mut conn,
            &broker,
            commit_request("raw", generation, &member, "raw-topic")
        ),
        code::NONE
    );
    // A simple consumer (generation -1, no member id) commits to its own group.
    assert_eq!(
        commit_code(
            &mut conn,
            &broker,
            commit_request("simple", -1, "", "raw-topic")
        ),
        code::NONE
    );

    // OffsetFetch v8, two groups at once.
    let fetched = broker.check(
        conn.round_trip(
            8,
            &OffsetFetchRequest::default().with_groups(vec![
                OffsetFetchRequestGroup::default()
                    .with_group_id(GroupId(str("raw")))
                    .with_topics(Some(vec![OffsetFetchRequestTopics::default()
                        .with_name(topic_name("raw-topic"))
                        .with_partition_indexes(vec![0])])),
                // A null topic list: every committed partition of the group.
                OffsetFetchRequestGroup::default()
                    .with_group_id(GroupId(str("simple")))
                    .with_topics(None),
            ]),
        ),
        "OffsetFetch v8",
    );
    let offsets: HashMap<String, (i64, String)> = fetched
        .groups
        .iter()
        .map(|g| {
            let p = &g.topics[0].partitions[0];
            (
                g.group_id.to_string(),
                (
                    p.committed_offset,
                    p.metadata
                        .as_ref()
                        .map(|m| m.to_string())
                        .unwrap_or_default(),
                ),
            )
        })
        .collect();
    assert_eq!(offsets["raw"], (7, "meta".to_string()));
    assert_eq!(offsets["simple"], (7, "meta".to_string()));

    // A non-empty group cannot be deleted; an unknown one is not found.
    let delete = |conn: &mut KafkaConn, group: &str| {
        let request = DeleteGroupsRequest::default().with_groups_names(vec![GroupId(str(group))]);
        broker
            .check(conn.round_trip(2, &request), "DeleteGroups")
            .results[0]
            .error_code
    };
    assert_eq!(delete(&mut conn, "raw"), code::NON_EMPTY_GROUP);
    assert_eq!(delete(&mut conn, "never-existed"), code::GROUP_ID_NOT_FOUND);

    // Static member fencing: a second instance id conflict.
    let listed = broker.check(
        conn.round_trip(4, &ListGroupsRequest::default()),
        "ListGroups",
    );
    let states: HashMap<String, String> = listed
        .groups
        .iter()
        .map(|g| (g.group_id.to_string(), g.group_state.to_string()))
        .collect();
    assert_eq!(states.get("raw").map(String::as_str), Some("Stable"));

    // The member leaves; the group empties and can be deleted.
    let left = broker.check(
        conn.round_trip(
            3,
            &LeaveGroupRequest::default()
                .with_group_id(GroupId(str("raw")))
                .with_members(vec![MemberIdentity::default().with_member_id(str(&member))]),
        ),
        "LeaveGroup v3",
    );
    assert_eq!(left.error_code, code::NONE);
    assert_eq!(left.members[0].error_code, code::NONE);
    let deadline = Instant::now() + PHASE_TIMEOUT;
    loop {
        let described = broker.check(
            conn.round_trip(
                5,
                &DescribeGroupsRequest::default().with_groups(vec![GroupId(str("raw"))]),
            ),
            "DescribeGroups",
        );
        if described.groups[0].group_state.as_str() == "Empty" {
            break;
        }
        assert!(Instant::now() < deadline, "group never became empty");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(delete(&mut conn, "raw"), code::NONE);
    let described = broker.check(
        conn.round_trip(
            6,
            &DescribeGroupsRequest::default().with_groups(vec![GroupId(str("raw"))]),
        ),
        "DescribeGroups v6",
    );
    assert_eq!(described.groups[0].error_code, code::GROUP_ID_NOT_FOUND);
}

#[test]
fn a_second_static_member_with_the_same_instance_id_fences_the_first() {
    let broker = broker();
    let mut conn = broker.check(KafkaConn::connect(broker.addr()), "connect");
    let static_join = |member: &str| {
        join_request(member, 10_000, "consumer").with_group_instance_id(Some(str("instance-1")))
    };
    let first = broker.check(conn.round_trip(5, &static_join("")), "JoinGroup");
    assert_eq!(
        first.error_code,
        code::NONE,
        "static members skip the member id handshake"
    );
    let old_member = first.member_id.to_string();
    let generation = first.generation_id;
    let synced = broker.check(
        conn.round_trip(
            3,
            &SyncGroupRequest::default()
                .with_group_id(GroupId(str("raw")))
                .with_generation_id(generation)
                .with_member_id(str(&old_member))
                .with_group_instance_id(Some(str("instance-1")))
                .with_assignments(vec![SyncGroupRequestAssignment::default()
                    .with_member_id(str(&old_member))
                    .with_assignment(Bytes::from_static(b"mine"))]),
        ),
        "SyncGroup",
    );
    assert_eq!(synced.error_code, code::NONE);
    // The same instance id joins again (a restarted process): same generation, new member id.
    let second = broker.check(conn.round_trip(5, &static_join("")), "JoinGroup");
    assert_eq!(second.error_code, code::NONE);
    assert_eq!(second.generation_id, generation, "no rebalance");
    assert_ne!(second.member_id.to_string(), old_member);
    // The old member id is fenced.
    let heartbeat = HeartbeatRequest::default()
        .with_group_id(GroupId(str("raw")))
        .with_generation_id(generation)
        .with_member_id(str(&old_member))
        .with_group_instance_id(Some(str("instance-1")));
    let answer = broker.check(conn.round_trip(3, &heartbeat), "Heartbeat");
    assert_eq!(answer.error_code, code::FENCED_INSTANCE_ID);
}
