//! A shard's life on its executor: join the mesh, open its partitions, accept connections
//! until shutdown, drain, wait for every other shard to drain, close its logs.

use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};
use std::rc::Rc;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use futures_lite::{future, AsyncReadExt};
use glommio::channels::channel_mesh::{Full, MeshBuilder};
use glommio::channels::shared_channel::ConnectedReceiver;
use glommio::net::{TcpListener, UnixStream};
use thiserror::Error;
use tracing::{debug, info, warn};

use super::mesh::{Envelope, Mesh};
use super::Shard;
use crate::config::{BrokerConfig, HostPort};
use crate::metadata::store::MetadataStore;
use crate::metadata::ClusterMetadata;
use crate::net::connection;
use crate::signals;
use crate::types::ShardId;

/// How long a shard waits for its connections to finish in-flight requests on shutdown.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a shard waits for the others to drain before closing its logs anyway.
const PEER_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause after a failed accept (e.g. out of file descriptors) before trying again.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// Everything a shard needs to start, built by the main thread.
pub struct ShardStartup {
    /// Shard index.
    pub id: ShardId,
    /// Effective configuration.
    pub config: Arc<BrokerConfig>,
    /// Address advertised to clients.
    pub advertised: HostPort,
    /// Metadata as loaded from disk.
    pub metadata: Arc<ClusterMetadata>,
    /// The metadata file (shard 0 only).
    pub store: Option<MetadataStore>,
    /// This shard's listening socket (bound, listening).
    pub listener: OwnedFd,
    /// Read end of this shard's signal notification: [`signals::SHUTDOWN_BYTE`] or EOF = shut
    /// down, [`signals::RELOAD_BYTE`] = reload the configuration (shard 0).
    pub shutdown_signal: OwnedFd,
    /// The configuration in force (static + dynamic levels).
    pub live_config: Arc<crate::dynamic_config::LiveConfig>,
    /// What the configuration was loaded from, for SIGHUP reloads (shard 0 only).
    pub config_inputs: Option<crate::config::ConfigInputs>,
    /// The mesh every shard joins.
    pub mesh: MeshBuilder<Envelope, Full>,
    /// Where the shard reports that it is serving (or why it cannot).
    pub ready: mpsc::Sender<StartupReport>,
    /// Journal entries an earlier process left, restored into the logs that lack them.
    pub journal_entries: Arc<super::ack_journal::RestoreSet>,
}

/// A shard's startup outcome, sent to the main thread.
#[derive(Debug)]
pub struct StartupReport {
    /// Shard.
    pub shard: ShardId,
    /// `Err(message)` if the shard cannot serve.
    pub result: Result<(), String>,
}

/// A shard that could not run at all.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ShardError {
    /// Joining the channel mesh failed.
    #[error("shard {0} could not join the channel mesh")]
    MeshJoin(ShardId),
}

