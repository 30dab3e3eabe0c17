//! `vaart consumer-groups`: list, describe and delete consumer groups and reset their
//! committed offsets, like `kafka-consumer-groups`, with Kafka's output formats (the
//! `--describe` table with its `LAG` column, the `--reset-offsets` `NEW-OFFSET` table, the
//! same messages for empty, missing and active groups).
//!
//! `--reset-offsets` is a dry run unless `--execute` is given; it commits as an admin
//! (generation -1, no member id), which the coordinator accepts only while the group has no
//! members, and the tool refuses earlier with Kafka's message when the group is active.

use std::collections::BTreeMap;
use std::process::ExitCode;

use clap::ArgGroup;
use vaart_client::{
    Admin, Client, ClientError, CommittedOffsets, Generation, GroupDescription, Groups, KafkaCode,
    KafkaError, Offset, OffsetSpec, OffsetToCommit, PartitionId,
};

use super::{run_tool, CliError, ConnectArgs};

/// What Kafka prints for a value that does not apply.
const MISSING: &str = "-";

const EXAMPLES: &str = "Examples:
  # Every group id
  vaart consumer-groups --bootstrap-server 127.0.0.1:9092 --list

  # Committed offset, log end and lag per partition, with the member that owns it
  vaart consumer-groups --describe --group readers
  vaart consumer-groups --describe --group readers --members --verbose
  vaart consumer-groups --describe --group readers --state

  # Show, then apply, a reset of every partition of 'lecture' to its first offset
  vaart consumer-groups --group readers --reset-offsets --to-earliest --topic lecture
  vaart consumer-groups --group readers --reset-offsets --to-earliest --topic lecture --execute

  # Two records back on partitions 0 and 1; to a point in time (UTC unless a zone is given)
  vaart consumer-groups --group readers --reset-offsets --shift-by -2 --topic lecture:0,1 --execute
  vaart consumer-groups --group readers --reset-offsets --all-topics \\
      --to-datetime 2026-11-26T08:00:00.000 --execute

  # Delete a group that has no members
  vaart consumer-groups --delete --group readers";

/// Arguments of `vaart consumer-groups`.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
#[command(group(
    ArgGroup::new("action")
        .required(true)
        .args(["list", "describe", "delete", "reset_offsets"])
))]
#[command(group(
    ArgGroup::new("scenario")
        .multiple(false)
        .args(["to_earliest", "to_latest", "to_current", "to_offset", "to_datetime", "shift_by"])
))]
pub struct ConsumerGroupsArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// List every consumer group.
    #[arg(long)]
    pub list: bool,
    /// Describe groups: offsets and lag (default), --members or --state.
    #[arg(long)]
    pub describe: bool,
    /// Delete groups (they must have no members).
    #[arg(long)]
    pub delete: bool,
    /// Compute new committed offsets (--dry-run, the default) or apply them (--execute).
    #[arg(long)]
    pub reset_offsets: bool,
    /// The group; repeatable for --describe and --delete.
    #[arg(long, value_name = "GROUP")]
    pub group: Vec<String>,
    /// Every group (--describe, --delete, --reset-offsets).
    #[arg(long)]
    pub all_groups: bool,
    /// With --describe: the members and their partition counts.
    #[arg(long)]
    pub members: bool,
    /// With --describe: coordinator, assignor, state and member count; with --list: each
    /// group's state.
    #[arg(long)]
    pub state: bool,
    /// With --describe: committed offsets and lag (the default view).
    #[arg(long)]
    pub offsets: bool,
    /// With --describe --members: each member's partitions too.
    #[arg(long)]
    pub verbose: bool,
    /// With --reset-offsets: a topic, optionally with partitions (TOPIC:0,1); repeatable.
    #[arg(long, value_name = "TOPIC[:PARTITIONS]")]
    pub topic: Vec<String>,
    /// With --reset-offsets: every topic the group has committed offsets for.
    #[arg(long)]
    pub all_topics: bool,
    /// Reset to the earliest offset.
    #[arg(long)]
    pub to_earliest: bool,
    /// Reset to the latest offset (the log end).
    #[arg(long)]
    pub to_latest: bool,
    /// Reset to the committed offset (the log end where there is none).
    #[arg(long)]
    pub to_current: bool,
    /// Reset to this offset (kept within the partition's earliest and latest offsets).
    #[arg(long, value_name = "N")]
    pub to_offset: Option<i64>,
    /// Reset to the first offset at or after this time: YYYY-MM-DDTHH:mm:SS.sss, UTC unless
    /// followed by Z or an offset such as +01:00.
    #[arg(long, value_name = "DATETIME")]
    pub to_datetime: Option<String>,
    /// Move the committed offset by N (negative: back), kept within earliest and latest.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub shift_by: Option<i64>,
    /// Only show the new offsets (the default).
    #[arg(long, conflicts_with = "execute")]
    pub dry_run: bool,
    /// Apply the new offsets.
    #[arg(long)]
    pub execute: bool,
    /// Accepted for compatibility with Kafka's tool; ignored.
    #[arg(long, value_name = "MS")]
    pub timeout: Option<u64>,
}

