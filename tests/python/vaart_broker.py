"""The real `vaart` binary as a test subject, for the Python client tests.

`BrokerProcess` starts `vaart start` on a free loopback port with its own data dir, waits until
the broker answers an ApiVersions request (bounded), stops it with SIGTERM (which must exit 0),
kills it with SIGKILL, and restarts it on the same data dir and port. The broker's stderr goes to
a file whose tail is quoted in every failure.

The binary is `$VAART_BIN`, or `debug/vaart` in `$CARGO_TARGET_DIR` (default: `target/` at the
repository root).
"""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import struct
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
START_TIMEOUT_S = float(os.environ.get("VAART_START_TIMEOUT_S", "30"))
STOP_TIMEOUT_S = float(os.environ.get("VAART_STOP_TIMEOUT_S", "30"))
PROBE_INTERVAL_S = 0.05
LOG_TAIL_CHARS = 12_000


def vaart_binary() -> Path:
    """The binary under test; fails the test (never skips) when it is missing."""
    target_dir = Path(os.environ.get("CARGO_TARGET_DIR", REPO_ROOT / "target"))
    path = Path(os.environ.get("VAART_BIN", target_dir / "debug" / "vaart"))
    if not path.is_file():
        pytest.fail(f"vaart binary not found at {path}: run `cargo build -p vaart-broker` or set "
                    "VAART_BIN", pytrace=False)
    return path


