//! `vaart console-consumer`: prints records to stdout, like `kafka-console-consumer`, in the
//! format of Kafka's `DefaultMessageFormatter` (`--property print.key=true` and friends).
//!
//! Without `--group` the tool assigns itself the topic's partitions (or `--partition`) and
//! commits nothing. With `--group` it joins the group (classic protocol, range assignor),
//! starts each partition at the group's committed offset (else `--from-beginning` /
//! `auto.offset.reset`), commits what it printed every `auto.commit.interval.ms` and at exit,
//! and leaves the group. It stops after `--max-messages`, after `--timeout-ms` without a
//! record, on SIGINT/SIGTERM, or when stdout is closed (`| head`), and then prints Kafka's
//! `Processed a total of N messages` on stderr.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use glommio::timer::Timer;
use kafka_protocol::records::TimestampType;
use tracing::debug;
use vaart_client::{
    Client, ClientError, Consumer, ConsumerConfig, ConsumerRecord, GroupMember, GroupMemberConfig,
    Offset, OffsetToCommit, PartitionId, StartOffset,
};

use super::{run_tool, CliError, ConnectArgs};

/// Kafka's `fetch.max.wait.ms` default; shorter when `--timeout-ms` is shorter.
const FETCH_MAX_WAIT_MS: u64 = 500;
/// Kafka's `auto.commit.interval.ms` default.
const AUTO_COMMIT_INTERVAL_MS: u64 = 5_000;
/// Pause of a group member that has no partitions before it looks again.
const IDLE_PAUSE_MS: u64 = 100;

const EXAMPLES: &str = "Examples:
  # Everything in the topic so far, then keep waiting for more (Ctrl-C to stop)
  vaart console-consumer --bootstrap-server 127.0.0.1:9092 --topic lecture --from-beginning

  # Ten records with keys, partitions, offsets and timestamps
  vaart console-consumer --topic lecture --from-beginning --max-messages 10 \\
      --property print.key=true --property print.partition=true \\
      --property print.offset=true --property print.timestamp=true

  # Partition 1 from offset 5; exit after 3 s without a record
  vaart console-consumer --topic lecture --partition 1 --offset 5 --timeout-ms 3000

  # As a member of group 'readers': resume at its committed offsets and commit
  vaart console-consumer --topic lecture --group readers --from-beginning --timeout-ms 5000";

/// Arguments of `vaart console-consumer`.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct ConsoleConsumerArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// The topic to read.
    #[arg(long, value_name = "TOPIC")]
    pub topic: String,
    /// Start at the earliest offset when there is no committed offset (default: latest).
    #[arg(long)]
    pub from_beginning: bool,
    /// Read only this partition (default: all).
    #[arg(long, value_name = "N")]
    pub partition: Option<i32>,
    /// Where --partition starts: earliest, latest or an offset (default: latest).
    #[arg(
        long,
        value_name = "earliest|latest|N",
        requires = "partition",
        conflicts_with = "from_beginning",
        allow_hyphen_values = true
    )]
    pub offset: Option<String>,
    /// Consume as a member of this consumer group (joins, resumes and commits).
    #[arg(long, value_name = "GROUP", conflicts_with = "partition")]
    pub group: Option<String>,
    /// Exit after this many records.
    #[arg(long, value_name = "N")]
    pub max_messages: Option<u64>,
    /// Exit when no record arrives for this long.
    #[arg(long, value_name = "MS")]
    pub timeout_ms: Option<u64>,
    /// Formatter setting, repeatable: print.key, print.value, print.timestamp,
    /// print.partition, print.offset, print.headers (true|false), key.separator,
    /// line.separator, headers.separator, null.literal.
    #[arg(long = "property", value_name = "NAME=VALUE")]
    pub property: Vec<String>,
    /// Consumer setting, repeatable: group.id, client.id, auto.offset.reset,
    /// auto.commit.interval.ms, enable.auto.commit, session.timeout.ms,
    /// heartbeat.interval.ms, fetch.max.wait.ms, fetch.min.bytes,
    /// max.partition.fetch.bytes, isolation.level, group.instance.id.
    #[arg(long = "consumer-property", value_name = "NAME=VALUE")]
    pub consumer_property: Vec<String>,
    /// read_committed or read_uncommitted (default).
    #[arg(long, value_name = "LEVEL")]
    pub isolation_level: Option<String>,
}

