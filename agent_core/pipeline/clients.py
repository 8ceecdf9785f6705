"""boto3 clients, created lazily and once per process (a warm Lambda reuses their connections).

boto3 itself honours ``AWS_ENDPOINT_URL`` (a moto server locally). The cache is keyed by the
endpoint and region read from the environment, so a process that points at another endpoint
(a test session, the local stack) gets a fresh client instead of one bound to the old address.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_sqs import SQSClient

# Producer and consumer fan requests out over small thread pools; botocore's default pool of
# 10 connections would make those threads queue for a connection.
_MAX_POOL_CONNECTIONS = 32

_lock = threading.Lock()
_clients: dict[tuple[str, str | None, str | None], Any] = {}


def _cache_key(service: str) -> tuple[str, str | None, str | None]:
    endpoint = os.environ.get(f"AWS_ENDPOINT_URL_{service.upper()}") or os.environ.get(
        "AWS_ENDPOINT_URL"
    )
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    return service, endpoint, region


def _client(service: str) -> Any:
    key = _cache_key(service)
    client = _clients.get(key)
    if client is not None:
        return client
    with _lock:
        client = _clients.get(key)
        if client is None:
            import boto3
            from botocore.config import Config

            config = Config(
                max_pool_connections=_MAX_POOL_CONNECTIONS,
                retries={"mode": "standard", "max_attempts": 4},
                connect_timeout=5,
                read_timeout=30,
            )
            # A private session: boto3's default session is not safe to share across threads.
            client = boto3.session.Session().client(service, config=config)  # type: ignore[call-overload]
            _clients[key] = client
    return client


def sqs_client() -> SQSClient:
    client: SQSClient = _client("sqs")
    return client


def dynamodb_client() -> DynamoDBClient:
    client: DynamoDBClient = _client("dynamodb")
    return client


def clear_clients() -> None:
    """Forget every cached client (the next call builds new ones from the environment)."""
    with _lock:
        _clients.clear()
