//! Dynamic broker configs on the shards (see [`crate::dynamic_config`] for the rules).
//!
//! Every shard holds the current [`LiveConfig`] (an immutable `Arc`, swapped whole). Shard 0
//! owns changes: an AlterConfigs/IncrementalAlterConfigs on a BROKER resource, from whichever
//! shard received it, and a SIGHUP reload both run there, one at a time. Shard 0 validates,
//! persists the dynamic levels (atomic file replace), then sends the new `LiveConfig` to every
//! shard over the mesh; each shard swaps it in and applies what changed (partition logs
//! without a topic-level override take the new broker defaults, the accept loop re-reads
//! `max.connections`). Nothing mutable is shared between shards.

use std::rc::Rc;
use std::sync::Arc;

use glommio::sync::Semaphore;
use tracing::{error, info, warn};

use super::messages::{MeshReply, MeshRequest};
use super::Shard;
use crate::config::{BrokerConfig, ConfigInputs};
use crate::dynamic_config::{
    alter_layer, encode_layers, merge_reload, BrokerLevel, LiveConfig, DYNAMIC_CONFIG_FILE,
};
use crate::metadata::ops::{ConfigAlteration, TopicError};
use crate::metadata::store::write_atomically;
use crate::protocol::KafkaError;
use crate::types::ShardId;

/// A change to one dynamic level, sent to shard 0.
#[derive(Debug, Clone)]
pub struct BrokerConfigAlteration {
    /// Which level (resource name "" or this node id).
    pub level: BrokerLevel,
    /// What to change.
    pub alteration: ConfigAlteration,
    /// Validate only; change nothing.
    pub validate_only: bool,
}

/// What only shard 0 has: the inputs to reload the static configuration from, and the lock
/// that keeps changes in order.
pub struct ConfigOwner {
    /// The file path, the `VAART_*` environment captured at start, and the flags.
    inputs: ConfigInputs,
    /// One change (or reload) at a time: validate, persist, broadcast.
    lock: Rc<Semaphore>,
}

impl ConfigOwner {
    /// The owner state for shard 0.
    pub fn new(inputs: ConfigInputs) -> ConfigOwner {
        ConfigOwner {
            inputs,
            lock: Rc::new(Semaphore::new(1)),
        }
    }
}

fn server_error(message: &str) -> TopicError {
    TopicError {
        code: KafkaError::UnknownServerError,
        message: Some(message.to_string()),
    }
}

/// Logs, at info, every setting whose effective value differs between two configs.
fn log_effective_changes(old: &BrokerConfig, new: &BrokerConfig, why: &str) {
    for ((def, old_value, _), (_, new_value, source)) in
        old.describe().iter().zip(new.describe().iter())
    {
        if old_value != new_value {
            info!(
                setting = def.name,
                old = old_value.as_deref().unwrap_or("null"),
                new = new_value.as_deref().unwrap_or("null"),
                source = ?source,
                "{why}: {} is now {}",
                def.name,
                new_value.as_deref().unwrap_or("null")
            );
        }
    }
}

impl Shard {
    /// The configuration in force now, dynamic broker configs included.
    pub fn current_config(&self) -> Arc<BrokerConfig> {
        self.live.borrow().effective.clone()
    }

    /// The live configuration with its static part and dynamic levels (DescribeConfigs).
    pub fn live_config(&self) -> Arc<LiveConfig> {
        self.live.borrow().clone()
    }

    /// Changes a dynamic level through shard 0; returns once every shard runs with it.
    pub async fn alter_broker_config(
        self: &Rc<Self>,
        request: BrokerConfigAlteration,
    ) -> Result<(), TopicError> {
        if self.id == ShardId::METADATA_OWNER {
            return self.owner_alter_broker_config(request).await;
        }
        match self
            .mesh
            .call(
                ShardId::METADATA_OWNER,
                MeshRequest::AlterBrokerConfig(request),
            )
            .await
        {
            Ok(MeshReply::BrokerConfig(result)) => result,
            Ok(_) => {
                error!(shard = %self.id, "shard 0 sent an unexpected reply kind");
                Err(server_error("Unexpected reply from the config owner."))
            }
            Err(err) => {
                warn!(shard = %self.id, error = %err, "broker config change not delivered");
                Err(TopicError {
                    code: KafkaError::BrokerNotAvailable,
                    message: Some("The broker is shutting down.".to_string()),
                })
            }
        }
    }

