"""A local stand-in for Lambda's SQS event-source mapping, driving a real handler function.

It does what the managed poller does for a function with ``ReportBatchItemFailures``: receive up
to BatchSize messages (waiting up to MaximumBatchingWindowInSeconds to fill a batch), invoke the
handler with a real-shaped SQS event and context, delete the records the handler did not report
as failed, and leave the failed ones alone (their visibility is whatever the handler set). If the
invocation raises, times out or is killed, nothing is deleted and the whole batch comes back
after the visibility timeout. Up to MaximumConcurrency invocations run at once, in threads.

Fault injection for soak tests is deterministic for a given seed: duplicate delivery of a share
of the records (in the same invocation or a later one) and invocations killed mid-batch
(``SimulatedCrash``, a BaseException so that no ``except Exception`` in the handler swallows it).
"""

from __future__ import annotations

import collections
import logging
import math
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from infra.localstack.events import record_from_message, sqs_event
from infra.localstack.moto import LOCAL_ACCOUNT_ID, LOCAL_REGION
from infra.localstack.resources import PipelineShape, default_client_factory

log = logging.getLogger("agentkit.localstack.poller")

Handler = Callable[[dict[str, Any], Any], Any]
InvokeWrapper = Callable[[Handler, dict[str, Any], "LocalLambdaContext"], Any]

_QUEUE_COUNT_ATTRIBUTES = (
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
)


class SimulatedCrash(BaseException):
    """The invocation was killed (out of memory, timeout, host failure) by fault injection."""


class LocalLambdaContext:
    """The attributes and method of Lambda's context object that handlers and Powertools use."""

    function_version = "$LATEST"
    identity = None
    client_context = None

    def __init__(
        self,
        *,
        function_name: str,
        timeout_seconds: float,
        memory_limit_in_mb: int = 1024,
        region: str = LOCAL_REGION,
        account_id: str = LOCAL_ACCOUNT_ID,
        request_id: str | None = None,
        crash_at_call: int | None = None,
    ) -> None:
        self.function_name = function_name
        self.memory_limit_in_mb = memory_limit_in_mb
        self.invoked_function_arn = f"arn:aws:lambda:{region}:{account_id}:function:{function_name}"
        self.aws_request_id = request_id or str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = (
            f"{datetime.now(UTC):%Y/%m/%d}/[$LATEST]{uuid.uuid4().hex}"  # Lambda's stream format
        )
        self.timeout_seconds = timeout_seconds
        self._deadline = time.monotonic() + timeout_seconds
        self._crash_at_call = crash_at_call
        self._calls = 0
        self._lock = threading.Lock()

    def get_remaining_time_in_millis(self) -> int:
        # A doomed invocation dies at its k-th clock check: the consumer checks the clock between
        # tasks, so this kills it part-way through a batch, after some work may have been done.
        with self._lock:
            self._calls += 1
            if self._crash_at_call is not None and self._calls >= self._crash_at_call:
                raise SimulatedCrash(f"invocation {self.aws_request_id} killed by fault injection")
        return max(0, int((self._deadline - time.monotonic()) * 1000))

    def restart_clock(self) -> None:
        """Start the timeout now: an execution environment's init (cold start) is not part of
        the invocation's timeout in Lambda."""
        self._deadline = time.monotonic() + self.timeout_seconds

    @property
    def doomed(self) -> bool:
        return self._crash_at_call is not None

    def expired(self) -> bool:
        return time.monotonic() > self._deadline


@dataclass
class PollerFaults:
    """Deterministic fault injection (same seed and same message flow -> same faults)."""

    seed: int = 0
    # Share of received records delivered twice.
    duplicate_fraction: float = 0.0
    # Of the duplicated records, the share whose second copy comes in a later invocation
    # (the rest are repeated inside the same batch).
    duplicate_later_fraction: float = 0.5
    # Share of invocations killed: at a random clock check inside the handler, or, if the handler
    # never checks the clock often enough, after it returned but before its result reached the
    # poller (the work is done and committed, yet nothing is deleted).
    crash_fraction: float = 0.0

    def __post_init__(self) -> None:
        for name in ("duplicate_fraction", "duplicate_later_fraction", "crash_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value}")


@dataclass(frozen=True)
class InvocationReport:
    """What one invocation did; passed to the progress callback."""

    request_id: str
    records: int
    failures_reported: int
    deleted: int
    outcome: str  # "ok" | "error" | "crash" | "timeout" | "invalid_response"
    duration_seconds: float
    error: str | None = None


