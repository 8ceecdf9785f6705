"""The local event-source poller against a moto server, with small handlers written here."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from infra.localstack.moto import MotoServer
from infra.localstack.poller import LocalLambdaContext, LocalPoller, PollerFaults, SimulatedCrash
from infra.localstack.resources import LocalResources, PipelineShape, create_resources


@pytest.fixture
def queues(moto_server: MotoServer) -> Iterator[LocalResources]:
    # A short visibility timeout so that a batch a failed invocation kept comes back quickly.
    shape = PipelineShape(visibility_timeout_seconds=2, consumer_timeout_seconds=2)
    yield create_resources(shape, client_factory=moto_server.client)


def _send(sqs: Any, url: str, count: int, *, attributes: bool = False) -> None:
    for start in range(0, count, 10):
        entries = []
        for n in range(start, min(count, start + 10)):
            entry: dict[str, Any] = {"Id": str(n), "MessageBody": json.dumps({"n": n})}
            if attributes:
                entry["MessageAttributes"] = {
                    "kind": {"DataType": "String", "StringValue": "test"},
                    "blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01"},
                }
            entries.append(entry)
        sqs.send_message_batch(QueueUrl=url, Entries=entries)


def _n(record: dict[str, Any]) -> int:
    return int(json.loads(record["body"])["n"])


def _poller(
    moto_server: MotoServer, queues: LocalResources, handler: Any, **kw: Any
) -> LocalPoller:
    kw.setdefault("receive_wait_seconds", 1)
    return LocalPoller(
        handler, queue_url=queues.work_queue_url, client_factory=moto_server.client, **kw
    )


def test_event_and_context_are_shaped_like_lambdas(
    moto_server: MotoServer, queues: LocalResources, sqs: Any
) -> None:
    _send(sqs, queues.work_queue_url, 3, attributes=True)
    seen: list[tuple[dict[str, Any], LocalLambdaContext, int]] = []

    def handler(event: dict[str, Any], context: LocalLambdaContext) -> dict[str, Any]:
        seen.append((event, context, context.get_remaining_time_in_millis()))
        return {"batchItemFailures": []}

    poller = _poller(moto_server, queues, handler, function_timeout_seconds=60)
    stats = poller.drain(timeout_seconds=30)

    assert stats.drained and stats.deleted == 3 and stats.messages == 3
    records = [r for event, _, _ in seen for r in event["Records"]]
    assert sorted(_n(r) for r in records) == [0, 1, 2]
    record = records[0]
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"] == queues.work_queue_arn
    assert record["awsRegion"] == moto_server.region
    assert set(record["attributes"]) >= {
        "ApproximateReceiveCount",
        "SentTimestamp",
        "SenderId",
        "ApproximateFirstReceiveTimestamp",
    }
    assert record["attributes"]["ApproximateReceiveCount"] == "1"
    assert record["messageAttributes"]["kind"] == {
        "stringValue": "test",
        "stringListValues": [],
        "binaryListValues": [],
        "dataType": "String",
    }
    assert record["messageAttributes"]["blob"]["binaryValue"] == "AAE="
    assert record["md5OfBody"] and record["md5OfMessageAttributes"] and record["receiptHandle"]
    _, context, remaining = seen[0]
    assert context.function_name == "ConsumerFunction"
    assert context.invoked_function_arn.endswith(":function:ConsumerFunction")
    assert context.aws_request_id and context.memory_limit_in_mb == 1024
    assert 50_000 < remaining <= 60_000


def test_reported_failures_stay_and_come_back_successes_are_deleted(
    moto_server: MotoServer, queues: LocalResources, sqs: Any
) -> None:
    _send(sqs, queues.work_queue_url, 25)
    deliveries: dict[int, list[int]] = {}
    lock = threading.Lock()

    def handler(event: dict[str, Any], context: LocalLambdaContext) -> dict[str, Any]:
        failures = []
        for record in event["Records"]:
            n, count = _n(record), int(record["attributes"]["ApproximateReceiveCount"])
            with lock:
                deliveries.setdefault(n, []).append(count)
            if n % 5 == 0 and count == 1:
                # As the consumer does: hand it back after a short backoff, report it failed.
                sqs.change_message_visibility(
                    QueueUrl=queues.work_queue_url,
                    ReceiptHandle=record["receiptHandle"],
                    VisibilityTimeout=1,
                )
                failures.append({"itemIdentifier": record["messageId"]})
        assert len(event["Records"]) <= 10
        return {"batchItemFailures": failures}

    poller = _poller(moto_server, queues, handler, batch_size=10, maximum_concurrency=3)
    stats = poller.drain(timeout_seconds=30)

    assert stats.drained
    assert stats.deleted == 25 and stats.failures_reported == 5 and stats.redeliveries == 5
    assert {n: counts for n, counts in deliveries.items() if len(counts) > 1} == {
        n: [1, 2] for n in range(0, 25, 5)
    }
    assert poller.queue_counts() == {
        "ApproximateNumberOfMessages": 0,
        "ApproximateNumberOfMessagesNotVisible": 0,
        "ApproximateNumberOfMessagesDelayed": 0,
    }


def test_a_raising_handler_deletes_nothing(
    moto_server: MotoServer, queues: LocalResources, sqs: Any
) -> None:
    _send(sqs, queues.work_queue_url, 4)
    calls: list[int] = []

    def handler(event: dict[str, Any], context: LocalLambdaContext) -> dict[str, Any]:
        calls.append(len(event["Records"]))
        if len(calls) == 1:
            raise RuntimeError("out of memory")
        return {}

    poller = _poller(moto_server, queues, handler)
    first = poller.run_once()
    assert first is not None and first.outcome == "error" and first.deleted == 0
    assert poller.queue_counts()["ApproximateNumberOfMessagesNotVisible"] == 4
    # The batch comes back after the queue's visibility timeout (2 s) and then succeeds.
    stats = poller.drain(timeout_seconds=30)
    assert stats.drained and stats.handler_errors == 1 and stats.deleted == 4
    assert stats.redeliveries == 4


def test_an_invalid_response_fails_the_whole_batch(
    moto_server: MotoServer, queues: LocalResources, sqs: Any
) -> None:
    _send(sqs, queues.work_queue_url, 2)
    poller = _poller(
        moto_server,
        queues,
        lambda event, context: {"batchItemFailures": [{"itemIdentifier": "not-in-batch"}]},
    )
    report = poller.run_once()
    assert report is not None and report.outcome == "invalid_response" and report.deleted == 0
    assert "not in the batch" in (report.error or "")


def test_batching_window_gathers_messages_that_arrive_late(
    moto_server: MotoServer, queues: LocalResources, sqs: Any
) -> None:
    sizes: list[int] = []

    def handler(event: dict[str, Any], context: LocalLambdaContext) -> None:
        sizes.append(len(event["Records"]))

    poller = _poller(moto_server, queues, handler, batch_size=10, batching_window_seconds=2.0)
    _send(sqs, queues.work_queue_url, 2)
    late = threading.Timer(0.7, lambda: _send(sqs, queues.work_queue_url, 3))
    late.start()
    try:
        report = poller.run_once(wait_seconds=2)
    finally:
        late.join()
    assert report is not None and report.records == 5 and sizes == [5]


def test_drain_keeps_polling_an_empty_queue_until_the_producer_is_done(
    moto_server: MotoServer, queues: LocalResources, sqs: Any
) -> None:
    # Like Lambda's event-source mapping: an empty queue before the producer's first send does not
    # stop the workers; they stop once the producer is done and the queue is drained.
    handled: list[int] = []
    producer_done = threading.Event()

    def handler(event: dict[str, Any], context: LocalLambdaContext) -> None:
        handled.extend(_n(r) for r in event["Records"])

    def produce() -> None:
        _send(sqs, queues.work_queue_url, 4)
        producer_done.set()

    poller = _poller(moto_server, queues, handler, batch_size=10)
    late = threading.Timer(1.5, produce)
    late.start()
    try:
        stats = poller.drain(timeout_seconds=30, stop_when=producer_done.is_set)
    finally:
        late.join()
    assert stats.drained and sorted(handled) == [0, 1, 2, 3]


def _duplicate_run(moto_server: MotoServer, seed: int) -> tuple[list[int], int]:
    shape = PipelineShape(visibility_timeout_seconds=5, consumer_timeout_seconds=5)
    queues = create_resources(shape, client_factory=moto_server.client)
    _send(moto_server.client("sqs"), queues.work_queue_url, 20)
    seen: list[int] = []

    def handler(event: dict[str, Any], context: LocalLambdaContext) -> None:
        seen.extend(_n(r) for r in event["Records"])

    poller = _poller(
        moto_server,
        queues,
        handler,
        batch_size=10,
        faults=PollerFaults(seed=seed, duplicate_fraction=0.3, duplicate_later_fraction=0.5),
    )
    stats = poller.drain(timeout_seconds=30)
    # A copy delivered in a later invocation is deleted again with its stale receipt handle.
    assert stats.drained and stats.deleted >= 20
    return seen, stats.duplicates_injected


def test_duplicate_delivery_is_deterministic_for_a_seed(moto_server: MotoServer) -> None:
    seen_a, dupes_a = _duplicate_run(moto_server, seed=7)
    seen_b, dupes_b = _duplicate_run(moto_server, seed=7)
    assert dupes_a == dupes_b > 0
    assert sorted(seen_a) == sorted(seen_b)
    assert len(seen_a) == 20 + dupes_a
    assert set(seen_a) == set(range(20))


def test_crash_injection_kills_invocations_mid_batch(
    moto_server: MotoServer, queues: LocalResources, sqs: Any
) -> None:
    _send(sqs, queues.work_queue_url, 5)
    processed: list[int] = []

    def handler(event: dict[str, Any], context: LocalLambdaContext) -> dict[str, Any]:
        for record in event["Records"]:
            context.get_remaining_time_in_millis()  # the consumer checks its clock per task
            processed.append(_n(record))
        return {"batchItemFailures": []}

    poller = _poller(moto_server, queues, handler, faults=PollerFaults(seed=1, crash_fraction=1.0))
    report = poller.run_once()
    assert report is not None and report.outcome == "crash" and report.deleted == 0
    assert poller.stats.crashes == 1
    assert len(processed) < 5  # killed part-way through the batch
    assert poller.queue_counts()["ApproximateNumberOfMessagesNotVisible"] == 5

    # Without faults the batch is processed once it is visible again.
    poller.faults = PollerFaults()
    time.sleep(2.2)
    assert poller.drain(timeout_seconds=30).deleted == 5


def test_simulated_crash_is_not_an_exception() -> None:
    # A handler's `except Exception` must not be able to swallow a simulated kill.
    assert not issubclass(SimulatedCrash, Exception)
    context = LocalLambdaContext(function_name="f", timeout_seconds=5, crash_at_call=2)
    context.get_remaining_time_in_millis()
    with pytest.raises(SimulatedCrash):
        context.get_remaining_time_in_millis()
