"""Shared fixtures: the dataset root (data tests skip without it) and light CPU settings."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

# Tests use tiny tensors; one thread avoids oversubscribing a machine that may be training.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The dataset root holding MNIST; skips the test when MNIST is not there."""
    root = Path(os.environ.get("FLOWPAINT_DATA", "./data"))
    if not (root / "MNIST" / "raw").is_dir():
        pytest.skip(f"MNIST not found under {root}: set FLOWPAINT_DATA to run data tests")
    return root


@pytest.fixture(scope="session")
def free_port() -> Callable[[], int]:
    """A function that returns a loopback port free at the time of the call (app servers, DDP)."""
    def pick() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]
    return pick


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that asks for ``data_root`` carries the ``data`` mark, so ``-m data`` and
    ``-m "not data"`` split the suite exactly (``.ci/run`` runs the two halves apart)."""
    for item in items:
        if "data_root" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.data)
