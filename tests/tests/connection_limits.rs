//! Connection limits against the real broker: `connections.max.idle.ms` closes connections that
//! have been idle that long (but not one waiting on a long-polling fetch), and
//! `max.connections` keeps further connections waiting in the accept queue until one closes.

use std::time::Duration;

use kafka_protocol::messages::{ApiKey, ApiVersionsRequest};
use vaart_tests::cli::vaart_tool;
use vaart_tests::wire::{error_code, KafkaConn, WireError, IO_TIMEOUT};
use vaart_tests::BrokerOptions;

#[test]
fn idle_connections_are_closed_but_waiting_fetches_are_not() {
    let broker = BrokerOptions::new()
        .shards(1)
        .set("connections.max.idle.ms", "300")
        .start();
    let mut idle = broker.check(KafkaConn::connect(broker.addr()), "connect");
    broker.check(idle.api_versions_raw(3), "ApiVersions");
    // Nothing more is sent: the broker closes it (bounded wait, not a timing assertion).
    broker.check(
        idle.expect_closed(Duration::from_secs(20)),
        "idle connection closed",
    );

    // A fetch long-polling for longer than the idle limit is a request in progress.
    let mut waiting = broker.check(KafkaConn::connect(broker.addr()), "connect");
    assert_eq!(
        broker.check(waiting.create_topic("quiet", 1, &[]), "CreateTopics"),
        error_code::NONE
    );
    let data = broker.check(waiting.fetch("quiet", 0, 0, 1_500), "long-polling fetch");
    assert_eq!(data.error_code, error_code::NONE);
    broker.check(waiting.api_versions_raw(3), "still usable after the fetch");
}

#[test]
fn connections_beyond_max_connections_wait_until_one_closes() {
    let broker = BrokerOptions::new()
        .shards(1)
        .set("max.connections", "2")
        .start();
    let mut first = broker.check(KafkaConn::connect(broker.addr()), "connect 1");
    let mut second = broker.check(KafkaConn::connect(broker.addr()), "connect 2");
    broker.check(first.api_versions_raw(3), "ApiVersions on 1");
    broker.check(second.api_versions_raw(3), "ApiVersions on 2");

    // The third completes the TCP handshake (kernel backlog) but is not served yet.
    let mut third = broker.check(
        KafkaConn::connect_with_timeout(broker.addr(), Duration::from_millis(500)),
        "connect 3",
    );
    let request = ApiVersionsRequest::default();
    let correlation_id = broker.check(third.send_request(3, &request), "send on 3");
    match third.recv_response::<ApiVersionsRequest>(3, correlation_id) {
        Err(WireError::Io { .. }) => {}
        other => panic!("the third connection was served beyond max.connections: {other:?}"),
    }
    // One closes: the waiting connection is accepted and answered.
    drop(first);
    broker.check(
        third.stream().set_read_timeout(Some(IO_TIMEOUT)),
        "set_read_timeout",
    );
    let response = broker.check(
        third.recv_response::<ApiVersionsRequest>(3, correlation_id),
        "ApiVersions on 3 after a slot freed",
    );
    assert_eq!(response.error_code, error_code::NONE);
    assert!(response
        .api_keys
        .iter()
        .any(|api| api.api_key == ApiKey::InitProducerId as i16));
}

/// The shards' sockets share their port with SO_REUSEPORT, which would also let a second
/// broker join a port another one listens on and take a share of its connections. Like Kafka,
/// a second broker on a port in use refuses to start, and the first keeps serving.
#[test]
fn a_second_broker_on_a_port_in_use_refuses_to_start() {
    let broker = BrokerOptions::new().shards(2).start();
    let workdir = broker.check(tempfile::tempdir(), "temp dir");
    let data_dir = workdir.path().join("data");
    let bootstrap = broker.bootstrap();
    let metrics = format!(
        "metrics.listen=127.0.0.1:{}",
        vaart_tests::broker::free_port()
    );
    let journal = format!("produce.ack.journal.dir={}", workdir.path().display());
    let second = vaart_tool(
        &[
            "start",
            "--listen",
            &bootstrap,
            "--data-dir",
            &data_dir.display().to_string(),
            "--shards",
            "2",
            "--set",
            &metrics,
            "--set",
            &journal,
        ],
        b"",
    );
    let stderr = second.assert_failure();
    assert!(
        stderr.contains(&format!("listen address {bootstrap} is in use")),
        "the error names the address in use: {stderr}"
    );
    let mut conn = broker.check(KafkaConn::connect(broker.addr()), "connect");
    broker.check(
        conn.api_versions_raw(3),
        "ApiVersions after the second start failed",
    );
}