/// Runs the tool.
pub fn run(args: ConsumerGroupsArgs) -> ExitCode {
    run_tool(move || async move {
        validate(&args)?;
        let client = args.connect.connect().await?;
        let groups = Groups::new(client.clone());
        let outcome = if args.list {
            list(&groups, args.state).await
        } else if args.describe {
            describe(&args, &groups).await
        } else if args.delete {
            delete(&args, &groups).await
        } else {
            reset(&args, &groups).await
        };
        client.close();
        outcome
    })
}

fn validate(args: &ConsumerGroupsArgs) -> Result<(), CliError> {
    let needs_group = args.describe || args.delete || args.reset_offsets;
    if needs_group && args.group.is_empty() && !args.all_groups {
        return Err(CliError::Usage(
            "Option --group or --all-groups is required with --describe, --delete and \
             --reset-offsets"
                .to_string(),
        ));
    }
    if args.reset_offsets {
        let scenarios = [
            args.to_earliest,
            args.to_latest,
            args.to_current,
            args.to_offset.is_some(),
            args.to_datetime.is_some(),
            args.shift_by.is_some(),
        ];
        if !scenarios.contains(&true) {
            return Err(CliError::Usage(
                "Option --reset-offsets requires one of the following scenarios: --to-earliest, \
                 --to-latest, --to-current, --to-offset, --to-datetime, --shift-by"
                    .to_string(),
            ));
        }
        if args.topic.is_empty() != args.all_topics {
            return Err(CliError::Usage(
                "One of the reset scopes should be defined: --all-topics, --topic.".to_string(),
            ));
        }
    }
    Ok(())
}

/// Whether ListGroups' protocol type is a consumer group's (offsets-only groups have none).
fn is_consumer_group(protocol_type: &str) -> bool {
    protocol_type == "consumer" || protocol_type.is_empty()
}

/// The group ids the arguments name (`--all-groups`: every consumer group).
async fn group_ids(args: &ConsumerGroupsArgs, groups: &Groups) -> Result<Vec<String>, CliError> {
    if args.all_groups {
        Ok(groups
            .list_groups()
            .await?
            .into_iter()
            .filter(|group| is_consumer_group(&group.protocol_type))
            .map(|group| group.group_id)
            .collect())
    } else {
        Ok(args.group.clone())
    }
}

async fn list(groups: &Groups, with_state: bool) -> Result<(), CliError> {
    let listed: Vec<_> = groups
        .list_groups()
        .await?
        .into_iter()
        .filter(|group| is_consumer_group(&group.protocol_type))
        .collect();
    if with_state {
        let width = listed
            .iter()
            .map(|group| group.group_id.len())
            .fold(15, usize::max);
        println!("{:<width$} STATE", "GROUP");
        for group in &listed {
            println!("{:<width$} {}", group.group_id, group.state);
        }
    } else {
        for group in &listed {
            println!("{}", group.group_id);
        }
    }
    Ok(())
}

/// Kafka's note on stderr for a group's state; `false` when the group does not exist.
fn note_state(description: &GroupDescription) -> bool {
    let group = &description.group_id;
    match description.state.as_str() {
        "Dead" => return false,
        "Empty" => eprintln!("\nConsumer group '{group}' has no active members."),
        "PreparingRebalance" | "CompletingRebalance" => {
            eprintln!("\nWarning: Consumer group '{group}' is rebalancing.");
        }
        _ => {}
    }
    true
}

