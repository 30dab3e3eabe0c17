"""Shared fixtures for the Python end-to-end tests: the real `vaart` binary, driven by real
clients. The broker process itself is managed by `vaart_broker.BrokerProcess`."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from vaart_broker import broker_fixture  # noqa: E402


@pytest.fixture
def broker(tmp_path: Path):
    """A started broker with a fresh data dir on a free port; stopped with SIGTERM afterwards,
    which must exit 0."""
    yield from broker_fixture(tmp_path)
