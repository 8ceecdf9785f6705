"""The consumer handler against the Encord emulator (real SDK) and a moto server (real boto3).

Messages come from a real producer tick and a real ReceiveMessage, turned into the event Lambda
would build; the handler's answer is checked against the emulator's workflow state, the lease
table and the queues.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import agents_for_tests
import pytest
from pipeline_helpers import (
    Pipeline,
    failure_ids,
    invoke_consumer,
    invoke_producer,
    record_from_message,
    sqs_event,
    synthetic_record,
)

from agent_core.message import SQS_MAX_MESSAGE_BYTES, DlqAttributes, TaskEnvelope, parse_envelope
from agent_core.pipeline.clients import dynamodb_client
from agent_core.pipeline.leases import ClaimRequest, LeaseRequest, LeaseTable
from infra.emulator import Emulator, SeededFixture

STAGE = "Agent 1"
DONE = "Complete"


def produce_and_receive(pipeline: Pipeline, n: int = 10) -> list[dict[str, Any]]:
    """A producer tick capped at ``n`` tasks, and those ``n`` messages received."""
    previous = os.environ.get("MAX_TASKS_PER_RUN")
    os.environ["MAX_TASKS_PER_RUN"] = str(n)
    try:
        invoke_producer()
    finally:
        if previous is None:
            del os.environ["MAX_TASKS_PER_RUN"]
        else:
            os.environ["MAX_TASKS_PER_RUN"] = previous
    messages = pipeline.receive(pipeline.work_queue_url, max_messages=n)
    assert len(messages) == n
    return messages


def redeliver(pipeline: Pipeline, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Make messages visible again and receive them (their receive count goes up)."""
    for message in messages:
        pipeline.sqs.change_message_visibility(
            QueueUrl=pipeline.work_queue_url,
            ReceiptHandle=message["ReceiptHandle"],
            VisibilityTimeout=0,
        )
    wanted = {m["MessageId"] for m in messages}
    again = [m for m in pipeline.receive(pipeline.work_queue_url) if m["MessageId"] in wanted]
    assert len(again) == len(messages)
    return again


def task_of(message: dict[str, Any]) -> str:
    return parse_envelope(message["Body"]).task_uuid


def proceeds(emulator: Emulator, task_uuid: str) -> int:
    return len(emulator.state.pathway_actions(task_uuid))


def dlq_messages(pipeline: Pipeline) -> list[dict[str, Any]]:
    return pipeline.receive(pipeline.dlq_url)


def attr(message: dict[str, Any], name: str) -> str:
    value: str = message["MessageAttributes"][name]["StringValue"]
    return value


def count(emulator: Emulator, fragment: str) -> int:
    return sum(n for name, n in emulator.counters.snapshot().items() if fragment in name)


def test_valid_batch_proceeds_tasks_and_deletes_leases(
    agent_env: SeededFixture, pipeline: Pipeline, encord_env: Emulator
) -> None:
    messages = produce_and_receive(pipeline)
    encord_env.counters.reset()

    response = invoke_consumer(sqs_event(messages))

    assert response == {"batchItemFailures": []}
    for message in messages:
        task = task_of(message)
        assert encord_env.state.task_stage(task).title == DONE
        assert proceeds(encord_env, task) == 1
        assert pipeline.lease(task) is None
    assert len(agent_env.task_uuids[STAGE]) - 10 == len(
        encord_env.state.tasks_in_stage(agent_env.project_hash, STAGE)
    )
    # First deliveries of producer messages with carried metadata: no re-check of the stage, no
    # re-listing of label rows.
    assert count(encord_env, "/tasks") == 0
    assert count(encord_env, "labelrowmetadata") == 0


def poison_bodies(agent_env: SeededFixture, valid: TaskEnvelope) -> dict[str, str]:
    base = json.loads(valid.to_body())
    wrong_schema = dict(base, stage_uuid="not-a-uuid")
    unknown_version = dict(base, version=99)
    unknown_project = dict(base, project_hash=str(uuid.uuid4()))
    unknown_stage = dict(base, stage_uuid=agent_env.stage_uuids[DONE], stage_name=DONE)
    return {
        "malformed": '{"version": 1, "project_hash": ',
        "nested": "[" * 50_000,  # json.loads raises RecursionError, not a decode error
        "schema": json.dumps(wrong_schema),
        "version": json.dumps(unknown_version),
        "project": json.dumps(unknown_project),
        "stage": json.dumps(unknown_stage),
    }