async fn describe(args: &ConsumerGroupsArgs, groups: &Groups) -> Result<(), CliError> {
    let ids = group_ids(args, groups).await?;
    let mut missing: Vec<String> = Vec::new();
    for group_id in &ids {
        let description = groups.describe_group(group_id).await?;
        if !note_state(&description) {
            missing.push(group_id.clone());
            continue;
        }
        if args.members {
            print_members(&description, args.verbose);
        } else if args.state && !args.offsets {
            print_state(&description);
        } else {
            print_offsets(groups, &description).await?;
        }
    }
    match missing.first() {
        None => Ok(()),
        Some(group_id) if missing.len() == 1 => Err(CliError::UnknownGroup(group_id.clone())),
        Some(_) => Err(CliError::Partial(format!(
            "Consumer groups {} do not exist.",
            missing
                .iter()
                .map(|id| format!("'{id}'"))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// One row of the offsets view.
struct OffsetRow {
    topic: String,
    partition: PartitionId,
    current: Option<Offset>,
    log_end: Option<Offset>,
    consumer_id: String,
    host: String,
    client_id: String,
}

async fn print_offsets(groups: &Groups, description: &GroupDescription) -> Result<(), CliError> {
    let group_id = &description.group_id;
    let committed = groups.fetch_offsets(group_id, None).await?;
    let mut rows: Vec<OffsetRow> = Vec::new();
    let mut members: Vec<_> = description
        .members
        .iter()
        .filter(|member| !member.assignment.is_empty())
        .collect();
    // Kafka lists the members with the most partitions first.
    members.sort_by_key(|member| {
        std::cmp::Reverse(member.assignment.values().map(Vec::len).sum::<usize>())
    });
    let mut assigned: Vec<(String, PartitionId)> = Vec::new();
    for member in members {
        for (topic, partitions) in &member.assignment {
            for &partition in partitions {
                assigned.push((topic.clone(), partition));
                rows.push(OffsetRow {
                    topic: topic.clone(),
                    partition,
                    current: committed.get(&(topic.clone(), partition)).copied(),
                    log_end: None,
                    consumer_id: member.member_id.clone(),
                    host: member.client_host.clone(),
                    client_id: member.client_id.clone(),
                });
            }
        }
    }
    for ((topic, partition), offset) in &committed {
        if assigned.contains(&(topic.clone(), *partition)) {
            continue;
        }
        rows.push(OffsetRow {
            topic: topic.clone(),
            partition: *partition,
            current: Some(*offset),
            log_end: None,
            consumer_id: MISSING.to_string(),
            host: MISSING.to_string(),
            client_id: MISSING.to_string(),
        });
    }
    if rows.is_empty() {
        return Ok(());
    }
    let mut wanted: BTreeMap<String, Vec<PartitionId>> = BTreeMap::new();
    for row in &rows {
        wanted
            .entry(row.topic.clone())
            .or_default()
            .push(row.partition);
    }
    let log_ends = log_end_offsets(groups.client(), &wanted).await;
    for row in &mut rows {
        row.log_end = log_ends.get(&(row.topic.clone(), row.partition)).copied();
    }
    let group_width = group_id.len().max(15);
    let topic_width = rows.iter().map(|row| row.topic.len()).fold(15, usize::max);
    let consumer_width = rows
        .iter()
        .map(|row| row.consumer_id.len())
        .fold(15, usize::max);
    let host_width = rows.iter().map(|row| row.host.len()).fold(15, usize::max);
    let line = |cells: [&str; 9]| {
        let [group, topic, partition, current, end, lag, consumer, host, client] = cells;
        format!(
            "{group:<group_width$} {topic:<topic_width$} {partition:<10} {current:<15} \
             {end:<15} {lag:<15} {consumer:<consumer_width$} {host:<host_width$} {client}"
        )
    };
    println!();
    println!(
        "{}",
        line([
            "GROUP",
            "TOPIC",
            "PARTITION",
            "CURRENT-OFFSET",
            "LOG-END-OFFSET",
            "LAG",
            "CONSUMER-ID",
            "HOST",
            "CLIENT-ID"
        ])
    );
    let text = |value: Option<Offset>| value.map_or(MISSING.to_string(), |o| o.0.to_string());
    for row in &rows {
        let lag = match (row.current, row.log_end) {
            (Some(current), Some(end)) => (end.0 - current.0).to_string(),
            _ => MISSING.to_string(),
        };
        println!(
            "{}",
            line([
                group_id,
                &row.topic,
                &row.partition.to_string(),
                &text(row.current),
                &text(row.log_end),
                &lag,
                &row.consumer_id,
                &row.host,
                &row.client_id,
            ])
        );
    }
    Ok(())
}

/// Log end offsets of `wanted` partitions (absent where the lookup failed: Kafka shows `-`).
async fn log_end_offsets(
    client: &Client,
    wanted: &BTreeMap<String, Vec<PartitionId>>,
) -> BTreeMap<(String, PartitionId), Offset> {
    let admin = Admin::new(client.clone());
    let mut found = BTreeMap::new();
    for (topic, partitions) in wanted {
        match admin
            .list_offsets(topic, partitions, OffsetSpec::Latest)
            .await
        {
            Ok(answers) => {
                for (partition, answer) in answers {
                    if let Ok(listed) = answer {
                        found.insert((topic.clone(), partition), listed.offset);
                    }
                }
            }
            Err(error) => tracing::debug!(%topic, %error, "no log end offsets for the topic"),
        }
    }
    found
}

fn print_members(description: &GroupDescription, verbose: bool) {
    let members = &description.members;
    if members.is_empty() {
        return;
    }
    let group_id = &description.group_id;
    let group_width = group_id.len().max(15);
    let widest = |minimum: usize, field: &dyn Fn(&vaart_client::MemberDescription) -> usize| {
        members.iter().map(field).fold(minimum, usize::max)
    };
    let consumer_width = widest(15, &|m| m.member_id.len());
    let instance_width = widest(17, &|m| m.instance_id.as_deref().unwrap_or("").len());
    let host_width = widest(15, &|m| m.client_host.len());
    let client_width = widest(15, &|m| m.client_id.len());
    let with_instance = members.iter().any(|m| m.instance_id.is_some());
    let line = |cells: [&str; 6]| {
        let [group, consumer, instance, host, client, count] = cells;
        if with_instance {
            format!(
                "{group:<group_width$} {consumer:<consumer_width$} {instance:<instance_width$} \
                 {host:<host_width$} {client:<client_width$} {count:<15} "
            )
        } else {
            format!(
                "{group:<group_width$} {consumer:<consumer_width$} {host:<host_width$} \
                 {client:<client_width$} {count:<15} "
            )
        }
    };
    println!();
    let mut header = line([
        "GROUP",
        "CONSUMER-ID",
        "GROUP-INSTANCE-ID",
        "HOST",
        "CLIENT-ID",
        "#PARTITIONS",
    ]);
    if verbose {
        header.push_str("ASSIGNMENT");
    }
    println!("{header}");
    for member in members {
        let count: usize = member.assignment.values().map(Vec::len).sum();
        let mut row = line([
            group_id,
            &member.member_id,
            member.instance_id.as_deref().unwrap_or(""),
            &member.client_host,
            &member.client_id,
            &count.to_string(),
        ]);
        if verbose {
            if member.assignment.is_empty() {
                row.push_str(MISSING);
            } else {
                let mut topics: Vec<String> = member
                    .assignment
                    .iter()
                    .map(|(topic, partitions)| {
                        let ids: Vec<String> = partitions.iter().map(|p| p.0.to_string()).collect();
                        format!("{topic}({})", ids.join(","))
                    })
                    .collect();
                topics.sort();
                row.push_str(&topics.join(", "));
            }
        }
        println!("{row}");
    }
}

fn print_state(description: &GroupDescription) {
    let coordinator = format!(
        "{}:{}  ({})",
        description.coordinator.host, description.coordinator.port, description.coordinator.node
    );
    let width = coordinator.len().max(25);
    println!();
    println!(
        "{:<width$} {:<25} {:<20} {:<15} #MEMBERS",
        "GROUP", "COORDINATOR (ID)", "ASSIGNMENT-STRATEGY", "STATE"
    );
    println!(
        "{:<width$} {:<25} {:<20} {:<15} {}",
        description.group_id,
        coordinator,
        description.protocol,
        description.state,
        description.members.len()
    );
}

/// Kafka's wording of a group deletion error (its exception's `toString`).
fn deletion_error(error: &KafkaError) -> String {
    match error.code {
        KafkaCode(68) => {
            "org.apache.kafka.common.errors.GroupNotEmptyException: The group is not empty."
                .to_string()
        }
        KafkaCode(69) => {
            "org.apache.kafka.common.errors.GroupIdNotFoundException: The group id does not exist."
                .to_string()
        }
        KafkaCode(24) => "org.apache.kafka.common.errors.InvalidGroupIdException: The configured \
                          groupId is invalid."
            .to_string(),
        code => code.to_string(),
    }
}

async fn delete(args: &ConsumerGroupsArgs, groups: &Groups) -> Result<(), CliError> {
    let ids = group_ids(args, groups).await?;
    let names: Vec<&str> = ids.iter().map(String::as_str).collect();
    let results = groups.delete_groups(&names).await?;
    let quoted = |list: &[&String]| {
        list.iter()
            .map(|id| format!("'{id}'"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let succeeded: Vec<&String> = results
        .iter()
        .filter(|(_, outcome)| outcome.is_ok())
        .map(|(id, _)| id)
        .collect();
    let failed: Vec<(&String, &KafkaError)> = results
        .iter()
        .filter_map(|(id, outcome)| outcome.as_ref().err().map(|error| (id, error)))
        .collect();
    if failed.is_empty() {
        println!(
            "Deletion of requested consumer groups ({}) was successful.",
            quoted(&succeeded)
        );
        return Ok(());
    }
    println!("\nError: Deletion of some consumer groups failed:");
    for (id, error) in &failed {
        println!(
            "* Group '{id}' could not be deleted due to: {}",
            deletion_error(error)
        );
    }
    if !succeeded.is_empty() {
        println!(
            "\nThese consumer groups were deleted successfully: {}",
            quoted(&succeeded)
        );
    }
    Err(CliError::Partial(format!(
        "Deletion of some consumer groups failed: {}",
        failed
            .iter()
            .map(|(id, error)| format!("'{id}': {}", deletion_error(error)))
            .collect::<Vec<_>>()
            .join("; ")
    )))
}

/// The partitions `--topic` names: `T` (every partition) or `T:0,1`.
async fn topic_partitions(
    client: &Client,
    topics: &[String],
) -> Result<BTreeMap<String, Vec<PartitionId>>, CliError> {
    let mut wanted: BTreeMap<String, Vec<PartitionId>> = BTreeMap::new();
    for argument in topics {
        let (topic, listed) = match argument.split_once(':') {
            Some((topic, list)) => (topic, Some(list)),
            None => (argument.as_str(), None),
        };
        let metadata = match client.refresh_topic(topic).await {
            Err(ClientError::UnknownTopic { .. }) => {
                return Err(CliError::UnknownTopic(topic.to_string()))
            }
            other => other?,
        };
        let partitions: Vec<PartitionId> = match listed {
            None => metadata.partitions.iter().map(|p| p.id).collect(),
            Some(list) => {
                let mut ids = Vec::new();
                for item in list.split(',') {
                    let id = item.trim().parse::<i32>().map_err(|_| {
                        CliError::Usage(format!(
                            "Invalid partition '{item}' specified in topic arg '{argument}'"
                        ))
                    })?;
                    if metadata.partition(PartitionId(id)).is_none() {
                        return Err(ClientError::UnknownPartition {
                            topic: topic.to_string(),
                            partition: PartitionId(id),
                        }
                        .into());
                    }
                    ids.push(PartitionId(id));
                }
                ids
            }
        };
        let entry = wanted.entry(topic.to_string()).or_default();
        entry.extend(partitions);
        entry.sort_unstable();
        entry.dedup();
    }
    Ok(wanted)
}

/// New offsets per group, in the order the groups were named.
type ResetPlan = Vec<(String, BTreeMap<(String, PartitionId), Offset>)>;

async fn reset(args: &ConsumerGroupsArgs, groups: &Groups) -> Result<(), CliError> {
    let datetime_ms = args
        .to_datetime
        .as_deref()
        .map(parse_datetime)
        .transpose()?;
    let execute = args.execute && !args.dry_run;
    let client = groups.client().clone();
    let mut plan: ResetPlan = Vec::new();
    for group_id in group_ids(args, groups).await? {
        let description = groups.describe_group(&group_id).await?;
        if !matches!(description.state.as_str(), "Empty" | "Dead") {
            return Err(CliError::Refused(format!(
                "Assignments can only be reset if the group '{group_id}' is inactive, but the \
                 current state is {}.",
                description.state
            )));
        }
        let committed = groups.fetch_offsets(&group_id, None).await?;
        let wanted = if args.all_topics {
            let mut wanted: BTreeMap<String, Vec<PartitionId>> = BTreeMap::new();
            for (topic, partition) in committed.keys() {
                wanted.entry(topic.clone()).or_default().push(*partition);
            }
            wanted
        } else {
            topic_partitions(&client, &args.topic).await?
        };
        let offsets = new_offsets(args, &client, &wanted, &committed, datetime_ms).await?;
        if execute {
            let to_commit: Vec<OffsetToCommit> = offsets
                .iter()
                .map(|((topic, partition), offset)| OffsetToCommit {
                    topic: topic.clone(),
                    partition: *partition,
                    offset: *offset,
                })
                .collect();
            groups
                .commit_offsets(&group_id, &Generation::admin(), &to_commit)
                .await?;
        }
        plan.push((group_id, offsets));
    }
    if plan.is_empty() {
        return Ok(());
    }
    if !args.execute && !args.dry_run {
        eprintln!(
            "WARN: No action will be performed as the --execute option is missing. In a future \
             major release, the default behavior of this command will be to prompt the user \
             before executing the reset rather than doing a dry run. You should add the \
             --dry-run option explicitly if you are scripting this command and want to keep \
             the current default behavior without prompting."
        );
    }
    println!();
    println!(
        "{:<30} {:<30} {:<10} {:<15}",
        "GROUP", "TOPIC", "PARTITION", "NEW-OFFSET"
    );
    for (group_id, offsets) in &plan {
        for ((topic, partition), offset) in offsets {
            println!(
                "{group_id:<30} {topic:<30} {:<10} {:<15}",
                partition.0, offset.0
            );
        }
    }
    Ok(())
}

/// The new offset of every wanted partition under the chosen scenario.
async fn new_offsets(
    args: &ConsumerGroupsArgs,
    client: &Client,
    wanted: &BTreeMap<String, Vec<PartitionId>>,
    committed: &CommittedOffsets,
    datetime_ms: Option<i64>,
) -> Result<BTreeMap<(String, PartitionId), Offset>, CliError> {
    let earliest = listed(client, wanted, OffsetSpec::Earliest).await?;
    let latest = listed(client, wanted, OffsetSpec::Latest).await?;
    let at_time = match datetime_ms {
        Some(timestamp_ms) => listed(client, wanted, OffsetSpec::Timestamp(timestamp_ms)).await?,
        None => BTreeMap::new(),
    };
    let mut offsets = BTreeMap::new();
    for (topic, partitions) in wanted {
        for &partition in partitions {
            let key = (topic.clone(), partition);
            let (Some(&low), Some(&high)) = (earliest.get(&key), latest.get(&key)) else {
                return Err(CliError::Usage(format!(
                    "Error getting offsets of topic partition: {topic}-{partition}"
                )));
            };
            let clamp = |offset: i64| Offset(offset.clamp(low.0, high.0.max(low.0)));
            let offset = if args.to_earliest {
                low
            } else if args.to_latest {
                high
            } else if let Some(target) = args.to_offset {
                clamp(target)
            } else if let Some(shift) = args.shift_by {
                let current = committed.get(&key).ok_or_else(|| {
                    CliError::Usage(format!(
                        "Cannot shift offset for partition {topic}-{partition} since there is no \
                         current committed offset"
                    ))
                })?;
                clamp(current.0.saturating_add(shift))
            } else if datetime_ms.is_some() {
                // No record at or after the time: Kafka falls back to the log end.
                match at_time.get(&key) {
                    Some(offset) if offset.0 >= 0 => *offset,
                    _ => high,
                }
            } else {
                // --to-current: the committed offset, else the log end.
                committed.get(&key).copied().unwrap_or(high)
            };
            offsets.insert(key, offset);
        }
    }
    Ok(offsets)
}

/// ListOffsets for every wanted partition; a failed lookup is an error.
async fn listed(
    client: &Client,
    wanted: &BTreeMap<String, Vec<PartitionId>>,
    spec: OffsetSpec,
) -> Result<BTreeMap<(String, PartitionId), Offset>, CliError> {
    let admin = Admin::new(client.clone());
    let mut found = BTreeMap::new();
    for (topic, partitions) in wanted {
        for (partition, answer) in admin.list_offsets(topic, partitions, spec).await? {
            let listed = answer.map_err(ClientError::from)?;
            found.insert((topic.clone(), partition), listed.offset);
        }
    }
    Ok(found)
}

/// Kafka's `Utils.getDateTime`: `YYYY-MM-DDTHH:mm:SS[.sss]` then optionally `Z`, `+HH:MM`,
/// `+HHMM` or `+HH` (or `-`); UTC without a zone. Milliseconds since the epoch.
fn parse_datetime(text: &str) -> Result<i64, CliError> {
    let invalid = || {
        CliError::Usage(format!(
            "Error parsing timestamp '{text}': expected YYYY-MM-DDTHH:mm:SS.sss with an optional \
             zone (Z, +HH:MM)"
        ))
    };
    let number = |part: Option<&str>| -> Result<i64, CliError> {
        part.filter(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|part| part.parse::<i64>().ok())
            .ok_or_else(invalid)
    };
    let (date, rest) = text.trim().split_once('T').ok_or_else(invalid)?;
    let mut date_parts = date.split('-');
    let year = number(date_parts.next())?;
    let month = number(date_parts.next())?;
    let day = number(date_parts.next())?;
    if date_parts.next().is_some() {
        return Err(invalid());
    }
    let (time, zone) = match rest.find(['Z', 'z', '+', '-']) {
        Some(at) => rest.split_at(at),
        None => (rest, ""),
    };
    let (clock, millis) = match time.split_once('.') {
        Some((clock, fraction)) if (1..=3).contains(&fraction.len()) => {
            (clock, number(Some(&format!("{fraction:0<3}")))?)
        }
        Some(_) => return Err(invalid()),
        None => (time, 0),
    };
    let mut clock_parts = clock.split(':');
    let hour = number(clock_parts.next())?;
    let minute = number(clock_parts.next())?;
    let second = match clock_parts.next() {
        Some(part) => number(Some(part))?,
        None => 0,
    };
    if clock_parts.next().is_some()
        || !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || !(0..=23).contains(&hour)
        || !(0..=59).contains(&minute)
        || !(0..=60).contains(&second)
    {
        return Err(invalid());
    }
    let zone_offset_s = match zone {
        "" | "Z" | "z" => 0,
        signed => {
            let sign = if signed.starts_with('-') { -1 } else { 1 };
            let digits: String = signed.chars().skip(1).filter(|c| *c != ':').collect();
            let (hours, minutes) = match digits.len() {
                2 => (number(Some(&digits))?, 0),
                4 => (number(digits.get(..2))?, number(digits.get(2..))?),
                _ => return Err(invalid()),
            };
            sign * (hours * 3600 + minutes * 60)
        }
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - zone_offset_s;
    Ok(seconds * 1000 + millis)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetimes_parse_like_kafka() {
        assert_eq!(parse_datetime("1970-01-01T00:00:00.000").ok(), Some(0));
        assert_eq!(
            parse_datetime("2023-11-14T22:13:20.000").ok(),
            Some(1_700_000_000_000)
        );
        assert_eq!(
            parse_datetime("2023-11-14T22:13:20.5Z").ok(),
            Some(1_700_000_000_500)
        );
        assert_eq!(
            parse_datetime("2023-11-14T23:13:20.000+01:00").ok(),
            Some(1_700_000_000_000)
        );
        assert_eq!(
            parse_datetime("2023-11-14T21:13:20-0100").ok(),
            Some(1_700_000_000_000)
        );
        assert_eq!(
            parse_datetime("2000-02-29T00:00:00").ok(),
            Some(951_782_400_000)
        );
        assert!(parse_datetime("2023-11-14").is_err());
        assert!(parse_datetime("2023-13-14T00:00:00").is_err());
        assert!(parse_datetime("2023-11-14T00:00:00.1234").is_err());
        assert!(parse_datetime("yesterday").is_err());
    }
}
