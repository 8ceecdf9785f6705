"""Redelivery after the consumer failed part-way: killed before its commit, unable to park a
message in the DLQ, or handed a stale copy of a message already parked. Each must end with the
task proceeded exactly once or parked exactly once, and never lost."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
import reliability_agents as agents
from reliability_helpers import (
    LAST_RUN,
    dlq_raw,
    edge_stack,
    enqueue_and_receive,
    failure_ids,
    lease,
    record,
    titles,
)

from infra.localstack.moto import patched_environ
from infra.localstack.poller import LocalLambdaContext, SimulatedCrash
from infra.localstack.stack import reset_handler_state

if TYPE_CHECKING:
    from infra.emulator import Emulator
    from infra.localstack.moto import MotoServer
    from infra.localstack.stack import LocalStack


@pytest.fixture
def stack(emulator: Emulator, local_moto: MotoServer) -> Iterator[LocalStack]:
    with edge_stack(emulator, local_moto) as s:
        yield s


def _invoke(records: list[dict[str, Any]], context: LocalLambdaContext | None = None) -> Any:
    from handlers.consumer import lambda_handler

    context = context or LocalLambdaContext(function_name="ConsumerFunction", timeout_seconds=30)
    return lambda_handler({"Records": records}, context)


class DiesAfterTheFirstTask(LocalLambdaContext):
    """Killed (out of memory, say) at the consumer's first clock check after an agent ran:
    part-way through the batch, before anything was committed in Encord."""

    def get_remaining_time_in_millis(self) -> int:
        if agents.calls():
            raise SimulatedCrash("killed before the commit")
        return super().get_remaining_time_in_millis()


def _proceeds(stack: LocalStack, title: str) -> int:
    return len(stack.emulator.state.pathway_actions(titles(stack)[title]))


def test_killed_before_its_commit_the_batch_runs_again_and_proceeds_once(
    stack: LocalStack,
) -> None:
    names = ("ok_00.jpg", "ok_01.jpg", "ok_02.jpg")
    messages = enqueue_and_receive(stack)
    doomed = DiesAfterTheFirstTask(function_name="ConsumerFunction", timeout_seconds=30)
    with pytest.raises(SimulatedCrash):
        _invoke([record(stack, messages[n]) for n in names], doomed)

    assert sum(agents.calls().values()) == 1  # one task ran; nothing was committed
    assert all(_proceeds(stack, n) == 0 for n in names)
    leases = {n: lease(stack, titles(stack)[n]) for n in names}
    assert all(v is not None and v["state"] == "running" for v in leases.values()), leases
    # Until the dead run's window (run_until) has passed, a redelivery is refused as "busy".
    busy = _invoke([record(stack, messages[n], 2) for n in names])
    assert failure_ids(busy) == {messages[n]["MessageId"] for n in names}
    assert sum(agents.calls().values()) == 1

    # The window passes (run_until is set in the past, as the clock would do).
    dynamodb = stack.moto.client("dynamodb")
    for name in names:
        dynamodb.update_item(
            TableName=stack.queues.lease_table_name,
            Key={"task_uuid": {"S": titles(stack)[name]}},
            UpdateExpression="SET run_until = :past",
            ExpressionAttributeValues={":past": {"N": "1"}},
        )
    assert _invoke([record(stack, messages[n], 3) for n in names]) == {"batchItemFailures": []}

    # Every task proceeded once; only the one that ran before the crash ran twice.
    assert all(_proceeds(stack, n) == 1 for n in names)
    assert sorted(agents.calls().values()) == [1, 1, 2]
    assert all(lease(stack, titles(stack)[n]) is None for n in names)


def test_a_failed_dlq_send_keeps_the_message_and_does_not_park_its_lease(
    stack: LocalStack,
) -> None:
    messages = enqueue_and_receive(stack)
    final = record(stack, messages["fails_00.jpg"], LAST_RUN)
    missing_dlq = stack.queues.dead_letter_queue_url + "-gone"
    with patched_environ({"DEAD_LETTER_QUEUE_URL": missing_dlq}):
        reset_handler_state()
        response = _invoke([final])
    reset_handler_state()

    # Not parked anywhere: it stays on the work queue (SQS's redrive policy still catches it).
    assert failure_ids(response) == {final["messageId"]}
    assert dlq_raw(stack) == []
    state = lease(stack, titles(stack)["fails_00.jpg"])
    assert state is not None and state["state"] == "failed" and "parked_message" not in state

    # Its next delivery (the receive the kit keeps for parking) parks it for real, without
    # running it again, with the error its last run recorded in the lease.
    again = record(stack, messages["fails_00.jpg"], LAST_RUN + 1)
    assert _invoke([again]) == {"batchItemFailures": []}
    (message,) = dlq_raw(stack)
    assert (
        "cannot handle fails_00.jpg"
        in message["MessageAttributes"]["agentkit.error"]["StringValue"]
    )
    assert agents.calls()[(agents.WORK, "fails_00.jpg")] == 1
    parked = lease(stack, titles(stack)["fails_00.jpg"])
    assert parked is not None and parked["parked_message"] == final["messageId"]


def test_stale_copy_of_a_parked_message_is_dropped_but_a_replay_runs(stack: LocalStack) -> None:
    """SQS may deliver a message again after its last attempt was parked in the DLQ: the copy
    must not run the task again nor park it twice; a replay (a new message) still runs."""
    messages = enqueue_and_receive(stack)
    final = record(stack, messages["fails_00.jpg"], LAST_RUN)
    assert _invoke([final]) == {"batchItemFailures": []}
    assert agents.calls()[(agents.WORK, "fails_00.jpg")] == 1

    # The stale copy (same message id and receive count) next to a good task.
    stale = dict(final, attributes=dict(final["attributes"]))
    response = _invoke([stale, record(stack, messages["ok_00.jpg"])])

    assert response == {"batchItemFailures": []}
    assert agents.calls()[(agents.WORK, "fails_00.jpg")] == 1  # not run again
    assert _proceeds(stack, "ok_00.jpg") == 1
    assert len(dlq_raw(stack)) == 1  # parked once

    replay = stack.sqs().send_message(
        QueueUrl=stack.queues.work_queue_url, MessageBody=final["body"]
    )["MessageId"]
    received = next(
        m
        for m in stack.sqs()
        .receive_message(
            QueueUrl=stack.queues.work_queue_url,
            MaxNumberOfMessages=10,
            MessageSystemAttributeNames=["All"],
        )
        .get("Messages", [])
        if m["MessageId"] == replay
    )
    assert failure_ids(_invoke([record(stack, received)])) == {replay}  # ran, failed
    assert agents.calls()[(agents.WORK, "fails_00.jpg")] == 2


def test_a_task_that_leaves_between_listing_and_leasing_is_not_enqueued(
    stack: LocalStack,
) -> None:
    """The producer lists a page, then takes its leases. A consumer that commits a task and drops
    its lease in between must not get the task enqueued again: its message would be a first
    delivery, run without a stage check."""
    from agent_core.pipeline.clients import dynamodb_client

    moved = titles(stack)["ok_03.jpg"]
    project = stack.emulator.user_client().get_project(stack.project_hash)
    moves: list[str] = []

    def move_once(**_: Any) -> None:
        # Runs when the producer writes the page's leases: after the listing, before leasing.
        if moves:
            return
        for task in project.workflow.get_stage(name=agents.WORK).get_tasks():
            if str(task.uuid) == moved:
                task.proceed(pathway_name="done")
                moves.append(moved)

    client = dynamodb_client()
    client.meta.events.register("before-parameter-build.dynamodb.TransactWriteItems", move_once)
    try:
        summary = stack.producer_tick()
    finally:
        client.meta.events.unregister(
            "before-parameter-build.dynamodb.TransactWriteItems", move_once
        )

    stage = summary["stages"][agents.WORK]
    assert moves == [moved]
    assert stage["listed"] == 10 and stage["left_stage"] == 1 and stage["enqueued"] == 9
    assert lease(stack, moved) is None  # released, nothing in flight holds it
    enqueued = _queued_task_uuids(stack)
    assert moved not in enqueued and len(enqueued) == 9


def _queued_task_uuids(stack: LocalStack) -> set[str]:
    """Task uuids of every message on the work queue (received, left in flight)."""
    import json

    found: set[str] = set()
    for _ in range(5):
        reply = stack.sqs().receive_message(
            QueueUrl=stack.queues.work_queue_url, MaxNumberOfMessages=10, VisibilityTimeout=60
        )
        batch = reply.get("Messages", [])
        if not batch:
            break
        found.update(json.loads(m["Body"])["task"]["uuid"] for m in batch)
    return found
