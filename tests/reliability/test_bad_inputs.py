"""Bad inputs, one test each: every one gets a clear error that says what to do, and the rest of
its batch is unaffected (good neighbours proceed; what cannot run yet is retried, never lost).

Real consumer handler, real SDK against the emulator, real boto3 against the local stack's moto
server. Covered elsewhere to this bar (see RELIABILITY.md): a task already completed
(tests/pipeline_core/test_consumer_handler.py::test_task_that_already_left_the_stage_is_a_skipped_success)
and a key that is not a key at all (::test_missing_key_fails_the_batch_as_retryable).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
import reliability_agents as agents
from reliability_helpers import (
    LAST_RUN,
    attr,
    closed_port,
    dlq_raw,
    edge_stack,
    enqueue_and_receive,
    failure_ids,
    invoke_consumer,
    lease,
    new_ssh_key,
    record,
    send_and_receive,
    titles,
)

from agent_core.message import SQS_MAX_MESSAGE_BYTES, DlqAttributes
from infra.emulator import FaultRule
from infra.localstack.events import synthetic_record
from infra.localstack.moto import patched_environ
from infra.localstack.stack import reset_handler_state

if TYPE_CHECKING:
    from infra.emulator import Emulator
    from infra.localstack.moto import MotoServer
    from infra.localstack.stack import LocalStack

FOREIGN = "find what else sends to it"


@pytest.fixture
def stack(emulator: Emulator, local_moto: MotoServer) -> Iterator[LocalStack]:
    with edge_stack(emulator, local_moto) as s:
        yield s


def _stage(stack: LocalStack, title: str) -> str:
    return stack.emulator.state.task_stage(titles(stack)[title]).title


def _proceeds(stack: LocalStack, title: str) -> int:
    return len(stack.emulator.state.pathway_actions(titles(stack)[title]))


def _assert_neighbours_done(stack: LocalStack, *names: str) -> None:
    for name in names:
        assert _stage(stack, name) == "Complete", name
        assert _proceeds(stack, name) == 1, name
        assert lease(stack, titles(stack)[name]) is None, name


# -- poison messages ---------------------------------------------------------------------------


def _poison_body(kind: str, stack: LocalStack, template: dict[str, Any]) -> str:
    envelope = json.loads(template["Body"])
    if kind == "malformed_json":
        return '{"version": 1, "project_hash": '
    if kind == "wrong_schema":
        return json.dumps(dict(envelope, stage_uuid="not-a-uuid", task="not an object"))
    if kind == "unknown_version":
        return json.dumps(dict(envelope, version=99))
    if kind == "unknown_project":
        return json.dumps(dict(envelope, project_hash=str(uuid.uuid4())))
    if kind == "unknown_stage":
        assert stack.seeded is not None
        done = stack.seeded.stage_uuids["Complete"]
        return json.dumps(dict(envelope, stage_uuid=done, stage_name="Complete"))
    raise AssertionError(kind)


POISON = {
    # kind: (what is wrong, what to do)
    "malformed_json": ("message body is not JSON", FOREIGN),
    "wrong_schema": ("does not match the task envelope schema: stage_uuid", FOREIGN),
    "unknown_version": (
        "unknown envelope version 99",
        "Deploy producer and consumer from the same release",
    ),
    "unknown_project": ("but this consumer runs project", "send it to that project's queue"),
    "unknown_stage": (
        "Complete (",
        "Deploy the agent module that registers this stage (AGENT_MODULE), then replay",
    ),
    "oversize_body": ("SQS and this consumer accept at most 1048576", FOREIGN),
}


@pytest.mark.parametrize("kind", sorted(POISON))
def test_poison_message_is_parked_at_once_and_its_batch_proceeds(
    stack: LocalStack, kind: str
) -> None:
    messages = enqueue_and_receive(stack)
    if kind == "oversize_body":
        # SQS would refuse to take it; Lambda could still hand over a record this large.
        bad = synthetic_record(
            "é" * (SQS_MAX_MESSAGE_BYTES // 2 + 1), queue_arn=stack.queues.work_queue_arn
        )
    else:
        bad = record(
            stack, send_and_receive(stack, _poison_body(kind, stack, messages["ok_00.jpg"]))
        )
    event = [record(stack, messages["ok_00.jpg"]), bad, record(stack, messages["ok_01.jpg"])]

    response = invoke_consumer(event)

    assert response == {"batchItemFailures": []}  # nothing to retry: parked or done
    _assert_neighbours_done(stack, "ok_00.jpg", "ok_01.jpg")
    (parked,) = dlq_raw(stack)
    assert attr(parked, DlqAttributes.SOURCE_MESSAGE_ID) == bad["messageId"]
    assert attr(parked, DlqAttributes.REASON) == "poison"
    assert attr(parked, DlqAttributes.RECEIVE_COUNT) == "1"  # no retries: it can never work
    wrong, what_to_do = POISON[kind]
    error = attr(parked, DlqAttributes.ERROR)
    assert wrong in error and what_to_do in error, error
    if kind != "oversize_body":
        assert parked["Body"] == bad["body"]  # kept as it came, for inspection and replay


# -- agents that return something unusable -----------------------------------------------------


@pytest.mark.parametrize(
    ("title", "error_type", "what_to_do"),
    [
        (
            "badpath_00.jpg",
            "PathwayNotFoundError",
            'Its pathways are: "done"',
        ),
        (
            "badtype_00.jpg",
            "InvalidReturnError",
            "a stage function returns a pathway name or UUID, None",
        ),
    ],
    ids=["unknown_pathway", "wrong_type"],
)
def test_unusable_return_value_is_parked_without_retries(
    stack: LocalStack, title: str, error_type: str, what_to_do: str
) -> None:
    messages = enqueue_and_receive(stack)
    event = [record(stack, messages[t]) for t in ("ok_00.jpg", title, "ok_01.jpg")]

    response = invoke_consumer(event)

    # A retry cannot fix the code: straight to the DLQ, not after LAST_RUN runs.
    assert response == {"batchItemFailures": []}
    _assert_neighbours_done(stack, "ok_00.jpg", "ok_01.jpg")
    (parked,) = dlq_raw(stack)
    assert attr(parked, DlqAttributes.REASON) == "failed"
    assert attr(parked, DlqAttributes.ERROR_TYPE) == error_type
    assert what_to_do in attr(parked, DlqAttributes.ERROR)
    assert agents.calls()[(agents.WORK, title)] == 1
    assert _stage(stack, title) == agents.WORK and _proceeds(stack, title) == 0
    parked_lease = lease(stack, titles(stack)[title])
    assert parked_lease is not None and parked_lease["state"] == "failed"
    assert parked_lease["parked_message"] == messages[title]["MessageId"]


# -- Encord unreachable or refusing the key ----------------------------------------------------


def _config_failure(
    stack: LocalStack,
    env: dict[str, str | None],
    caplog: pytest.LogCaptureFixture,
) -> tuple[dict[str, dict[str, Any]], str]:
    """A batch of two good tasks and a poison message under a broken Encord configuration.

    Checks what every such case shares: the good tasks are not run and come back after the
    backoff (never lost), the poison message is parked anyway, and the logged reason is returned.
    On the last allowed receive the reason goes to the DLQ with the message.
    """
    messages = enqueue_and_receive(stack)
    poison = record(stack, send_and_receive(stack, "not json"))
    good = [record(stack, messages[t]) for t in ("ok_00.jpg", "ok_01.jpg")]
    with patched_environ(env):
        reset_handler_state()
        response = invoke_consumer([good[0], poison, good[1]])
        # The second good task on its last allowed receive: parked, with the reason.
        last = invoke_consumer([record(stack, messages["ok_02.jpg"], LAST_RUN)])
    reset_handler_state()

    assert failure_ids(response) == {r["messageId"] for r in good}
    assert last == {"batchItemFailures": []}
    assert agents.calls() == {}
    reasons = {attr(m, DlqAttributes.REASON): m for m in dlq_raw(stack)}
    assert set(reasons) == {"poison", "failed"}
    logged = "\n".join(
        str(getattr(r, "error", "")) for r in caplog.records if r.levelname == "ERROR"
    )
    dlq_error = attr(reasons["failed"], DlqAttributes.ERROR)
    assert dlq_error and dlq_error in logged, (dlq_error, logged)
    for name in ("ok_00.jpg", "ok_01.jpg"):
        assert lease(stack, titles(stack)[name])["state"] == "queued"  # type: ignore[index]

    # Configuration fixed: the same messages, redelivered, run once and proceed.
    again = [record(stack, messages[t], 2) for t in ("ok_00.jpg", "ok_01.jpg")]
    assert invoke_consumer(again) == {"batchItemFailures": []}
    _assert_neighbours_done(stack, "ok_00.jpg", "ok_01.jpg")
    return messages, dlq_error


def test_missing_encord_key(stack: LocalStack, caplog: pytest.LogCaptureFixture) -> None:
    _, error = _config_failure(
        stack,
        {"ENCORD_SSH_KEY_FILE": None, "ENCORD_SSH_KEY": None, "ENCORD_SSH_KEY_SECRET_ID": None},
        caplog,
    )
    assert error.startswith("No Encord key configured. Set ENCORD_SSH_KEY to the private key")


def test_key_that_encord_does_not_know(stack: LocalStack, caplog: pytest.LogCaptureFixture) -> None:
    key = new_ssh_key()
    _, error = _config_failure(stack, {"ENCORD_SSH_KEY_FILE": None, "ENCORD_SSH_KEY": key}, caplog)
    assert "Encord did not accept the configured key" in error
    assert "Add its public key to the Encord account" in error
    assert "PRIVATE KEY" not in error and key.splitlines()[1] not in caplog.text


def test_secret_missing_in_secrets_manager(
    stack: LocalStack, caplog: pytest.LogCaptureFixture
) -> None:
    name = f"agentkit/missing-{uuid.uuid4().hex[:8]}"
    _, error = _config_failure(
        stack, {"ENCORD_SSH_KEY_FILE": None, "ENCORD_SSH_KEY_SECRET_ID": name}, caplog
    )
    assert f"Could not read the Encord key from Secrets Manager secret {name!r}" in error
    assert "ResourceNotFoundException" in error
    assert "Create the secret" in error and "ENCORD_SSH_KEY_SECRET_ID" in error


def test_encord_unreachable_at_cold_start(
    stack: LocalStack, caplog: pytest.LogCaptureFixture
) -> None:
    domain = f"http://127.0.0.1:{closed_port()}"
    _, error = _config_failure(stack, {"ENCORD_DOMAIN": domain}, caplog)
    assert f"Could not reach Encord at {domain}" in error
    assert "Check ENCORD_DOMAIN and the network path" in error


def test_encord_going_down_mid_run_loses_and_doubles_nothing(stack: LocalStack) -> None:
    messages = enqueue_and_receive(stack)
    # A warm consumer: the runner and its Encord client are loaded.
    assert invoke_consumer([record(stack, messages["ok_00.jpg"])]) == {"batchItemFailures": []}
    batch = [record(stack, messages[t], 2) for t in ("ok_01.jpg", "ok_02.jpg", "ok_03.jpg")]
    # Every connection to Encord dropped, as when it goes down under load.
    down = stack.emulator.faults.add(FaultRule(endpoint="*", drop_rate=1.0))
    try:
        response = invoke_consumer(batch)
    finally:
        stack.emulator.faults.remove(down)

    assert failure_ids(response) == {r["messageId"] for r in batch}  # all retried
    for title in ("ok_01.jpg", "ok_02.jpg", "ok_03.jpg"):
        assert _stage(stack, title) == agents.WORK
        state = lease(stack, titles(stack)[title])
        assert state is not None and state["state"] == "failed"
        assert "Encord error while" in state["last_error"]
    # Back up: the retries verify, run and proceed each task once.
    retried = [record(stack, messages[t], 3) for t in ("ok_01.jpg", "ok_02.jpg", "ok_03.jpg")]
    assert invoke_consumer(retried) == {"batchItemFailures": []}
    _assert_neighbours_done(stack, "ok_00.jpg", "ok_01.jpg", "ok_02.jpg", "ok_03.jpg")
