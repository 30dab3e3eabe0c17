"""Fixtures for the Python end-to-end tests: the real `vaart` binary, driven by real clients.

The binary is `$VAART_BIN`, or `target/debug/vaart` at the repository root (scripts/test.sh
builds it before running pytest). Each test that asks for `broker` gets its own broker process on
a free loopback port with a fresh data directory.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
# Bounded waits: a broker that is not listening after this long, or not gone after SIGTERM,
# fails the test with its own log attached.
START_TIMEOUT_S = float(os.environ.get("VAART_START_TIMEOUT_S", "30"))
STOP_TIMEOUT_S = float(os.environ.get("VAART_STOP_TIMEOUT_S", "30"))
LOG_TAIL_CHARS = 8000


def vaart_bin() -> Path:
    path = Path(os.environ.get("VAART_BIN", REPO_ROOT / "target" / "debug" / "vaart"))
    if not path.is_file():
        pytest.fail(f"vaart binary not found at {path}: run `cargo build -p vaart-broker` "
                    "or set VAART_BIN", pytrace=False)
    return path


def free_port() -> int:
    """A loopback port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


@dataclass
class BrokerProcess:
    """One running `vaart start` process; its stdout and stderr go to files in `log_dir`."""

    binary: Path
    data_dir: Path
    log_dir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def stderr_path(self) -> Path:
        return self.log_dir / "vaart.stderr"

    def logs(self) -> str:
        text = self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""
        return text[-LOG_TAIL_CHARS:]

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        command = [str(self.binary), "start", "--listen", self.bootstrap,
                   "--data-dir", str(self.data_dir)]
        with open(self.log_dir / "vaart.stdout", "ab") as stdout, \
                open(self.stderr_path, "ab") as stderr:
            self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL,
                                            stdout=stdout, stderr=stderr)
        self._wait_until_listening()

    def _wait_until_listening(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            exit_code = self.process.poll()
            if exit_code is not None:
                pytest.fail(f"vaart exited with code {exit_code} before listening on "
                            f"{self.bootstrap}; stderr:\n{self.logs()}", pytrace=False)
            try:
                with socket.create_connection((HOST, self.port), timeout=0.5):
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.process.kill()
                self.process.wait()
                pytest.fail(f"vaart not listening on {self.bootstrap} after "
                            f"{START_TIMEOUT_S:.0f}s; stderr:\n{self.logs()}", pytrace=False)
            time.sleep(0.05)

    def stop(self) -> int:
        """Sends SIGTERM (graceful shutdown) and returns the exit code."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            exit_code = self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            pytest.fail(f"vaart still running {STOP_TIMEOUT_S:.0f}s after SIGTERM; "
                        f"stderr:\n{self.logs()}", pytrace=False)
        self.process = None
        return exit_code


@pytest.fixture
def broker(tmp_path: Path):
    """A started broker with a fresh data dir; stopped with SIGTERM afterwards, which must
    exit 0."""
    process = BrokerProcess(binary=vaart_bin(), data_dir=tmp_path / "data",
                            log_dir=tmp_path / "logs")
    process.start()
    try:
        yield process
    finally:
        if process.process is not None:
            exit_code = process.stop()
            assert exit_code == 0, \
                f"vaart exited with code {exit_code} after SIGTERM; stderr:\n{process.logs()}"
