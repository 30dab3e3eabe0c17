//! `vaart configs`: describe and change topic and broker configs, like Kafka's
//! `kafka-configs` (same flags and output; changes go through IncrementalAlterConfigs).
//!
//! Output formats (Kafka 3.x/4.x `ConfigCommand`):
//! - `--describe`: `Dynamic configs for topic T are:` (`All configs for ...` with `--all`;
//!   `Default configs for brokers in the cluster are:` for `--entity-default`), then one
//!   `  name=value sensitive=false synonyms={SOURCE:name=value, ...}` line per config, sorted
//!   by name. Without `--all` only the configs set at that level are listed.
//! - `--alter`: `Completed updating config for topic T.`, `Completed updating config for
//!   broker 1.` or `Completed updating default config for brokers in the cluster.`

use std::process::ExitCode;

use clap::{ArgGroup, ValueEnum};
use vaart_client::admin::DescribedConfig;
use vaart_client::{Admin, AlterConfigOp, ConfigSource, ResourceType};

use super::topics::broker_error;
use super::{run_tool, CliError, ConnectArgs};

const EXAMPLES: &str = "\
Examples:
  vaart configs --bootstrap-server 127.0.0.1:9092 --describe --entity-type topics --entity-name lecture
  vaart configs --describe --topic lecture --all
  vaart configs --alter --topic lecture --add-config retention.ms=86400000,cleanup.policy=[compact,delete]
  vaart configs --alter --entity-type topics --entity-name lecture --delete-config retention.ms
  vaart configs --describe --entity-type brokers --entity-name 1
  vaart configs --describe --broker 1 --all
  vaart configs --alter --entity-type brokers --entity-default --add-config log.retention.ms=604800000

Without --entity-name, --describe covers every topic (or every broker and the cluster default).";

/// The kinds of entity this tool handles (Kafka's `--entity-type` names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EntityType {
    /// Topic configs.
    Topics,
    /// Broker configs (per broker, or the cluster-wide default with --entity-default).
    Brokers,
}

/// Arguments of `vaart configs`.
#[derive(Debug, clap::Args)]
#[command(
    group(ArgGroup::new("action").required(true).args(["describe", "alter"])),
    after_help = EXAMPLES
)]
pub struct ConfigsArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// List configs for the given entity.
    #[arg(long)]
    pub describe: bool,
    /// Alter the configuration of the entity.
    #[arg(long)]
    pub alter: bool,
    /// With --describe: list every config, including static and default ones.
    #[arg(long)]
    pub all: bool,
    /// Type of entity.
    #[arg(long, value_enum, value_name = "TYPE")]
    pub entity_type: Option<EntityType>,
    /// Name of the entity: a topic name or a broker id.
    #[arg(long, value_name = "NAME", conflicts_with = "entity_default")]
    pub entity_name: Option<String>,
    /// The cluster-wide default (brokers only).
    #[arg(long)]
    pub entity_default: bool,
    /// Shortcut for --entity-type topics --entity-name TOPIC.
    #[arg(long, value_name = "TOPIC", conflicts_with_all = ["entity_type", "entity_name", "broker", "broker_defaults"])]
    pub topic: Option<String>,
    /// Shortcut for --entity-type brokers --entity-name ID.
    #[arg(long, value_name = "ID", conflicts_with_all = ["entity_type", "entity_name", "broker_defaults"])]
    pub broker: Option<String>,
    /// Shortcut for --entity-type brokers --entity-default.
    #[arg(long, conflicts_with_all = ["entity_type", "entity_name"])]
    pub broker_defaults: bool,
    /// Configs to set: `k1=v1,k2=[v1,v2],k3=v3` (square brackets group values that contain
    /// commas).
    #[arg(long, value_name = "K=V,...")]
    pub add_config: Option<String>,
    /// A properties file (`k=v` lines) of configs to set.
    #[arg(long, value_name = "FILE")]
    pub add_config_file: Option<std::path::PathBuf>,
    /// Configs to remove (back to the default): `k1,k2`; repeatable.
    #[arg(long, value_name = "K,...", value_delimiter = ',')]
    pub delete_config: Vec<String>,
}

/// Which entity: a topic, one broker, or the brokers' cluster-wide default.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entity {
    Topic(String),
    Broker(String),
    BrokerDefault,
}

impl Entity {
    fn resource(&self) -> (ResourceType, &str) {
        match self {
            Entity::Topic(name) => (ResourceType::Topic, name),
            Entity::Broker(id) => (ResourceType::Broker, id),
            Entity::BrokerDefault => (ResourceType::Broker, ""),
        }
    }

    /// The source of configs set at this level (what `--describe` lists without `--all`).
    fn dynamic_source(&self) -> ConfigSource {
        match self {
            Entity::Topic(_) => ConfigSource::TopicConfig,
            Entity::Broker(_) => ConfigSource::DynamicBrokerConfig,
            Entity::BrokerDefault => ConfigSource::DynamicDefaultBrokerConfig,
        }
    }
}

