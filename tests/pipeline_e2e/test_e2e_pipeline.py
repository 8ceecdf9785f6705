"""The whole pipeline on the local stack: emulator + moto server + the real handlers.

Tasks start in two agent stages; producer ticks enqueue them; the local event-source poller feeds
them to the real consumer handler in Lambda-shaped batches. Checked against the emulator's
workflow state and action history, the queues, and what the test agent saw.
"""

from __future__ import annotations

import collections
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import e2e_agents
from e2e_helpers import KIT_RUNS, run_cli

from agent_core.message import DlqAttributes
from agent_core.pipeline.replay import DlqFilter
from infra.localstack.poller import LocalLambdaContext
from infra.localstack.stack import LocalStack


@dataclass(frozen=True)
class Delivery:
    message_id: str
    task_uuid: str | None
    stage: str | None
    receive_count: int
    replayed_from: str | None


class DeliveryLog:
    """An invoke wrapper that records every record handed to the consumer handler."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.deliveries: list[Delivery] = []

    def __call__(
        self,
        handler: Callable[[dict[str, Any], Any], Any],
        event: dict[str, Any],
        context: LocalLambdaContext,
    ) -> Any:
        for record in event["Records"]:
            try:
                body = json.loads(record["body"])
                task_uuid, stage = body["task"]["uuid"], body.get("stage_name")
            except (ValueError, KeyError, TypeError):
                task_uuid, stage = None, None
            replayed = record["messageAttributes"].get(DlqAttributes.REPLAYED_FROM)
            with self._lock:
                self.deliveries.append(
                    Delivery(
                        message_id=record["messageId"],
                        task_uuid=task_uuid,
                        stage=stage,
                        receive_count=int(record["attributes"]["ApproximateReceiveCount"]),
                        replayed_from=replayed["stringValue"] if replayed else None,
                    )
                )
        return handler(event, context)

    def for_task(self, task_uuid: str, stage: str) -> list[Delivery]:
        return [d for d in self.deliveries if d.task_uuid == task_uuid and d.stage == stage]


def _titles(stack: LocalStack) -> dict[str, str]:
    """title -> task uuid of the stack's project."""
    state = stack.emulator.state
    assert stack.seeded is not None
    return {
        state.data_units[data_hash].title: task_uuid
        for data_hash, task_uuid in stack.seeded.task_by_data.items()
    }


def _stage_of(stack: LocalStack, task_uuid: str) -> str:
    return stack.emulator.state.task_stage(task_uuid).title


def _actions_per_stage(stack: LocalStack, task_uuid: str) -> collections.Counter[str]:
    return collections.Counter(
        e.from_stage_title or "?" for e in stack.emulator.state.pathway_actions(task_uuid)
    )