@dataclass
class PollerStats:
    invocations: int = 0
    messages: int = 0  # records handed to the handler, duplicates included
    failures_reported: int = 0
    deleted: int = 0
    delete_failures: int = 0
    redeliveries: int = 0  # records with ApproximateReceiveCount > 1
    duplicates_injected: int = 0
    handler_errors: int = 0
    crashes: int = 0
    timeouts: int = 0
    invalid_responses: int = 0
    drained: bool = False
    elapsed_seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "errors"} | {
            "errors": list(self.errors)
        }


@dataclass
class _Received:
    record: dict[str, Any]
    duplicate: bool = False


class LocalPoller:
    """Feeds one SQS queue to one handler like a Lambda event-source mapping."""

    def __init__(
        self,
        handler: Handler,
        *,
        queue_url: str,
        batch_size: int = 10,
        batching_window_seconds: float = 0.0,
        maximum_concurrency: int = 1,
        function_timeout_seconds: float = 120.0,
        function_name: str = "ConsumerFunction",
        memory_limit_in_mb: int = 1024,
        region: str = LOCAL_REGION,
        receive_wait_seconds: int = 1,
        faults: PollerFaults | None = None,
        invoke_wrapper: InvokeWrapper | None = None,
        on_invocation: Callable[[InvocationReport], None] | None = None,
        client_factory: Callable[[str], Any] = default_client_factory,
    ) -> None:
        if not 1 <= batch_size <= 10_000:
            raise ValueError("batch_size must be between 1 and 10000 (Lambda's SQS limit)")
        if maximum_concurrency < 1:
            raise ValueError("maximum_concurrency must be at least 1")
        self.handler = handler
        self.queue_url = queue_url
        self.batch_size = batch_size
        self.batching_window_seconds = max(0.0, batching_window_seconds)
        self.maximum_concurrency = maximum_concurrency
        self.function_timeout_seconds = function_timeout_seconds
        self.function_name = function_name
        self.memory_limit_in_mb = memory_limit_in_mb
        self.region = region
        self.receive_wait_seconds = receive_wait_seconds
        self.faults = faults or PollerFaults()
        self.invoke_wrapper = invoke_wrapper
        self.on_invocation = on_invocation
        self.stats = PollerStats()
        self._sqs = client_factory("sqs")
        self._queue_arn = str(
            self._sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
                "Attributes"
            ]["QueueArn"]
        )
        self._rng = random.Random(self.faults.seed)
        self._lock = threading.Lock()
        self._receive_lock = threading.Lock()
        self._in_flight = 0
        self._pending_duplicates: collections.deque[dict[str, Any]] = collections.deque()
        self._stop_when: Callable[[], bool] | None = None

    @classmethod
    def for_shape(
        cls, handler: Handler, *, queue_url: str, shape: PipelineShape, **kw: Any
    ) -> LocalPoller:
        """A poller configured like the template's event-source mapping and function."""
        kw.setdefault("batch_size", shape.batch_size)
        kw.setdefault("batching_window_seconds", shape.maximum_batching_window_seconds)
        kw.setdefault("maximum_concurrency", shape.maximum_concurrency)
        kw.setdefault("function_timeout_seconds", shape.consumer_timeout_seconds)
        return cls(handler, queue_url=queue_url, **kw)

    # -- public API --------------------------------------------------------------------------

    def run_once(self, *, wait_seconds: float | None = None) -> InvocationReport | None:
        """Receive one batch and invoke the handler with it; None if there was nothing to receive."""
        deadline = time.monotonic() + (
            self.receive_wait_seconds if wait_seconds is None else wait_seconds
        )
        batch = self._collect_batch(deadline)
        return self._invoke(batch) if batch else None

    def drain(
        self, *, timeout_seconds: float = 120.0, stop_when: Callable[[], bool] | None = None
    ) -> PollerStats:
        """Invoke until the queue is empty with nothing in flight, or until the timeout.

        Like Lambda's event-source mapping, workers keep polling an empty queue while
        ``stop_when()`` is False (e.g. until a producer running beside the poller is done), so an
        idle moment before the first send does not end the drain. ``stats.drained`` says whether
        the queue was drained when it ended.
        """
        self._stop_when = stop_when
        started = time.monotonic()
        deadline = started + timeout_seconds
        stop = threading.Event()
        workers = [
            threading.Thread(
                target=self._worker, args=(stop, deadline), name=f"poller-{i}", daemon=True
            )
            for i in range(self.maximum_concurrency)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            # Bounded: a worker leaves its loop at the deadline, plus one in-flight invocation.
            worker.join(
                timeout=max(0.0, deadline - time.monotonic()) + self.function_timeout_seconds
            )
        self.stats.drained = self.is_drained()
        self.stats.elapsed_seconds = time.monotonic() - started
        return self.stats

    def queue_counts(self) -> dict[str, int]:
        response = self._sqs.get_queue_attributes(
            QueueUrl=self.queue_url, AttributeNames=list(_QUEUE_COUNT_ATTRIBUTES)
        )
        return {k: int(v) for k, v in response.get("Attributes", {}).items()}

    def is_drained(self) -> bool:
        with self._lock:
            if self._in_flight or self._pending_duplicates:
                return False
        return sum(self.queue_counts().values()) == 0

    # -- internals ---------------------------------------------------------------------------

    def _worker(self, stop: threading.Event, deadline: float) -> None:
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                receive_deadline = min(deadline, time.monotonic() + self.receive_wait_seconds)
                batch = self._collect_batch(receive_deadline)
                if batch:
                    self._invoke(batch)
                    continue
                # Received records count as not-visible on the queue until deleted, and running
                # invocations as in flight, so an idle worker can tell "drained" on its own.
                if (self._stop_when is None or self._stop_when()) and self.is_drained():
                    stop.set()
            except Exception as exc:  # an SQS hiccup must not end the drain
                self._note_error(f"poller: {type(exc).__name__}: {exc}")
                time.sleep(0.2)

    def _collect_batch(self, deadline: float) -> list[_Received]:
        batch: list[_Received] = []
        with self._lock:
            while self._pending_duplicates and len(batch) < self.batch_size:
                batch.append(_Received(self._pending_duplicates.popleft(), duplicate=True))
        window_end: float | None = None
        while len(batch) < self.batch_size:
            # Until a first record is in hand, wait up to the deadline; after it, only up to the
            # batching window (Lambda invokes when the batch is full or the window has passed).
            now = time.monotonic()
            if window_end is None:
                wait = min(20, max(0, math.ceil(deadline - now)))
            else:
                if now >= window_end:
                    break
                wait = min(20, int(window_end - now))
            received = self._receive(min(10, self.batch_size - len(batch)), wait)
            batch.extend(
                _Received(record_from_message(m, queue_arn=self._queue_arn, region=self.region))
                for m in received
            )
            if window_end is None:
                if batch:
                    window_end = time.monotonic() + self.batching_window_seconds
                elif wait == 0 or time.monotonic() >= deadline:
                    break
            elif not received and wait == 0:
                break
        return self._inject_duplicates(batch)

    def _receive(self, max_messages: int, wait_seconds: int) -> list[dict[str, Any]]:
        # One ReceiveMessage at a time: moto's receive is not atomic, and two concurrent calls
        # can both take the same message, an accidental duplicate that would blur the stats
        # (duplicates are injected deliberately, see PollerFaults).
        with self._receive_lock:
            return self._receive_unlocked(max_messages, wait_seconds)

    def _receive_unlocked(self, max_messages: int, wait_seconds: int) -> list[dict[str, Any]]:
        response = self._sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=max_messages,
            WaitTimeSeconds=wait_seconds,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        messages: list[dict[str, Any]] = response.get("Messages", [])
        return messages

    def _inject_duplicates(self, batch: list[_Received]) -> list[_Received]:
        if not batch or self.faults.duplicate_fraction <= 0:
            return batch
        extra: list[_Received] = []
        with self._lock:
            for item in batch:
                if item.duplicate or self._rng.random() >= self.faults.duplicate_fraction:
                    continue
                copy = dict(item.record)
                self.stats.duplicates_injected += 1
                if self._rng.random() < self.faults.duplicate_later_fraction:
                    self._pending_duplicates.append(copy)
                else:
                    extra.append(_Received(copy, duplicate=True))
        return batch + extra

    def _new_context(self) -> LocalLambdaContext:
        crash_at: int | None = None
        if self.faults.crash_fraction > 0:
            with self._lock:
                if self._rng.random() < self.faults.crash_fraction:
                    crash_at = self._rng.randint(1, max(1, self.batch_size))
        return LocalLambdaContext(
            function_name=self.function_name,
            timeout_seconds=self.function_timeout_seconds,
            memory_limit_in_mb=self.memory_limit_in_mb,
            region=self.region,
            crash_at_call=crash_at,
        )

    def _invoke(self, batch: list[_Received]) -> InvocationReport:
        with self._lock:
            self._in_flight += 1
        try:
            return self._invoke_counted(batch)
        finally:
            with self._lock:
                self._in_flight -= 1

    def _invoke_counted(self, batch: list[_Received]) -> InvocationReport:
        records = [item.record for item in batch]
        context = self._new_context()
        event = sqs_event(records)
        started = time.monotonic()
        outcome, error, failed_ids = "ok", None, set[str]()
        with self._lock:
            self.stats.invocations += 1
            self.stats.messages += len(records)
            self.stats.redeliveries += sum(
                1
                for item in batch
                if not item.duplicate
                and int(item.record["attributes"].get("ApproximateReceiveCount", "1")) > 1
            )
        try:
            if self.invoke_wrapper is not None:
                response = self.invoke_wrapper(self.handler, event, context)
            else:
                response = self.handler(event, context)
            if context.doomed:
                raise SimulatedCrash(f"invocation {context.aws_request_id} killed before returning")
        except SimulatedCrash as exc:
            outcome, error = "crash", str(exc)
        except Exception as exc:
            outcome, error = "error", f"{type(exc).__name__}: {exc}"
        else:
            if context.expired():
                outcome, error = "timeout", f"ran past its {self.function_timeout_seconds}s timeout"
            else:
                try:
                    failed_ids = _reported_failures(response, {r["messageId"] for r in records})
                except ValueError as exc:
                    outcome, error = "invalid_response", str(exc)

        deleted = 0
        if outcome == "ok":
            deleted = self._delete(
                [r["receiptHandle"] for r in records if r["messageId"] not in failed_ids]
            )
        else:
            # Like Lambda: a failed invocation deletes nothing; the batch returns after the
            # visibility timeout (or earlier, where the handler already changed it).
            self._note_error(f"{outcome}: {error}")
            failed_ids = {r["messageId"] for r in records}
        with self._lock:
            self.stats.failures_reported += len(failed_ids) if outcome == "ok" else 0
            self.stats.deleted += deleted
            if outcome == "error":
                self.stats.handler_errors += 1
            elif outcome == "crash":
                self.stats.crashes += 1
            elif outcome == "timeout":
                self.stats.timeouts += 1
            elif outcome == "invalid_response":
                self.stats.invalid_responses += 1
        report = InvocationReport(
            request_id=context.aws_request_id,
            records=len(records),
            failures_reported=len(failed_ids) if outcome == "ok" else 0,
            deleted=deleted,
            outcome=outcome,
            duration_seconds=time.monotonic() - started,
            error=error,
        )
        log.debug("invocation %s", report)
        if self.on_invocation is not None:
            self.on_invocation(report)
        return report

    def _delete(self, receipt_handles: list[str]) -> int:
        unique = list(dict.fromkeys(receipt_handles))  # a duplicate in the batch shares a handle
        deleted = 0
        for start in range(0, len(unique), 10):
            chunk = unique[start : start + 10]
            response = self._sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": h} for i, h in enumerate(chunk)],
            )
            deleted += len(response.get("Successful", []))
            failed = response.get("Failed", [])
            if failed:
                with self._lock:
                    self.stats.delete_failures += len(failed)
                log.debug("delete failures: %s", failed)
        return deleted

    def _note_error(self, text: str) -> None:
        log.warning("%s", text)
        with self._lock:
            self.stats.errors.append(text)
            del self.stats.errors[:-20]  # keep the last few: a soak run can produce many


def _reported_failures(response: Any, message_ids: set[str]) -> set[str]:
    """The message ids a ReportBatchItemFailures response names, validated like Lambda does.

    Lambda treats an empty or missing response as full success, and a malformed one (or one naming
    a message that was not in the batch) as a failure of the whole batch.
    """
    if response is None:
        return set()
    if not isinstance(response, dict):
        raise ValueError(f"handler returned {type(response).__name__}, expected a dict")
    failures = response.get("batchItemFailures")
    if failures is None:
        return set()
    if not isinstance(failures, list):
        raise ValueError("batchItemFailures is not a list")
    failed: set[str] = set()
    for entry in failures:
        identifier = entry.get("itemIdentifier") if isinstance(entry, dict) else None
        if not isinstance(identifier, str) or not identifier:
            raise ValueError(f"batchItemFailures entry without an itemIdentifier: {entry!r}")
        if identifier not in message_ids:
            raise ValueError(f"batchItemFailures names {identifier!r}, which is not in the batch")
        failed.add(identifier)
    return failed