/// Runs the tool.
pub fn run(args: ConfigsArgs) -> ExitCode {
    run_tool(move || async move {
        let (entity_type, entity) = resolve_entity(&args)?;
        if args.alter {
            let entity = entity.ok_or_else(|| {
                CliError::Usage(
                    "--alter needs an entity: --entity-name (or --topic / --broker), or \
                     --entity-default for brokers"
                        .to_string(),
                )
            })?;
            let added = configs_to_add(&args)?;
            if added.is_empty() && args.delete_config.is_empty() {
                return Err(CliError::Usage(
                    "At least one of --add-config, --add-config-file, or --delete-config must be \
                     specified with --alter"
                        .to_string(),
                ));
            }
            let admin = Admin::new(args.connect.connect().await?);
            alter(&admin, &entity, added, &args.delete_config).await
        } else {
            if args.add_config.is_some()
                || args.add_config_file.is_some()
                || !args.delete_config.is_empty()
            {
                return Err(CliError::Usage(
                    "--add-config, --add-config-file and --delete-config need --alter".to_string(),
                ));
            }
            let admin = Admin::new(args.connect.connect().await?);
            let entities = match entity {
                Some(entity) => vec![entity],
                None => all_entities(&admin, entity_type).await?,
            };
            for entity in &entities {
                describe(&admin, entity, args.all).await?;
            }
            Ok(())
        }
    })
}

/// The entity type and, if one is named, the entity.
fn resolve_entity(args: &ConfigsArgs) -> Result<(EntityType, Option<Entity>), CliError> {
    if let Some(topic) = &args.topic {
        return Ok((EntityType::Topics, Some(Entity::Topic(topic.clone()))));
    }
    if let Some(broker) = &args.broker {
        return Ok((EntityType::Brokers, Some(broker_entity(broker)?)));
    }
    if args.broker_defaults {
        return Ok((EntityType::Brokers, Some(Entity::BrokerDefault)));
    }
    let entity_type = args.entity_type.ok_or_else(|| {
        CliError::Usage(
            "--entity-type must be specified (topics or brokers), or use --topic / --broker / \
             --broker-defaults"
                .to_string(),
        )
    })?;
    let entity = match (entity_type, &args.entity_name, args.entity_default) {
        (EntityType::Topics, _, true) => {
            return Err(CliError::Usage(
                "--entity-default applies to brokers only".to_string(),
            ))
        }
        (EntityType::Topics, Some(name), false) => Some(Entity::Topic(name.clone())),
        (EntityType::Brokers, Some(id), false) => Some(broker_entity(id)?),
        (EntityType::Brokers, None, true) => Some(Entity::BrokerDefault),
        (_, None, _) | (_, Some(_), true) => None,
    };
    Ok((entity_type, entity))
}

fn broker_entity(id: &str) -> Result<Entity, CliError> {
    if id.is_empty() {
        return Ok(Entity::BrokerDefault);
    }
    id.parse::<i32>()
        .map(|_| Entity::Broker(id.to_string()))
        .map_err(|_| {
            CliError::Usage(format!(
                "The entity name for brokers must be a valid integer broker id, found: {id}"
            ))
        })
}

/// Every topic, or every broker followed by the cluster default (as Kafka's tool).
async fn all_entities(admin: &Admin, entity_type: EntityType) -> Result<Vec<Entity>, CliError> {
    let cluster = admin.describe_cluster().await?;
    Ok(match entity_type {
        EntityType::Topics => {
            let mut names: Vec<String> = cluster
                .topics
                .into_iter()
                .filter(|topic| topic.error.is_ok())
                .map(|topic| topic.name)
                .collect();
            names.sort();
            names.into_iter().map(Entity::Topic).collect()
        }
        EntityType::Brokers => {
            let mut ids: Vec<i32> = cluster.brokers.iter().map(|broker| broker.node.0).collect();
            ids.sort_unstable();
            ids.into_iter()
                .map(|id| Entity::Broker(id.to_string()))
                .chain(std::iter::once(Entity::BrokerDefault))
                .collect()
        }
    })
}

/// The configs described at the entity's own level (or all of them), sorted by name.
async fn entity_configs(
    admin: &Admin,
    entity: &Entity,
    all: bool,
) -> Result<Vec<DescribedConfig>, CliError> {
    let (resource_type, name) = entity.resource();
    let mut configs = admin
        .describe_configs_with_synonyms(resource_type, name)
        .await
        .map_err(broker_error)?;
    if !all {
        let source = entity.dynamic_source();
        configs.retain(|config| config.entry.source == source);
    }
    configs.sort_by(|a, b| a.entry.name.cmp(&b.entry.name));
    Ok(configs)
}

