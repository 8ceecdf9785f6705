"""Task leases in DynamoDB: never enqueue a task twice while a copy of it is in flight, and never
run two copies of one task at the same time. docs/LEASES.md has the design and its failure cases.

One item per task, partition key ``task_uuid``, DynamoDB TTL on ``expires_at`` (epoch seconds).
Every write is conditional; expiry is checked in the conditions too, because TTL deletion is lazy.
A lease belongs to one *visit* of the task to a stage (``visit``: the stage and the time the task
entered it, see ``TaskEnvelope.visit``): a lease left from an earlier visit never blocks a later one.

    producer  acquire  -> pending  (short expiry: only until the message is confirmed sent)
              confirm  -> queued   (long expiry: outlives the message in the queue and the DLQ)
              release  -> deleted  (the send failed: a later tick retries the task)
    consumer  claim    -> running  (run_token, run_until = end of this invocation + margin)
              complete -> deleted  (succeeded or left the stage)
              fail     -> failed   (kept: the retry still holds the task)
              park     -> failed   (its DLQ copy was sent: parked_message names the message)
              requeue  -> queued   (handed back unrun)

Calls: every step takes a whole batch in one ``TransactWriteItems`` call (up to 100 items): a
page of the producer, a batch of the consumer. A transaction is all-or-nothing, so when some items
are refused (their condition fails) the call is cancelled, the refusals are read from its
``CancellationReasons`` and the others are written again in a second call. In the common case
that is one call per step per batch, instead of one per task.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal

from botocore.exceptions import BotoCoreError, ClientError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

# A producer's lease on a task whose message it has not yet confirmed sent. A producer that dies
# between acquire and send leaves at most this much blocking behind (a Lambda runs <= 15 min).
PENDING_LEASE_SECONDS = 900
# A consumer holds a running lease this long past the end of its invocation before another
# delivery may treat it as dead and take over.
RUN_MARGIN_SECONDS = 30
# DynamoDB items are limited to 400 KB; an error text needs far less.
MAX_ERROR_CHARS = 2_000
# DynamoDB's limit of items per TransactWriteItems call.
MAX_TRANSACTION_ITEMS = 100
# Calls per batch of writes before the remaining items are reported as errors (transaction
# conflicts and throttling are retried; refusals are final).
_MAX_ROUNDS = 4


class LeaseState(StrEnum):
    PENDING = "pending"
    QUEUED = "queued"
    RUNNING = "running"
    FAILED = "failed"


@dataclass(frozen=True)
class Lease:
    task_uuid: str
    state: LeaseState
    stage_uuid: str
    project_hash: str
    run_id: str
    expires_at: int
    visit: str | None = None
    run_token: str | None = None
    run_until: int | None = None
    last_error: str | None = None
    claims: int = 0
    # The message whose copy the consumer moved to the DLQ (state failed): any later delivery of
    # it is a stale duplicate.
    parked_message: str | None = None

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> Lease:
        def s(name: str) -> str | None:
            value = item.get(name)
            return None if value is None else str(value.get("S"))

        def n(name: str) -> int | None:
            value = item.get(name)
            return None if value is None else int(float(value["N"]))

        return cls(
            task_uuid=s("task_uuid") or "",
            state=LeaseState(s("state") or LeaseState.QUEUED),
            stage_uuid=s("stage_uuid") or "",
            project_hash=s("project_hash") or "",
            run_id=s("run_id") or "",
            expires_at=n("expires_at") or 0,
            visit=s("visit"),
            run_token=s("run_token"),
            run_until=n("run_until"),
            last_error=s("last_error"),
            claims=n("claims") or 0,
            parked_message=s("parked_message"),
        )

    def is_live(self, now: float) -> bool:
        return self.expires_at >= int(now)

    def same_visit(self, visit: str, stage_uuid: str) -> bool:
        # A lease written before visits were recorded is matched by its stage alone.
        return self.visit == visit if self.visit is not None else self.stage_uuid == stage_uuid


@dataclass(frozen=True)
class LeaseRequest:
    task_uuid: str
    stage_uuid: str
    project_hash: str
    # The visit the message is for (``TaskEnvelope.visit``); defaults to the stage alone.
    visit: str = ""

    @property
    def visit_key(self) -> str:
        return self.visit or self.stage_uuid


@dataclass(frozen=True)
class ClaimRequest:
    """One delivery asking to run its task now."""

    lease: LeaseRequest
    run_token: str
    # The SQS message id: a message already parked in the DLQ cannot claim again.
    message_id: str
    # The producer run that enqueued the message; with ``first_receive`` the claim first tries
    # the fast path "the lease is still that run's", which proves the task was checked in stage.
    origin: str = ""
    first_receive: bool = False


class ClaimStatus(StrEnum):
    CLAIMED = "claimed"
    # Another invocation is running this task now (a duplicate delivery in parallel).
    RUNNING_ELSEWHERE = "running_elsewhere"
    # The lease belongs to another visit (another stage, or a later visit of this one): this
    # message is a stale copy of a finished visit.
    STALE = "stale"
    # This very message was already moved to the DLQ: a stale duplicate of its last delivery.
    PARKED = "parked"
    # DynamoDB could not be reached or refused the write for another reason.
    ERROR = "error"


@dataclass(frozen=True)
class Claim:
    status: ClaimStatus
    # CLAIMED: whether the lease was still the producer's for exactly this message (the task was
    # checked to be in its stage after it was leased, so the consumer need not check again).
    first_delivery: bool = False
    # RUNNING_ELSEWHERE / STALE / PARKED: the lease that blocked the claim.
    blocking: Lease | None = None
    retry_after_seconds: int = 0
    error: str | None = None


FinishAction = Literal["complete", "fail", "park", "requeue"]


@dataclass(frozen=True)
class Finish:
    """The end of one claimed run, written after the DLQ send (``park`` only once it is there)."""

    task_uuid: str
    run_token: str
    action: FinishAction
    error: str | None = None
    message_id: str | None = None


@dataclass
class _Op:
    key: str
    request: dict[str, Any]  # one TransactItems entry
    # Filled in: None = written; "refused" = its condition failed; else an error text.
    result: str | None = "unsent"
    old: Mapping[str, Any] | None = None


@dataclass
class CallCounter:
    """DynamoDB calls made by a LeaseTable (for benchmarks and tests)."""

    calls: dict[str, int] = field(default_factory=dict)

    def add(self, operation: str) -> None:
        self.calls[operation] = self.calls.get(operation, 0) + 1

    @property
    def total(self) -> int:
        return sum(self.calls.values())


def _truncate(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 15] + "...[truncated]"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', 'ClientError')}: {error.get('Message', '')}"[:500]
    return f"{type(exc).__name__}: {exc}"[:500]


_RETRYABLE_REASONS = {"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"}


class LeaseTable:
    """The lease table; every method is safe to call from several threads."""

    def __init__(
        self,
        table_name: str,
        *,
        client: DynamoDBClient,
        ttl_seconds: int,
        clock: Callable[[], float] = time.time,
        run_margin_seconds: int = RUN_MARGIN_SECONDS,
    ) -> None:
        self.table_name = table_name
        self.run_margin_seconds = run_margin_seconds
        self._client = client
        self._ttl_seconds = ttl_seconds
        self._clock = clock
        self.counter = CallCounter()

    # -- helpers ------------------------------------------------------------------------------

    def _now(self) -> int:
        return int(self._clock())

    def _key(self, task_uuid: str) -> dict[str, Any]:
        return {"task_uuid": {"S": task_uuid}}

    def _transact(self, ops: Sequence[_Op]) -> None:
        """Write ``ops`` in as few TransactWriteItems calls as the refusals allow.

        One key appears at most once per call (DynamoDB's rule): a second op on the same task
        (two messages of one task in a batch) goes in a later round, and sees the first's write.
        """
        rounds: list[list[_Op]] = []
        seen: dict[str, int] = {}
        for op in ops:
            index = seen.get(op.key, 0)
            seen[op.key] = index + 1
            if index == len(rounds):
                rounds.append([])
            rounds[index].append(op)
        for batch in rounds:
            for start in range(0, len(batch), MAX_TRANSACTION_ITEMS):
                self._transact_chunk(batch[start : start + MAX_TRANSACTION_ITEMS])

    def _transact_chunk(self, chunk: list[_Op]) -> None:
        pending = list(chunk)
        for attempt in range(_MAX_ROUNDS):
            if not pending:
                return
            self.counter.add("TransactWriteItems")
            try:
                items: list[Any] = [op.request for op in pending]
                self._client.transact_write_items(TransactItems=items)
            except ClientError as exc:
                reasons = exc.response.get("CancellationReasons")
                if not reasons or len(reasons) != len(pending):
                    for op in pending:
                        op.result = _describe(exc)
                    if exc.response.get("Error", {}).get("Code") in (
                        "ThrottlingException",
                        "ProvisionedThroughputExceededException",
                        "TransactionInProgressException",
                        "InternalServerError",
                    ):
                        time.sleep(0.05 * 2**attempt)
                        continue
                    return
                retry: list[_Op] = []
                for op, reason in zip(pending, reasons, strict=True):
                    code = reason.get("Code") or "None"
                    if code == "ConditionalCheckFailed":
                        op.result, op.old = "refused", reason.get("Item")
                    elif code == "None" or code in _RETRYABLE_REASONS:
                        # Cancelled only because another item of the call was refused.
                        op.result = code
                        retry.append(op)
                    else:
                        op.result = f"{code}: {reason.get('Message', '')}"[:500]
                if any(op.result in _RETRYABLE_REASONS for op in retry):
                    time.sleep(0.02 * 2**attempt)
                pending = retry
                continue
            except BotoCoreError as exc:
                for op in pending:
                    op.result = _describe(exc)
                return
            for op in pending:
                op.result = None
            return

    def _condition_op(
        self,
        key: str,
        kind: Literal["Put", "Update", "Delete"],
        condition: str,
        values: dict[str, Any],
        *,
        item: dict[str, Any] | None = None,
        update: str | None = None,
    ) -> _Op:
        body: dict[str, Any] = {
            "TableName": self.table_name,
            "ConditionExpression": condition,
            "ExpressionAttributeNames": {"#state": "state"},
            "ExpressionAttributeValues": values,
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
        if kind == "Put":
            body["Item"] = item
        else:
            body["Key"] = self._key(key)
        if update is not None:
            body["UpdateExpression"] = update
        if "#state" not in condition and "#state" not in (update or ""):
            del body["ExpressionAttributeNames"]
        return _Op(key=key, request={kind: body})

    # -- reads --------------------------------------------------------------------------------

    def get(self, task_uuid: str) -> Lease | None:
        self.counter.add("GetItem")
        reply = self._client.get_item(
            TableName=self.table_name, Key=self._key(task_uuid), ConsistentRead=True
        )
        item = reply.get("Item")
        return Lease.from_item(item) if item else None

    # -- producer -----------------------------------------------------------------------------

    def acquire_many(self, requests: Sequence[LeaseRequest], run_id: str) -> dict[str, bool | None]:
        """Take pending leases. Per task: True ours; False in flight; None DynamoDB error."""
        now = self._now()
        ops = [
            self._condition_op(
                r.task_uuid,
                "Put",
                # Free: no lease, an expired one, or one of an earlier visit (whatever its state:
                # the task has left the stage since, so that visit is over). Leases written before
                # visits were recorded: a failed one of another stage (the old rule).
                "attribute_not_exists(task_uuid) OR expires_at < :now OR visit <> :visit"
                " OR (attribute_not_exists(visit) AND stage_uuid <> :stage AND #state = :failed)",
                {
                    ":now": {"N": str(now)},
                    ":visit": {"S": r.visit_key},
                    ":stage": {"S": r.stage_uuid},
                    ":failed": {"S": LeaseState.FAILED.value},
                },
                item={
                    "task_uuid": {"S": r.task_uuid},
                    "state": {"S": LeaseState.PENDING.value},
                    "stage_uuid": {"S": r.stage_uuid},
                    "visit": {"S": r.visit_key},
                    "project_hash": {"S": r.project_hash},
                    "run_id": {"S": run_id},
                    "expires_at": {"N": str(now + PENDING_LEASE_SECONDS)},
                    "updated_at": {"N": str(now)},
                },
            )
            for r in requests
        ]
        self._transact(ops)
        return {op.key: _ok(op) for op in ops}

    def acquire(self, request: LeaseRequest, run_id: str) -> bool | None:
        return self.acquire_many([request], run_id)[request.task_uuid]

    def confirm_many(self, task_uuids: Sequence[str], run_id: str) -> dict[str, bool | None]:
        """The messages are on the queue: hold the tasks for the long TTL.

        False when a consumer already claimed the lease (it received the message before we got
        here); that is fine, the consumer has set its own expiry. None (an error): the pending
        lease then expires on its own; at worst the task is enqueued again after
        PENDING_LEASE_SECONDS and the consumer's claim drops the duplicate.
        """
        now = self._now()
        ops = [
            self._condition_op(
                t,
                "Update",
                "run_id = :run AND #state = :pending",
                {
                    ":queued": {"S": LeaseState.QUEUED.value},
                    ":pending": {"S": LeaseState.PENDING.value},
                    ":exp": {"N": str(now + self._ttl_seconds)},
                    ":now": {"N": str(now)},
                    ":run": {"S": run_id},
                },
                update="SET #state = :queued, expires_at = :exp, updated_at = :now",
            )
            for t in task_uuids
        ]
        self._transact(ops)
        return {op.key: _ok(op) for op in ops}

    def release_many(self, task_uuids: Sequence[str], run_id: str) -> dict[str, bool | None]:
        """Drop producer leases whose messages could not be sent (a later tick retries)."""
        ops = [
            self._condition_op(
                t,
                "Delete",
                "run_id = :run AND #state IN (:pending, :queued)",
                {
                    ":run": {"S": run_id},
                    ":pending": {"S": LeaseState.PENDING.value},
                    ":queued": {"S": LeaseState.QUEUED.value},
                },
            )
            for t in task_uuids
        ]
        self._transact(ops)
        return {op.key: _ok(op) for op in ops}

    # -- consumer -----------------------------------------------------------------------------

    def claim_many(self, requests: Sequence[ClaimRequest], *, run_seconds: float) -> list[Claim]:
        """Mark the tasks running for this invocation; one Claim per request, same order."""
        now = self._now()
        run_until = now + math.ceil(max(0.0, run_seconds)) + self.run_margin_seconds
        claims: list[Claim | None] = [None] * len(requests)
        fast = [i for i, r in enumerate(requests) if r.first_receive and r.origin]
        if fast:
            ops = [self._claim_op(requests[i], now, run_until, first=True) for i in fast]
            self._transact(ops)
            for i, op in zip(fast, ops, strict=True):
                if op.result is None:
                    claims[i] = Claim(ClaimStatus.CLAIMED, first_delivery=True)
        rest = [i for i, c in enumerate(claims) if c is None]
        ops = [self._claim_op(requests[i], now, run_until, first=False) for i in rest]
        self._transact(ops)
        for i, op in zip(rest, ops, strict=True):
            claims[i] = self._claim_result(requests[i], op, now)
        return [c for c in claims if c is not None]

    def _claim_op(self, r: ClaimRequest, now: int, run_until: int, *, first: bool) -> _Op:
        values: dict[str, Any] = {
            ":running": {"S": LeaseState.RUNNING.value},
            ":token": {"S": r.run_token},
            ":until": {"N": str(run_until)},
            ":exp": {"N": str(now + self._ttl_seconds)},
            ":stage": {"S": r.lease.stage_uuid},
            ":visit": {"S": r.lease.visit_key},
            ":project": {"S": r.lease.project_hash},
            ":now": {"N": str(now)},
            ":none": {"S": ""},
            ":zero": {"N": "0"},
            ":one": {"N": "1"},
        }
        if first:
            condition = "run_id = :origin AND #state IN (:pending, :queued) AND visit = :visit"
            values.update(
                {
                    ":origin": {"S": r.origin},
                    ":pending": {"S": LeaseState.PENDING.value},
                    ":queued": {"S": LeaseState.QUEUED.value},
                }
            )
        else:
            condition = (
                "attribute_not_exists(task_uuid) OR expires_at < :now OR "
                "((visit = :visit OR (attribute_not_exists(visit) AND stage_uuid = :stage)) AND "
                "(#state <> :running OR run_until < :now) AND "
                "(attribute_not_exists(parked_message) OR parked_message <> :message))"
            )
            values[":message"] = {"S": r.message_id or "-"}
        return self._condition_op(
            r.lease.task_uuid,
            "Update",
            condition,
            values,
            update=(
                "SET #state = :running, run_token = :token, run_until = :until, "
                "expires_at = :exp, stage_uuid = :stage, visit = :visit, "
                "project_hash = :project, updated_at = :now, "
                "run_id = if_not_exists(run_id, :none), "
                "claims = if_not_exists(claims, :zero) + :one"
            ),
        )

    @staticmethod
    def _claim_result(r: ClaimRequest, op: _Op, now: int) -> Claim:
        if op.result is None:
            return Claim(ClaimStatus.CLAIMED)
        if op.result != "refused":
            return Claim(ClaimStatus.ERROR, error=op.result)
        if not op.old:
            # Deleted between our write and the refusal: the next delivery finds it free.
            return Claim(ClaimStatus.RUNNING_ELSEWHERE, retry_after_seconds=1)
        blocking = Lease.from_item(op.old)
        if not blocking.same_visit(r.lease.visit_key, r.lease.stage_uuid):
            return Claim(ClaimStatus.STALE, blocking=blocking)
        if r.message_id and blocking.parked_message == r.message_id:
            return Claim(ClaimStatus.PARKED, blocking=blocking)
        left = (blocking.run_until or now) - now
        return Claim(
            ClaimStatus.RUNNING_ELSEWHERE, blocking=blocking, retry_after_seconds=max(1, left + 1)
        )

    def claim(self, request: ClaimRequest, *, run_seconds: float) -> Claim:
        return self.claim_many([request], run_seconds=run_seconds)[0]

    def finish_many(self, finishes: Sequence[Finish]) -> dict[str, bool | None]:
        """End claimed runs (by task). False: the run no longer held the lease (it outlived
        run_until and another delivery took over, which decides the lease's fate now)."""
        now = self._now()
        ops: list[_Op] = []
        for f in finishes:
            values: dict[str, Any] = {":token": {"S": f.run_token}}
            if f.action == "complete":
                ops.append(self._condition_op(f.task_uuid, "Delete", "run_token = :token", values))
                continue
            state = LeaseState.QUEUED if f.action == "requeue" else LeaseState.FAILED
            values.update({":state": {"S": state.value}, ":now": {"N": str(now)}})
            update = "SET #state = :state, run_until = :now, updated_at = :now"
            if f.action in ("fail", "park"):
                update += ", last_error = :error"
                values[":error"] = {"S": _truncate(f.error or "") or "(no message)"}
            if f.action == "park":
                update += ", parked_message = :parked"
                values[":parked"] = {"S": f.message_id or "-"}
            ops.append(
                self._condition_op(
                    f.task_uuid, "Update", "run_token = :token", values, update=update
                )
            )
        self._transact(ops)
        return {op.key: _ok(op) for op in ops}

    def forget_many(self, task_uuids: Iterable[str]) -> None:
        """Delete leases unconditionally (an operator discarding tasks' DLQ messages)."""
        keys = list(dict.fromkeys(task_uuids))
        for start in range(0, len(keys), 25):
            self.counter.add("BatchWriteItem")
            requests: list[Any] = [
                {"DeleteRequest": {"Key": self._key(t)}} for t in keys[start : start + 25]
            ]
            self._client.batch_write_item(RequestItems={self.table_name: requests})


def _ok(op: _Op) -> bool | None:
    if op.result is None:
        return True
    return False if op.result == "refused" else None
