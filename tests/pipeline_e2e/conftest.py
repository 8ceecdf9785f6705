"""Fixtures for the end-to-end tests: one moto server per session, local stacks per test.

The emulator comes from tests/conftest.py (``emulator``, session scope). A ``LocalStack`` built on
both seeds its own project and creates its own queues and table, so tests never share state.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from infra.emulator import Emulator
    from infra.localstack.moto import MotoServer
    from infra.localstack.stack import LocalStack

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    # The test agent is loaded through AGENT_MODULE="e2e_agents:make_runner", as in Lambda.
    sys.path.insert(0, str(HERE))

from e2e_helpers import AGENT_MODULE, fast_shape  # noqa: E402


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    from infra.localstack.moto import MotoServer

    with MotoServer.start() as server:
        yield server


@pytest.fixture
def sqs(moto_server: MotoServer) -> Any:
    return moto_server.client("sqs")


@pytest.fixture
def make_stack(emulator: Emulator, moto_server: MotoServer) -> Iterator[Callable[..., LocalStack]]:
    """Start LocalStacks on the session emulator and moto server; all are closed after the test."""
    import e2e_agents

    from infra.localstack.stack import LocalStack

    stacks: list[LocalStack] = []

    def start(**kwargs: Any) -> LocalStack:
        kwargs.setdefault("fixture", e2e_agents.E2E_FIXTURE)
        kwargs.setdefault("agent_module", AGENT_MODULE)
        kwargs.setdefault("shape", fast_shape())
        stack = LocalStack(
            emulator=emulator,
            moto=moto_server,
            retry_backoff_base_seconds=1,
            retry_backoff_max_seconds=2,
            **kwargs,
        )
        stacks.append(stack.start())
        return stack

    e2e_agents.reset()
    emulator.faults.clear()
    try:
        yield start
    finally:
        for stack in reversed(stacks):
            stack.close()
        e2e_agents.reset()
