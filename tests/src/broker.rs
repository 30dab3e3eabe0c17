//! One real `vaart` broker process per test.
//!
//! The binary is found, in order, at `$VAART_BIN`, beside the test executable's `deps/` folder
//! (`target/debug/vaart` when the test runs from `target/debug/deps/`), at
//! `$CARGO_TARGET_DIR/debug/vaart`, and at `<workspace>/target/debug/vaart`. It is not built
//! here: the test command builds the workspace first (`cargo build -p vaart-broker` by hand).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::wire::KafkaConn;

/// How long a broker may take to accept connections and answer ApiVersions after it is spawned.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a broker may take to exit after SIGTERM.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// How much of the broker's stderr a failure message quotes (the whole file stays on disk).
const STDERR_TAIL_BYTES: usize = 12_000;
/// Each shard's acknowledgement journal in tests (`produce.ack.journal.bytes`).
const TEST_JOURNAL_BYTES: u64 = 4 << 20;
/// Pause between readiness probes while a broker starts.
const PROBE_INTERVAL: Duration = Duration::from_millis(50);
/// Connect timeout of one check that a stopped broker's port is free.
const PORT_RELEASE_PROBE_TIMEOUT: Duration = Duration::from_millis(200);

/// Command-line options for `vaart start`, beyond the listen address and data dir that every
/// [`Broker`] sets itself.
#[derive(Debug, Clone, Default)]
pub struct BrokerOptions {
    shards: Option<u32>,
    node_id: Option<i32>,
    settings: Vec<(String, String)>,
    config_file: Option<PathBuf>,
    relative_data_dir: bool,
}

impl BrokerOptions {
    /// Defaults: the broker's own shard count and node id, no `--set`.
    pub fn new() -> Self {
        Self::default()
    }

    /// `--shards N`.
    pub fn shards(mut self, shards: u32) -> Self {
        self.shards = Some(shards);
        self
    }

    /// `--node-id N`.
    pub fn node_id(mut self, node_id: i32) -> Self {
        self.node_id = Some(node_id);
        self
    }