    /// Shard 0: validates, persists and broadcasts one change.
    pub(super) async fn owner_alter_broker_config(
        self: &Rc<Self>,
        request: BrokerConfigAlteration,
    ) -> Result<(), TopicError> {
        let Some(owner) = &self.config_owner else {
            error!(shard = %self.id, "broker config change on a shard that is not the owner");
            return Err(server_error("Not the config owner."));
        };
        let _turn = owner
            .lock
            .acquire_permit(1)
            .await
            .map_err(|_| server_error("The broker is shutting down."))?;
        let live = self.live_config();
        let layer = alter_layer(
            live.layers.layer(request.level),
            &live.effective,
            &request.alteration,
        )?;
        if request.validate_only {
            return Ok(());
        }
        let mut layers = live.layers.clone();
        *layers.layer_mut(request.level) = layer;
        let (next, warnings) = LiveConfig::build(live.static_config.clone(), layers);
        for warning in warnings {
            warn!("{warning}");
        }
        let encoded = encode_layers(&next.layers, self.config.node_id);
        let dir = self.config.data_dir.clone();
        let persisted = glommio::executor()
            .spawn_blocking(move || write_atomically(&dir, DYNAMIC_CONFIG_FILE, &encoded))
            .await;
        if let Err(err) = persisted {
            error!(error = %err, "cannot persist dynamic broker configs; change rejected");
            return Err(TopicError {
                code: KafkaError::KafkaStorageError,
                message: Some("The broker could not persist the config change.".to_string()),
            });
        }
        let why = format!("dynamic broker config ({})", request.level.describe());
        log_effective_changes(&live.effective, &next.effective, &why);
        self.broadcast_live_config(Arc::new(next)).await;
        Ok(())
    }

    /// Shard 0: sends `next` to every shard (this one included) and waits for each.
    async fn broadcast_live_config(self: &Rc<Self>, next: Arc<LiveConfig>) {
        let mut calls = Vec::with_capacity(self.shard_count);
        for peer in 0..self.shard_count {
            if peer == self.id.0 {
                continue;
            }
            let shard = self.clone();
            let next = next.clone();
            calls.push(glommio::spawn_local(async move {
                shard
                    .mesh
                    .call(ShardId(peer), MeshRequest::ApplyLiveConfig(next))
                    .await
            }));
        }
        self.apply_live_config(next);
        for call in calls {
            if let Err(err) = call.await {
                warn!(error = %err, "a shard did not take the new broker config");
            }
        }
    }

    /// Swaps in `next` and applies what changed on this shard.
    pub(super) fn apply_live_config(&self, next: Arc<LiveConfig>) {
        let previous = std::mem::replace(&mut *self.live.borrow_mut(), next.clone());
        // Topic defaults: every log without an override of what changed follows it.
        self.refresh_partition_settings();
        // `max.connections`: the accept loop waits on this event and reads the limit again.
        if previous.effective.max_connections != next.effective.max_connections {
            self.connections.changed.notify_all();
        }
    }

    /// Shard 0, on SIGHUP: loads the file, environment (as captured at start) and flags again;
    /// changed dynamic settings take effect, changed read-only ones are reported as needing a
    /// restart; a configuration that no longer loads changes nothing.
    pub async fn reload_config(self: &Rc<Self>) {
        let Some(owner) = &self.config_owner else {
            return;
        };
        let Ok(_turn) = owner.lock.acquire_permit(1).await else {
            return;
        };
        let inputs = owner.inputs.clone();
        let loaded = glommio::executor()
            .spawn_blocking(move || BrokerConfig::load(&inputs))
            .await;
        let reloaded = match loaded {
            Ok((config, warnings)) => {
                for warning in warnings {
                    warn!("{warning}");
                }
                config
            }
            Err(err) => {
                error!(error = %err, "configuration reload failed; keeping the running configuration");
                return;
            }
        };
        let live = self.live_config();
        let (merged, changes) = match merge_reload(&live.static_config, &reloaded) {
            Ok(merged) => merged,
            Err(err) => {
                error!(error = %err, "configuration reload failed; keeping the running configuration");
                return;
            }
        };
        let mut applied = 0usize;
        for change in &changes {
            let old = change.old.as_deref().unwrap_or("null");
            let new = change.new.as_deref().unwrap_or("null");
            if change.dynamic {
                applied += 1;
                info!(
                    setting = change.name,
                    old, new, "configuration reload: {} changed from {old} to {new}", change.name
                );
            } else {
                warn!(setting = change.name, old, new, "configuration reload: {} changed from {old} to {new}, but it requires a restart; keeping {old}", change.name);
            }
        }
        if applied == 0 {
            info!(
                changed = changes.len(),
                "configuration reload: no dynamic setting changed"
            );
            return;
        }
        let (next, warnings) = LiveConfig::build(Arc::new(merged), live.layers.clone());
        for warning in warnings {
            warn!("{warning}");
        }
        self.broadcast_live_config(Arc::new(next)).await;
        info!(applied, "configuration reload done");
    }
}
