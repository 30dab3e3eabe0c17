//! Running the `vaart` command-line tools (`vaart topics`, `console-producer`, ...) as child
//! processes against a test broker, with a deadline, capturing stdout, stderr and the exit code.

use std::io::{Read, Write};
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::broker::vaart_binary;

/// How long one tool invocation may run before the test fails (tools with `--timeout-ms` stop
/// themselves well before this).
pub const TOOL_DEADLINE: Duration = Duration::from_secs(60);

/// What a finished tool printed and how it exited.
#[derive(Debug)]
pub struct ToolOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl ToolOutput {
    /// Panics with both streams quoted unless the tool exited 0.
    pub fn assert_success(&self) -> &Self {
        assert!(
            self.status.success(),
            "tool failed ({}):\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }

    /// Panics unless the tool exited non-zero; returns stderr.
    pub fn assert_failure(&self) -> &str {
        assert!(
            !self.status.success(),
            "tool unexpectedly succeeded:\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.stdout,
            self.stderr
        );
        &self.stderr
    }

    /// stdout split into lines.
    pub fn lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }
}

/// Runs `vaart <args>` with `stdin` fed to it (then closed), waits up to [`TOOL_DEADLINE`].
pub fn vaart_tool(args: &[&str], stdin: &[u8]) -> ToolOutput {
    let mut child = Command::new(vaart_binary())
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("VAART_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the vaart binary");
    let mut input = child.stdin.take().expect("piped stdin");
    let stdin = stdin.to_vec();
    let writer = thread::spawn(move || {
        // The tool may exit before reading everything (e.g. on an error); that is not ours to
        // report here.
        let _ = input.write_all(&stdin);
    });
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let out_reader = thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err_reader = thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + TOOL_DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the vaart tool") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("vaart {args:?} did not finish within {TOOL_DEADLINE:?}");
        }
        thread::sleep(Duration::from_millis(20));
    };
    let _ = writer.join();
    ToolOutput {
        status,
        stdout: out_reader.join().expect("stdout reader"),
        stderr: err_reader.join().expect("stderr reader"),
    }
}

/// Runs `vaart <tool> --bootstrap-server <broker> <args>` with `stdin` fed to it.
pub fn broker_tool(broker: &crate::Broker, tool: &str, args: &[&str], stdin: &[u8]) -> ToolOutput {
    let bootstrap = broker.bootstrap();
    let mut all = vec![tool, "--bootstrap-server", bootstrap.as_str()];
    all.extend_from_slice(args);
    vaart_tool(&all, stdin)
}

/// The failure's stderr, checked to be exactly one `Error: ` line (exit code 1, no panic, no
/// debug output), which is how every tool reports an error.
pub fn one_error_line(output: &ToolOutput) -> String {
    let stderr = output.assert_failure().to_string();
    assert_eq!(output.status.code(), Some(1), "exit code; stderr: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line on stderr, got: {stderr:?}");
    assert!(lines[0].starts_with("Error: "), "{stderr:?}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("{ "),
        "{stderr:?}"
    );
    lines[0].to_string()
}
