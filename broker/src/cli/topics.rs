//! `vaart topics`: create, list, describe, alter and delete topics, like Kafka's
//! `kafka-topics` (same flags, same output, same error lines; `--topic` is a regular
//! expression except with `--create`, as in Kafka).
//!
//! Output formats (Kafka 3.x/4.x `TopicCommand`):
//! - `--create`: `Created topic T.`
//! - `--list`: one name per line, sorted; internal topics unless `--exclude-internal`.
//! - `--describe`: per topic `Topic: T\tTopicId: ID\tPartitionCount: N\tReplicationFactor: R\t
//!   Configs: k=v,...` (configs whose source is not the built-in default), then one
//!   `\tTopic: T\tPartition: P\tLeader: L\tReplicas: a,b\tIsr: a,b\tElr: N/A\tLastKnownElr: N/A`
//!   line per partition (the ELR fields are what Kafka 4 prints when the broker reports none).
//! - `--alter` and `--delete` print nothing on success.

use std::collections::BTreeSet;
use std::process::ExitCode;

use clap::ArgGroup;
use regex::Regex;
use vaart_client::{
    Admin, ClientError, ConfigSource, KafkaCode, KafkaError, NewTopic, TopicMetadata,
};

use super::{run_tool, CliError, ConnectArgs};

const EXAMPLES: &str = "\
Examples:
  vaart topics --bootstrap-server 127.0.0.1:9092 --list
  vaart topics --bootstrap-server 127.0.0.1:9092 --create --topic lecture --partitions 3 --replication-factor 1
  vaart topics --create --topic events --config retention.ms=86400000 --config cleanup.policy=compact --if-not-exists
  vaart topics --describe --topic lecture
  vaart topics --describe --topic 'lec.*'          (--topic is a regular expression, except with --create)
  vaart topics --alter --topic lecture --partitions 6
  vaart topics --delete --topic lecture --if-exists

Topic configs of an existing topic are changed with `vaart configs --alter --topic T --add-config k=v`.";

/// Kafka's internal topics (`Topic.isInternal`).
const INTERNAL_TOPICS: [&str; 2] = ["__consumer_offsets", "__transaction_state"];

/// Arguments of `vaart topics`.
#[derive(Debug, clap::Args)]
#[command(
    group(ArgGroup::new("action").required(true).args(["list", "create", "describe", "alter", "delete"])),
    after_help = EXAMPLES
)]
pub struct TopicsArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// List all available topics.
    #[arg(long)]
    pub list: bool,
    /// Create a new topic.
    #[arg(long)]
    pub create: bool,
    /// List details for the given topics (all topics without --topic).
    #[arg(long)]
    pub describe: bool,
    /// Increase the number of partitions (--partitions).
    #[arg(long)]
    pub alter: bool,
    /// Delete a topic.
    #[arg(long)]
    pub delete: bool,
    /// The topic to create, alter, describe or delete. A regular expression (matching whole
    /// names), except with --create.
    #[arg(long, value_name = "TOPIC")]
    pub topic: Option<String>,
    /// Partitions of the topic being created (default: the broker's num.partitions) or the
    /// new, larger count with --alter.
    #[arg(long, value_name = "N")]
    pub partitions: Option<i32>,
    /// Replication factor of the topic being created (default: the broker's
    /// default.replication.factor).
    #[arg(long, value_name = "N")]
    pub replication_factor: Option<i32>,
    /// A topic config override for the topic being created; repeatable.
    #[arg(long = "config", value_name = "NAME=VALUE")]
    pub config: Vec<String>,
    /// With --create: succeed silently if the topic already exists.
    #[arg(long)]
    pub if_not_exists: bool,
    /// With --alter, --delete or --describe: do nothing if the topic does not exist.
    #[arg(long)]
    pub if_exists: bool,
    /// Exclude internal topics (__consumer_offsets, ...) when listing or describing.
    #[arg(long)]
    pub exclude_internal: bool,
    /// With --describe: only show topics that have overridden configs.
    #[arg(long)]
    pub topics_with_overrides: bool,
    /// With --describe: only show partitions whose ISR is smaller than their replica set.
    #[arg(long)]
    pub under_replicated_partitions: bool,
    /// With --describe: only show partitions without a live leader.
    #[arg(long)]
    pub unavailable_partitions: bool,
}

/// Runs the tool.
pub fn run(args: TopicsArgs) -> ExitCode {
    run_tool(move || async move {
        check_args(&args)?;
        let admin = Admin::new(args.connect.connect().await?);
        if args.create {
            create(&admin, &args).await
        } else if args.list {
            list(&admin, &args).await
        } else if args.describe {
            describe(&admin, &args).await
        } else if args.alter {
            alter(&admin, &args).await
        } else {
            delete(&admin, &args).await
        }
    })
}