def test_poison_messages_go_to_the_dlq_and_neighbours_proceed(
    agent_env: SeededFixture, pipeline: Pipeline, encord_env: Emulator
) -> None:
    valid = produce_and_receive(pipeline, 3)
    template = parse_envelope(valid[0]["Body"])
    bodies = poison_bodies(agent_env, template)
    sent = {}
    for kind, body in bodies.items():
        sent[kind] = pipeline.sqs.send_message(QueueUrl=pipeline.work_queue_url, MessageBody=body)[
            "MessageId"
        ]
    poison = [
        m for m in pipeline.receive(pipeline.work_queue_url) if m["MessageId"] in sent.values()
    ]
    assert len(poison) == len(bodies)
    oversize = synthetic_record("é" * (SQS_MAX_MESSAGE_BYTES // 2 + 10))  # > 1 MiB in UTF-8
    event = sqs_event([*valid[:1], *poison, *valid[1:]])
    event["Records"].insert(4, oversize)

    response = invoke_consumer(event)

    assert response == {"batchItemFailures": []}
    for message in valid:
        assert encord_env.state.task_stage(task_of(message)).title == DONE
    parked = {attr(m, DlqAttributes.SOURCE_MESSAGE_ID): m for m in dlq_messages(pipeline)}
    assert set(parked) == {*sent.values(), oversize["messageId"]}
    expected_errors = {
        "malformed": "not JSON",
        "nested": "not JSON",
        "schema": "stage_uuid",
        "version": "unknown envelope version 99",
        "project": "this consumer runs project",
        "stage": "has no function in this runner",
    }
    for kind, fragment in expected_errors.items():
        message = parked[sent[kind]]
        assert message["Body"] == bodies[kind]  # the original, for inspection and replay
        assert attr(message, DlqAttributes.REASON) == "poison"
        assert attr(message, DlqAttributes.ERROR_TYPE) == "PoisonMessage"
        assert fragment in attr(message, DlqAttributes.ERROR), kind
        assert attr(message, DlqAttributes.RECEIVE_COUNT) == "1"
        datetime.fromisoformat(attr(message, DlqAttributes.FAILED_AT))
    big = parked[oversize["messageId"]]
    assert "SQS and this consumer accept at most" in attr(big, DlqAttributes.ERROR)
    assert json.loads(big["Body"])["agentkit_oversize_body"]["bytes"] > SQS_MAX_MESSAGE_BYTES
    # The work queue is left with nothing to retry once the poller deletes the successes.
    assert pipeline.lease(template.task_uuid) is None


def test_failing_agent_is_retried_with_backoff(
    agent_env: SeededFixture,
    pipeline: Pipeline,
    encord_env: Emulator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RETRY_BACKOFF_BASE_SECONDS", "3")
    messages = produce_and_receive(pipeline, 3)
    bad = messages[1]
    bad_title = parse_envelope(bad["Body"]).task["data_title"]
    agents_for_tests.behaviour.fail_titles = {bad_title}

    response = invoke_consumer(sqs_event(messages))
    returned = time.monotonic()

    assert failure_ids(response) == {bad["MessageId"]}
    assert encord_env.state.task_stage(task_of(bad)).title == STAGE
    for message in (messages[0], messages[2]):
        assert encord_env.state.task_stage(task_of(message)).title == DONE
    lease = pipeline.lease(task_of(bad))
    assert lease is not None and lease["state"] == "failed"
    assert "agent failed on purpose" in lease["last_error"]
    # Backoff for a first failure is RETRY_BACKOFF_BASE_SECONDS (3 s): hidden now, back after
    # (the queue's own visibility timeout is 60 s).
    for message in messages:  # the poller would delete the successes
        if message is not bad:
            pipeline.sqs.delete_message(
                QueueUrl=pipeline.work_queue_url, ReceiptHandle=message["ReceiptHandle"]
            )
    assert pipeline.receive(pipeline.work_queue_url) == []
    back: list[dict[str, Any]] = []
    for _ in range(12):
        back = pipeline.receive(pipeline.work_queue_url, wait=1)
        if back:
            break
    waited = time.monotonic() - returned
    assert [m["MessageId"] for m in back] == [bad["MessageId"]]
    assert 2.0 <= waited < 15
    assert back[0]["Attributes"]["ApproximateReceiveCount"] == "2"

    # Fixed agent: the retry runs it (the stage is verified: not a first delivery) and succeeds.
    agents_for_tests.behaviour.fail_titles = set()
    assert invoke_consumer(sqs_event(back)) == {"batchItemFailures": []}
    assert encord_env.state.task_stage(task_of(bad)).title == DONE
    assert pipeline.lease(task_of(bad)) is None


def test_last_receive_goes_to_the_dlq_with_its_error(
    agent_env: SeededFixture, pipeline: Pipeline, encord_env: Emulator
) -> None:
    messages = produce_and_receive(pipeline, 1)
    agents_for_tests.behaviour.fail_titles = {"*"}
    # The kit runs a task MAX_RECEIVE_COUNT - 1 = 2 times and parks it when the last run fails;
    # the queue's last receive is kept for parking a task whose runs were killed.
    assert failure_ids(invoke_consumer(sqs_event(messages))) == {messages[0]["MessageId"]}
    messages = redeliver(pipeline, messages)
    assert messages[0]["Attributes"]["ApproximateReceiveCount"] == "2"

    response = invoke_consumer(sqs_event(messages))

    assert response == {"batchItemFailures": []}  # deleted: the DLQ copy carries it on
    (parked,) = dlq_messages(pipeline)
    assert parked["Body"] == messages[0]["Body"]
    assert attr(parked, DlqAttributes.REASON) == "failed"
    assert attr(parked, DlqAttributes.ERROR_TYPE) == "RuntimeError"
    assert "agent failed on purpose" in attr(parked, DlqAttributes.ERROR)
    assert attr(parked, DlqAttributes.RECEIVE_COUNT) == "2"
    assert attr(parked, DlqAttributes.TASK_UUID) == task_of(messages[0])
    assert attr(parked, DlqAttributes.STAGE_UUID) == agent_env.stage_uuids[STAGE]
    assert len(agents_for_tests.behaviour.calls) == 2
    # The lease stays, so no producer tick enqueues the task while its copy sits in the DLQ.
    lease = pipeline.lease(task_of(messages[0]))
    assert lease is not None and lease["state"] == "failed"
    summary = invoke_producer()
    assert summary["stages"][STAGE]["enqueued"] == len(agent_env.task_uuids[STAGE]) - 1
    assert task_of(messages[0]) not in {
        task_of(m) for m in pipeline.receive(pipeline.work_queue_url)
    }


def test_unfixable_failure_and_secrets(
    agent_env: SeededFixture, pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENT_MODULE", "agents_for_tests:bad_pathway_runner")
    messages = produce_and_receive(pipeline, 2)
    # An unknown pathway is not retryable: to the DLQ on the first receive.
    assert invoke_consumer(sqs_event(messages[:1])) == {"batchItemFailures": []}
    (parked,) = dlq_messages(pipeline)
    assert attr(parked, DlqAttributes.ERROR_TYPE) == "PathwayNotFoundError"
    assert "no-such-pathway" in attr(parked, DlqAttributes.ERROR)

    # Error text leaving the process never carries key material.
    from agent_core.pipeline.loader import clear_runner_cache

    monkeypatch.setenv("AGENT_MODULE", "agents_for_tests:leaky_runner")
    monkeypatch.setenv("MAX_RECEIVE_COUNT", "1")
    clear_runner_cache()
    other = messages[1:]
    assert invoke_consumer(sqs_event(other)) == {"batchItemFailures": []}
    (leaked,) = dlq_messages(pipeline)
    error = attr(leaked, DlqAttributes.ERROR)
    assert "could not sign with [redacted private key]" in error
    assert "PRIVATE KEY" not in error and "b3BlbnNzaC1" not in error
    lease = pipeline.lease(task_of(other[0]))
    assert lease is not None and "b3BlbnNzaC1" not in lease["last_error"]


def test_task_that_already_left_the_stage_is_a_skipped_success(
    agent_env: SeededFixture, pipeline: Pipeline, encord_env: Emulator
) -> None:
    messages = produce_and_receive(pipeline, 2)
    # Someone completes the first task in Encord while its message waits in the queue.
    project = encord_env.user_client().get_project(agent_env.project_hash)
    stage = project.workflow.get_stage(name=STAGE)
    moved = task_of(messages[0])
    for task in stage.get_tasks():
        if str(task.uuid) == moved:
            task.proceed(pathway_name="complete")

    response = invoke_consumer(sqs_event(messages))

    assert response == {"batchItemFailures": []}
    assert proceeds(encord_env, moved) == 1  # not proceeded a second time
    assert pipeline.lease(moved) is None
    assert encord_env.state.task_stage(task_of(messages[1])).title == DONE


def test_redelivery_after_a_consumer_died_post_commit_is_skipped(
    agent_env: SeededFixture, pipeline: Pipeline, encord_env: Emulator
) -> None:
    (message,) = produce_and_receive(pipeline, 1)
    task = task_of(message)
    envelope = parse_envelope(message["Body"])
    # A consumer claimed the lease, committed the proceed, and died before it could delete the
    # message or the lease: its run_until lies in the past by the time SQS redelivers.
    dead = LeaseTable(
        pipeline.table_name,
        client=dynamodb_client(),
        ttl_seconds=3600,
        clock=lambda: time.time() - 3600,
    )
    request = ClaimRequest(
        LeaseRequest(task, str(envelope.stage_uuid), envelope.project_hash, visit=envelope.visit),
        run_token="dead-request:m",
        message_id=message["MessageId"],
    )
    assert dead.claim(request, run_seconds=60).status.value == "claimed"
    project = encord_env.user_client().get_project(agent_env.project_hash)
    for candidate in project.workflow.get_stage(name=STAGE).get_tasks():
        if str(candidate.uuid) == task:
            candidate.proceed(pathway_name="complete")
    (again,) = redeliver(pipeline, [message])

    response = invoke_consumer(sqs_event([again]))

    assert response == {"batchItemFailures": []}
    assert agents_for_tests.behaviour.calls == []  # verified first, agent never ran
    assert proceeds(encord_env, task) == 1
    assert pipeline.lease(task) is None


def test_duplicate_delivery_in_parallel_runs_once(
    agent_env: SeededFixture, pipeline: Pipeline, encord_env: Emulator
) -> None:
    (message,) = produce_and_receive(pipeline, 1)
    # Long enough that the second delivery's claim lands while the first run is alive.
    agents_for_tests.behaviour.sleep_seconds = 2.0
    start = threading.Barrier(2)
    responses: list[dict[str, Any]] = []

    def deliver() -> None:
        start.wait(timeout=10)
        responses.append(invoke_consumer({"Records": [record_from_message(message)]}))

    threads = [threading.Thread(target=deliver) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert len(responses) == 2
    assert sorted(len(r["batchItemFailures"]) for r in responses) == [0, 1]
    assert len(agents_for_tests.behaviour.calls) == 1
    assert proceeds(encord_env, task_of(message)) == 1
    assert pipeline.lease(task_of(message)) is None


def test_deferred_near_the_timeout(
    agent_env: SeededFixture, pipeline: Pipeline, encord_env: Emulator
) -> None:
    messages = produce_and_receive(pipeline, 4)
    ids = {m["MessageId"] for m in messages}

    # Too little time left to start anything: all handed back at once, leases untouched.
    response = invoke_consumer(sqs_event(messages), timeout_ms=4_000)  # TIME_GUARD_MS = 5000
    assert failure_ids(response) == ids
    assert agents_for_tests.behaviour.calls == []
    assert all(pipeline.lease(task_of(m))["state"] == "queued" for m in messages)  # type: ignore[index]
    messages = pipeline.receive(pipeline.work_queue_url)  # visibility 0: back at once
    assert {m["MessageId"] for m in messages} == ids

    # Time runs out after the first task: it completes, the rest are deferred and requeued
    # (the 2 s task would not fit in what is left before the guard).
    agents_for_tests.behaviour.sleep_seconds = 2.0
    response = invoke_consumer(sqs_event(messages), timeout_ms=8_000)
    done = [m for m in messages if encord_env.state.task_stage(task_of(m)).title == DONE]
    assert len(done) == 1 and len(agents_for_tests.behaviour.calls) == 1
    assert failure_ids(response) == ids - {done[0]["MessageId"]}
    for message in messages:
        lease = pipeline.lease(task_of(message))
        assert (lease is None) if message in done else (lease and lease["state"] == "queued")
    assert len(pipeline.receive(pipeline.work_queue_url)) == 3


def test_missing_key_fails_the_batch_as_retryable(
    agent_env: SeededFixture,
    pipeline: Pipeline,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    messages = produce_and_receive(pipeline, 2)
    poison = pipeline.sqs.send_message(QueueUrl=pipeline.work_queue_url, MessageBody="nope")
    messages += [
        m
        for m in pipeline.receive(pipeline.work_queue_url)
        if m["MessageId"] == poison["MessageId"]
    ]
    from agent_core.pipeline.loader import clear_runner_cache

    clear_runner_cache()
    secret_text = "this-is-not-a-key-" + uuid.uuid4().hex
    monkeypatch.delenv("ENCORD_SSH_KEY_FILE")
    monkeypatch.setenv("ENCORD_SSH_KEY", secret_text)

    response = invoke_consumer(sqs_event(messages))

    assert failure_ids(response) == {m["MessageId"] for m in messages[:2]}
    assert [attr(m, DlqAttributes.REASON) for m in dlq_messages(pipeline)] == ["poison"]
    logs = "\n".join(json.dumps(vars(r), default=str) for r in caplog.records)
    assert "the Encord key is unavailable" in logs
    assert "No Encord key configured" not in logs  # it was configured, but is not a key
    assert "could not be used" in logs
    assert secret_text not in logs
    for message in messages[:2]:
        lease = pipeline.lease(task_of(message))
        assert lease is not None and lease["state"] == "queued"  # never claimed


def test_metrics_are_emitted_per_stage(
    agent_env: SeededFixture, pipeline: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    messages = produce_and_receive(pipeline, 2)
    capsys.readouterr()
    invoke_consumer(sqs_event(messages))
    documents = [
        json.loads(line)
        for line in capsys.readouterr().out.splitlines()
        if line.startswith("{") and '"_aws"' in line
    ]
    (stage_doc,) = [d for d in documents if d.get("stage") == STAGE]
    assert stage_doc["processed"] == [2.0] and stage_doc["succeeded"] == [2.0]
    assert stage_doc["failed"] == [0.0] and stage_doc["poison"] == [0.0]
    assert stage_doc["dead_lettered"] == [0.0]
    assert stage_doc["duration"][0] > 0
    assert stage_doc["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "agentkit-tests"
    assert datetime.now(UTC).timestamp() * 1000 - stage_doc["_aws"]["Timestamp"] < 60_000


def test_key_from_secrets_manager(
    agent_env: SeededFixture,
    pipeline: Pipeline,
    encord_env: Emulator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The Lambda way: the Encord key is read from a Secrets Manager secret (moto here)."""
    import boto3

    from agent_core.pipeline.loader import clear_runner_cache

    name = f"agentkit/encord-key-{uuid.uuid4().hex[:8]}"
    boto3.client("secretsmanager").create_secret(Name=name, SecretString=encord_env.ssh_private_key)
    monkeypatch.delenv("ENCORD_SSH_KEY_FILE")
    monkeypatch.setenv("ENCORD_SSH_KEY_SECRET_ID", name)
    clear_runner_cache()
    messages = produce_and_receive(pipeline, 2)

    assert invoke_consumer(sqs_event(messages)) == {"batchItemFailures": []}
    for message in messages:
        assert encord_env.state.task_stage(task_of(message)).title == DONE


def test_an_event_without_records_is_a_no_op(agent_env: SeededFixture) -> None:
    assert invoke_consumer({}) == {"batchItemFailures": []}
    assert invoke_consumer({"Records": []}) == {"batchItemFailures": []}


def test_unreachable_lease_table_runs_nothing_and_retries(
    agent_env: SeededFixture,
    pipeline: Pipeline,
    encord_env: Emulator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Without a claim the consumer cannot know that no other run holds the task: it must not run
    # it, and the message must come back later rather than be lost or parked.
    messages = produce_and_receive(pipeline, 3)
    monkeypatch.setenv("LEASE_TABLE_NAME", f"missing-{uuid.uuid4().hex[:8]}")

    response = invoke_consumer(sqs_event(messages))

    assert failure_ids(response) == {m["MessageId"] for m in messages}
    assert agents_for_tests.behaviour.calls == []
    for message in messages:
        assert encord_env.state.task_stage(task_of(message)).title == STAGE
        assert proceeds(encord_env, task_of(message)) == 0
    assert dlq_messages(pipeline) == []
