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
    ClaimRequest,
    ClaimStatus,
    Finish,
    FinishAction,
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


def request(task: str, stage: str = STAGE_A, visit: str = "v1") -> LeaseRequest:
    return LeaseRequest(
        task_uuid=task, stage_uuid=stage, project_hash="p", visit=f"{stage}@{visit}"
    )


def claim_request(
    task: str,
    token: str,
    *,
    stage: str = STAGE_A,
    visit: str = "v1",
    message: str = "m-1",
    origin: str = "",
) -> ClaimRequest:
    return ClaimRequest(
        request(task, stage, visit),
        run_token=token,
        message_id=message,
        origin=origin,
        first_receive=bool(origin),
    )


def finish(table: LeaseTable, task: str, token: str, action: FinishAction, error: str = "") -> bool:
    result = table.finish_many([Finish(task, token, action, error=error, message_id="m-1")])
    return result[task] is True


def confirm(table: LeaseTable, task: str, run_id: str) -> bool | None:
    return table.confirm_many([task], run_id)[task]


def release(table: LeaseTable, task: str, run_id: str) -> bool | None:
    return table.release_many([task], run_id)[task]


def test_producer_lease_lifecycle(table: LeaseTable, clock: Clock) -> None:
    task = str(uuid.uuid4())
    assert table.acquire(request(task), "run-1") is True
    lease = table.get(task)
    assert lease is not None and lease.state is LeaseState.PENDING
    assert lease.expires_at == int(clock.now) + PENDING_LEASE_SECONDS
    # Any other producer is kept out while it is pending or queued.
    assert table.acquire(request(task), "run-2") is False
    assert confirm(table, task, "run-2") is False
    assert confirm(table, task, "run-1") is True
    lease = table.get(task)
    assert lease is not None and lease.state is LeaseState.QUEUED
    assert lease.expires_at == int(clock.now) + TTL
    assert table.acquire(request(task), "run-2") is False
    # Only its owner releases it.
    assert release(table, task, "run-2") is False
    assert release(table, task, "run-1") is True
    assert table.get(task) is None
    assert table.acquire(request(task), "run-2") is True


def test_a_page_is_leased_in_one_call_and_refusals_in_one_more(table: LeaseTable) -> None:
    held = [str(uuid.uuid4()) for _ in range(3)]
    free = [str(uuid.uuid4()) for _ in range(97)]
    assert all(table.acquire_many([request(t) for t in held], "run-1").values())
    before = table.counter.total
    won = table.acquire_many([request(t) for t in [*held, *free]], "run-2")
    assert {t for t, ok in won.items() if ok} == set(free)
    assert not any(won[t] for t in held)
    assert table.counter.total - before == 2  # cancelled once, then the rest written


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
    confirm(table, task, "run-1")

    first = table.claim(claim_request(task, "req-1:m-1", origin="run-1"), run_seconds=30)
    assert first.status is ClaimStatus.CLAIMED and first.first_delivery
    lease = table.get(task)
    assert lease is not None and lease.state is LeaseState.RUNNING
    assert lease.run_until == int(clock.now) + 30 + RUN_MARGIN_SECONDS
    assert lease.claims == 1

    # A duplicate delivery while the first run is alive is refused until its run ends.
    clock.now += 10
    busy = table.claim(claim_request(task, "req-2:m-1"), run_seconds=30)
    assert busy.status is ClaimStatus.RUNNING_ELSEWHERE
    assert busy.retry_after_seconds == 30 + RUN_MARGIN_SECONDS - 10 + 1

    # Failure keeps the lease (the retry holds the task) and records why.
    assert finish(table, task, "req-2:m-1", "fail", "not mine") is False
    assert finish(table, task, "req-1:m-1", "fail", "boom") is True
    lease = table.get(task)
    assert lease is not None and lease.state is LeaseState.FAILED
    assert lease.last_error == "boom"
    assert table.acquire(request(task), "run-9") is False

    # The retry claims it again; not a first delivery any more (not the producer's lease).
    retry = table.claim(claim_request(task, "req-3:m-1", origin="run-1"), run_seconds=30)
    assert retry.status is ClaimStatus.CLAIMED and not retry.first_delivery
    assert finish(table, task, "req-3:m-1", "requeue") is True
    lease = table.get(task)
    assert lease is not None and lease.state is LeaseState.QUEUED and lease.claims == 2

    again = table.claim(claim_request(task, "req-4:m-1"), run_seconds=30)
    assert again.status is ClaimStatus.CLAIMED
    assert finish(table, task, "req-3:m-1", "complete") is False  # only the holder completes
    assert finish(table, task, "req-4:m-1", "complete") is True
    assert table.get(task) is None


