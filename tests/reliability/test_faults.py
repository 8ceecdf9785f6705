"""The fault suite of issue 11: the real consumer handler in subprocess Lambda execution
environments, SIGKILLed at the function timeout (``infra.localstack.lambda_env``), fed by the
local event-source poller. One test per numbered case; each asserts from the emulator's action
history, the DLQ, the work queue and the lease table:

* every good task proceeded exactly once, each bad one is parked exactly once with its own error;
* nothing is left on the queue, no invocation was killed where the kit promises to answer;
* no key material in anything captured: the environments' whole output (the runtime's own error
  report included), the DLQ and the lease table.

Short timeouts keep it fast: 4 s functions, a 1.5 s time guard, 1 s backoff.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import fault_agents
import pytest
from reliability_helpers import attr, dlq_raw, lease

from agent_core.message import DlqAttributes
from agent_core.redaction import secret_fragments
from infra.localstack.lambda_env import ExecutionEnvironments
from infra.localstack.resources import PipelineShape
from infra.localstack.stack import LocalStack

if TYPE_CHECKING:
    from infra.emulator import Emulator
    from infra.localstack.moto import MotoServer

HERE = Path(__file__).resolve().parent
FUNCTION_TIMEOUT = 4
MAX_RECEIVE_COUNT = 3  # the kit runs a task at most twice; the third receive only parks


def shape(**overrides: Any) -> PipelineShape:
    values: dict[str, Any] = {
        "max_receive_count": MAX_RECEIVE_COUNT,
        "consumer_timeout_seconds": FUNCTION_TIMEOUT,
        "visibility_timeout_seconds": 8,
        "maximum_concurrency": 1,
        "maximum_batching_window_seconds": 0.3,
        "batch_size": 10,
    }
    values.update(overrides)
    return PipelineShape.from_template().replace(**values)


@contextmanager
def fault_stack(
    emulator: Emulator,
    moto: MotoServer,
    log_dir: Path,
    fixture: dict[str, Any],
    *,
    agent: str = "fault_agents:make_fault_runner",
    extra_env: dict[str, str] | None = None,
    kill_after_answer: Callable[[dict[str, Any]], bool] | None = None,
    **shape_overrides: Any,
) -> Iterator[tuple[LocalStack, ExecutionEnvironments]]:
    env = {
        "ENCORD_MAX_RETRIES": "0",
        "ENCORD_BACKOFF_FACTOR": "0.01",
        "TIME_GUARD_MS": "1500",
        "LEASE_RUN_MARGIN_SECONDS": "1",
        "POWERTOOLS_LOG_LEVEL": "INFO",
    }
    env.update(extra_env or {})
    emulator.faults.clear()
    with (
        LocalStack(
            emulator=emulator,
            moto=moto,
            fixture=fixture,
            agent_module=agent,
            shape=shape(**shape_overrides),
            extra_env=env,
        ) as stack,
        ExecutionEnvironments(
            "handlers.consumer:lambda_handler",
            log_dir=log_dir,
            python_path=[str(HERE)],
            kill_after_answer=kill_after_answer,
        ) as envs,
    ):
        yield stack, envs
    emulator.faults.clear()


def drain(stack: LocalStack, envs: ExecutionEnvironments, timeout: float = 60) -> None:
    stats = stack.drain(timeout_seconds=timeout, invoke_wrapper=envs)
    assert stats.drained, (stats.as_dict(), envs.stats)


def task_uuid(stack: LocalStack, title: str) -> str:
    assert stack.seeded is not None
    units = stack.emulator.state.data_units
    by_title = {units[h].title: t for h, t in stack.seeded.task_by_data.items()}
    return by_title[title]


def proceeds(stack: LocalStack, title: str) -> int:
    return len(stack.emulator.state.pathway_actions(task_uuid(stack, title)))


def parked(stack: LocalStack) -> dict[str, list[dict[str, Any]]]:
    """DLQ messages by data title."""
    found: dict[str, list[dict[str, Any]]] = {}
    for message in dlq_raw(stack):
        title = json.loads(message["Body"])["task"]["data_title"]
        found.setdefault(title, []).append(message)
    return found


def assert_no_key_anywhere(stack: LocalStack, envs: ExecutionEnvironments) -> None:
    fragments = secret_fragments(stack.emulator.ssh_private_key)
    captured = [envs.logs(), json.dumps(dlq_raw(stack))]
    scan = stack.moto.client("dynamodb").scan(TableName=stack.queues.lease_table_name)
    captured.append(json.dumps(scan.get("Items", [])))
    for text in captured:
        assert "PRIVATE KEY" not in text
        for fragment in fragments:
            assert fragment not in text


def assert_good_proceeded_once(stack: LocalStack, titles: list[str]) -> None:
    assert {t: proceeds(stack, t) for t in titles} == dict.fromkeys(titles, 1)


GOOD = [f"good_{i:02d}.jpg" for i in range(4)]


# -- case 1: one task poisons its batch -------------------------------------------------------

BAD = {
    "hang_00.jpg": "TaskTimeout",
    "cancel_00.jpg": "CancelledError",
    "custom_00.jpg": "CustomStop",
    "badstr_00.jpg": "BadStr",
}


def test_1_each_bad_task_fails_alone_in_its_batch(
    emulator: Emulator, local_moto: MotoServer, tmp_path: Path
) -> None:
    # One batch: 4 good tasks and one of each bad kind (a hang, CancelledError, a custom
    # BaseException, an exception whose __str__ raises), each quoting the key where it can.
    fixture = fault_agents.fault_fixture(good=4, hang=1, cancel=1, custom=1, badstr=1)
    with fault_stack(emulator, local_moto, tmp_path, fixture) as (stack, envs):
        stack.producer_tick()
        drain(stack, envs)

        assert_good_proceeded_once(stack, GOOD)
        assert {t: proceeds(stack, t) for t in BAD} == dict.fromkeys(BAD, 0)
        dlq = parked(stack)
        assert set(dlq) == set(BAD), dlq.keys()
        for title, error_type in BAD.items():
            (message,) = dlq[title]  # parked once, with its own error
            assert attr(message, DlqAttributes.REASON) == "failed"
            assert attr(message, DlqAttributes.ERROR_TYPE) == error_type
            # Parked by the kit on its last run (receive MAX-1), before SQS's redrive could.
            assert attr(message, DlqAttributes.RECEIVE_COUNT) == str(MAX_RECEIVE_COUNT - 1)
            record = lease(stack, task_uuid(stack, title))
            assert record is not None and record["state"] == "failed"
            assert record["parked_message"] == attr(message, DlqAttributes.SOURCE_MESSAGE_ID)
        assert all(lease(stack, task_uuid(stack, t)) is None for t in GOOD)
        assert stack.queue_depth() == 0
        # The invocations always answered; a hung agent never got the environment killed, and
        # the environment it hung in went on serving the next invocations.
        assert envs.stats.killed_at_timeout == 0
        assert envs.stats.handler_errors == 0
        assert envs.stats.cold_starts == 1 and envs.stats.invocations >= 2
        assert_no_key_anywhere(stack, envs)


# -- case 2: Encord slow or rate-limiting ----------------------------------------------------


@pytest.mark.parametrize("fault", ["rate_limited", "hanging"])
def test_2_encord_trouble_hands_back_and_proceeds_when_it_recovers(
    emulator: Emulator, local_moto: MotoServer, tmp_path: Path, fault: str
) -> None:
    from infra.emulator.faults import FaultRule

    fixture = fault_agents.fault_fixture(good=4)
    with fault_stack(emulator, local_moto, tmp_path, fixture) as (stack, envs):
        stack.producer_tick()
        if fault == "rate_limited":
            # Every request refused with a Retry-After longer than the function's timeout, for
            # the first invocations' worth of requests (cold start included).
            rule = FaultRule(endpoint="*", rate=1.0, status=429, retry_after=5, max_count=2)
        else:
            # Encord hangs past the function's timeout (read timeout is 60 s).
            rule = FaultRule(endpoint="*", latency_ms=30_000)
        emulator.faults.add(rule)
        invocations: list[Any] = []

        def recover(report: Any) -> None:
            invocations.append(report)
            if len(invocations) == 1:
                emulator.faults.remove(rule)

        stats = stack.drain(timeout_seconds=60, invoke_wrapper=envs, on_invocation=recover)
        assert stats.drained, stats.as_dict()
        assert_good_proceeded_once(stack, GOOD)
        assert parked(stack) == {}
        assert envs.stats.killed_at_timeout == 0, envs.stats
        assert len(invocations) >= 2  # the first handed the batch back
        assert invocations[0].outcome == "ok"
        logs = envs.logs()
        if fault == "rate_limited":
            # Handed back with Encord's delay, not the 1 s backoff.
            assert '"delay_seconds":5' in logs
        assert_no_key_anywhere(stack, envs)


# -- case 3: killed after the DLQ send, before the delete ------------------------------------


def test_3_killed_after_parking_the_task_is_parked_once(
    emulator: Emulator, local_moto: MotoServer, tmp_path: Path
) -> None:
    flag = tmp_path / "fail"
    flag.touch()

    def kill_on_the_parking_run(event: dict[str, Any]) -> bool:
        counts = {int(r["attributes"]["ApproximateReceiveCount"]) for r in event["Records"]}
        return MAX_RECEIVE_COUNT - 1 in counts

    fixture = fault_agents.fault_fixture(fails=1)
    with fault_stack(
        emulator,
        local_moto,
        tmp_path / "logs",
        fixture,
        extra_env={"FAIL_FLAG_FILE": str(flag)},
        kill_after_answer=kill_on_the_parking_run,
    ) as (stack, envs):
        stack.producer_tick()
        drain(stack, envs)
        assert envs.stats.killed_on_purpose == 1
        dlq = parked(stack)
        assert list(dlq) == ["fails_00.jpg"] and len(dlq["fails_00.jpg"]) == 1
        assert attr(dlq["fails_00.jpg"][0], DlqAttributes.REASON) == "failed"
        assert proceeds(stack, "fails_00.jpg") == 0
        assert stack.queue_depth() == 0


# -- case 4: a task that comes back is a new visit -------------------------------------------


def _move_back(stack: LocalStack, title: str) -> None:
    """A person moves the task out of the agent stage and back into it."""
    state = stack.emulator.state
    work = state.stage_uuid(stack.project_hash, fault_agents.WORK)
    elsewhere = state.stage_uuid(stack.project_hash, fault_agents.ELSEWHERE)
    uuid = task_uuid(stack, title)
    current = state.task_stage(uuid).uuid
    if current != work:
        state.move_tasks(stack.project_hash, current, elsewhere, [uuid], "reviewer@example.com")
        state.move_tasks(stack.project_hash, elsewhere, work, [uuid], "reviewer@example.com")
    else:
        state.move_tasks(stack.project_hash, work, elsewhere, [uuid], "reviewer@example.com")
        state.move_tasks(stack.project_hash, elsewhere, work, [uuid], "reviewer@example.com")


def test_4_a_task_coming_back_after_a_park_is_enqueued_again(
    emulator: Emulator, local_moto: MotoServer, tmp_path: Path
) -> None:
    flag = tmp_path / "fail"
    flag.touch()
    fixture = fault_agents.fault_fixture(fails=1)
    with fault_stack(
        emulator, local_moto, tmp_path / "logs", fixture, extra_env={"FAIL_FLAG_FILE": str(flag)}
    ) as (stack, envs):
        stack.producer_tick()
        drain(stack, envs)
        assert list(parked(stack)) == ["fails_00.jpg"]
        # Still in the stage, parked: the same visit is not enqueued again (the DLQ holds it).
        assert stack.producer_tick()["totals"]["enqueued"] == 0
        flag.unlink()
        _move_back(stack, "fails_00.jpg")
        assert stack.producer_tick()["totals"]["enqueued"] == 1
        drain(stack, envs)
        assert proceeds(stack, "fails_00.jpg") == 1
        assert lease(stack, task_uuid(stack, "fails_00.jpg")) is None


def test_4_a_task_coming_back_after_a_lost_lease_delete_is_enqueued_again(
    emulator: Emulator, local_moto: MotoServer, tmp_path: Path
) -> None:
    fixture = fault_agents.fault_fixture(good=1)
    with fault_stack(emulator, local_moto, tmp_path, fixture) as (stack, envs):
        stack.producer_tick()
        drain(stack, envs)
        assert proceeds(stack, "good_00.jpg") == 1
        uuid = task_uuid(stack, "good_00.jpg")
        # The lease delete after the commit failed once (throttling): the lease is left running,
        # far from its end, exactly as the dead run wrote it.
        dynamodb = stack.moto.client("dynamodb")
        dynamodb.put_item(
            TableName=stack.queues.lease_table_name,
            Item={
                "task_uuid": {"S": uuid},
                "state": {"S": "running"},
                "stage_uuid": {"S": stack.emulator.state.stage_uuid(stack.project_hash, "work")},
                "visit": {"S": "an-earlier-visit"},
                "project_hash": {"S": stack.project_hash},
                "run_id": {"S": "producer:old"},
                "run_token": {"S": "old:run"},
                "run_until": {"N": "99999999999"},
                "expires_at": {"N": "99999999999"},
            },
        )
        # A review loop rejects it back into the agent stage.
        state = stack.emulator.state
        complete = state.task_stage(uuid).uuid
        state.move_tasks(
            stack.project_hash,
            complete,
            state.stage_uuid(stack.project_hash, "work"),
            [uuid],
            "reviewer@example.com",
        )
        assert stack.producer_tick()["totals"]["enqueued"] == 1
        drain(stack, envs)
        assert proceeds(stack, "good_00.jpg") == 2  # once per visit
        assert lease(stack, uuid) is None


# -- case 5: key leak through the runtime ----------------------------------------------------


def test_5_nothing_leaves_a_handler_unredacted(
    emulator: Emulator, local_moto: MotoServer, tmp_path: Path
) -> None:
    fixture = fault_agents.fault_fixture(good=1)
    with (
        fault_stack(
            emulator, local_moto, tmp_path, fixture, agent="fault_agents:make_leaky_runner"
        ) as (stack, _consumers),
        ExecutionEnvironments(
            "handlers.producer:lambda_handler",
            log_dir=tmp_path / "producer",
            python_path=[str(HERE)],
        ) as producer,
    ):
        from infra.localstack.events import scheduled_event
        from infra.localstack.lambda_env import InvocationError

        with pytest.raises(InvocationError) as raised:
            producer.invoke(scheduled_event(), timeout_seconds=10)
        # The runtime reports the type and a redacted text; the log holds nothing more.
        assert raised.value.error["errorType"] == "ConfigurationError"
        assert "[redacted" in raised.value.error["errorMessage"]
        fragments = secret_fragments(stack.emulator.ssh_private_key)
        logs = producer.logs()
        assert "errorMessage" in logs
        assert not any(f in logs for f in fragments) and "PRIVATE KEY" not in logs


# -- case 6: a slow agent at the template's settings -----------------------------------------


def test_6_a_slow_agent_is_handed_back_before_the_timeout_not_killed(
    emulator: Emulator, local_moto: MotoServer, tmp_path: Path
) -> None:
    # The template's proportions, scaled down: 120 s / 10 s guard / batches of 10 / 15 s agent
    # becomes 6 s / 0.5 s guard / 10 / 0.75 s.
    fixture = fault_agents.fault_fixture(slow=10)
    with fault_stack(
        emulator,
        local_moto,
        tmp_path,
        fixture,
        extra_env={"TIME_GUARD_MS": "500", "SLOW_AGENT_SECONDS": "0.75"},
        consumer_timeout_seconds=6,
        visibility_timeout_seconds=12,
    ) as (stack, envs):
        stack.producer_tick()
        drain(stack, envs)
        slow = [f"slow_{i:02d}.jpg" for i in range(10)]
        assert_good_proceeded_once(stack, slow)
        assert parked(stack) == {}
        assert envs.stats.killed_at_timeout == 0
        assert envs.stats.invocations >= 2  # the batch did not fit: the rest was handed back


# -- case 7: task UUIDs and envelopes parsed strictly ----------------------------------------


def test_7_malformed_task_uuids_and_versions_are_poison_at_once(
    emulator: Emulator, local_moto: MotoServer, tmp_path: Path
) -> None:
    fixture = fault_agents.fault_fixture(good=1)
    with fault_stack(emulator, local_moto, tmp_path, fixture) as (stack, envs):
        stack.producer_tick()
        sqs = stack.sqs()
        url = stack.queues.work_queue_url
        (original,) = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1).get("Messages", [])
        body = json.loads(original["Body"])
        # Read, so put back as new (a first receive, as the producer sent it).
        sqs.delete_message(QueueUrl=url, ReceiptHandle=original["ReceiptHandle"])
        upper = dict(body, task=dict(body["task"], uuid=body["task"]["uuid"].upper()))
        huge = dict(body, task=dict(body["task"], uuid="a" * 3000))
        version = dict(body, version=True)
        for variant in (body, upper, huge, version):
            sqs.send_message(QueueUrl=url, MessageBody=json.dumps(variant))
        drain(stack, envs)

        assert proceeds(stack, "good_00.jpg") == 1
        messages = dlq_raw(stack)
        # The upper-cased copy is the same task: it shares the lease, and being a second
        # delivery of a task whose visit has already ended, it is dropped (not run twice); the
        # two that can never be a lease key are poison on their first receive.
        reasons = sorted(attr(m, DlqAttributes.REASON) for m in messages)
        assert reasons == ["poison", "poison"], [m["MessageAttributes"] for m in messages]
        assert all(attr(m, DlqAttributes.RECEIVE_COUNT) == "1" for m in messages)
        keys = {
            item["task_uuid"]["S"]
            for item in stack.moto.client("dynamodb")
            .scan(TableName=stack.queues.lease_table_name)
            .get("Items", [])
        }
        assert all(k == k.lower() and len(k) == 36 for k in keys)
        assert stack.queue_depth() == 0