/// Runs the tool.
pub fn run(args: ConsoleConsumerArgs) -> ExitCode {
    let stop = Arc::new(AtomicBool::new(false));
    watch_stop_signals(Arc::clone(&stop));
    run_tool(move || async move { consume(args, stop).await })
}

/// SIGINT/SIGTERM (and SIGHUP: the terminal went away) set `stop` (the loop then commits,
/// leaves and exits 0); a second SIGINT exits at once. Best effort: without the signal thread the default action applies.
fn watch_stop_signals(stop: Arc<AtomicBool>) {
    if let Err(error) = crate::signals::block_shutdown_signals() {
        debug!(%error, "cannot block SIGINT/SIGTERM; they will end the tool at once");
        return;
    }
    let (notifier, mut listener) = match UnixStream::pair() {
        Ok(pair) => pair,
        Err(error) => {
            debug!(%error, "no socket pair for the signal thread");
            return;
        }
    };
    if let Err(error) = crate::signals::spawn_signal_thread(Arc::new(vec![OwnedFd::from(notifier)]))
    {
        debug!(%error, "no signal thread");
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("vaart-stop".to_string())
        .spawn(move || {
            let mut byte = [0u8; 1];
            if listener.read_exact(&mut byte).is_ok() {
                stop.store(true, Ordering::SeqCst);
            }
        });
    if let Err(error) = spawned {
        debug!(%error, "no stop thread");
    }
}

/// Where a partition without a committed offset starts.
#[derive(Debug, Clone, Copy)]
enum Reset {
    Earliest,
    Latest,
}

impl Reset {
    fn start(self) -> StartOffset {
        match self {
            Reset::Earliest => StartOffset::Earliest,
            Reset::Latest => StartOffset::Latest,
        }
    }
}

/// The consumer settings gathered from the flags and `--consumer-property`.
struct Settings {
    group: Option<String>,
    client_id: String,
    reset: Reset,
    auto_commit: bool,
    auto_commit_interval_ms: u64,
    session_timeout_ms: Option<i32>,
    heartbeat_interval_ms: Option<u64>,
    instance_id: Option<String>,
    consumer: ConsumerConfig,
}

fn split_setting<'a>(entry: &'a str, flag: &str) -> Result<(&'a str, &'a str), CliError> {
    entry
        .split_once('=')
        .map(|(name, value)| (name.trim(), value))
        .ok_or_else(|| CliError::Usage(format!("{flag} takes NAME=VALUE, got '{entry}'")))
}

fn number<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, CliError> {
    value
        .trim()
        .parse()
        .map_err(|_| CliError::Usage(format!("invalid value '{value}' for {name}")))
}

fn isolation(value: &str) -> Result<i8, CliError> {
    match value.trim() {
        "read_uncommitted" => Ok(0),
        "read_committed" => Ok(1),
        other => Err(CliError::Usage(format!(
            "invalid isolation level '{other}' (read_committed or read_uncommitted)"
        ))),
    }
}