def test_a_batch_is_claimed_and_finished_in_one_call_each(table: LeaseTable) -> None:
    tasks = [str(uuid.uuid4()) for _ in range(10)]
    table.acquire_many([request(t) for t in tasks], "run-1")
    table.confirm_many(tasks, "run-1")
    before = table.counter.total
    claims = table.claim_many(
        [claim_request(t, f"r:{t}", origin="run-1") for t in tasks], run_seconds=30
    )
    assert all(c.status is ClaimStatus.CLAIMED and c.first_delivery for c in claims)
    held = table.finish_many([Finish(t, f"r:{t}", "complete") for t in tasks])
    assert all(ok is True for ok in held.values())
    assert table.counter.total - before == 2


def test_a_parked_message_cannot_claim_again_but_a_replay_can(table: LeaseTable) -> None:
    task = str(uuid.uuid4())
    assert table.claim(claim_request(task, "r1:m"), run_seconds=5).status is ClaimStatus.CLAIMED
    assert table.finish_many([Finish(task, "r1:m", "park", "boom", message_id="m-1")])[task]
    stale = table.claim(claim_request(task, "r2:m", message="m-1"), run_seconds=5)
    assert stale.status is ClaimStatus.PARKED
    replay = table.claim(claim_request(task, "r3:m", message="m-replayed"), run_seconds=5)
    assert replay.status is ClaimStatus.CLAIMED


def test_a_dead_run_is_taken_over(table: LeaseTable, clock: Clock) -> None:
    task = str(uuid.uuid4())
    assert table.claim(claim_request(task, "dead:m"), run_seconds=5).status is (ClaimStatus.CLAIMED)
    clock.now += 5 + RUN_MARGIN_SECONDS + 1
    takeover = table.claim(claim_request(task, "alive:m"), run_seconds=5)
    assert takeover.status is ClaimStatus.CLAIMED
    # The dead run, should it wake up, can no longer touch the lease.
    assert finish(table, task, "dead:m", "complete") is False


def test_a_stale_message_of_another_visit_does_not_claim(table: LeaseTable) -> None:
    task = str(uuid.uuid4())
    table.acquire(request(task, STAGE_B), "run-b")
    confirm(table, task, "run-b")
    for stale_request in (
        claim_request(task, "r:m", stage=STAGE_A),
        claim_request(task, "r:m", stage=STAGE_B, visit="v0"),
    ):
        stale = table.claim(stale_request, run_seconds=5)
        assert stale.status is ClaimStatus.STALE
        assert stale.blocking is not None and stale.blocking.stage_uuid == STAGE_B
    lease = table.get(task)
    assert lease is not None and lease.state is LeaseState.QUEUED


def test_parallel_claims_admit_exactly_one(table: LeaseTable) -> None:
    task = str(uuid.uuid4())
    start = threading.Barrier(6)

    def claim(i: int) -> ClaimStatus:
        start.wait(timeout=10)
        return table.claim(claim_request(task, f"req-{i}:m"), run_seconds=30).status

    with ThreadPoolExecutor(max_workers=6) as pool:
        statuses = list(pool.map(claim, range(6)))
    assert statuses.count(ClaimStatus.CLAIMED) == 1
    assert statuses.count(ClaimStatus.RUNNING_ELSEWHERE) == 5


def test_unreachable_table_is_an_error_not_a_claim(pipeline: Pipeline) -> None:
    table = LeaseTable("no-such-table", client=dynamodb_client(), ttl_seconds=TTL)
    claim = table.claim(claim_request(str(uuid.uuid4()), "r:m"), run_seconds=5)
    assert claim.status is ClaimStatus.ERROR and "ResourceNotFound" in (claim.error or "")
    assert table.acquire(request(str(uuid.uuid4())), "run") is None


@pytest.mark.parametrize("end", ["failed", "parked", "running"])
def test_a_lease_of_an_earlier_visit_never_blocks_a_new_one(
    table: LeaseTable, clock: Clock, end: str
) -> None:
    # Visit v1 ended failed, parked, or running (its lease delete failed); the task left the
    # stage and came back (visit v2): the producer leases the new visit at once.
    task = str(uuid.uuid4())
    table.acquire(request(task), "run-1")
    assert table.claim(claim_request(task, "r1:m"), run_seconds=5).status is ClaimStatus.CLAIMED
    if end != "running":
        action: FinishAction = "fail" if end == "failed" else "park"
        assert finish(table, task, "r1:m", action, "boom") is True
    # The same visit stays blocked ...
    assert table.acquire(request(task), "run-2") is False
    # ... a new one is not, whatever the stage.
    assert table.acquire(request(task, visit="v2"), "run-3") is True
    assert table.acquire(request(task, STAGE_B, visit="v3"), "run-4") is True
    lease = table.get(task)
    assert lease is not None and lease.visit == f"{STAGE_B}@v3" and lease.run_id == "run-4"
    # The old visit's message is now a stale copy.
    old = table.claim(claim_request(task, "r2:m", message="m-2"), run_seconds=5)
    assert old.status is ClaimStatus.STALE
