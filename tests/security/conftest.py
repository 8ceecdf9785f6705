"""Fixtures for the security tests. They reuse the reliability tests' agents and helpers
(``reliability_agents``, ``reliability_helpers``), so that folder goes on sys.path too."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from infra.localstack.moto import MotoServer

RELIABILITY = Path(__file__).resolve().parent.parent / "reliability"
if str(RELIABILITY) not in sys.path:
    sys.path.insert(0, str(RELIABILITY))


@pytest.fixture(scope="session")
def local_moto() -> Iterator[MotoServer]:
    """The local stack's moto server (DynamoDB requests served atomically)."""
    from infra.localstack.moto import MotoServer

    with MotoServer.start() as server:
        yield server