def test_two_stage_pipeline_end_to_end(make_stack: Callable[..., LocalStack]) -> None:
    stack = make_stack()
    tasks = _titles(stack)
    log = DeliveryLog()

    # A first tick enqueues every task of both agent stages.
    first = stack.producer_tick()
    assert first["stages"]["triage"]["enqueued"] == 12
    assert first["stages"]["check"]["enqueued"] == 6

    # A tick while all of them are in flight enqueues nothing.
    second = stack.producer_tick()
    assert second["totals"]["enqueued"] == 0
    assert second["totals"]["skipped_in_flight"] == 18

    # Drain, with another producer tick fired between invocations while work is in progress.
    mid_ticks: list[Any] = []
    poller = stack.poller(invoke_wrapper=log)

    def tick_during_processing(report: Any) -> None:
        if not mid_ticks and poller.stats.invocations >= 2:
            mid_ticks.append(stack.producer_tick())

    poller.on_invocation = tick_during_processing
    stats = poller.drain(timeout_seconds=90)
    assert stats.drained, stats
    assert stats.handler_errors == 0 and stats.crashes == 0
    assert mid_ticks, "the producer tick during processing did not run"

    # The flaky task failed twice and was processed on its third delivery of the same message.
    flaky = tasks["flaky_00.jpg"]
    flaky_deliveries = log.for_task(flaky, "triage")
    assert [d.receive_count for d in flaky_deliveries] == [1, 2, 3]
    assert len({d.message_id for d in flaky_deliveries}) == 1
    assert e2e_agents.attempts("triage", "flaky_00.jpg") == 3
    assert _actions_per_stage(stack, flaky)["triage"] == 1

    # The broken tasks are in the DLQ with their error after KIT_RUNS attempts.
    dlq = stack.dlq_messages()
    assert sorted(m.data_title or "" for m in dlq) == ["broken_00.jpg", "broken_01.jpg"]
    for message in dlq:
        assert message.reason == "failed"
        assert message.error_type == "BrokenModelError"
        assert "model cannot read broken_0" in (message.error or "")
        assert message.receive_count == KIT_RUNS
        assert message.stage_name == "triage"
        assert _stage_of(stack, tasks[message.data_title or ""]) == "triage"
    assert e2e_agents.attempts("triage", "broken_00.jpg") == KIT_RUNS

    # A tick now enqueues the tasks that moved on to "check" (unless the mid-run tick already
    # did), never the DLQ'd tasks, whose leases stay until they are replayed.
    third = stack.producer_tick()
    assert third["stages"]["triage"]["enqueued"] == 0
    assert third["stages"]["triage"]["skipped_in_flight"] == 2
    stats = stack.drain(timeout_seconds=60, invoke_wrapper=log)
    assert stats.drained

    # A dry-run replay changes nothing.
    dry = stack.replay_dlq(dry_run=True)
    assert dry.matched == 2 and dry.replayed == 0
    assert len(stack.dlq_messages()) == 2
    assert stack.queue_depth() == 0

    # Fix the agent; replay one task with the library and the other with the CLI.
    e2e_agents.fix_broken()
    replayed = stack.replay_dlq(dlq_filter=DlqFilter(task="broken_00.jpg"))
    assert replayed.mode == "receive_send_delete"
    assert replayed.replayed == 1 and replayed.released == 1
    stats = stack.drain(timeout_seconds=60, invoke_wrapper=log)
    assert stats.drained
    assert _stage_of(stack, tasks["broken_00.jpg"]) == "check"
    assert log.for_task(tasks["broken_00.jpg"], "triage")[-1].replayed_from is not None

    result = run_cli(
        "dlq", "replay", "--task", "broken_01.jpg", "--json", env=stack.cli_env(), timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["replayed"] == 1
    stats = stack.drain(timeout_seconds=60, invoke_wrapper=log)
    assert stats.drained
    assert _stage_of(stack, tasks["broken_01.jpg"]) == "check"
    assert stack.dlq_messages() == []

    # The replayed tasks' next stage is picked up by the next tick.
    stack.producer_tick()
    assert stack.drain(timeout_seconds=60, invoke_wrapper=log).drained

    # Every task is at its pathway's destination.
    expected = {
        "ok": "Complete",
        "flaky": "Complete",
        "broken": "Complete",
        "chk": "Complete",
        "drop": "Discarded",
        "redo": "Annotate",
    }
    for title, task_uuid in tasks.items():
        assert _stage_of(stack, task_uuid) == expected[title.split("_")[0]], title

    # No stage visit was enqueued twice: one producer message per (task, stage), and exactly
    # one pathway action per stage a task went through.
    for title, task_uuid in tasks.items():
        for stage, count in _actions_per_stage(stack, task_uuid).items():
            assert count == 1, (title, stage)
            producer_messages = {
                d.message_id for d in log.for_task(task_uuid, stage) if d.replayed_from is None
            }
            assert len(producer_messages) == 1, (title, stage, producer_messages)
    for title in ("ok_00.jpg", "drop_00.jpg", "chk_00.jpg"):
        stage = "check" if title.startswith("chk") else "triage"
        assert e2e_agents.attempts(stage, title) == 1, title


def test_poison_message_goes_to_the_dlq_on_first_receive(
    make_stack: Callable[..., LocalStack],
) -> None:
    # The Encord key comes from Secrets Manager here, as in AWS (ENCORD_SSH_KEY_SECRET_ID).
    stack = make_stack(fixture=e2e_agents.E2E_FIXTURE_NO_FAILURES, use_secret=True)
    assert stack.env["ENCORD_SSH_KEY_FILE"] is None and stack.env["ENCORD_SSH_KEY_SECRET_ID"]
    sqs = stack.sqs()
    log = DeliveryLog()
    stack.producer_tick()
    sqs.send_message(QueueUrl=stack.queues.work_queue_url, MessageBody='{"version": 1, "task": ')
    sqs.send_message(QueueUrl=stack.queues.work_queue_url, MessageBody=json.dumps({"version": 99}))

    stats = stack.drain(timeout_seconds=60, invoke_wrapper=log)
    assert stats.drained

    poison = stack.dlq_messages(DlqFilter(reason="poison"))
    assert len(poison) == 2
    for message in poison:
        assert message.receive_count == 1
        assert not message.envelope_valid
        assert message.error
    assert any("not JSON" in (m.error or "") for m in poison)
    assert any("version" in (m.error or "") for m in poison)
    poison_deliveries = [d for d in log.deliveries if d.task_uuid is None]
    assert len(poison_deliveries) == 2 and all(d.receive_count == 1 for d in poison_deliveries)
    # Its neighbours were not held up: every task took its pathway.
    counts = stack.emulator.state.stage_counts(stack.project_hash)
    assert counts == {"triage": 0, "check": 6, "Annotate": 2, "Discarded": 3, "Complete": 4}
