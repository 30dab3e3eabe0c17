"""The course-lab walk-through, run verbatim: a broker on 127.0.0.1:9092 with built-in defaults,
then the five commands of the lab exactly as a student types them (with `vaart topics` in place
of `kafka-topics` and so on).

Port 9092 may be taken on a shared machine, so `test_cli_lab.py` runs this script inside a
fresh network namespace (`unshare -rn`), where 127.0.0.1:9092 is ours alone. Usage:

    lab_walkthrough.py VAART_BINARY WORKDIR

Prints one JSON object: for each step its command, exit code, stdout and stderr. The test
asserts on it; this script only drives and records.
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

BOOTSTRAP = "127.0.0.1:9092"
START_DEADLINE_S = 30
STEP_DEADLINE_S = 60
LAB_MESSAGES = ["hello from the lab", "vaart means waterway", "third line, with a comma"]


def bring_loopback_up() -> None:
    """A new network namespace starts with `lo` down (SIOCGIFFLAGS/SIOCSIFFLAGS, no iproute2)."""
    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH", b"lo", 0)
        flags = struct.unpack("16sH", fcntl.ioctl(sock, siocgifflags, request)[:18])[1]
        if not flags & iff_up:
            fcntl.ioctl(sock, siocsifflags, struct.pack("16sH", b"lo", flags | iff_up))


def wait_for_port(process: subprocess.Popen) -> None:
    deadline = time.monotonic() + START_DEADLINE_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"broker exited with {process.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", 9092), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("broker did not listen on 127.0.0.1:9092 in time")


def run(binary: str, args: list[str], stdin: str = "") -> dict:
    completed = subprocess.run([binary, *args], input=stdin.encode(), capture_output=True,
                               timeout=STEP_DEADLINE_S)
    return {"command": ["vaart", *args], "code": completed.returncode,
            "stdout": completed.stdout.decode(errors="replace"),
            "stderr": completed.stderr.decode(errors="replace")}


def run_consumer_until(binary: str, args: list[str], expected_lines: int) -> dict:
    """The lab's console consumer runs until Ctrl-C: read its output until the expected records
    arrived (or a deadline), then send SIGINT as the student would."""
    process = subprocess.Popen([binary, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None and process.stderr is not None
    stdout = b""
    deadline = time.monotonic() + STEP_DEADLINE_S
    while stdout.count(b"\n") < expected_lines and time.monotonic() < deadline:
        ready, _, _ = select.select([process.stdout], [], [], 0.2)
        if ready:
            chunk = os.read(process.stdout.fileno(), 65536)
            if not chunk:
                break
            stdout += chunk
    process.send_signal(signal.SIGINT)
    try:
        rest, stderr = process.communicate(timeout=STEP_DEADLINE_S)
    except subprocess.TimeoutExpired:
        process.kill()
        rest, stderr = process.communicate()
    return {"command": ["vaart", *args], "code": process.returncode,
            "stdout": (stdout + rest).decode(errors="replace"),
            "stderr": stderr.decode(errors="replace")}


def main() -> int:
    binary, workdir = sys.argv[1], Path(sys.argv[2])
    in_namespace = os.environ.get("VAART_LAB_NETNS") == "1"
    if in_namespace:
        bring_loopback_up()
    data_dir = workdir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    log = open(workdir / "vaart.stderr", "ab")
    # Built-in defaults, only the data dir is ours (the default would be ./data in the cwd).
    broker = subprocess.Popen([binary, "start", "--data-dir", str(data_dir)], cwd=workdir,
                              stdout=log, stderr=log)
    steps = []
    try:
        wait_for_port(broker)
        steps.append(run(binary, ["topics", "--bootstrap-server", BOOTSTRAP, "--list"]))
        steps.append(run(binary, ["topics", "--bootstrap-server", BOOTSTRAP, "--create", "--topic",
                                  "lecture", "--partitions", "3", "--replication-factor", "1"]))
        steps.append(run(binary, ["topics", "--bootstrap-server", BOOTSTRAP, "--describe",
                                  "--topic", "lecture"]))
        steps.append(run(binary, ["console-producer", "--bootstrap-server", BOOTSTRAP, "--topic",
                                  "lecture"], stdin="".join(f"{line}\n" for line in LAB_MESSAGES)))
        steps.append(run_consumer_until(binary, ["console-consumer", "--bootstrap-server",
                                                 BOOTSTRAP, "--topic", "lecture",
                                                 "--from-beginning"], len(LAB_MESSAGES)))
        steps.append(run(binary, ["topics", "--bootstrap-server", BOOTSTRAP, "--list"]))
    finally:
        broker.send_signal(signal.SIGTERM)
        try:
            broker_code = broker.wait(timeout=STEP_DEADLINE_S)
        except subprocess.TimeoutExpired:
            broker.kill()
            broker_code = broker.wait()
        log.close()
    print(json.dumps({"steps": steps, "broker_exit": broker_code,
                      "broker_log": (workdir / "vaart.stderr").read_text(errors="replace")[-8000:]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
