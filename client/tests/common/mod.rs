//! The real broker binary for the client's integration tests: `$VAART_BIN` or
//! `<workspace>/target/debug/vaart` on a fresh port and data dir, plus a glommio runner.

#![allow(clippy::unwrap_used, dead_code)]

use std::fs::File;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use glommio::LocalExecutorBuilder;

pub struct BrokerProcess {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
    stderr_path: PathBuf,
}

impl BrokerProcess {
    pub fn start() -> Self {
        let binary = std::env::var_os("VAART_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                let target_dir = std::env::var_os("CARGO_TARGET_DIR")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
                target_dir.join("debug/vaart")
            });
        assert!(
            binary.exists(),
            "broker binary {} not found: run `cargo build -p vaart-broker` or set VAART_BIN",
            binary.display()
        );
        let dir = tempfile::Builder::new()
            .prefix("vaart-client-")
            .tempdir()
            .unwrap();
        let data_dir = dir.path().join("data");
        std::fs::create_dir_all(&data_dir).unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let stderr_path = dir.path().join("vaart.stderr");
        let child = Command::new(&binary)
            .arg("start")
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(&data_dir)
            // Port 0: parallel test brokers must not compete for the default metrics port.
            .arg("--set")
            .arg("metrics.listen=127.0.0.1:0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&stderr_path).unwrap())
            .spawn()
            .unwrap();
        let broker = Self {
            child,
            port,
            _dir: dir,
            stderr_path,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "broker did not listen: {}",
                broker.stderr()
            );
            thread::sleep(Duration::from_millis(50));
        }
        broker
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn stop(mut self) {
        let pid = i32::try_from(self.child.id()).unwrap();
        // SAFETY: sending a signal to our own child process.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "broker exit {status}: {}", self.stderr());
                return;
            }
            assert!(Instant::now() < deadline, "broker ignored SIGTERM");
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn run<F, T>(future: impl FnOnce() -> F + Send + 'static) -> T
where
    F: std::future::Future<Output = T> + 'static,
    T: Send + 'static,
{
    LocalExecutorBuilder::default()
        .io_memory(1 << 20)
        .spawn(future)
        .unwrap()
        .join()
        .unwrap()
}