    /// `--set NAME=VALUE`, a setting by its Kafka name (e.g. `auto.create.topics.enable`).
    pub fn set(mut self, name: &str, value: &str) -> Self {
        self.settings.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Run the broker in its work folder with `--data-dir data`, a relative path (as the
    /// default `./vaart-data` is); [`Broker::data_dir`] still gives the absolute one.
    pub fn relative_data_dir(mut self) -> Self {
        self.relative_data_dir = true;
        self
    }

    /// `--config FILE` (the listen address and data dir flags still win over the file).
    pub fn config_file(mut self, path: &Path) -> Self {
        self.config_file = Some(path.to_path_buf());
        self
    }

    /// Starts a broker with these options (see [`Broker::start_with`]).
    pub fn start(self) -> Broker {
        Broker::start_with(self)
    }
}

/// A running `vaart start` process on a free loopback port with a fresh data dir.
///
/// Dropping it kills the process (SIGKILL) if it still runs. When the test is panicking, the
/// temporary folder (data dir and `vaart.stderr`) is kept and its path printed.
pub struct Broker {
    options: BrokerOptions,
    binary: PathBuf,
    workdir: Option<TempDir>,
    workdir_path: PathBuf,
    port: u16,
    /// Holds the port for this broker's whole life, restarts included.
    _port_reservation: PortReservation,
    /// The `/metrics` port (`metrics.listen`), reserved the same way.
    metrics_port: u16,
    _metrics_port_reservation: PortReservation,
    child: Option<Child>,
    start_count: u32,
    /// Process ids of every start, to find the journal files they left (see `Drop`).
    pids: Vec<u32>,
}

impl Broker {
    /// Starts a broker with default options.
    pub fn start() -> Broker {
        Broker::start_with(BrokerOptions::new())
    }

    /// Starts a broker and waits until it accepts TCP connections and answers an ApiVersions
    /// request; panics (quoting its stderr) if it exits or is not ready within
    /// [`START_TIMEOUT`].
    pub fn start_with(options: BrokerOptions) -> Broker {
        let binary = vaart_binary();
        let workdir = tempfile::Builder::new()
            .prefix("vaart-e2e-")
            .tempdir()
            .expect("create a temporary dir for the broker");
        let workdir_path = workdir.path().to_path_buf();
        fs::create_dir_all(workdir_path.join("data")).expect("create the broker's data dir");
        let reservation = reserve_port();
        let metrics_reservation = reserve_port();
        let mut broker = Broker {
            options,
            binary,
            workdir: Some(workdir),
            workdir_path,
            port: reservation.port,
            _port_reservation: reservation,
            metrics_port: metrics_reservation.port,
            _metrics_port_reservation: metrics_reservation,
            child: None,
            start_count: 0,
            pids: Vec::new(),
        };
        broker.spawn_and_wait();
        broker
    }

    /// The port the broker listens on (the same across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`, for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The listen address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, self.port))
    }

    /// The port of the Prometheus `/metrics` endpoint (`metrics.listen`, on 127.0.0.1).
    pub fn metrics_port(&self) -> u16 {
        self.metrics_port
    }

    /// `127.0.0.1:METRICS_PORT`.
    pub fn metrics_addr(&self) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, self.metrics_port))
    }

    /// The broker's `--data-dir`.
    pub fn data_dir(&self) -> PathBuf {
        self.workdir_path.join("data")
    }

    /// Where the broker's stderr (its log) goes, appended across restarts.
    pub fn stderr_path(&self) -> PathBuf {
        self.workdir_path.join("vaart.stderr")
    }

    /// The broker's whole stderr (every start), lossily decoded.
    fn read_stderr(&self) -> std::io::Result<String> {
        fs::read(self.stderr_path()).map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
    }

    /// The broker's stderr (its log) since its latest start.
    pub fn log_of_last_start(&self) -> String {
        let text = self.read_stderr().unwrap_or_default();
        let marker = format!("=== vaart-tests: start #{} ", self.start_count);
        match text.rfind(&marker) {
            Some(start) => text[start..].to_owned(),
            None => text,
        }
    }

    /// The last part of the broker's stderr, for failure messages.
    pub fn stderr_tail(&self) -> String {
        let text = self.read_stderr().unwrap_or_else(|error| {
            format!("<cannot read {}: {error}>", self.stderr_path().display())
        });
        match text.len().checked_sub(STDERR_TAIL_BYTES) {
            Some(start) => {
                let start = (start..text.len())
                    .find(|index| text.is_char_boundary(*index))
                    .unwrap_or(text.len());
                format!("...{}", &text[start..])
            }
            None => text,
        }
    }

    /// Panics with `message` followed by the tail of the broker's stderr.
    pub fn fail(&self, message: impl std::fmt::Display) -> ! {
        panic!(
            "{message}\n--- vaart stderr ({}) ---\n{}",
            self.stderr_path().display(),
            self.stderr_tail()
        )
    }

    /// Unwraps `result`, failing the test with `what`, the error and the broker's stderr.
    pub fn check<T, E: std::fmt::Debug>(&self, result: Result<T, E>, what: &str) -> T {
        match result {
            Ok(value) => value,
            Err(error) => self.fail(format!("{what}: {error:?}")),
        }
    }

    /// Sends `signal` (e.g. `libc::SIGHUP`) to the running broker without waiting.
    pub fn send_signal(&mut self, signal: libc::c_int) {
        let pid = match self
            .child
            .as_ref()
            .map(|child| libc::pid_t::try_from(child.id()))
        {
            Some(Ok(pid)) => pid,
            _ => self.fail("send_signal(): the broker is not running"),
        };
        // SAFETY: kill(2) has no memory-safety preconditions; `pid` is our own child, not yet
        // waited for, so it cannot have been reused by another process.
        if unsafe { libc::kill(pid, signal) } != 0 {
            let error = std::io::Error::last_os_error();
            self.fail(format!("kill({pid}, {signal}) failed: {error}"));
        }
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Asserts the process is still running (it did not crash on what a test sent it).
    pub fn assert_running(&mut self) {
        if !self.is_running() {
            let status = self
                .child
                .as_mut()
                .and_then(|child| child.try_wait().ok().flatten());
            self.fail(format!(
                "vaart is not running any more (exit status {status:?})"
            ));
        }
    }

    /// Graceful stop: SIGTERM, then waits up to [`STOP_TIMEOUT`]; the exit code must be 0.
    pub fn stop(&mut self) {
        let status = self.signal_and_wait(libc::SIGTERM, STOP_TIMEOUT);
        match status {
            Some(status) if status.code() == Some(0) => {}
            Some(status) => self.fail(format!(
                "vaart exited with {status} after SIGTERM, expected exit code 0"
            )),
            None => self.fail(format!(
                "vaart still running {} s after SIGTERM (killed it)",
                STOP_TIMEOUT.as_secs()
            )),
        }
        self.wait_port_released();
    }

    /// Hard stop: SIGKILL (no chance to flush), then waits for the process.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Child::kill sends SIGKILL; an error means it already exited, which is fine here.
            let _ = child.kill();
            if let Err(error) = child.wait() {
                self.fail(format!("waiting for the killed broker: {error}"));
            }
            self.wait_port_released();
        }
    }

    /// Waits until the port refuses connections. A process's listening sockets can outlive it
    /// by a few milliseconds (io_uring tears its rings down after the exit); a connection
    /// made meanwhile completes its handshake and is then reset, so a test that connects
    /// right after a restart could reach the old process instead of the new one.
    fn wait_port_released(&self) {
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            match TcpStream::connect_timeout(&self.addr(), PORT_RELEASE_PROBE_TIMEOUT) {
                Err(error) if error.kind() == std::io::ErrorKind::ConnectionRefused => return,
                _ if Instant::now() >= deadline => self.fail(format!(
                    "port {} still takes connections {} s after the broker exited",
                    self.port,
                    STOP_TIMEOUT.as_secs()
                )),
                _ => thread::sleep(Duration::from_millis(1)),
            }
        }
    }

    /// Changes the shard count (`--shards`) used by the next [`Broker::restart`].
    pub fn set_shards(&mut self, shards: u32) {
        self.options.shards = Some(shards);
    }

    /// Starts the broker again on the same data dir, port and options (after [`Broker::stop`]
    /// or [`Broker::kill`]) and waits until it is ready.
    pub fn restart(&mut self) {
        assert!(
            self.child.is_none(),
            "restart() needs a stopped broker: call stop() or kill() first"
        );
        self.spawn_and_wait();
    }

    /// Starts the broker again like [`Broker::restart`] but returns at once, before it is
    /// ready: a test can reach it while it starts. Call [`Broker::wait_until_ready`] after.
    pub fn restart_without_waiting(&mut self) {
        assert!(
            self.child.is_none(),
            "restart_without_waiting() needs a stopped broker: call stop() or kill() first"
        );
        self.spawn();
    }

    /// Sends `signal` and waits up to `timeout`; returns the exit status, or None (after a
    /// SIGKILL) when the process did not exit in time.
    fn signal_and_wait(&mut self, signal: libc::c_int, timeout: Duration) -> Option<ExitStatus> {
        let mut child = match self.child.take() {
            Some(child) => child,
            None => self.fail("stop(): the broker is not running"),
        };
        let pid = match libc::pid_t::try_from(child.id()) {
            Ok(pid) => pid,
            Err(_) => self.fail(format!("pid {} does not fit pid_t", child.id())),
        };
        // SAFETY: kill(2) has no memory-safety preconditions; `pid` is our own child, which
        // has not been waited for yet, so the pid cannot have been reused by another process.
        let rc = unsafe { libc::kill(pid, signal) };
        if rc != 0 {
            let error = std::io::Error::last_os_error();
            self.fail(format!("kill({pid}, {signal}) failed: {error}"));
        }
        let deadline = Instant::now() + timeout;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if Instant::now() < deadline => thread::sleep(PROBE_INTERVAL),
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return None;
                }
                Err(error) => self.fail(format!("waiting for vaart: {error}")),
            }
        }
    }

    fn spawn_and_wait(&mut self) {
        self.spawn();
        self.wait_until_ready();
    }

    fn spawn(&mut self) {
        self.start_count += 1;
        let stderr = self.open_log("vaart.stderr");
        let stdout = self.open_log("vaart.stdout");
        let binary = match std::path::absolute(&self.binary) {
            Ok(binary) => binary,
            Err(error) => self.fail(format!("resolving {}: {error}", self.binary.display())),
        };
        let mut command = Command::new(binary);
        command
            .arg("start")
            .arg("--listen")
            .arg(self.bootstrap())
            .arg("--data-dir");
        if self.options.relative_data_dir {
            command.current_dir(&self.workdir_path).arg("data");
        } else {
            command.arg(self.data_dir());
        }
        if let Some(shards) = self.options.shards {
            command.arg("--shards").arg(shards.to_string());
        }
        if let Some(node_id) = self.options.node_id {
            command.arg("--node-id").arg(node_id.to_string());
        }
        if let Some(path) = &self.options.config_file {
            command.arg("--config").arg(path);
        }
        // Before the test's own settings, so a test can override them. The acknowledgement
        // journal goes into the work folder (removed with it, even after a SIGKILL that no
        // restart follows) instead of /dev/shm, and is smaller than the default.
        command
            .arg("--set")
            .arg(format!("metrics.listen=127.0.0.1:{}", self.metrics_port))
            .arg("--set")
            .arg(format!(
                "produce.ack.journal.dir={}",
                self.workdir_path.join("journal").display()
            ))
            .arg("--set")
            .arg(format!("produce.ack.journal.bytes={TEST_JOURNAL_BYTES}"));
        for (name, value) in &self.options.settings {
            command.arg("--set").arg(format!("{name}={value}"));
        }
        // VAART_* variables are broker settings; VAART_BIN only tells the tests where the binary
        // is, so the broker does not get it.
        command
            .env_remove("VAART_BIN")
            .stdin(Stdio::null())
            .stdout(Stdio::from(stdout))
            .stderr(Stdio::from(stderr));
        let child = match command.spawn() {
            Ok(child) => child,
            Err(error) => self.fail(format!("spawning {:?}: {error}", command)),
        };
        self.pids.push(child.id());
        self.child = Some(child);
    }

    /// Opens a log file for appending and writes a separator naming this start.
    fn open_log(&self, name: &str) -> File {
        let path = self.workdir_path.join(name);
        let mut file = match OpenOptions::new().create(true).append(true).open(&path) {
            Ok(file) => file,
            Err(error) => panic!("open {}: {error}", path.display()),
        };
        let _ = writeln!(
            file,
            "=== vaart-tests: start #{} on port {} ===",
            self.start_count, self.port
        );
        file
    }

    /// Waits until the broker answers ApiVersions; fails the test (quoting its stderr) if it
    /// exits or is not ready within [`START_TIMEOUT`].
    pub fn wait_until_ready(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut() {
                match child.try_wait() {
                    Ok(Some(status)) => {
                        self.child = None;
                        self.fail(format!(
                            "vaart exited ({status}) before it was ready on {}",
                            self.bootstrap()
                        ));
                    }
                    Ok(None) => {}
                    Err(error) => self.fail(format!("waiting for vaart: {error}")),
                }
            }
            let last_error = match probe_api_versions(self.addr()) {
                Ok(()) => return,
                Err(error) => error,
            };
            if Instant::now() >= deadline {
                self.kill();
                self.fail(format!(
                    "vaart not ready on {} after {} s (last probe: {last_error}); killed it",
                    self.bootstrap(),
                    START_TIMEOUT.as_secs()
                ));
            }
            thread::sleep(PROBE_INTERVAL);
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.remove_journals_outside_the_workdir();
        if thread::panicking() {
            if let Some(workdir) = self.workdir.take() {
                let kept = workdir.keep();
                eprintln!(
                    "vaart-tests: broker data dir and logs kept at {}",
                    kept.display()
                );
            }
        }
    }
}