async fn describe(admin: &Admin, entity: &Entity, all: bool) -> Result<(), CliError> {
    let configs = entity_configs(admin, entity, all).await?;
    let level = if all { "All" } else { "Dynamic" };
    let mut out = match entity {
        Entity::Topic(name) => format!("{level} configs for topic {name} are:\n"),
        Entity::Broker(id) => format!("{level} configs for broker {id} are:\n"),
        Entity::BrokerDefault => "Default configs for brokers in the cluster are:\n".to_string(),
    };
    for config in &configs {
        let synonyms: Vec<String> = config
            .synonyms
            .iter()
            .map(|synonym| {
                format!(
                    "{}:{}={}",
                    synonym.source.kafka_name(),
                    synonym.name,
                    synonym.value.as_deref().unwrap_or("null")
                )
            })
            .collect();
        out.push_str(&format!(
            "  {}={} sensitive={} synonyms={{{}}}\n",
            config.entry.name,
            config.entry.value.as_deref().unwrap_or("null"),
            config.entry.is_sensitive,
            synonyms.join(", ")
        ));
    }
    print!("{out}");
    Ok(())
}

/// `--add-config` and `--add-config-file` as (name, value) pairs.
fn configs_to_add(args: &ConfigsArgs) -> Result<Vec<(String, String)>, CliError> {
    let mut added = Vec::new();
    if let Some(path) = &args.add_config_file {
        let text = std::fs::read_to_string(path).map_err(|source| CliError::Io {
            what: "reading --add-config-file",
            source,
        })?;
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
                continue;
            }
            let (key, value) = line
                .split_once(['=', ':'])
                .ok_or_else(invalid_config_format)?;
            added.push((key.trim().to_string(), value.trim().to_string()));
        }
    }
    if let Some(text) = &args.add_config {
        added.extend(parse_add_config(text)?);
    }
    for (key, _) in &added {
        let valid = key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !valid || key.is_empty() {
            return Err(CliError::Usage(format!(
                "Invalid character found for config key: {key}"
            )));
        }
    }
    Ok(added)
}

fn invalid_config_format() -> CliError {
    CliError::Usage(
        "Invalid entity config: all configs to be added must be in the format \"key=val\" or \
         \"key=[val1,val2]\" to group values which contain commas."
            .to_string(),
    )
}

/// Kafka's `--add-config` syntax: pairs separated by commas outside square brackets; the
/// brackets are removed from values (`k=[a,b]` sets `k` to `a,b`).
fn parse_add_config(text: &str) -> Result<Vec<(String, String)>, CliError> {
    let mut pairs = Vec::new();
    let mut depth = 0usize;
    let mut current = String::new();
    let mut items = Vec::new();
    for c in text.chars() {
        match c {
            '[' => {
                depth += 1;
                current.push(c);
            }
            ']' => {
                depth = depth.saturating_sub(1);
                current.push(c);
            }
            ',' if depth == 0 => items.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    items.push(current);
    for item in items {
        let (key, value) = item.split_once('=').ok_or_else(invalid_config_format)?;
        let value: String = value.chars().filter(|c| !matches!(c, '[' | ']')).collect();
        pairs.push((key.trim().to_string(), value.trim().to_string()));
    }
    Ok(pairs)
}

async fn alter(
    admin: &Admin,
    entity: &Entity,
    added: Vec<(String, String)>,
    deleted: &[String],
) -> Result<(), CliError> {
    let deleted: Vec<String> = deleted
        .iter()
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
        .collect();
    if !deleted.is_empty() {
        // As Kafka's tool: deleting a config that is not set at this level is an error.
        let current = entity_configs(admin, entity, false).await?;
        let missing: Vec<&str> = deleted
            .iter()
            .filter(|name| !current.iter().any(|config| &config.entry.name == *name))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            return Err(CliError::Usage(format!(
                "Invalid config(s): {}",
                missing.join(",")
            )));
        }
    }
    let changes: Vec<AlterConfigOp> = deleted
        .into_iter()
        .map(|name| AlterConfigOp::Delete { name })
        .chain(
            added
                .into_iter()
                .map(|(name, value)| AlterConfigOp::Set { name, value }),
        )
        .collect();
    let (resource_type, name) = entity.resource();
    admin
        .alter_configs(resource_type, name, &changes)
        .await
        .map_err(broker_error)?;
    match entity {
        Entity::Topic(name) => println!("Completed updating config for topic {name}."),
        Entity::Broker(id) => println!("Completed updating config for broker {id}."),
        Entity::BrokerDefault => {
            println!("Completed updating default config for brokers in the cluster.")
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_config_groups_bracketed_values() {
        let pairs = parse_add_config("a=1, b = [x,y] ,c=").expect("valid");
        assert_eq!(
            pairs,
            vec![
                ("a".to_string(), "1".to_string()),
                ("b".to_string(), "x,y".to_string()),
                ("c".to_string(), String::new()),
            ]
        );
        assert!(parse_add_config("novalue").is_err());
    }
}