def free_port() -> int:
    """A loopback port that nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


PORT_ATTEMPTS = 200


def reserve_port():
    """(port, lock file): a free loopback port, also claimed with an exclusive flock on
    $TMPDIR/vaart-tests-ports/<port> so that no other test process (Rust or Python) starts a
    broker on it meanwhile (the broker binds with SO_REUSEPORT, so two brokers on one port would
    both start). The lock goes when the file is closed or the process exits."""
    directory = Path(tempfile.gettempdir()) / "vaart-tests-ports"
    directory.mkdir(parents=True, exist_ok=True)
    for _ in range(PORT_ATTEMPTS):
        port = free_port()
        lock = open(directory / str(port), "a")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            continue
        return port, lock
    pytest.fail(f"no free loopback port after {PORT_ATTEMPTS} attempts", pytrace=False)


def _compact_string(text: str) -> bytes:
    data = text.encode()
    return bytes([len(data) + 1]) + data  # unsigned varint; short strings only


def api_versions_v3_request(correlation_id: int) -> bytes:
    """A framed ApiVersions v3 request (request header v2), built by hand."""
    client_id = b"vaart-py-probe"
    header = struct.pack(">hhih", 18, 3, correlation_id, len(client_id)) + client_id + b"\x00"
    body = _compact_string("vaart-tests") + _compact_string("0.1.0") + b"\x00"
    payload = header + body
    return struct.pack(">i", len(payload)) + payload


def _recv_exactly(sock: socket.socket, count: int) -> bytes:
    chunks = []
    while count > 0:
        chunk = sock.recv(count)
        if not chunk:
            raise ConnectionError("connection closed by the broker")
        chunks.append(chunk)
        count -= len(chunk)
    return b"".join(chunks)


def probe_api_versions(port: int, timeout_s: float = 2.0) -> None:
    """One ApiVersions v3 round trip; raises OSError/ConnectionError/ValueError on failure."""
    with socket.create_connection((HOST, port), timeout=timeout_s) as sock:
        sock.settimeout(timeout_s)
        sock.sendall(api_versions_v3_request(correlation_id=1))
        (length,) = struct.unpack(">i", _recv_exactly(sock, 4))
        if not 4 <= length <= 1 << 20:
            raise ValueError(f"ApiVersions response length {length}")
        payload = _recv_exactly(sock, length)
        (correlation_id,) = struct.unpack(">i", payload[:4])
        if correlation_id != 1:
            raise ValueError(f"ApiVersions response correlation id {correlation_id}")


class BrokerProcess:
    """One `vaart start` process; stdout and stderr are appended to files in `log_dir`."""

    def __init__(self, binary: Path, data_dir: Path, log_dir: Path, *, shards: int | None = None,
                 node_id: int | None = None, settings: dict[str, str] | None = None):
        self.binary = binary
        self.data_dir = data_dir
        self.log_dir = log_dir
        self.shards = shards
        self.node_id = node_id
        self.settings = dict(settings or {})
        self.port, self._port_lock = reserve_port()
        # The Prometheus /metrics endpoint gets a reserved port of its own (metrics.listen).
        self.metrics_port, self._metrics_port_lock = reserve_port()
        self.process: subprocess.Popen | None = None
        self.start_count = 0

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def stderr_path(self) -> Path:
        return self.log_dir / "vaart.stderr"

    def logs(self) -> str:
        """The tail of the broker's stderr."""
        try:
            text = self.stderr_path.read_text(errors="replace")
        except OSError as error:
            return f"<cannot read {self.stderr_path}: {error}>"
        return text[-LOG_TAIL_CHARS:]

    def fail(self, message: str) -> None:
        """Fails the test with `message` and the broker's stderr."""
        pytest.fail(f"{message}\n--- vaart stderr ({self.stderr_path}) ---\n{self.logs()}",
                    pytrace=False)

    def command(self) -> list[str]:
        command = [str(self.binary), "start", "--listen", self.bootstrap,
                   "--data-dir", str(self.data_dir)]
        if self.shards is not None:
            command += ["--shards", str(self.shards)]
        if self.node_id is not None:
            command += ["--node-id", str(self.node_id)]
        # Before the test's own settings, so a test can override it.
        command += ["--set", f"metrics.listen={HOST}:{self.metrics_port}"]
        for name, value in self.settings.items():
            command += ["--set", f"{name}={value}"]
        return command

    def start(self) -> None:
        """Starts the broker and waits (bounded) until it answers ApiVersions."""
        assert self.process is None, "start() on a running broker"
        self.start_count += 1
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_dir / "vaart.stdout", "ab") as stdout, \
                open(self.stderr_path, "ab") as stderr:
            stderr.write(f"=== vaart_broker.py: start #{self.start_count} on port {self.port} ===\n"
                         .encode())
            stderr.flush()
            # VAART_* variables are broker settings; VAART_BIN only tells the tests where the
            # binary is, so the broker does not get it.
            environment = {name: value for name, value in os.environ.items()
                           if name != "VAART_BIN"}
            self.process = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL,
                                            stdout=stdout, stderr=stderr, env=environment)
        self._wait_until_ready()

    def _wait_until_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            exit_code = self.process.poll()
            if exit_code is not None:
                self.process = None
                self.fail(f"vaart exited with code {exit_code} before it was ready on "
                          f"{self.bootstrap}")
            try:
                probe_api_versions(self.port)
                return
            except (OSError, ValueError) as error:
                last_error = error
            if time.monotonic() > deadline:
                self.kill()
                self.fail(f"vaart not ready on {self.bootstrap} after {START_TIMEOUT_S:.0f}s "
                          f"(last probe: {last_error!r}); killed it")
            time.sleep(PROBE_INTERVAL_S)

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        """SIGTERM (graceful shutdown); the broker must exit with code 0 within the bound."""
        assert self.process is not None, "stop() on a stopped broker"
        process, self.process = self.process, None
        process.send_signal(signal.SIGTERM)
        try:
            exit_code = process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            self.fail(f"vaart still running {STOP_TIMEOUT_S:.0f}s after SIGTERM (killed it)")
            return
        if exit_code != 0:
            self.fail(f"vaart exited with code {exit_code} after SIGTERM, expected 0")

    def kill(self) -> None:
        """SIGKILL: no chance to flush."""
        if self.process is not None:
            process, self.process = self.process, None
            process.kill()
            process.wait()

    def release_port(self) -> None:
        """Gives the ports back (after the last stop)."""
        self._port_lock.close()
        self._metrics_port_lock.close()

    def restart(self) -> None:
        """Starts again on the same data dir, port and options (after stop() or kill())."""
        assert self.process is None, "restart() needs a stopped broker"
        self.start()


def broker_fixture(tmp_path: Path, **options):
    """Generator for pytest fixtures: a started broker, stopped with SIGTERM afterwards (which
    must exit 0) unless the test already stopped it."""
    broker = BrokerProcess(vaart_binary(), tmp_path / "data", tmp_path / "logs", **options)
    try:
        broker.start()
        yield broker
    finally:
        try:
            if broker.is_running():
                broker.stop()
            elif broker.process is not None:
                exit_code = broker.process.poll()
                broker.process = None
                broker.fail(f"vaart died during the test (exit code {exit_code})")
        finally:
            broker.release_port()