impl Settings {
    fn from_args(args: &ConsoleConsumerArgs) -> Result<Self, CliError> {
        let mut settings = Settings {
            group: args.group.clone(),
            client_id: "console-consumer".to_string(),
            reset: if args.from_beginning {
                Reset::Earliest
            } else {
                Reset::Latest
            },
            auto_commit: true,
            auto_commit_interval_ms: AUTO_COMMIT_INTERVAL_MS,
            session_timeout_ms: None,
            heartbeat_interval_ms: None,
            instance_id: None,
            consumer: ConsumerConfig::default(),
        };
        let mut explicit_reset = false;
        for entry in &args.consumer_property {
            let (name, value) = split_setting(entry, "--consumer-property")?;
            match name {
                "group.id" if settings.group.is_none() => {
                    settings.group = Some(value.to_string());
                }
                "group.id" => {}
                "client.id" => settings.client_id = value.to_string(),
                "auto.offset.reset" => {
                    explicit_reset = true;
                    settings.reset = match value.trim() {
                        "earliest" => Reset::Earliest,
                        "latest" => Reset::Latest,
                        other => {
                            return Err(CliError::Usage(format!(
                                "invalid value '{other}' for auto.offset.reset (earliest or latest)"
                            )))
                        }
                    };
                }
                "enable.auto.commit" => {
                    settings.auto_commit = value.trim().eq_ignore_ascii_case("true");
                }
                "auto.commit.interval.ms" => {
                    settings.auto_commit_interval_ms = number(name, value)?;
                }
                "session.timeout.ms" => settings.session_timeout_ms = Some(number(name, value)?),
                "heartbeat.interval.ms" => {
                    settings.heartbeat_interval_ms = Some(number(name, value)?);
                }
                "group.instance.id" => settings.instance_id = Some(value.to_string()),
                "fetch.max.wait.ms" => settings.consumer.max_wait_ms = number(name, value)?,
                "fetch.min.bytes" => settings.consumer.min_bytes = number(name, value)?,
                "fetch.max.bytes" => settings.consumer.max_bytes = number(name, value)?,
                "max.partition.fetch.bytes" => {
                    settings.consumer.partition_max_bytes = number(name, value)?;
                }
                "isolation.level" => settings.consumer.isolation_level = isolation(value)?,
                // Kafka warns about settings it does not know and goes on.
                other => debug!(setting = other, "consumer property ignored"),
            }
        }
        if args.from_beginning && explicit_reset {
            // Kafka: --from-beginning wins over auto.offset.reset=latest only if they agree.
            if matches!(settings.reset, Reset::Latest) {
                return Err(CliError::Usage(
                    "Can't simultaneously specify --from-beginning and 'auto.offset.reset=latest'"
                        .to_string(),
                ));
            }
        }
        if let Some(level) = &args.isolation_level {
            settings.consumer.isolation_level = isolation(level)?;
        }
        let wait_ms = args.timeout_ms.map_or(FETCH_MAX_WAIT_MS, |timeout| {
            timeout.clamp(1, FETCH_MAX_WAIT_MS)
        });
        let configured = u64::try_from(settings.consumer.max_wait_ms).unwrap_or(0);
        settings.consumer.max_wait_ms =
            i32::try_from(configured.min(wait_ms).max(1)).unwrap_or(i32::MAX);
        settings.consumer.auto_offset_reset = Some(settings.reset.start());
        Ok(settings)
    }
}

/// Kafka's `DefaultMessageFormatter`.
#[derive(Debug, Clone)]
struct Formatter {
    print_timestamp: bool,
    print_partition: bool,
    print_offset: bool,
    print_headers: bool,
    print_key: bool,
    print_value: bool,
    key_separator: Vec<u8>,
    line_separator: Vec<u8>,
    headers_separator: Vec<u8>,
    null_literal: Vec<u8>,
}

impl Default for Formatter {
    fn default() -> Self {
        Self {
            print_timestamp: false,
            print_partition: false,
            print_offset: false,
            print_headers: false,
            print_key: false,
            print_value: true,
            key_separator: b"\t".to_vec(),
            line_separator: b"\n".to_vec(),
            headers_separator: b",".to_vec(),
            null_literal: b"null".to_vec(),
        }
    }
}

impl Formatter {
    fn from_properties(properties: &[String]) -> Result<Self, CliError> {
        let mut formatter = Formatter::default();
        for entry in properties {
            let (name, value) = split_setting(entry, "--property")?;
            let flag = value.trim().eq_ignore_ascii_case("true");
            match name {
                "print.timestamp" => formatter.print_timestamp = flag,
                "print.partition" => formatter.print_partition = flag,
                "print.offset" => formatter.print_offset = flag,
                "print.headers" => formatter.print_headers = flag,
                "print.key" => formatter.print_key = flag,
                "print.value" => formatter.print_value = flag,
                "key.separator" => formatter.key_separator = value.as_bytes().to_vec(),
                "line.separator" => formatter.line_separator = value.as_bytes().to_vec(),
                "headers.separator" => formatter.headers_separator = value.as_bytes().to_vec(),
                "null.literal" => formatter.null_literal = value.as_bytes().to_vec(),
                other => debug!(property = other, "formatter property ignored"),
            }
        }
        Ok(formatter)
    }

