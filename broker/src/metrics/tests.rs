#![allow(clippy::unwrap_used)]

use std::time::Duration;

use kafka_protocol::messages::ApiKey;
use vaart_engine::{WriterStats, FLUSH_LATENCY_BOUNDS_US};

use super::merge::{check_exposition, merge};
use super::{add_writer_stats, FetchWaitEnd, ScrapeSample, ShardMetrics};
use crate::groups::state::GroupState;
use crate::protocol::KafkaError;
use crate::types::ShardId;

fn sample<'a>(engine: WriterStats, exists: &'a dyn Fn(&str) -> bool) -> ScrapeSample<'a> {
    ScrapeSample {
        partitions: 3,
        leaders: 3,
        connections_open: 1,
        groups_by_state: vec![(GroupState::Stable, 2)],
        group_members: 4,
        engine,
        journal: None,
        read_ahead: Default::default(),
        topic_exists: exists,
    }
}

fn flushed(count: u64) -> WriterStats {
    let mut stats = WriterStats {
        flushes: count,
        flush_nanos_total: count * 1_000_000,
        bytes_written: count * 4096,
        ..WriterStats::default()
    };
    stats.flush_latency_buckets[3] = count;
    stats
}

/// Sum of the values of the samples named `name` whose line contains `filter`.
fn value(text: &str, name: &str, filter: &str) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| line.split(['{', ' ']).next() == Some(name) && line.contains(filter))
        .map(|line| line.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

fn busy_shard(id: usize) -> ShardMetrics {
    let metrics = ShardMetrics::new(ShardId(id));
    metrics.request_received(ApiKey::Produce, 9);
    metrics.request_completed(ApiKey::Produce, 9, Duration::from_micros(300));
    metrics.request_received(ApiKey::Fetch, 12);
    metrics.request_completed(ApiKey::Fetch, 12, Duration::from_millis(40));
    metrics.request_failed(ApiKey::Metadata);
    metrics.kafka_error(ApiKey::Produce, KafkaError::UnknownTopicOrPartition);
    metrics.appended("orders", 1_000, 10);
    metrics.appended("quoted \"topic\"\\", 5, 1);
    metrics.fetched("orders", 700);
    metrics.fetch_waited(Duration::from_millis(20), FetchWaitEnd::Data);
    metrics.fetch_waited(Duration::from_millis(500), FetchWaitEnd::Timeout);
    metrics.connection_accepted();
    metrics
}

#[test]
fn merged_exposition_is_valid_and_names_each_family_once() {
    let exists = |_: &str| true;
    let texts: Vec<String> = (0..3)
        .map(|id| busy_shard(id).encode(&sample(flushed(2), &exists)).unwrap())
        .collect();
    for text in &texts {
        check_exposition(text).unwrap();
    }
    // Plain concatenation repeats every family: the checker must catch that.
    assert!(check_exposition(&texts.concat()).is_err());

    let merged = merge(&texts);
    check_exposition(&merged).unwrap_or_else(|err| panic!("{err}\n{merged}"));
    let types: Vec<&str> = merged
        .lines()
        .filter(|line| line.starts_with("# TYPE "))
        .collect();
    let mut unique = types.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(types.len(), unique.len(), "{merged}");
    let helps = merged.lines().filter(|l| l.starts_with("# HELP ")).count();
    assert_eq!(helps, types.len());
    for family in [
        "vaart_requests_total",
        "vaart_request_duration_seconds",
        "vaart_request_errors_total",
        "vaart_produce_bytes_total",
        "vaart_produce_records_total",
        "vaart_fetch_bytes_total",
        "vaart_partitions",
        "vaart_partition_leaders",
        "vaart_fetch_waits_total",
        "vaart_fetch_wait_duration_seconds",
        "vaart_fetch_wait_ends_total",
        "vaart_log_flush_duration_seconds",
        "vaart_log_written_bytes_total",
        "vaart_ack_journal_used_bytes",
        "vaart_ack_journal_capacity_bytes",
        "vaart_ack_journal_full_total",
        "vaart_read_ahead_hit_bytes_total",
        "vaart_read_ahead_miss_bytes_total",
        "vaart_consumer_groups",
        "vaart_consumer_group_members",
        "vaart_connections_open",
        "vaart_connections_accepted_total",
    ] {
        assert!(
            types
                .iter()
                .any(|line| line.split(' ').nth(2) == Some(family)),
            "{family} missing:\n{merged}"
        );
    }
    // Every shard's samples are there, under their own label.
    for shard in 0..3 {
        let label = format!("shard=\"{shard}\"");
        assert_eq!(
            value(
                &merged,
                "vaart_requests_total",
                &format!("{label},api=\"Produce\",version=\"9\"")
            ),
            1.0,
            "{merged}"
        );
    }
    assert_eq!(
        value(&merged, "vaart_produce_bytes_total", "topic=\"orders\""),
        3_000.0
    );
    assert_eq!(
        value(&merged, "vaart_fetch_bytes_total", "topic=\"orders\""),
        2_100.0
    );
    assert_eq!(
        value(
            &merged,
            "vaart_request_errors_total",
            "error=\"UnknownTopicOrPartition\""
        ),
        3.0
    );
    assert_eq!(
        value(
            &merged,
            "vaart_request_errors_total",
            "error=\"ConnectionClosed\""
        ),
        3.0
    );
    assert_eq!(value(&merged, "vaart_fetch_waits_total", ""), 6.0);
    assert_eq!(
        value(&merged, "vaart_fetch_wait_ends_total", "reason=\"timeout\""),
        3.0
    );
    assert_eq!(value(&merged, "vaart_partition_leaders", ""), 9.0);
    assert_eq!(
        value(&merged, "vaart_consumer_groups", "state=\"Stable\""),
        6.0
    );
    assert_eq!(
        value(&merged, "vaart_consumer_groups", "state=\"Empty\""),
        0.0
    );
    assert_eq!(
        value(&merged, "vaart_log_flush_duration_seconds_count", ""),
        6.0
    );
}

#[test]
fn engine_totals_never_go_down() {
    let metrics = ShardMetrics::new(ShardId(0));
    let exists = |_: &str| true;
    let count = |text: &str| value(text, "vaart_log_flush_duration_seconds_count", "");
    let first = metrics.encode(&sample(flushed(5), &exists)).unwrap();
    assert_eq!(count(&first), 5.0);
    assert_eq!(
        value(&first, "vaart_log_written_bytes_total", ""),
        5.0 * 4096.0
    );
    // A log closed: the engine's sum drops. The exported counters stay.
    let second = metrics.encode(&sample(flushed(1), &exists)).unwrap();
    assert_eq!(count(&second), 5.0);
    // Growth after that is added on top.
    let third = metrics.encode(&sample(flushed(4), &exists)).unwrap();
    assert_eq!(count(&third), 8.0);
    let bucket = format!("le=\"{}\"", FLUSH_LATENCY_BOUNDS_US[3] as f64 / 1e6);
    assert!(
        third.contains(&bucket),
        "bucket bound {bucket} missing:\n{third}"
    );
    check_exposition(&third).unwrap();
}

#[test]
fn deleted_topics_are_forgotten() {
    let metrics = ShardMetrics::new(ShardId(0));
    metrics.appended("kept", 10, 1);
    metrics.appended("deleted", 10, 1);
    let exists = |topic: &str| topic == "kept";
    let text = metrics
        .encode(&sample(WriterStats::default(), &exists))
        .unwrap();
    assert!(text.contains("topic=\"kept\""));
    assert!(!text.contains("topic=\"deleted\""), "{text}");
}

#[test]
fn writer_stats_add_up() {
    let mut total = WriterStats::default();
    add_writer_stats(&mut total, &flushed(2));
    add_writer_stats(&mut total, &flushed(3));
    assert_eq!(total, flushed(5));
}

#[test]
fn checker_rejects_malformed_expositions() {
    let ok = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\",y=\"q\\\"\\\\\\n\"} 3\n";
    check_exposition(ok).unwrap();
    for bad in [
        "# TYPE a counter\nb 1\n",
        "# TYPE a counter\na{x=\"1\"} 1\na{x=\"1\"} 2\n",
        "# TYPE a counter\na{x=1} 1\n",
        "# TYPE a counter\na{x=\"1\",x=\"2\"} 1\n",
        "# TYPE a counter\na one\n",
        "# TYPE a counter\n# TYPE a counter\n",
        "# TYPE a counter\na 1\n# HELP a late\n",
        "a 1\n",
        "# TYPE a wat\n",
    ] {
        assert!(check_exposition(bad).is_err(), "accepted {bad:?}");
    }
}

#[test]
fn merge_keeps_first_appearance_order_and_one_header() {
    let one = "# HELP a A.\n# TYPE a gauge\na{shard=\"0\"} 1\n# HELP b B.\n# TYPE b gauge\nb{shard=\"0\"} 2\n";
    let two = "# HELP b B.\n# TYPE b gauge\nb{shard=\"1\"} 3\n# HELP c C.\n# TYPE c gauge\nc{shard=\"1\"} 4\n";
    let merged = merge(&[one, two]);
    assert_eq!(
        merged,
        "# HELP a A.\n# TYPE a gauge\na{shard=\"0\"} 1\n\
         # HELP b B.\n# TYPE b gauge\nb{shard=\"0\"} 2\nb{shard=\"1\"} 3\n\
         # HELP c C.\n# TYPE c gauge\nc{shard=\"1\"} 4\n"
    );
    check_exposition(&merged).unwrap();
}