/// Argument checks Kafka's tool makes before it connects.
fn check_args(args: &TopicsArgs) -> Result<(), CliError> {
    let usage = |text: &str| Err(CliError::Usage(text.to_string()));
    if (args.create || args.alter || args.delete) && args.topic.is_none() {
        return usage("--topic must be specified with --create, --alter and --delete");
    }
    if args.partitions.is_some() && !(args.create || args.alter) {
        return usage("--partitions can only be used with --create or --alter");
    }
    if args.alter && args.partitions.is_none() {
        return usage("--alter needs --partitions (the new, larger partition count)");
    }
    if args.replication_factor.is_some() && !args.create {
        return usage("--replication-factor can only be used with --create");
    }
    if !args.config.is_empty() && !args.create {
        return usage(
            "--config can only be used with --create (to change the configs of an existing \
             topic, use `vaart configs --alter`)",
        );
    }
    if args.if_not_exists && !args.create {
        return usage("--if-not-exists can only be used with --create");
    }
    if args.if_exists && !(args.alter || args.delete || args.describe) {
        return usage("--if-exists can only be used with --alter, --delete or --describe");
    }
    if args.partitions.is_some_and(|count| count < 1) {
        return usage("The partitions must be greater than 0");
    }
    if args
        .replication_factor
        .is_some_and(|factor| !(1..=i32::from(i16::MAX)).contains(&factor))
    {
        return usage("The replication factor must be between 1 and 32767 inclusive");
    }
    Ok(())
}

/// A Kafka error as one line: the broker's own message when it sent one (that is what
/// Kafka's tools print), else the error code and resource.
pub(crate) fn broker_error(error: ClientError) -> CliError {
    match error {
        ClientError::Kafka(error) => CliError::Broker(kafka_message(&error)),
        other => CliError::Client(other),
    }
}

fn kafka_message(error: &KafkaError) -> String {
    match &error.message {
        Some(message) if !message.is_empty() => message.clone(),
        _ => error.to_string(),
    }
}

async fn create(admin: &Admin, args: &TopicsArgs) -> Result<(), CliError> {
    let name = args.topic.as_deref().unwrap_or_default();
    let mut topic = NewTopic::new(
        name,
        args.partitions.unwrap_or(-1),
        args.replication_factor
            .and_then(|factor| i16::try_from(factor).ok())
            .unwrap_or(-1),
    );
    for config in &args.config {
        let (key, value) = config
            .split_once('=')
            .filter(|(key, _)| !key.trim().is_empty())
            .ok_or_else(|| {
                CliError::Usage(
                    "Invalid topic config: all configs to be added must be in the format \
                     \"key=val\"."
                        .to_string(),
                )
            })?;
        topic = topic.with_config(key.trim(), value.trim());
    }
    if name.contains('.') || name.contains('_') {
        println!(
            "WARNING: Due to limitations in metric names, topics with a period ('.') or \
             underscore ('_') could collide. To avoid issues it is best to use either, but not both."
        );
    }
    let results = admin.create_topics(&[topic], false).await?;
    for (_, outcome) in results {
        match outcome {
            Ok(()) => println!("Created topic {name}."),
            Err(error) if error.code == KafkaCode::TOPIC_ALREADY_EXISTS && args.if_not_exists => {}
            Err(error) => return Err(CliError::Broker(kafka_message(&error))),
        }
    }
    Ok(())
}

/// Which topics `--topic` names: Kafka's `IncludeList` (commas mean "or", the whole name
/// must match, quotes and spaces around it are ignored).
struct TopicFilter {
    pattern: Option<Regex>,
    exclude_internal: bool,
}

impl TopicFilter {
    fn new(args: &TopicsArgs) -> Result<Self, CliError> {
        let pattern = match &args.topic {
            None => None,
            Some(text) => {
                let cleaned: String = text
                    .trim()
                    .replace(',', "|")
                    .replace(' ', "")
                    .trim_matches(|c| c == '"' || c == '\'')
                    .to_string();
                let regex = Regex::new(&format!("^(?:{cleaned})$")).map_err(|error| {
                    CliError::Usage(format!(
                        "--topic {text:?} is not a valid regular expression: {error}"
                    ))
                })?;
                Some(regex)
            }
        };
        Ok(Self {
            pattern,
            exclude_internal: args.exclude_internal,
        })
    }

    fn allows(&self, topic: &TopicMetadata) -> bool {
        let internal = topic.is_internal || INTERNAL_TOPICS.contains(&topic.name.as_str());
        if internal && self.exclude_internal {
            return false;
        }
        self.pattern
            .as_ref()
            .is_none_or(|pattern| pattern.is_match(&topic.name))
    }
}

