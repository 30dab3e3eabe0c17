//! Process-level startup and shutdown: data dir, metadata, listening sockets, one pinned
//! executor per shard, the signal thread, and joining everything at the end.

use std::fs::{self, File};
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use glommio::channels::channel_mesh::MeshBuilder;
use glommio::{LocalExecutorBuilder, Placement};
use thiserror::Error;
use tracing::{error, info, warn};

use crate::config::{BrokerConfig, ConfigInputs};
use crate::dynamic_config::{load_layers, DynamicConfigError, LiveConfig};
use crate::metadata::store::{MetadataStore, StoreError, METADATA_FILE};
use crate::net::listener::{bind_reuseport, resolve, ListenError};
use crate::shard::ack_journal::LeftJournals;
use crate::shard::mesh::MESH_CHANNEL_CAPACITY;
use crate::shard::partitions::clean_data_dir;
use crate::shard::runtime::{run_shard, ShardStartup, StartupReport};
use crate::signals;
use crate::types::ShardId;

/// Lock file that keeps two brokers off one data dir.
const LOCK_FILE: &str = ".lock";

/// Why the broker could not start or stopped with an error.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The data dir could not be created or opened.
    #[error("data dir {path}: {op}: {source}")]
    DataDir {
        /// What was being done.
        op: &'static str,
        /// Path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// Another process holds the data dir.
    #[error("data dir {0} is in use by another vaart process")]
    DataDirLocked(PathBuf),
    /// Metadata could not be loaded.
    #[error(transparent)]
    Metadata(#[from] StoreError),
    /// The dynamic broker config file could not be loaded.
    #[error(transparent)]
    DynamicConfig(#[from] DynamicConfigError),
    /// The listen address could not be bound.
    #[error(transparent)]
    Listen(#[from] ListenError),
    /// Signal handling could not be set up.
    #[error("cannot set up signal handling: {0}")]
    Signals(std::io::Error),
    /// A shard executor could not be created.
    #[error("cannot start shard {shard}: {reason}")]
    ShardSpawn {
        /// Shard.
        shard: usize,
        /// glommio's message.
        reason: String,
    },
    /// A shard reported it cannot serve.
    #[error("shard {shard} failed to start: {reason}")]
    ShardStartup {
        /// Shard.
        shard: usize,
        /// Reason.
        reason: String,
    },
    /// A shard ended with an error or panicked.
    #[error("shard {shard} stopped abnormally: {reason}")]
    ShardFailed {
        /// Shard.
        shard: usize,
        /// Reason.
        reason: String,
    },
}

/// Runs the broker until SIGTERM/SIGINT; returns after every shard stopped. `config` is the
/// static configuration loaded from `inputs` (kept for SIGHUP reloads).
pub fn run(config: BrokerConfig, inputs: ConfigInputs) -> Result<(), ServerError> {
    crate::alloc_guard::tune_allocator();
    let config = Arc::new(config);
    let data_dir = config.data_dir.clone();
    fs::create_dir_all(&data_dir).map_err(|source| ServerError::DataDir {
        op: "create",
        path: data_dir.clone(),
        source,
    })?;
    let _lock = lock_data_dir(&data_dir)?;
    let metadata_existed = data_dir.join(METADATA_FILE).exists();
    let (store, metadata) = MetadataStore::open(
        &data_dir,
        config.node_id,
        config.cluster_id.as_deref(),
        config.shards,
    )?;
    clean_data_dir(&data_dir, &metadata, metadata_existed);
    write_probe_file(&data_dir)?;
    let metadata = Arc::new(metadata);

    // Dynamic broker configs (AlterConfigs on a BROKER resource, persisted in the data dir)
    // apply on top of the static configuration.
    let (layers, mut config_warnings) = load_layers(&data_dir, config.node_id)?;
    let (live, build_warnings) = LiveConfig::build(config, layers);
    config_warnings.extend(build_warnings);
    for warning in &config_warnings {
        warn!("{warning}");
    }
    if !live.layers.is_empty() {
        info!(cluster_default = ?live.layers.cluster_default, this_broker = ?live.layers.broker, "dynamic broker configs applied");
    }
    let live = Arc::new(live);
    let config = live.effective.clone();
    let mut config_inputs = Some(inputs);
    // Acknowledged batches a killed process had not yet written, restored while the shards
    // open their partitions.
    let left_journals = LeftJournals::load(&config);

    // Block SIGINT/SIGTERM before any thread starts so every thread inherits the mask and
    // only the signal thread receives them (via sigwait).
    signals::block_shutdown_signals().map_err(ServerError::Signals)?;
    if let Err(err) =
        crate::alloc_guard::spawn_memory_trimmer(crate::alloc_guard::MEMORY_TRIM_INTERVAL)
    {
        warn!(error = %err, "cannot start the memory trimmer thread; freed memory stays resident");
    }

    let address = resolve(&config.listen.to_socket_string())?;
    let (listeners, bound) = bind_reuseport(address, config.shards)?;
    let mut advertised = config.advertised();
    if config.advertised_listener.is_none() {
        advertised.port = bound.port();
    }

    let cpus = allowed_cpus();
    let mesh = MeshBuilder::full(config.shards, MESH_CHANNEL_CAPACITY);
    let (ready_tx, ready_rx) = mpsc::channel::<StartupReport>();
    let mut signal_writers: Vec<StdUnixStream> = Vec::with_capacity(config.shards);
    let mut handles = Vec::with_capacity(config.shards);
    for (index, listener) in listeners.into_iter().enumerate() {
        let (writer, reader) = StdUnixStream::pair().map_err(ServerError::Signals)?;
        signal_writers.push(writer);
        let startup = ShardStartup {
            id: ShardId(index),
            config: config.clone(),
            advertised: advertised.clone(),
            metadata: metadata.clone(),
            store: (index == 0).then(|| store.clone()),
            listener,
            shutdown_signal: OwnedFd::from(reader),
            live_config: live.clone(),
            config_inputs: if index == 0 {
                config_inputs.take()
            } else {
                None
            },
            mesh: mesh.clone(),
            ready: ready_tx.clone(),
            journal_entries: left_journals.entries.clone(),
        };
        let cpu = cpus.get(index % cpus.len().max(1)).copied().unwrap_or(0);
        let mut builder = LocalExecutorBuilder::new(Placement::Fixed(cpu))
            .name(&format!("vaart-shard-{index}"))
            .io_memory(config.shard_io_memory_bytes);
        if config.shard_spin_before_park_us > 0 {
            builder =
                builder.spin_before_park(Duration::from_micros(config.shard_spin_before_park_us));
        }
        let handle =
            builder
                .spawn(move || run_shard(startup))
                .map_err(|err| ServerError::ShardSpawn {
                    shard: index,
                    reason: err.to_string(),
                });
        match handle {
            Ok(handle) => handles.push(handle),
            Err(err) => {
                // Shards already started wait for the mesh forever; tell them to stop by
                // closing their signal sockets, then report.
                drop(signal_writers);
                return Err(err);
            }
        }
    }
    drop(ready_tx);

    let signal_fds: Vec<OwnedFd> = signal_writers.into_iter().map(OwnedFd::from).collect();
    let signal_fds = Arc::new(signal_fds);

    let mut startup_error = None;
    for _ in 0..config.shards {
        match ready_rx.recv() {
            Ok(StartupReport { result: Ok(()), .. }) => {}
            Ok(StartupReport {
                shard,
                result: Err(reason),
            }) => {
                startup_error = Some(ServerError::ShardStartup {
                    shard: shard.0,
                    reason,
                });
                break;
            }
            Err(_) => {
                startup_error = Some(ServerError::ShardStartup {
                    shard: usize::MAX,
                    reason: "a shard stopped before reporting readiness".to_string(),
                });
                break;
            }
        }
    }
    if startup_error.is_none() {
        info!(
            "vaart started: listening on {bound} (advertised {advertised}), node.id {}, {} shard(s), data dir {}, cluster id {}",
            config.node_id.0,
            config.shards,
            display_path(&data_dir),
            metadata.cluster_id
        );
        log_memlock(&config);
        // Every shard has opened (and restored and written) its partitions.
        left_journals.remove();
        signals::spawn_signal_thread(signal_fds.clone()).map_err(ServerError::Signals)?;
    } else {
        signals::notify_shutdown(&signal_fds);
    }

    let mut failure = startup_error;
    for (index, handle) in handles.into_iter().enumerate() {
        let outcome = handle.join();
        let reason = match outcome {
            Ok(Ok(())) => None,
            Ok(Err(err)) => Some(err.to_string()),
            Err(err) => Some(err.to_string()),
        };
        if let Some(reason) = reason {
            error!(shard = index, "shard stopped abnormally: {reason}");
            // Make sure the other shards stop too.
            signals::notify_shutdown(&signal_fds);
            if failure.is_none() {
                failure = Some(ServerError::ShardFailed {
                    shard: index,
                    reason,
                });
            }
        }
    }
    match failure {
        Some(err) => Err(err),
        None => {
            info!("vaart stopped cleanly");
            Ok(())
        }
    }
}

/// Writes the 4 KiB file every shard reads once through `DmaFile` before opening any log
/// (RUNTIME-NOTES pitfall 1: glommio probes polled I/O per thread on its first DmaFile).
/// Written here, once, so shards starting together only read it.
fn write_probe_file(dir: &Path) -> Result<(), ServerError> {
    let path = dir.join(vaart_engine::backend::PROBE_FILE_NAME);
    let complete = fs::metadata(&path)
        .map(|m| m.len() >= 4096)
        .unwrap_or(false);
    if !complete {
        fs::write(&path, vec![b'V'; 4096]).map_err(|source| ServerError::DataDir {
            op: "write direct I/O probe file",
            path: path.clone(),
            source,
        })?;
    }
    Ok(())
}

/// Takes an exclusive `flock` on `<data-dir>/.lock`; held until the returned file drops.
fn lock_data_dir(dir: &Path) -> Result<File, ServerError> {
    let path = dir.join(LOCK_FILE);
    let mut file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| ServerError::DataDir {
            op: "open lock file",
            path: path.clone(),
            source,
        })?;
    // SAFETY: flock on a file descriptor we own and keep open.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        return Err(ServerError::DataDirLocked(dir.to_path_buf()));
    }
    let _ = file.set_len(0);
    let _ = writeln!(file, "{}", std::process::id());
    Ok(file)
}

/// Logs the glommio I/O memory per shard against RLIMIT_MEMLOCK (RUNTIME-NOTES pitfall 4:
/// each executor registers about 3 x io_memory; below that, registration is skipped and I/O
/// runs unregistered, slower).
fn log_memlock(config: &BrokerConfig) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct we pass.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) };
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let needed = (config.shard_io_memory_bytes as u64)
        .saturating_mul(3)
        .saturating_mul(config.shards as u64);
    let limit_bytes = if rc == 0 { limit.rlim_cur } else { 0 };
    if root || limit_bytes == libc::RLIM_INFINITY || limit_bytes >= needed {
        info!(
            io_memory_bytes_per_shard = config.shard_io_memory_bytes,
            memlock_limit_bytes = limit_bytes,
            root,
            "glommio I/O memory registered"
        );
    } else {
        warn!(
            io_memory_bytes_per_shard = config.shard_io_memory_bytes,
            memlock_limit_bytes = limit_bytes,
            needed_bytes = needed,
            "RLIMIT_MEMLOCK is too low to register glommio I/O memory; I/O works but slower. \
             Raise LimitMEMLOCK (systemd) / ulimit -l, or lower shard.io.memory.bytes"
        );
    }
}

/// CPUs this process may run on (respects taskset/cgroups), in ascending order.
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills it for pid 0 (this thread).
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: passes a valid pointer to `set` and its exact size.
    let rc =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        warn!("sched_getaffinity failed; pinning shards to CPUs 0..n");
        return (0..crate::config::default_shard_count()).collect();
    }
    let max_cpus = 8 * std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: CPU_ISSET reads the initialised set for indexes below its capacity.
    let cpus: Vec<usize> = (0..max_cpus)
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect();
    if cpus.is_empty() {
        vec![0]
    } else {
        cpus
    }
}

fn display_path(path: &Path) -> String {
    fs::canonicalize(path)
        .unwrap_or_else(|_| path.to_path_buf())
        .display()
        .to_string()
}
