"""The local stack's moto server applies conditional writes atomically, as DynamoDB does.

A plain moto server checks a condition and writes without a lock: parallel claims of one lease
could all succeed there (measured: 9 double claims in 40 six-way races), and the local stack would
run a task twice under a concurrent poller. infra/localstack/moto.py serialises DynamoDB requests.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from agent_core.pipeline.leases import ClaimRequest, ClaimStatus, LeaseRequest, LeaseTable

if TYPE_CHECKING:
    from infra.emulator import Emulator
    from infra.localstack.stack import LocalStack

ROUNDS, CONTENDERS = 40, 6


@pytest.fixture
def stack(emulator: Emulator) -> Iterator[LocalStack]:
    from infra.localstack.stack import LocalStack

    # No moto server given: the stack starts its own, exactly as the demo and `agentkit` do.
    with LocalStack(fixture="basic", emulator=emulator) as s:
        yield s


def _race(table: LeaseTable) -> list[ClaimStatus]:
    """CONTENDERS threads claim one new lease at the same instant; their claim statuses."""
    request = LeaseRequest(str(uuid.uuid4()), str(uuid.uuid4()), "project")
    start = threading.Barrier(CONTENDERS)
    statuses: list[ClaimStatus] = []
    lock = threading.Lock()

    def claim(n: int) -> None:
        start.wait(timeout=10)
        status = table.claim(
            ClaimRequest(request, run_token=f"run-{n}", message_id=f"m-{n}"), run_seconds=60
        ).status
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=claim, args=(n,)) for n in range(CONTENDERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return statuses


def test_parallel_claims_through_the_local_stack_admit_exactly_one(stack: LocalStack) -> None:
    table = LeaseTable(
        stack.queues.lease_table_name, client=stack.moto.client("dynamodb"), ttl_seconds=3600
    )
    winners: list[int] = []
    for _ in range(ROUNDS):
        statuses = _race(table)
        assert len(statuses) == CONTENDERS
        assert set(statuses) <= {ClaimStatus.CLAIMED, ClaimStatus.RUNNING_ELSEWHERE}, statuses
        winners.append(statuses.count(ClaimStatus.CLAIMED))
    assert winners == [1] * ROUNDS


def test_sqs_long_polls_do_not_wait_for_dynamodb_or_the_reverse(stack: LocalStack) -> None:
    sqs, dynamodb = stack.moto.client("sqs"), stack.moto.client("dynamodb")
    polled: list[float] = []

    def long_poll() -> None:
        started = time.monotonic()
        sqs.receive_message(QueueUrl=stack.queues.dead_letter_queue_url, WaitTimeSeconds=3)
        polled.append(time.monotonic() - started)

    poller = threading.Thread(target=long_poll)
    poller.start()
    time.sleep(0.3)  # the long poll is now waiting inside the server
    started = time.monotonic()
    for _ in range(5):
        dynamodb.describe_table(TableName=stack.queues.lease_table_name)
    dynamodb_seconds = time.monotonic() - started
    poller.join(timeout=10)

    assert dynamodb_seconds < 2.0  # served while the long poll was open
    assert polled and polled[0] >= 2.5  # the long poll ran its full wait