    /// Ends a column: the key separator if more columns follow, else the line separator.
    fn separator(&self, out: &mut Vec<u8>, more: bool) {
        if more {
            out.extend_from_slice(&self.key_separator);
        } else {
            out.extend_from_slice(&self.line_separator);
        }
    }

    fn bytes_or_null(&self, out: &mut Vec<u8>, value: Option<&[u8]>) {
        out.extend_from_slice(value.unwrap_or(&self.null_literal));
    }

    /// One record, exactly as Kafka's formatter writes it.
    fn format(&self, record: &ConsumerRecord, out: &mut Vec<u8>) {
        if self.print_timestamp {
            let kind = match record.timestamp_type {
                TimestampType::Creation => "CreateTime",
                TimestampType::LogAppend => "LogAppendTime",
            };
            out.extend_from_slice(format!("{kind}:{}", record.timestamp_ms).as_bytes());
            self.separator(
                out,
                self.print_partition
                    || self.print_offset
                    || self.print_headers
                    || self.print_key
                    || self.print_value,
            );
        }
        if self.print_partition {
            out.extend_from_slice(format!("Partition:{}", record.partition).as_bytes());
            self.separator(
                out,
                self.print_offset || self.print_headers || self.print_key || self.print_value,
            );
        }
        if self.print_offset {
            out.extend_from_slice(format!("Offset:{}", record.offset).as_bytes());
            self.separator(
                out,
                self.print_headers || self.print_key || self.print_value,
            );
        }
        if self.print_headers {
            if record.headers.is_empty() {
                out.extend_from_slice(b"NO_HEADERS");
            } else {
                for (index, (name, value)) in record.headers.iter().enumerate() {
                    if index > 0 {
                        out.extend_from_slice(&self.headers_separator);
                    }
                    out.extend_from_slice(name.as_bytes());
                    out.push(b':');
                    self.bytes_or_null(out, value.as_deref());
                }
            }
            self.separator(out, self.print_key || self.print_value);
        }
        if self.print_key {
            self.bytes_or_null(out, record.key.as_deref());
            self.separator(out, self.print_value);
        }
        if self.print_value {
            self.bytes_or_null(out, record.value.as_deref());
            out.extend_from_slice(&self.line_separator);
        }
    }
}

/// stdout, flushed after every record; a closed pipe ends the tool quietly.
struct Output {
    formatter: Formatter,
    line: Vec<u8>,
    closed: bool,
}

impl Output {
    fn write(&mut self, record: &ConsumerRecord) -> Result<(), CliError> {
        self.line.clear();
        self.formatter.format(record, &mut self.line);
        let mut stdout = io::stdout().lock();
        let written = stdout.write_all(&self.line).and_then(|()| stdout.flush());
        match written {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(())
            }
            Err(source) => Err(CliError::Io {
                what: "writing to stdout",
                source,
            }),
        }
    }
}

/// Whether stdout is a pipe or socket whose reader is gone (`| head` exited). Checked between
/// fetches, so the tool also ends when no further record would reveal it by a failed write.
fn stdout_closed() -> bool {
    let mut stdout = libc::pollfd {
        fd: libc::STDOUT_FILENO,
        events: 0,
        revents: 0,
    };
    // SAFETY: one valid, initialised pollfd and a count of 1; a zero timeout never blocks.
    let ready = unsafe { libc::poll(&mut stdout, 1, 0) };
    ready > 0 && stdout.revents & (libc::POLLERR | libc::POLLHUP) != 0
}

/// What the loop did, for the caller's exit path.
struct Progress {
    printed: u64,
    /// Next offset to commit per partition (what was printed, or where it started).
    consumed: BTreeMap<(String, PartitionId), Offset>,
    committed: BTreeMap<(String, PartitionId), Offset>,
}

impl Progress {
    fn to_commit(&self) -> Vec<OffsetToCommit> {
        self.consumed
            .iter()
            .filter(|(key, offset)| self.committed.get(*key) != Some(*offset))
            .map(|((topic, partition), offset)| OffsetToCommit {
                topic: topic.clone(),
                partition: *partition,
                offset: *offset,
            })
            .collect()
    }

    fn mark_committed(&mut self, offsets: &[OffsetToCommit]) {
        for entry in offsets {
            self.committed
                .insert((entry.topic.clone(), entry.partition), entry.offset);
        }
    }
}