impl Broker {
    /// A test that puts the acknowledgement journal outside the work folder (the real default,
    /// /dev/shm) and fails before the broker removes it would leave up to the journal's size
    /// of memory there: remove the files of this broker's processes
    /// (`vaart-journal-<data dir>-<pid>-<shard>`).
    fn remove_journals_outside_the_workdir(&self) {
        let Some((_, dir)) = self
            .options
            .settings
            .iter()
            .rev()
            .find(|(name, _)| name == "produce.ack.journal.dir")
        else {
            return;
        };
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let ours = name.starts_with("vaart-journal-")
                && self
                    .pids
                    .iter()
                    .any(|pid| name.contains(&format!("-{pid}-")));
            if ours {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

/// How many ports [`reserve_port`] tries before it gives up.
const PORT_ATTEMPTS: usize = 200;

/// A loopback port reserved for one broker across every test process on this machine.
///
/// The broker binds with SO_REUSEPORT, so two brokers given the same port would both start and
/// share its connections. A port the OS says is free can still be handed to a second test
/// process (nextest runs tests in parallel processes) before the first broker binds it, so each
/// port is also claimed with an exclusive `flock` on `$TMPDIR/vaart-tests-ports/<port>`: the
/// kernel drops the lock when the holder exits, so a crashed test never blocks a port.
/// The Python helper (`tests/python/vaart_broker.py`) takes the same locks.
pub struct PortReservation {
    pub port: u16,
    _lock: File,
}

/// Reserves a free loopback port (see [`PortReservation`]).
pub fn reserve_port() -> PortReservation {
    let dir = std::env::temp_dir().join("vaart-tests-ports");
    if let Err(error) = fs::create_dir_all(&dir) {
        panic!("create {}: {error}", dir.display());
    }
    for _ in 0..PORT_ATTEMPTS {
        let port = free_port();
        let path = dir.join(port.to_string());
        let lock = match OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
        {
            Ok(lock) => lock,
            Err(error) => panic!("open {}: {error}", path.display()),
        };
        if lock.try_lock().is_ok() {
            return PortReservation { port, _lock: lock };
        }
    }
    panic!("no free loopback port after {PORT_ATTEMPTS} attempts")
}

/// A loopback port that nothing listens on right now (the OS picks it). Prefer
/// [`reserve_port`] for anything a broker will listen on.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    listener
        .local_addr()
        .expect("local address of a bound listener")
        .port()
}

/// One readiness probe: connect, ApiVersions v3, any well-formed answer counts.
fn probe_api_versions(addr: SocketAddr) -> Result<(), String> {
    let mut conn = KafkaConn::connect_with_timeout(addr, Duration::from_secs(2))
        .map_err(|error| error.to_string())?;
    conn.api_versions_raw(3)
        .map(|_| ())
        .map_err(|error| error.to_string())
}

/// The `vaart` binary to test (see the module docs for the search order).
pub fn vaart_binary() -> PathBuf {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(path) = std::env::var_os("VAART_BIN") {
        let path = PathBuf::from(path);
        if !path.is_file() {
            panic!("VAART_BIN={} is not a file", path.display());
        }
        return path;
    }
    if let Ok(exe) = std::env::current_exe() {
        // target/debug/deps/<test> -> target/debug/vaart
        if let Some(profile_dir) = exe.parent().and_then(Path::parent) {
            candidates.push(profile_dir.join("vaart"));
        }
    }
    if let Some(target_dir) = std::env::var_os("CARGO_TARGET_DIR") {
        candidates.push(PathBuf::from(target_dir).join("debug").join("vaart"));
    }
    candidates.push(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("target")
            .join("debug")
            .join("vaart"),
    );
    match candidates.iter().find(|path| path.is_file()) {
        Some(path) => path.clone(),
        None => panic!(
            "vaart binary not found (looked at {candidates:?}); build it with \
             `cargo build -p vaart-broker` or set VAART_BIN"
        ),
    }
}
