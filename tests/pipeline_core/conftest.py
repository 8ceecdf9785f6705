"""Fixtures for the pipeline core tests: a moto server (SQS, DynamoDB) for the session, fresh
queues and a lease table per test, and the environment the handlers read.

The Encord side comes from tests/conftest.py (the emulator, ``basic_project``, ``encord_env``).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from infra.emulator import Emulator, SeededFixture

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    # The test agents are loaded through AGENT_MODULE="agents_for_tests:...", as in Lambda.
    sys.path.insert(0, str(HERE))

from pipeline_helpers import MAX_RECEIVE_COUNT, REGION, Pipeline, create_pipeline  # noqa: E402


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    import logging

    # One access-log line per AWS call drowns the output of a failing test.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)

    # DynamoDB requests are served one at a time there, as conditional writes must be atomic.
    from infra.localstack.moto import MotoServer

    with MotoServer.start(region=REGION) as server:
        yield server.endpoint_url


def _clear_aws_caches() -> None:
    from aws_lambda_powertools.utilities import parameters

    from agent_core.pipeline.clients import clear_clients

    clear_clients()
    parameters.clear_caches()
    parameters.base.DEFAULT_PROVIDERS.clear()


@pytest.fixture
def aws_env(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "agentkit-tests")
    _clear_aws_caches()
    yield moto_endpoint
    _clear_aws_caches()


@pytest.fixture
def pipeline(aws_env: str, monkeypatch: pytest.MonkeyPatch) -> Pipeline:
    from agent_core.pipeline.clients import dynamodb_client, sqs_client

    resources = create_pipeline(sqs_client(), dynamodb_client())
    monkeypatch.setenv("WORK_QUEUE_URL", resources.work_queue_url)
    monkeypatch.setenv("DEAD_LETTER_QUEUE_URL", resources.dlq_url)
    monkeypatch.setenv("LEASE_TABLE_NAME", resources.table_name)
    monkeypatch.setenv("MAX_RECEIVE_COUNT", str(MAX_RECEIVE_COUNT))
    monkeypatch.setenv("RETRY_BACKOFF_BASE_SECONDS", "2")
    monkeypatch.setenv("RETRY_BACKOFF_MAX_SECONDS", "5")
    monkeypatch.setenv("TIME_GUARD_MS", "5000")
    monkeypatch.setenv("MAX_TASKS_PER_RUN", "10000")
    return resources


@pytest.fixture
def agent_env(
    pipeline: Pipeline,
    basic_project: SeededFixture,
    encord_env: Emulator,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Any]:
    """Everything the handlers need for the ``basic`` project; pick the agent with
    ``monkeypatch.setenv("AGENT_MODULE", ...)`` (default: the one that completes every task)."""
    import agents_for_tests

    from agent_core.pipeline.loader import clear_runner_cache

    monkeypatch.setenv("PROJECT_HASH", basic_project.project_hash)
    monkeypatch.setenv("AGENT_MODULE", "agents_for_tests:complete_runner")
    clear_runner_cache()
    agents_for_tests.reset()
    yield basic_project
    clear_runner_cache()
    agents_for_tests.reset()
