"""The DynamoDB lease table against a moto server: every transition of docs/LEASES.md."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from pipeline_helpers import Pipeline

from agent_core.pipeline.clients import dynamodb_client
from agent_core.pipeline.leases import (
    PENDING_LEASE_SECONDS,
    RUN_MARGIN_SECONDS,
    ClaimStatus,
    LeaseRequest,
    LeaseState,
    LeaseTable,
)

TTL = 3600
STAGE_A = str(uuid.uuid4())
STAGE_B = str(uuid.uuid4())


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def table(pipeline: Pipeline, clock: Clock) -> LeaseTable:
    return LeaseTable(pipeline.table_name, client=dynamodb_client(), ttl_seconds=TTL, clock=clock)


def request(task: str, stage: str = STAGE_A) -> LeaseRequest:
    return LeaseRequest(task_uuid=task, stage_uuid=stage, project_hash="p")


def test_producer_lease_lifecycle(table: LeaseTable, clock: Clock) -> None:
    task = str(uuid.uuid4())
    assert table.acquire(request(task), "run-1") is True
    lease = table.get(task)
    assert lease is not None and lease.state is LeaseState.PENDING
    assert lease.expires_at == int(clock.now) + PENDING_LEASE_SECONDS
    # Any other producer is kept out while it is pending or queued.
    assert table.acquire(request(task), "run-2") is False
    assert table.confirm(task, "run-2") is False
    assert table.confirm(task, "run-1") is True
    lease = table.get(task)
    assert lease is not None and lease.state is LeaseState.QUEUED
    assert lease.expires_at == int(clock.now) + TTL
    assert table.acquire(request(task), "run-2") is False
    # Only its owner releases it.
    assert table.release(task, "run-2") is False
    assert table.release(task, "run-1") is True
    assert table.get(task) is None
    assert table.acquire(request(task), "run-2") is True


def test_dead_producer_pending_lease_expires(table: LeaseTable, clock: Clock) -> None:
    task = str(uuid.uuid4())
    assert table.acquire(request(task), "crashed-run") is True  # never confirmed
    clock.now += PENDING_LEASE_SECONDS - 1
    assert table.acquire(request(task), "run-2") is False
    clock.now += 2  # TTL deletion is lazy: the condition alone lets the next producer in
    assert table.acquire(request(task), "run-2") is True


def test_concurrent_producers_lease_each_task_once(table: LeaseTable) -> None:
    tasks = [str(uuid.uuid4()) for _ in range(30)]
    start = threading.Barrier(4)

    def producer(run_id: str) -> set[str]:
        start.wait(timeout=10)
        won = table.acquire_many([request(t) for t in tasks], run_id)
        return {t for t, ok in won.items() if ok}

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(producer, [f"run-{i}" for i in range(4)]))
    assert sum(len(r) for r in results) == len(tasks)
    assert set().union(*results) == set(tasks)


def test_consumer_claim_lifecycle(table: LeaseTable, clock: Clock) -> None:
    task = str(uuid.uuid4())
    table.acquire(request(task), "run-1")
    table.confirm(task, "run-1")

    first = table.claim(request(task), run_token="req-1:m-1", run_seconds=30)
    assert first.status is ClaimStatus.CLAIMED
    assert first.previous is not None and first.previous.state is LeaseState.QUEUED
    assert first.is_first_delivery_of("run-1", STAGE_A)
    assert not first.is_first_delivery_of("run-0", STAGE_A)
    lease = table.get(task)
    assert lease is not None and lease.state is LeaseState.RUNNING
    assert lease.run_until == int(clock.now) + 30 + RUN_MARGIN_SECONDS
    assert lease.claims == 1

    # A duplicate delivery while the first run is alive is refused until its run ends.
    clock.now += 10
    busy = table.claim(request(task), run_token="req-2:m-1", run_seconds=30)
    assert busy.status is ClaimStatus.RUNNING_ELSEWHERE
    assert busy.retry_after_seconds == 30 + RUN_MARGIN_SECONDS - 10 + 1

    # Failure keeps the lease (the retry or the DLQ copy holds the task) and records why.
    assert table.fail(task, "req-2:m-1", "not mine") is False
    assert table.fail(task, "req-1:m-1", "boom") is True
    lease = table.get(task)
    assert lease is not None and lease.state is LeaseState.FAILED
    assert lease.last_error == "boom"
    assert table.acquire(request(task), "run-9") is False

    # The retry claims it again; not a first delivery any more.
    retry = table.claim(request(task), run_token="req-3:m-1", run_seconds=30)
    assert retry.status is ClaimStatus.CLAIMED
    assert not retry.is_first_delivery_of("run-1", STAGE_A)
    assert table.requeue(task, "req-3:m-1") is True
    lease = table.get(task)
    assert lease is not None and lease.state is LeaseState.QUEUED and lease.claims == 2

    again = table.claim(request(task), run_token="req-4:m-1", run_seconds=30)
    assert again.status is ClaimStatus.CLAIMED
    assert table.complete(task, "req-3:m-1") is False  # only the holder completes
    assert table.complete(task, "req-4:m-1") is True
    assert table.get(task) is None


def test_a_dead_run_is_taken_over(table: LeaseTable, clock: Clock) -> None:
    task = str(uuid.uuid4())
    assert table.claim(request(task), run_token="dead:m", run_seconds=5).status is (
        ClaimStatus.CLAIMED
    )
    clock.now += 5 + RUN_MARGIN_SECONDS + 1
    takeover = table.claim(request(task), run_token="alive:m", run_seconds=5)
    assert takeover.status is ClaimStatus.CLAIMED
    assert takeover.previous is not None and takeover.previous.run_token == "dead:m"
    # The dead run, should it wake up, can no longer touch the lease.
    assert table.complete(task, "dead:m") is False


def test_a_stale_message_for_another_stage_does_not_claim(table: LeaseTable) -> None:
    task = str(uuid.uuid4())
    table.acquire(request(task, STAGE_B), "run-b")
    table.confirm(task, "run-b")
    stale = table.claim(request(task, STAGE_A), run_token="r:m", run_seconds=5)
    assert stale.status is ClaimStatus.OTHER_STAGE
    assert stale.previous is not None and stale.previous.stage_uuid == STAGE_B
    lease = table.get(task)
    assert lease is not None and lease.state is LeaseState.QUEUED


def test_parallel_claims_admit_exactly_one(table: LeaseTable) -> None:
    task = str(uuid.uuid4())
    start = threading.Barrier(6)

    def claim(i: int) -> ClaimStatus:
        start.wait(timeout=10)
        return table.claim(request(task), run_token=f"req-{i}:m", run_seconds=30).status

    with ThreadPoolExecutor(max_workers=6) as pool:
        statuses = list(pool.map(claim, range(6)))
    assert statuses.count(ClaimStatus.CLAIMED) == 1
    assert statuses.count(ClaimStatus.RUNNING_ELSEWHERE) == 5


def test_unreachable_table_is_an_error_not_a_claim(pipeline: Pipeline) -> None:
    table = LeaseTable("no-such-table", client=dynamodb_client(), ttl_seconds=TTL)
    claim = table.claim(request(str(uuid.uuid4())), run_token="r:m", run_seconds=5)
    assert claim.status is ClaimStatus.ERROR and "ResourceNotFound" in (claim.error or "")
    assert table.acquire(request(str(uuid.uuid4())), "run") is None


def test_live_task_uuids_prefilters_in_bulk(table: LeaseTable, clock: Clock) -> None:
    held = [str(uuid.uuid4()) for _ in range(120)]  # more than one BatchGetItem
    free = [str(uuid.uuid4()) for _ in range(5)]
    assert all(table.acquire_many([request(t) for t in held], "run-1").values())
    assert table.live_task_uuids([*held, *free, held[0]]) == set(held)
    clock.now += PENDING_LEASE_SECONDS + 1  # never confirmed: all expired
    assert table.live_task_uuids(held) == set()


def test_a_failed_lease_gives_way_when_the_task_turns_up_in_another_stage(
    table: LeaseTable,
) -> None:
    # Parked in the DLQ for stage A, then moved on by hand to agent stage B: B may lease it at
    # once, and the old A message is then a stale copy that is skipped, not a blocker for days.
    task = str(uuid.uuid4())
    table.acquire(request(task, STAGE_A), "run-a")
    table.confirm(task, "run-a")
    assert table.claim(request(task, STAGE_A), run_token="r1:m", run_seconds=5).status is (
        ClaimStatus.CLAIMED
    )
    assert table.park(task, "r1:m", "boom", message_id="m") is True
    # Still blocked in its own stage (the DLQ copy holds it) ...
    assert table.live_task_uuids([task], STAGE_A) == {task}
    assert table.acquire(request(task, STAGE_A), "run-a2") is False
    # ... but not in the stage it has been moved to.
    assert table.live_task_uuids([task], STAGE_B) == set()
    assert table.acquire(request(task, STAGE_B), "run-b") is True
    lease = table.get(task)
    assert lease is not None and lease.stage_uuid == STAGE_B
    assert table.claim(request(task, STAGE_A), run_token="r2:m", run_seconds=5).status is (
        ClaimStatus.OTHER_STAGE
    )


def test_a_running_or_queued_lease_of_another_stage_still_blocks(table: LeaseTable) -> None:
    task = str(uuid.uuid4())
    table.acquire(request(task, STAGE_A), "run-a")
    table.confirm(task, "run-a")
    assert table.acquire(request(task, STAGE_B), "run-b") is False
    assert table.live_task_uuids([task], STAGE_B) == {task}
