"""Fixtures for the pipeline core tests: a moto server (SQS, DynamoDB) for the session, fresh
queues and a lease table per test, and the environment the handlers read.

The Encord side comes from tests/conftest.py (the emulator, ``basic_project``, ``encord_env``).
"""

from __future__ import annotations

import sys
import threading
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


class AtomicDynamoDB:
    """WSGI middleware that runs moto's DynamoDB requests one at a time.

    DynamoDB applies a conditional write atomically; moto checks the condition and writes
    without a lock, so two parallel claims of one lease can both succeed against it. Serialising
    DynamoDB calls restores AWS's guarantee (SQS calls, long polls included, stay concurrent).
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if not str(environ.get("HTTP_X_AMZ_TARGET", "")).startswith("DynamoDB_"):
            return self.app(environ, start_response)
        with self.lock:
            result = self.app(environ, start_response)
            try:
                return [b"".join(result)]
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()


def start_moto_server() -> Any:
    from moto.moto_server.threaded_moto_server import ThreadedMotoServer
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    class Server(ThreadedMotoServer):
        def _server_entry(self) -> None:
            app = AtomicDynamoDB(DomainDispatcherApplication(create_backend_app))
            self._server = make_server(
                self._ip_address, self._port, app, True, request_handler=MotoRequestHandler
            )
            self._server_ready_event.set()
            self._server.serve_forever()

    server = Server(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    return server


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    import logging

    # One access-log line per AWS call drowns the output of a failing test.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)

    server = start_moto_server()
    try:
        _, port = server.get_host_and_port()
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


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
