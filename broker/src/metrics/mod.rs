//! Prometheus metrics, per shard: each shard owns one registry (every series carries its
//! `shard` label) and updates it from its own tasks only; nothing is shared across shards.
//! On a scrape, the shard serving the HTTP request asks every other shard over the mesh for
//! its encoded registry and merges the texts into one exposition.
//!
//! - [`http`]: the `/metrics` HTTP/1.1 endpoint (`metrics.listen`, served by shard 0) and the
//!   scrape across shards.
//! - [`merge`]: merging the shards' expositions (each family once) and a checker for the
//!   text format.
//!
//! Hot-path cost: label sets are resolved once and their metric handles cached in small
//! per-shard tables (by API key and version, by topic name), so counting a request is a table
//! lookup and an atomic add, with no allocation.

pub mod http;
pub mod merge;

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafka_protocol::messages::ApiKey;
use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use vaart_engine::read_ahead::ReadAheadStats;
use vaart_engine::{JournalStats, WriterStats, FLUSH_LATENCY_BOUNDS_US};

use crate::groups::state::GroupState;
use crate::protocol::KafkaError;
use crate::types::ShardId;

/// Request latency bucket bounds, seconds (Fetch long-polls reach `fetch.max.wait.ms`).
const REQUEST_SECONDS_BOUNDS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];
/// Fetch long-poll wait bucket bounds, seconds.
const FETCH_WAIT_SECONDS_BOUNDS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];
/// API keys the per-API table has slots for (Kafka's keys are below 100).
const API_KEY_SLOTS: usize = 128;
/// API versions the per-API table has slots for (Kafka's versions are below 20).
const API_VERSION_SLOTS: usize = 32;
/// Group states exported (always, so a state with no group shows 0).
const GROUP_STATES: [GroupState; 5] = [
    GroupState::Empty,
    GroupState::PreparingRebalance,
    GroupState::CompletingRebalance,
    GroupState::Stable,
    GroupState::Dead,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApiLabels {
    api: Cow<'static, str>,
    version: i16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    api: Cow<'static, str>,
    error: Cow<'static, str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TopicLabels {
    topic: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

/// Cached handles of one (API, version).
struct ApiHandles {
    requests: Counter,
    seconds: Histogram,
}

/// Cached handles of one topic.
struct TopicHandles {
    produce_bytes: Counter,
    produce_records: Counter,
    fetch_bytes: Counter,
}

/// How a fetch long-poll ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchWaitEnd {
    /// Enough data (or an error) arrived before the deadline.
    Data,
    /// `max_wait_ms` passed (or the broker began shutting down).
    Timeout,
}

/// A histogram whose buckets are filled from engine snapshots (the engine keeps plain
/// counters; this only exposes them). `Arc<Mutex>` because prometheus-client requires
/// `Send + Sync` metrics; only the owning shard ever locks it.
#[derive(Debug, Default, Clone)]
struct SnapshotHistogram {
    inner: Arc<Mutex<SnapshotHistogramState>>,
}

#[derive(Debug, Default)]
struct SnapshotHistogramState {
    sum_seconds: f64,
    count: u64,
    /// (upper bound in seconds, count in this bucket alone).
    buckets: Vec<(f64, u64)>,
}

impl EncodeMetric for SnapshotHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let state = self.inner.lock().map_err(|_| std::fmt::Error)?;
        encoder.encode_histogram::<NoLabelSet>(state.sum_seconds, state.count, &state.buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// Engine writer totals over this shard's logs: what was last seen, and what has been
/// exported (grows by the positive differences, so it never goes down when a log closes).
#[derive(Default)]
struct EngineTotals {
    last_seen: WriterStats,
    journal_full_seen: u64,
    read_ahead_seen: ReadAheadStats,
}

/// One shard's metrics. Owned by that shard (a field of `Shard`); never crosses threads
/// except as the encoded text sent to the scraping shard.
pub struct ShardMetrics {
    shard: ShardId,
    registry: Registry,
    requests: Family<ApiLabels, Counter>,
    request_seconds: Family<ApiLabels, Histogram>,
    request_errors: Family<ErrorLabels, Counter>,
    produce_bytes: Family<TopicLabels, Counter>,
    produce_records: Family<TopicLabels, Counter>,
    fetch_bytes: Family<TopicLabels, Counter>,
    partitions: Gauge,
    leaders: Gauge,
    fetch_waits: Counter,
    fetch_wait_seconds: Histogram,
    fetch_wait_data: Counter,
    fetch_wait_timeout: Counter,
    flush_seconds: SnapshotHistogram,
    written_bytes: Counter,
    journal_used_bytes: Gauge,
    journal_capacity_bytes: Gauge,
    journal_full: Counter,
    read_ahead_hit_bytes: Counter,
    read_ahead_miss_bytes: Counter,
    groups: Vec<(GroupState, Gauge)>,
    group_members: Gauge,
    connections_open: Gauge,
    connections_accepted: Counter,
    /// (API key, version) -> handles; slot `key * API_VERSION_SLOTS + version`.
    apis: RefCell<Vec<Option<ApiHandles>>>,
    /// (API key, Kafka error code) -> counter.
    errors: RefCell<HashMap<(i16, i16), Counter>>,
    /// Topic name -> handles. Topics that no longer exist are dropped at scrape time.
    topics: RefCell<HashMap<String, TopicHandles>>,
    engine: RefCell<EngineTotals>,
}

impl ShardMetrics {
    /// Creates shard `shard`'s registry with every family registered.
    pub fn new(shard: ShardId) -> ShardMetrics {
        let mut registry = Registry::with_labels(std::iter::once((
            Cow::Borrowed("shard"),
            Cow::Owned(shard.0.to_string()),
        )));
        let requests = Family::<ApiLabels, Counter>::default();
        registry.register(
            "vaart_requests",
            "Kafka requests received, by API and version",
            requests.clone(),
        );
        let request_seconds =
            Family::<ApiLabels, Histogram>::new_with_constructor(request_histogram as fn() -> _);
        registry.register(
            "vaart_request_duration_seconds",
            "Time from a request decoded to its response written, by API and version",
            request_seconds.clone(),
        );
        let request_errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "vaart_request_errors",
            "Errors answered, by API and Kafka error name (per partition for Produce and Fetch); ConnectionClosed = the request closed the connection",
            request_errors.clone(),
        );
        let produce_bytes = Family::<TopicLabels, Counter>::default();
        registry.register(
            "vaart_produce_bytes",
            "Record batch bytes appended to the topic's partitions owned by this shard",
            produce_bytes.clone(),
        );
        let produce_records = Family::<TopicLabels, Counter>::default();
        registry.register(
            "vaart_produce_records",
            "Records appended to the topic's partitions owned by this shard",
            produce_records.clone(),
        );
        let fetch_bytes = Family::<TopicLabels, Counter>::default();
        registry.register(
            "vaart_fetch_bytes",
            "Record bytes sent to fetchers of the topic by connections of this shard",
            fetch_bytes.clone(),
        );
        let partitions = Gauge::default();
        registry.register(
            "vaart_partitions",
            "Partitions placed on this shard",
            partitions.clone(),
        );
        let leaders = Gauge::default();
        registry.register(
            "vaart_partition_leaders",
            "Partitions this shard leads (open partition logs)",
            leaders.clone(),
        );
        let fetch_waits = Counter::default();
        registry.register(
            "vaart_fetch_waits",
            "Fetch requests that long-polled (waited for min_bytes)",
            fetch_waits.clone(),
        );
        let fetch_wait_seconds = Histogram::new(FETCH_WAIT_SECONDS_BOUNDS);
        registry.register(
            "vaart_fetch_wait_duration_seconds",
            "How long fetch long-polls waited",
            fetch_wait_seconds.clone(),
        );
        let fetch_wait_ends = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "vaart_fetch_wait_ends",
            "How fetch long-polls ended: data (min_bytes reached or an error) or timeout",
            fetch_wait_ends.clone(),
        );
        let fetch_wait_data = fetch_wait_ends.get_or_create_owned(&ReasonLabels { reason: "data" });
        let fetch_wait_timeout =
            fetch_wait_ends.get_or_create_owned(&ReasonLabels { reason: "timeout" });
        let flush_seconds = SnapshotHistogram::default();
        registry.register(
            "vaart_log_flush_duration_seconds",
            "fdatasync latency of this shard's partition logs (engine writer)",
            flush_seconds.clone(),
        );
        let written_bytes = Counter::default();
        registry.register(
            "vaart_log_written_bytes",
            "Bytes written to segment files of this shard's partition logs",
            written_bytes.clone(),
        );
        let journal_used_bytes = Gauge::default();
        registry.register(
            "vaart_ack_journal_used_bytes",
            "Bytes of this shard's acknowledgement journal held by batches not yet written",
            journal_used_bytes.clone(),
        );
        let journal_capacity_bytes = Gauge::default();
        registry.register(
            "vaart_ack_journal_capacity_bytes",
            "Size of this shard's acknowledgement journal (0: none, answers wait for writes)",
            journal_capacity_bytes.clone(),
        );
        let journal_full = Counter::default();
        registry.register(
            "vaart_ack_journal_full",
            "Produce answers that waited for the disk write because the journal was full",
            journal_full.clone(),
        );
        let read_ahead_hit_bytes = Counter::default();
        registry.register(
            "vaart_read_ahead_hit_bytes",
            "Bytes of sequential disk reads (consumers catching up) served from read-ahead",
            read_ahead_hit_bytes.clone(),
        );
        let read_ahead_miss_bytes = Counter::default();
        registry.register(
            "vaart_read_ahead_miss_bytes",
            "Bytes of sequential disk reads that waited for the disk when asked for",
            read_ahead_miss_bytes.clone(),
        );
        let group_family = Family::<StateLabels, Gauge>::default();
        registry.register(
            "vaart_consumer_groups",
            "Consumer groups coordinated by this shard, by state",
            group_family.clone(),
        );
        let groups = GROUP_STATES
            .iter()
            .map(|state| {
                let gauge = group_family.get_or_create_owned(&StateLabels {
                    state: state.name(),
                });
                (*state, gauge)
            })
            .collect();
        let group_members = Gauge::default();
        registry.register(
            "vaart_consumer_group_members",
            "Members of the consumer groups coordinated by this shard",
            group_members.clone(),
        );
        let connections_open = Gauge::default();
        registry.register(
            "vaart_connections_open",
            "Kafka client connections open on this shard",
            connections_open.clone(),
        );
        let connections_accepted = Counter::default();
        registry.register(
            "vaart_connections_accepted",
            "Kafka client connections accepted by this shard",
            connections_accepted.clone(),
        );
        let mut apis = Vec::new();
        apis.resize_with(API_KEY_SLOTS * API_VERSION_SLOTS, || None);
        ShardMetrics {
            shard,
            registry,
            requests,
            request_seconds,
            request_errors,
            produce_bytes,
            produce_records,
            fetch_bytes,
            partitions,
            leaders,
            fetch_waits,
            fetch_wait_seconds,
            fetch_wait_data,
            fetch_wait_timeout,
            flush_seconds,
            written_bytes,
            journal_used_bytes,
            journal_capacity_bytes,
            journal_full,
            read_ahead_hit_bytes,
            read_ahead_miss_bytes,
            groups,
            group_members,
            connections_open,
            connections_accepted,
            apis: RefCell::new(apis),
            errors: RefCell::new(HashMap::new()),
            topics: RefCell::new(HashMap::new()),
            engine: RefCell::new(EngineTotals::default()),
        }
    }

    /// The shard these metrics belong to.
    pub fn shard(&self) -> ShardId {
        self.shard
    }

    /// Runs `f` on the cached handles of (api, version), creating them on first use.
    /// Versions outside the table are not counted (the router rejects them anyway).
    fn with_api(&self, api: ApiKey, version: i16, f: impl FnOnce(&ApiHandles)) {
        let (Ok(key), Ok(version_slot)) = (usize::try_from(api as i16), usize::try_from(version))
        else {
            return;
        };
        if key >= API_KEY_SLOTS || version_slot >= API_VERSION_SLOTS {
            return;
        }
        let slot = key * API_VERSION_SLOTS + version_slot;
        let mut apis = self.apis.borrow_mut();
        let Some(entry) = apis.get_mut(slot) else {
            return;
        };
        let handles = entry.get_or_insert_with(|| {
            let labels = ApiLabels {
                api: Cow::Owned(format!("{api:?}")),
                version,
            };
            ApiHandles {
                requests: self.requests.get_or_create_owned(&labels),
                seconds: self.request_seconds.get_or_create_owned(&labels),
            }
        });
        f(handles);
    }

    /// A request was decoded and dispatched.
    pub fn request_received(&self, api: ApiKey, version: i16) {
        self.with_api(api, version, |handles| {
            handles.requests.inc();
        });
    }

    /// A request's response was written (or, with acks=0, not needed) `elapsed` after it
    /// was decoded.
    pub fn request_completed(&self, api: ApiKey, version: i16, elapsed: Duration) {
        self.with_api(api, version, |handles| {
            handles.seconds.observe(elapsed.as_secs_f64());
        });
    }

    /// A request failed in a way that closes the connection.
    pub fn request_failed(&self, api: ApiKey) {
        self.count_error(api, -1, || Cow::Borrowed("ConnectionClosed"));
    }

    /// A Kafka error was answered (per partition for Produce and Fetch).
    pub fn kafka_error(&self, api: ApiKey, error: KafkaError) {
        self.count_error(api, error.code(), || Cow::Owned(format!("{error:?}")));
    }

    fn count_error(&self, api: ApiKey, code: i16, name: impl FnOnce() -> Cow<'static, str>) {
        let mut errors = self.errors.borrow_mut();
        let counter = errors.entry((api as i16, code)).or_insert_with(|| {
            self.request_errors.get_or_create_owned(&ErrorLabels {
                api: Cow::Owned(format!("{api:?}")),
                error: name(),
            })
        });
        counter.inc();
    }

    fn with_topic(&self, topic: &str, f: impl FnOnce(&TopicHandles)) {
        let mut topics = self.topics.borrow_mut();
        if let Some(handles) = topics.get(topic) {
            f(handles);
            return;
        }
        let labels = TopicLabels {
            topic: topic.to_string(),
        };
        let handles = TopicHandles {
            produce_bytes: self.produce_bytes.get_or_create_owned(&labels),
            produce_records: self.produce_records.get_or_create_owned(&labels),
            fetch_bytes: self.fetch_bytes.get_or_create_owned(&labels),
        };
        f(&handles);
        topics.insert(labels.topic, handles);
    }

    /// Records appended to a partition of `topic` owned by this shard.
    pub fn appended(&self, topic: &str, bytes: usize, records: u32) {
        self.with_topic(topic, |handles| {
            handles.produce_bytes.inc_by(bytes as u64);
            handles.produce_records.inc_by(u64::from(records));
        });
    }

    /// Record bytes of `topic` put in a Fetch response by this shard.
    pub fn fetched(&self, topic: &str, bytes: usize) {
        if bytes == 0 {
            return;
        }
        self.with_topic(topic, |handles| {
            handles.fetch_bytes.inc_by(bytes as u64);
        });
    }

    /// A fetch long-polled for `waited` and ended by `end`.
    pub fn fetch_waited(&self, waited: Duration, end: FetchWaitEnd) {
        self.fetch_waits.inc();
        self.fetch_wait_seconds.observe(waited.as_secs_f64());
        match end {
            FetchWaitEnd::Data => self.fetch_wait_data.inc(),
            FetchWaitEnd::Timeout => self.fetch_wait_timeout.inc(),
        };
    }

    /// A Kafka connection was accepted.
    pub fn connection_accepted(&self) {
        self.connections_accepted.inc();
    }

    /// Updates what is read at scrape time rather than counted as it happens, then encodes
    /// this shard's registry in the Prometheus text format (0.0.4).
    pub fn encode(&self, sample: &ScrapeSample<'_>) -> Result<String, std::fmt::Error> {
        self.partitions.set(to_i64(sample.partitions));
        self.leaders.set(to_i64(sample.leaders));
        self.connections_open.set(to_i64(sample.connections_open));
        for (state, gauge) in &self.groups {
            let count = sample
                .groups_by_state
                .iter()
                .find(|(s, _)| s == state)
                .map(|(_, n)| *n)
                .unwrap_or(0);
            gauge.set(to_i64(count));
        }
        self.group_members.set(to_i64(sample.group_members));
        self.update_engine(sample.engine);
        self.update_journal(sample.journal);
        self.update_read_ahead(sample.read_ahead);
        self.forget_topics(sample.topic_exists);
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry)?;
        Ok(text)
    }

    /// Adds the growth of the engine writers' totals since the last scrape.
    fn update_engine(&self, current: WriterStats) {
        let mut totals = self.engine.borrow_mut();
        let last = totals.last_seen;
        let grew = |now: u64, before: u64| now.saturating_sub(before);
        self.written_bytes
            .inc_by(grew(current.bytes_written, last.bytes_written));
        if let Ok(mut histogram) = self.flush_seconds.inner.lock() {
            if histogram.buckets.is_empty() {
                histogram.buckets = FLUSH_LATENCY_BOUNDS_US
                    .iter()
                    .map(|&us| us as f64 / 1e6)
                    .chain(std::iter::once(f64::INFINITY))
                    .map(|bound| (bound, 0))
                    .collect();
            }
            let mut added = 0u64;
            for ((_, count), (now, before)) in histogram.buckets.iter_mut().zip(
                current
                    .flush_latency_buckets
                    .iter()
                    .zip(last.flush_latency_buckets.iter()),
            ) {
                let delta = grew(*now, *before);
                *count = count.saturating_add(delta);
                added = added.saturating_add(delta);
            }
            histogram.count = histogram.count.saturating_add(added);
            histogram.sum_seconds +=
                grew(current.flush_nanos_total, last.flush_nanos_total) as f64 / 1e9;
        }
        totals.last_seen = current;
    }

    /// Reads the acknowledgement journal's gauges and the growth of its full count.
    fn update_journal(&self, journal: Option<JournalStats>) {
        let journal = journal.unwrap_or_default();
        self.journal_used_bytes
            .set(i64::try_from(journal.used_bytes).unwrap_or(i64::MAX));
        self.journal_capacity_bytes
            .set(i64::try_from(journal.capacity_bytes).unwrap_or(i64::MAX));
        let mut totals = self.engine.borrow_mut();
        self.journal_full
            .inc_by(journal.full_count.saturating_sub(totals.journal_full_seen));
        totals.journal_full_seen = journal.full_count;
    }

    /// Adds the growth of the shard's read-ahead counters.
    fn update_read_ahead(&self, current: ReadAheadStats) {
        let mut totals = self.engine.borrow_mut();
        let last = totals.read_ahead_seen;
        self.read_ahead_hit_bytes
            .inc_by(current.hit_bytes.saturating_sub(last.hit_bytes));
        self.read_ahead_miss_bytes
            .inc_by(current.miss_bytes.saturating_sub(last.miss_bytes));
        totals.read_ahead_seen = current;
    }

    /// Drops the series of topics that no longer exist (deleted), so they do not accumulate.
    fn forget_topics(&self, exists: &dyn Fn(&str) -> bool) {
        self.topics.borrow_mut().retain(|topic, _| {
            let keep = exists(topic);
            if !keep {
                let labels = TopicLabels {
                    topic: topic.clone(),
                };
                self.produce_bytes.remove(&labels);
                self.produce_records.remove(&labels);
                self.fetch_bytes.remove(&labels);
            }
            keep
        });
    }
}