async fn consume(args: ConsoleConsumerArgs, stop: Arc<AtomicBool>) -> Result<(), CliError> {
    let settings = Settings::from_args(&args)?;
    let formatter = Formatter::from_properties(&args.property)?;
    let start = match args.offset.as_deref().map(str::trim) {
        None => settings.reset.start(),
        Some("earliest") => StartOffset::Earliest,
        Some("latest") => StartOffset::Latest,
        Some(offset) => match offset.parse::<i64>() {
            Ok(offset) if offset >= 0 => StartOffset::At(Offset(offset)),
            _ => {
                return Err(CliError::Usage(format!(
                    "The provided offset value '{offset}' is incorrect. Valid values are \
                     'earliest', 'latest', or a non-negative long."
                )))
            }
        },
    };
    let mut config = args.connect.client_config();
    config.connection.client_id = settings.client_id.clone();
    let client = Client::connect(config)
        .await
        .map_err(|source| CliError::Connect {
            bootstrap: args.connect.bootstrap_server.clone(),
            source,
        })?;
    let topic = args.topic.clone();
    let metadata = match client.refresh_topic(&topic).await {
        Err(ClientError::UnknownTopic { .. }) => return Err(CliError::UnknownTopic(topic)),
        other => other?,
    };
    let consumer = Consumer::new(client.clone(), settings.consumer.clone());
    let mut output = Output {
        formatter,
        line: Vec::new(),
        closed: false,
    };
    let mut progress = Progress {
        printed: 0,
        consumed: BTreeMap::new(),
        committed: BTreeMap::new(),
    };
    let member = match &settings.group {
        Some(group) => {
            let mut member_config = GroupMemberConfig::new(group.clone(), vec![topic.clone()]);
            if let Some(session_timeout_ms) = settings.session_timeout_ms {
                member_config.session_timeout_ms = session_timeout_ms;
            }
            if let Some(heartbeat_interval_ms) = settings.heartbeat_interval_ms {
                member_config.heartbeat_interval_ms = heartbeat_interval_ms;
            }
            member_config.instance_id = settings.instance_id.clone();
            let member = GroupMember::join(client.clone(), member_config).await?;
            take_assignment(&member, &consumer, settings.reset, &mut progress).await?;
            Some(member)
        }
        None => {
            match args.partition {
                Some(partition) => {
                    let id = PartitionId(partition);
                    if metadata.partition(id).is_none() {
                        return Err(ClientError::UnknownPartition {
                            topic: topic.clone(),
                            partition: id,
                        }
                        .into());
                    }
                    consumer.assign(&topic, &[(id, start)]).await?;
                }
                None => consumer.assign_all(&topic, start).await?,
            }
            None
        }
    };
    let outcome = read_loop(
        &args,
        &settings,
        &consumer,
        member.as_ref(),
        &mut output,
        &mut progress,
        &stop,
    )
    .await;
    // Commit and leave even after an error, so the group does not wait for a dead member.
    let mut finish: Result<(), CliError> = Ok(());
    if let Some(member) = member {
        if settings.auto_commit {
            let offsets = progress.to_commit();
            if let Err(error) = member.commit(&offsets).await {
                finish = Err(error.into());
            }
        }
        if let Err(error) = member.leave().await {
            debug!(%error, "leaving the group failed");
        }
    }
    client.close();
    eprintln!("Processed a total of {} messages", progress.printed);
    outcome.and(finish)
}

/// Assigns the member's partitions to the consumer, each at its committed offset or else at
/// the reset policy.
async fn take_assignment(
    member: &GroupMember,
    consumer: &Consumer,
    reset: Reset,
    progress: &mut Progress,
) -> Result<(), CliError> {
    consumer.unassign();
    let assignment = member.assignment();
    let committed = member.committed().await?;
    for (topic, partitions) in &assignment {
        let starts: Vec<(PartitionId, StartOffset)> = partitions
            .iter()
            .map(|&partition| {
                let start = committed
                    .get(&(topic.clone(), partition))
                    .map_or(reset.start(), |&offset| StartOffset::At(offset));
                (partition, start)
            })
            .collect();
        consumer.assign(topic, &starts).await?;
    }
    progress.consumed.clear();
    for (topic, partition, position) in consumer.positions() {
        progress
            .consumed
            .insert((topic.to_string(), partition), position);
    }
    progress.committed = committed;
    Ok(())
}

