"""Fixtures for the benchmark tests: a moto server for the session (the emulator comes from
tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from infra.localstack.moto import MotoServer


@pytest.fixture(scope="session")
def bench_moto() -> Iterator[MotoServer]:
    from infra.localstack.moto import MotoServer

    with MotoServer.start() as server:
        yield server
