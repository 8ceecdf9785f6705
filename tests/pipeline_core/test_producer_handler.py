"""The producer handler against the Encord emulator (real SDK) and a moto server (real boto3)."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest
from pipeline_helpers import Pipeline, context, invoke_producer

from agent_core.message import SQS_MAX_MESSAGE_BYTES, parse_envelope
from agent_core.pipeline.clients import dynamodb_client, sqs_client
from agent_core.pipeline.fanout import Producer
from agent_core.pipeline.leases import LeaseTable
from agent_core.pipeline.loader import get_runner
from agent_core.settings import PipelineSettings
from infra.emulator import Emulator, SeededFixture

STAGE = "Agent 1"
TASKS_ENDPOINT = "workflow/stages/{stage_uuid}/tasks"


def stage_summary(summary: dict[str, Any]) -> dict[str, Any]:
    stage: dict[str, Any] = summary["stages"][STAGE]
    return stage


def envelopes(pipeline: Pipeline) -> list[Any]:
    return [parse_envelope(m["Body"]) for m in pipeline.receive(pipeline.work_queue_url)]


def count(emulator: Emulator, fragment: str) -> int:
    return sum(n for name, n in emulator.counters.snapshot().items() if fragment in name)


def test_enqueues_one_message_per_task_with_metadata(
    agent_env: SeededFixture, pipeline: Pipeline, encord_env: Emulator
) -> None:
    tasks = set(agent_env.task_uuids[STAGE])
    encord_env.counters.reset()

    summary = invoke_producer()

    stage = stage_summary(summary)
    assert stage["listed"] == len(tasks) == stage["enqueued"]
    assert stage["skipped_in_flight"] == stage["failed_to_send"] == 0
    assert stage["truncated"] is False
    assert summary["totals"]["enqueued"] == len(tasks)
    # One label-row listing for the page of tasks, not one per task.
    assert stage["metadata_requests"] == 1
    assert count(encord_env, "labelrowmetadata") == 1

    received = envelopes(pipeline)
    assert sorted(e.task_uuid for e in received) == sorted(tasks)
    for envelope in received:
        assert envelope.project_hash == agent_env.project_hash
        assert str(envelope.stage_uuid) == agent_env.stage_uuids[STAGE]
        assert envelope.stage_name == STAGE
        assert envelope.origin == summary["run_id"]
        metadata = envelope.label_row_metadata
        assert metadata is not None and metadata["data_hash"] == envelope.data_hash
        lease = pipeline.lease(envelope.task_uuid)
        assert lease is not None and lease["state"] == "queued"
        assert lease["run_id"] == summary["run_id"]


def test_second_tick_while_in_flight_enqueues_nothing(
    agent_env: SeededFixture, pipeline: Pipeline
) -> None:
    first = stage_summary(invoke_producer())
    second = stage_summary(invoke_producer())
    assert first["enqueued"] == len(agent_env.task_uuids[STAGE])
    assert second["enqueued"] == 0
    assert second["skipped_in_flight"] == second["listed"] == first["enqueued"]
    assert len(pipeline.receive(pipeline.work_queue_url)) == first["enqueued"]


def test_two_concurrent_producers_enqueue_each_task_once(
    agent_env: SeededFixture, pipeline: Pipeline
) -> None:
    start = threading.Barrier(2)
    results: list[dict[str, Any]] = []

    def run() -> None:
        start.wait(timeout=10)
        results.append(invoke_producer())

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(results) == 2
    enqueued = [stage_summary(r)["enqueued"] for r in results]
    skipped = [stage_summary(r)["skipped_in_flight"] for r in results]
    total = len(agent_env.task_uuids[STAGE])
    assert sum(enqueued) == total
    assert sum(skipped) == total  # what one took, the other found in flight
    received = [e.task_uuid for e in envelopes(pipeline)]
    assert sorted(received) == sorted(agent_env.task_uuids[STAGE])


def test_max_tasks_per_run_caps_each_tick(
    agent_env: SeededFixture, pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAX_TASKS_PER_RUN", "7")
    first = stage_summary(invoke_producer())
    assert (first["enqueued"], first["truncated"], first["truncated_reason"]) == (
        7,
        True,
        "max_tasks",
    )
    second = stage_summary(invoke_producer())
    # The 7 in flight are passed over (they do not use up the cap); 7 more go out.
    assert second["enqueued"] == 7 and second["skipped_in_flight"] == 7
    monkeypatch.setenv("MAX_TASKS_PER_RUN", "100")
    third = stage_summary(invoke_producer())
    total = len(agent_env.task_uuids[STAGE])
    assert third["enqueued"] == total - 14 and third["truncated"] is False
    queued = [e.task_uuid for e in envelopes(pipeline)]
    assert sorted(queued) == sorted(agent_env.task_uuids[STAGE])


def test_stops_listing_when_the_clock_runs_low(
    agent_env: SeededFixture, pipeline: Pipeline
) -> None:
    settings = PipelineSettings()
    runner = get_runner(settings)
    producer = Producer(
        runner,
        project=runner.project,  # type: ignore[attr-defined]
        queue_url=pipeline.work_queue_url,
        leases=LeaseTable(pipeline.table_name, client=dynamodb_client(), ttl_seconds=3600),
        sqs=sqs_client(),
        max_tasks=1000,
        time_guard_ms=5_000,
        remaining_ms=context(timeout_ms=4_000).get_remaining_time_in_millis,
    )
    report = producer.run()
    assert report.stages[0].truncated_reason == "time"
    assert report.totals()["enqueued"] == 0
    assert pipeline.lease_count() == 0


def test_oversize_envelope_is_sent_without_metadata(
    agent_env: SeededFixture,
    pipeline: Pipeline,
    encord_env: Emulator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AGENT_MODULE", "agents_for_tests:client_metadata_runner")
    big_hash = agent_env.data_hashes[0]
    client = encord_env.user_client()
    item = client.get_storage_item(agent_env.storage_item_uuids[big_hash])
    # Over SQS's 1 MiB once it is in the envelope.
    item.update(client_metadata={"blob": "x" * (SQS_MAX_MESSAGE_BYTES + 1000)})

    stage = stage_summary(invoke_producer())

    total = len(agent_env.task_uuids[STAGE])
    assert stage["enqueued"] == total and stage["failed_to_send"] == 0
    assert stage["metadata_dropped"] == 1
    by_data = {e.data_hash: e for e in envelopes(pipeline)}
    assert by_data[big_hash].label_row_metadata is None
    others = [e for h, e in by_data.items() if h != big_hash]
    assert all(e.label_row_metadata is not None for e in others)
    assert all("client_metadata" in (e.label_row_metadata or {}) for e in others)


def test_failed_sends_release_their_leases(
    agent_env: SeededFixture, pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = pipeline.work_queue_url.rsplit("/", 1)[0] + f"/no-such-queue-{uuid.uuid4().hex}"
    monkeypatch.setenv("WORK_QUEUE_URL", missing)
    stage = stage_summary(invoke_producer())
    total = len(agent_env.task_uuids[STAGE])
    assert stage["failed_to_send"] == total and stage["enqueued"] == 0
    assert pipeline.lease_count() == 0  # released: the next tick tries again

    monkeypatch.setenv("WORK_QUEUE_URL", pipeline.work_queue_url)
    assert stage_summary(invoke_producer())["enqueued"] == total


def test_no_metadata_listing_when_the_agent_needs_no_label_row(
    agent_env: SeededFixture,
    pipeline: Pipeline,
    encord_env: Emulator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AGENT_MODULE", "agents_for_tests:task_only_runner")
    get_runner(PipelineSettings())  # the runner fetches its project when it is built
    encord_env.counters.reset()
    stage = stage_summary(invoke_producer())
    assert stage["enqueued"] == len(agent_env.task_uuids[STAGE])
    assert stage["metadata_requests"] == 0
    assert count(encord_env, "labelrowmetadata") == 0
    assert all(e.label_row_metadata is None for e in envelopes(pipeline))