async fn read_loop(
    args: &ConsoleConsumerArgs,
    settings: &Settings,
    consumer: &Consumer,
    member: Option<&GroupMember>,
    output: &mut Output,
    progress: &mut Progress,
    stop: &AtomicBool,
) -> Result<(), CliError> {
    let timeout = args.timeout_ms.map(Duration::from_millis);
    let commit_interval = Duration::from_millis(settings.auto_commit_interval_ms);
    let mut last_record = Instant::now();
    let mut last_commit = Instant::now();
    loop {
        if stop.load(Ordering::SeqCst) || output.closed || stdout_closed() {
            return Ok(());
        }
        if args.max_messages.is_some_and(|max| progress.printed >= max) {
            return Ok(());
        }
        if timeout.is_some_and(|timeout| last_record.elapsed() >= timeout) {
            return Ok(());
        }
        if let Some(member) = member {
            if member.needs_rejoin() {
                if settings.auto_commit {
                    let offsets = progress.to_commit();
                    match member.commit(&offsets).await {
                        Ok(()) => progress.mark_committed(&offsets),
                        Err(error) => debug!(%error, "commit before rejoining failed"),
                    }
                }
                member.rejoin().await?;
                take_assignment(member, consumer, settings.reset, progress).await?;
            }
            if settings.auto_commit && last_commit.elapsed() >= commit_interval {
                let offsets = progress.to_commit();
                match member.commit(&offsets).await {
                    Ok(()) => progress.mark_committed(&offsets),
                    Err(error) => debug!(%error, "periodic commit failed"),
                }
                last_commit = Instant::now();
            }
        }
        if consumer.positions().is_empty() {
            // A member with no partitions (more members than partitions) waits for a
            // rebalance.
            Timer::new(Duration::from_millis(IDLE_PAUSE_MS)).await;
            continue;
        }
        let batches = consumer.poll_batches().await?;
        for (batch, from) in batches {
            for record in batch.records(from)? {
                if args.max_messages.is_some_and(|max| progress.printed >= max) || output.closed {
                    return Ok(());
                }
                output.write(&record)?;
                if output.closed {
                    return Ok(());
                }
                progress.printed += 1;
                last_record = Instant::now();
                progress.consumed.insert(
                    (batch.topic.to_string(), batch.partition),
                    Offset(record.offset.0 + 1),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn record(key: Option<&'static str>, value: Option<&'static str>) -> ConsumerRecord {
        ConsumerRecord {
            topic: "t".into(),
            partition: PartitionId(0),
            offset: Offset(5),
            timestamp_ms: 1_700_000_000_000,
            timestamp_type: TimestampType::Creation,
            key: key.map(|key| Bytes::from_static(key.as_bytes())),
            value: value.map(|value| Bytes::from_static(value.as_bytes())),
            headers: vec![("h".to_owned(), Some(Bytes::from_static(b"v")))],
        }
    }

    fn formatted(properties: &[&str], record: &ConsumerRecord) -> String {
        let properties: Vec<String> = properties.iter().map(|p| (*p).to_string()).collect();
        let formatter = Formatter::from_properties(&properties).expect("properties");
        let mut out = Vec::new();
        formatter.format(record, &mut out);
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn formats_like_kafkas_default_message_formatter() {
        let full = record(Some("k"), Some("v"));
        assert_eq!(formatted(&[], &full), "v\n");
        assert_eq!(
            formatted(
                &[
                    "print.timestamp=true",
                    "print.partition=true",
                    "print.offset=true",
                    "print.key=true"
                ],
                &full
            ),
            "CreateTime:1700000000000\tPartition:0\tOffset:5\tk\tv\n"
        );
        let nulls = record(None, None);
        assert_eq!(
            formatted(&["print.key=true", "key.separator=,"], &nulls),
            "null,null\n"
        );
        assert_eq!(
            formatted(&["print.key=true", "print.value=false"], &full),
            "k\n"
        );
        assert_eq!(formatted(&["print.headers=true"], &full), "h:v\tv\n");
        assert_eq!(formatted(&["line.separator=|"], &full), "v|");
    }
}
