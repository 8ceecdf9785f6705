"""Fixtures for the reliability tests (soak, bad inputs, the local stack's atomic DynamoDB).

The Encord emulator comes from tests/conftest.py. The test agents are loaded by the real handlers
through ``AGENT_MODULE="reliability_agents:..."``, as in Lambda, so this folder goes on sys.path.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from infra.localstack.moto import MotoServer

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))


def pytest_configure(config: pytest.Config) -> None:
    # Runs with the suite; `-m "not soak"` leaves the few-minute soak out of a quick run.
    config.addinivalue_line("markers", "soak: the fault-injection soak test (a few minutes)")


@pytest.fixture(scope="session")
def local_moto() -> Iterator[MotoServer]:
    """The local stack's moto server (DynamoDB requests served atomically)."""
    from infra.localstack.moto import MotoServer

    with MotoServer.start() as server:
        yield server
