"""The course-lab walk-through of issue 5, end to end, as written:

    vaart topics --bootstrap-server 127.0.0.1:9092 --list
    vaart topics --bootstrap-server 127.0.0.1:9092 --create --topic lecture --partitions 3 --replication-factor 1
    vaart topics --bootstrap-server 127.0.0.1:9092 --describe --topic lecture
    vaart console-producer --bootstrap-server 127.0.0.1:9092 --topic lecture
    vaart console-consumer --bootstrap-server 127.0.0.1:9092 --topic lecture --from-beginning

The broker runs with built-in defaults on 127.0.0.1:9092 inside a network namespace of the
test's own (`unshare -rn`), so the lab's fixed port cannot clash with anything on the machine.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lab_walkthrough import LAB_MESSAGES
from vaart_broker import vaart_binary

SCRIPT = Path(__file__).resolve().parent / "lab_walkthrough.py"


def run_lab(tmp_path: Path) -> dict:
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.fail("`unshare` (util-linux) is needed to give the lab its own 127.0.0.1:9092")
    env = dict(os.environ, VAART_LAB_NETNS="1")
    completed = subprocess.run(
        [unshare, "--user", "--map-root-user", "--net", sys.executable, str(SCRIPT),
         str(vaart_binary()), str(tmp_path)],
        capture_output=True, timeout=300, env=env)
    if completed.returncode != 0:
        pytest.fail(f"lab driver failed ({completed.returncode}):\n"
                    f"{completed.stdout.decode(errors='replace')}\n"
                    f"{completed.stderr.decode(errors='replace')}")
    return json.loads(completed.stdout)


def show(step: dict) -> str:
    return (f"$ {' '.join(step['command'])}\n(exit {step['code']})\n--- stdout ---\n"
            f"{step['stdout']}--- stderr ---\n{step['stderr']}")


def test_course_lab_walkthrough(tmp_path: Path):
    result = run_lab(tmp_path)
    steps = result["steps"]
    context = "\n\n".join(show(step) for step in steps) + "\n--- broker ---\n" + result["broker_log"]
    assert len(steps) == 6, context
    first_list, create, describe, produce, consume, last_list = steps

    # 1. A fresh broker has no user topics.
    assert first_list["code"] == 0, context
    assert "lecture" not in first_list["stdout"].split(), context

    # 2. Create prints Kafka's confirmation.
    assert create["code"] == 0, context
    assert create["stdout"].strip() == "Created topic lecture.", context

    # 3. Describe: Kafka's layout, one summary line and one line per partition.
    assert describe["code"] == 0, context
    lines = [line for line in describe["stdout"].splitlines() if line.strip()]
    summary = lines[0]
    assert re.match(r"^Topic: lecture\t", summary), context
    assert "\tPartitionCount: 3\t" in summary, context
    assert "\tReplicationFactor: 1\t" in summary, context
    assert "Configs:" in summary, context
    partitions = lines[1:]
    assert len(partitions) == 3, context
    for index, line in enumerate(partitions):
        fields = dict(part.split(": ", 1) for part in line.strip().split("\t") if ": " in part)
        assert fields["Topic"] == "lecture", context
        assert fields["Partition"] == str(index), context
        assert fields["Leader"] == "1", context
        assert fields["Replicas"] == "1", context
        assert fields["Isr"] == "1", context

    # 4. The producer reads the student's lines from stdin and exits cleanly at end of input.
    assert produce["code"] == 0, context

    # 5. The consumer prints every line (partitions interleave, so order across them is free),
    #    and stops on Ctrl-C with the count Kafka's tool reports.
    printed = [line for line in consume["stdout"].splitlines() if line]
    assert sorted(printed) == sorted(LAB_MESSAGES), context
    assert "Processed a total of 3 messages" in consume["stderr"], context
    assert consume["code"] in (0, 130), context

    # The topic is listed now, and the broker stopped cleanly on SIGTERM.
    assert last_list["code"] == 0, context
    assert "lecture" in last_list["stdout"].split(), context
    assert result["broker_exit"] == 0, context