fn request_histogram() -> Histogram {
    Histogram::new(REQUEST_SECONDS_BOUNDS)
}

fn to_i64(value: usize) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// What a shard reads from its own state when it is scraped.
pub struct ScrapeSample<'a> {
    /// Partitions placed on the shard by the metadata.
    pub partitions: usize,
    /// Partition logs the shard has open (and leads: a single broker leads every partition).
    pub leaders: usize,
    /// Open Kafka connections.
    pub connections_open: usize,
    /// Consumer groups by state.
    pub groups_by_state: Vec<(GroupState, usize)>,
    /// Members over all groups.
    pub group_members: usize,
    /// Engine writer totals summed over the shard's open logs.
    pub engine: WriterStats,
    /// The shard's acknowledgement journal, if it has one.
    pub journal: Option<JournalStats>,
    /// The shard's read-ahead counters (its thread's).
    pub read_ahead: ReadAheadStats,
    /// Whether a topic still exists.
    pub topic_exists: &'a dyn Fn(&str) -> bool,
}

/// Adds `stats` to `total` (engine counters summed over logs).
pub fn add_writer_stats(total: &mut WriterStats, stats: &WriterStats) {
    total.flushes = total.flushes.saturating_add(stats.flushes);
    total.flush_nanos_total = total
        .flush_nanos_total
        .saturating_add(stats.flush_nanos_total);
    total.bytes_written = total.bytes_written.saturating_add(stats.bytes_written);
    for (sum, count) in total
        .flush_latency_buckets
        .iter_mut()
        .zip(stats.flush_latency_buckets.iter())
    {
        *sum = sum.saturating_add(*count);
    }
}

#[cfg(test)]
mod tests;

impl crate::shard::Shard {
    /// This shard's metrics, encoded (what it answers to a metrics request over the mesh).
    /// Gauges are read from the shard's state now.
    pub fn render_metrics(&self) -> String {
        let metadata = self.metadata();
        let partitions = metadata
            .partitions_per_shard(self.shard_count)
            .get(self.id.0)
            .copied()
            .unwrap_or(0);
        let logs = self.owned_partitions();
        let mut engine = WriterStats::default();
        for partition in &logs {
            add_writer_stats(&mut engine, &partition.log.writer_stats());
        }
        let census = self.groups.census();
        let topic_exists = |topic: &str| metadata.topic(topic).is_some();
        let sample = ScrapeSample {
            partitions,
            leaders: logs.len(),
            connections_open: self.open_connections(),
            groups_by_state: census.by_state,
            group_members: census.members,
            engine,
            journal: self.ack_journal.stats(),
            read_ahead: vaart_engine::read_ahead::stats(),
            topic_exists: &topic_exists,
        };
        match self.metrics.encode(&sample) {
            Ok(text) => text,
            Err(_) => {
                tracing::warn!(shard = %self.id, "metrics encoding failed");
                String::new()
            }
        }
    }
}