/// The existing topics `--topic` selects, sorted by name; with a `--topic` that matches
/// nothing, Kafka's error unless `--if-exists`.
async fn selected_topics(
    admin: &Admin,
    args: &TopicsArgs,
) -> Result<(Vec<TopicMetadata>, BTreeSet<i32>), CliError> {
    let filter = TopicFilter::new(args)?;
    let cluster = admin.describe_cluster().await?;
    let live_brokers = cluster.brokers.iter().map(|broker| broker.node.0).collect();
    let mut topics: Vec<TopicMetadata> = cluster
        .topics
        .into_iter()
        .filter(|topic| topic.error.is_ok() && filter.allows(topic))
        .collect();
    topics.sort_by(|a, b| a.name.cmp(&b.name));
    if let Some(requested) = &args.topic {
        if topics.is_empty() && !requested.is_empty() && !args.if_exists {
            return Err(CliError::Usage(format!(
                "Topic '{requested}' does not exist as expected"
            )));
        }
    }
    Ok((topics, live_brokers))
}

async fn list(admin: &Admin, args: &TopicsArgs) -> Result<(), CliError> {
    let filter = TopicFilter::new(args)?;
    let cluster = admin.describe_cluster().await?;
    let mut names: Vec<&str> = cluster
        .topics
        .iter()
        .filter(|topic| topic.error.is_ok() && filter.allows(topic))
        .map(|topic| topic.name.as_str())
        .collect();
    names.sort_unstable();
    let mut out = String::new();
    for name in names {
        out.push_str(name);
        out.push('\n');
    }
    print!("{out}");
    Ok(())
}

async fn describe(admin: &Admin, args: &TopicsArgs) -> Result<(), CliError> {
    let (topics, live_brokers) = selected_topics(admin, args).await?;
    if topics.is_empty() {
        return Ok(());
    }
    let report_only = args.under_replicated_partitions || args.unavailable_partitions;
    for topic in &topics {
        let configs = admin
            .describe_configs(vaart_client::ResourceType::Topic, &topic.name, None)
            .await
            .map_err(broker_error)?;
        let overrides: Vec<String> = configs
            .iter()
            .filter(|entry| entry.source != ConfigSource::Default)
            .map(|entry| {
                format!(
                    "{}={}",
                    entry.name,
                    entry.value.as_deref().unwrap_or("null")
                )
            })
            .collect();
        if !report_only && (!args.topics_with_overrides || !overrides.is_empty()) {
            let mut line = format!("Topic: {}", topic.name);
            if !topic.id.is_zero() {
                line.push_str(&format!("\tTopicId: {}", topic.id));
            }
            let replication_factor = topic
                .partitions
                .first()
                .map_or(0, |partition| partition.replicas.len());
            line.push_str(&format!(
                "\tPartitionCount: {}\tReplicationFactor: {replication_factor}\tConfigs: {}",
                topic.partitions.len(),
                overrides.join(",")
            ));
            println!("{line}");
        }
        if args.topics_with_overrides {
            continue;
        }
        for partition in &topic.partitions {
            let under_replicated = partition.isr.len() < partition.replicas.len();
            let unavailable = partition
                .leader
                .is_none_or(|leader| !live_brokers.contains(&leader.0));
            let wanted = !report_only
                || (args.under_replicated_partitions && under_replicated)
                || (args.unavailable_partitions && unavailable);
            if !wanted {
                continue;
            }
            let leader = partition
                .leader
                .map_or_else(|| "none".to_string(), |leader| leader.to_string());
            println!(
                "\tTopic: {}\tPartition: {}\tLeader: {leader}\tReplicas: {}\tIsr: {}\tElr: N/A\tLastKnownElr: N/A",
                topic.name,
                partition.id,
                join_ids(partition.replicas.iter().map(|node| node.0)),
                join_ids(partition.isr.iter().map(|node| node.0)),
            );
        }
    }
    Ok(())
}

fn join_ids(ids: impl Iterator<Item = i32>) -> String {
    ids.map(|id| id.to_string()).collect::<Vec<_>>().join(",")
}

async fn alter(admin: &Admin, args: &TopicsArgs) -> Result<(), CliError> {
    let (topics, _) = selected_topics(admin, args).await?;
    let count = args.partitions.unwrap_or_default();
    for topic in &topics {
        admin
            .create_partitions(&topic.name, count)
            .await
            .map_err(broker_error)?;
    }
    Ok(())
}

async fn delete(admin: &Admin, args: &TopicsArgs) -> Result<(), CliError> {
    let (topics, _) = selected_topics(admin, args).await?;
    if topics.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = topics.iter().map(|topic| topic.name.as_str()).collect();
    for (_, outcome) in admin.delete_topics(&names).await? {
        outcome.map_err(|error| CliError::Broker(kafka_message(&error)))?;
    }
    Ok(())
}