/// Runs one shard to completion.
pub async fn run_shard(startup: ShardStartup) -> Result<(), ShardError> {
    let id = startup.id;
    let (senders, mut receivers) = startup
        .mesh
        .join()
        .await
        .map_err(|_| ShardError::MeshJoin(id))?;
    // Mesh peer ids follow executor creation order, which is shard order.
    assert_eq!(senders.peer_id(), id.0, "mesh peer id must equal shard id");
    let mesh = Mesh::new(id, senders);
    let shard = Rc::new(Shard::new(
        id,
        startup.advertised.clone(),
        startup.metadata.clone(),
        mesh,
        startup.store,
        startup.live_config.clone(),
        startup.config_inputs,
    ));
    for (peer, receiver) in receivers.streams() {
        glommio::spawn_local(receive_loop(shard.clone(), ShardId(peer), receiver)).detach();
    }
    glommio::spawn_local(watch_shutdown_signal(
        shard.clone(),
        startup.shutdown_signal,
    ))
    .detach();

    let restore = startup.journal_entries;
    let opened = shard.open_owned_partitions(&restore).await;
    // The entries are in the logs now: do not keep them for the broker's whole life.
    drop(restore);
    let opened = opened.and_then(|()| {
        // Shard 0 serves `/metrics` for the whole process; a bind failure stops startup.
        crate::metrics::http::start(&shard)
            .map(|_| ())
            .map_err(|err| err.to_string())
    });
    let serving = match opened {
        Ok(()) => true,
        Err(message) => {
            let _ = startup.ready.send(StartupReport {
                shard: id,
                result: Err(message),
            });
            false
        }
    };
    if serving {
        shard.ack_journal.start(&shard.config, id);
        shard.start_background_tasks();
        shard.start_group_coordinator();
        shard.start_log_cleaner();
        // SAFETY: the fd is a bound, listening TCP socket created by the main thread for this
        // shard alone; ownership moves into the glommio listener.
        let listener = unsafe { TcpListener::from_raw_fd(startup.listener.into_raw_fd()) };
        let _ = startup.ready.send(StartupReport {
            shard: id,
            result: Ok(()),
        });
        // The listeners share one port (SO_REUSEPORT), so a client can reach this shard while
        // another is still opening the partitions a request would be forwarded to. Accept
        // only once every shard has opened its own; a connection waits in the kernel's
        // accept queue meanwhile.
        let all_opened = future::or(
            async {
                if let Err(err) = shard.announce_opened().await {
                    warn!(shard = %id, error = %err, "could not announce startup to every shard");
                }
                shard.wait_peers_opened().await;
                true
            },
            async {
                shard.shutdown.wait().await;
                false
            },
        )
        .await;
        if all_opened {
            accept_loop(&shard, &listener).await;
        }
        drop(listener);
    } else {
        shard.shutdown.wait().await;
    }

    // Drain: connections stop reading new requests once `shutdown` is set and close after
    // their in-flight responses are written.
    shard.wake_waiters_for_shutdown();
    let drained = future::or(
        async {
            shard.wait_connections_closed().await;
            true
        },
        async {
            glommio::timer::sleep(DRAIN_TIMEOUT).await;
            false
        },
    )
    .await;
    if !drained {
        warn!(shard = %id, open = shard.open_connections(), "connections did not drain in time; closing them");
    }
    if let Err(err) = shard.announce_drained().await {
        warn!(shard = %id, error = %err, "could not announce drain to every shard");
    }
    let peers_drained = future::or(
        async {
            shard.wait_peers_drained().await;
            true
        },
        async {
            glommio::timer::sleep(PEER_DRAIN_TIMEOUT).await;
            false
        },
    )
    .await;
    if !peers_drained {
        warn!(shard = %id, "other shards did not drain in time");
    }
    if shard.close_partitions().await {
        // Every log is closed, so written: the journal holds nothing they lack.
        shard.ack_journal.remove();
    } else {
        warn!(shard = %id, "a partition log did not close cleanly; its journal stays for the next start");
    }
    shard.mesh.close();
    debug!(shard = %id, "shard stopped");
    Ok(())
}

async fn accept_loop(shard: &Rc<Shard>, listener: &TcpListener) {
    loop {
        // `max.connections`: at the limit, stop accepting (new connections wait in the
        // kernel's accept queue, as Kafka's acceptor waits for a free slot).
        let slot = future::or(
            async {
                shard.wait_connection_slot().await;
                true
            },
            async {
                shard.shutdown.wait().await;
                false
            },
        )
        .await;
        if !slot {
            return;
        }
        let accepted = future::or(async { Some(listener.accept().await) }, async {
            shard.shutdown.wait().await;
            None
        })
        .await;
        match accepted {
            None => return,
            Some(Ok(stream)) => {
                // Registered here, before the next accept, so the limit is exact.
                let id = shard.connection_opened();
                glommio::spawn_local(connection::serve(shard.clone(), stream, id)).detach();
            }
            Some(Err(err)) => {
                warn!(shard = %shard.id, error = %err, "accept failed");
                glommio::timer::sleep(ACCEPT_ERROR_BACKOFF).await;
            }
        }
    }
}

async fn receive_loop(shard: Rc<Shard>, peer: ShardId, receiver: ConnectedReceiver<Envelope>) {
    while let Some(envelope) = receiver.recv().await {
        match envelope {
            Envelope::Reply { id, body } => shard.mesh.complete(id, body),
            Envelope::Request { from, id, body } => {
                glommio::spawn_local(shard.clone().handle_mesh_request(from, id, body)).detach();
            }
        }
    }
    debug!(shard = %shard.id, peer = %peer, "mesh channel closed");
}

async fn watch_shutdown_signal(shard: Rc<Shard>, signal: OwnedFd) {
    // SAFETY: the fd is one end of a Unix socket pair created by the main thread and owned
    // by this shard alone.
    let mut stream = unsafe { UnixStream::from_raw_fd(signal.into_raw_fd()) };
    let mut byte = [0u8; 1];
    loop {
        match stream.read(&mut byte).await {
            Ok(1) if byte[0] == signals::RELOAD_BYTE => {
                // SIGHUP: shard 0 reloads; the reload runs beside this watcher.
                let reloading = shard.clone();
                glommio::spawn_local(async move { reloading.reload_config().await }).detach();
            }
            _ => break,
        }
    }
    if !shard.shutdown.is_set() {
        info!(shard = %shard.id, "shutting down: no longer accepting connections");
    }
    shard.shutdown.set();
}
