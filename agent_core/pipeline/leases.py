"""Task leases in DynamoDB: never enqueue a task twice while a copy of it is in flight, and never
run two copies of one task at the same time.

One item per task, partition key ``task_uuid``, DynamoDB TTL on ``expires_at`` (epoch seconds).
Every write is conditional; expiry is checked in the conditions too, because TTL deletion is lazy.
The life of a lease (docs/LEASES.md has the reasoning and the failure cases):

    producer  acquire  -> pending  (short expiry: only until the message is confirmed sent)
              confirm  -> queued   (long expiry: outlives the message in the queue and the DLQ)
              release  -> deleted  (the send failed: a later tick retries the task)
    consumer  claim    -> running  (run_token, run_until = end of this invocation + margin)
              complete -> deleted  (succeeded or skipped)
              fail     -> failed   (kept: the retry or the DLQ copy still holds the task)
              park     -> failed   (its DLQ copy was sent: parked_message names the message)
              requeue  -> queued   (deferred: handed back unrun)
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

# A producer's lease on a task whose message it has not yet confirmed sent. A producer that dies
# between acquire and send leaves at most this much blocking behind (a Lambda runs <= 15 min).
PENDING_LEASE_SECONDS = 900
# A consumer holds a running lease this long past the end of its invocation before another
# delivery may treat it as dead and take over.
RUN_MARGIN_SECONDS = 60
# DynamoDB items are limited to 400 KB; an error text needs far less.
MAX_ERROR_CHARS = 2_000
_MAX_WORKERS = 16

T = TypeVar("T")
R = TypeVar("R")


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
            run_token=s("run_token"),
            run_until=n("run_until"),
            last_error=s("last_error"),
            claims=n("claims") or 0,
            parked_message=s("parked_message"),
        )

    def is_live(self, now: float) -> bool:
        return self.expires_at >= int(now)


@dataclass(frozen=True)
class LeaseRequest:
    task_uuid: str
    stage_uuid: str
    project_hash: str
    # The SQS message id of the delivery claiming (consumer only): a message already parked in
    # the DLQ cannot claim again.
    message_id: str = ""


class ClaimStatus(StrEnum):
    CLAIMED = "claimed"
    # Another invocation is running this task now (a duplicate delivery in parallel).
    RUNNING_ELSEWHERE = "running_elsewhere"
    # The task is leased for another stage: this message is a stale copy of a finished visit.
    OTHER_STAGE = "other_stage"
    # This very message was already moved to the DLQ: a stale duplicate of its last delivery.
    PARKED = "parked"
    # DynamoDB could not be reached or refused the write for another reason.
    ERROR = "error"


@dataclass(frozen=True)
class Claim:
    status: ClaimStatus
    # CLAIMED: the lease as it was before this claim (None: there was none).
    # RUNNING_ELSEWHERE / OTHER_STAGE: the lease that blocked the claim.
    previous: Lease | None = None
    retry_after_seconds: int = 0
    error: str | None = None

    def is_first_delivery_of(self, run_id: str, stage_uuid: str) -> bool:
        """The claimed lease was still the one the producer took for exactly this message."""
        prev = self.previous
        return (
            self.status is ClaimStatus.CLAIMED
            and prev is not None
            and prev.state in (LeaseState.PENDING, LeaseState.QUEUED)
            and prev.run_id == run_id
            and prev.stage_uuid == stage_uuid
        )


def _is_conditional_failure(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


def _truncate(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 15] + "...[truncated]"


class LeaseTable:
    """The lease table; every method is safe to call from several threads."""

    def __init__(
        self,
        table_name: str,
        *,
        client: DynamoDBClient,
        ttl_seconds: int,
        clock: Callable[[], float] = time.time,
        max_workers: int = _MAX_WORKERS,
    ) -> None:
        self.table_name = table_name
        self._client = client
        self._ttl_seconds = ttl_seconds
        self._clock = clock
        self._max_workers = max(1, max_workers)

    # -- helpers ------------------------------------------------------------------------------

    def _now(self) -> int:
        return int(self._clock())

    def _map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        # Conditional writes cannot go through BatchWriteItem, so they are spread over threads.
        if len(items) <= 1:
            return [fn(item) for item in items]
        with ThreadPoolExecutor(max_workers=min(self._max_workers, len(items))) as pool:
            return list(pool.map(fn, items))

    def _key(self, task_uuid: str) -> dict[str, Any]:
        return {"task_uuid": {"S": task_uuid}}

    # -- reads --------------------------------------------------------------------------------

    def get(self, task_uuid: str) -> Lease | None:
        reply = self._client.get_item(
            TableName=self.table_name, Key=self._key(task_uuid), ConsistentRead=True
        )
        item = reply.get("Item")
        return Lease.from_item(item) if item else None

    def live_task_uuids(self, task_uuids: Sequence[str], stage_uuid: str | None = None) -> set[str]:
        """The tasks that hold an unexpired lease, read in bulk (100 keys per BatchGetItem).

        A cheap pre-filter for the producer: a listed task that is in flight costs a share of an
        eventually consistent read instead of a refused conditional write. A stale answer is
        harmless (the conditional write still decides; a lease released a moment ago is
        picked up on the next tick). On errors it returns what it has: filtering is optional.
        """
        now = self._now()
        live: set[str] = set()
        unique = list(dict.fromkeys(task_uuids))
        for start in range(0, len(unique), 100):
            keys: list[Any] = [self._key(t) for t in unique[start : start + 100]]
            for _ in range(5):  # bounded: UnprocessedKeys under throttling
                try:
                    reply = self._client.batch_get_item(
                        RequestItems={
                            self.table_name: {
                                "Keys": keys,
                                "ProjectionExpression": "task_uuid, expires_at, stage_uuid, #s",
                                "ExpressionAttributeNames": {"#s": "state"},
                            }
                        }
                    )
                except (ClientError, BotoCoreError):
                    break
                for item in reply.get("Responses", {}).get(self.table_name, []):
                    if int(float(item["expires_at"]["N"])) < now:
                        continue
                    if stage_uuid is not None and _stale_failure(item, stage_uuid):
                        continue
                    live.add(str(item["task_uuid"]["S"]))
                unprocessed: Mapping[str, Any] = reply.get("UnprocessedKeys", {})
                keys = list(unprocessed.get(self.table_name, {}).get("Keys", []))
                if not keys:
                    break
        return live

    # -- producer -----------------------------------------------------------------------------

    def acquire(self, request: LeaseRequest, run_id: str) -> bool | None:
        """Take a pending lease on a task. True: ours; False: in flight; None: DynamoDB error."""
        now = self._now()
        try:
            self._client.put_item(
                TableName=self.table_name,
                Item={
                    "task_uuid": {"S": request.task_uuid},
                    "state": {"S": LeaseState.PENDING.value},
                    "stage_uuid": {"S": request.stage_uuid},
                    "project_hash": {"S": request.project_hash},
                    "run_id": {"S": run_id},
                    "expires_at": {"N": str(now + PENDING_LEASE_SECONDS)},
                    "updated_at": {"N": str(now)},
                },
                # A failed lease of another stage no longer holds the task: it has left that
                # stage (someone moved it on by hand), so its old message can only be skipped.
                ConditionExpression=(
                    "attribute_not_exists(task_uuid) OR expires_at < :now"
                    " OR (stage_uuid <> :stage AND #state = :failed)"
                ),
                ExpressionAttributeNames={"#state": "state"},
                ExpressionAttributeValues={
                    ":now": {"N": str(now)},
                    ":stage": {"S": request.stage_uuid},
                    ":failed": {"S": LeaseState.FAILED.value},
                },
            )
        except ClientError as exc:
            if _is_conditional_failure(exc):
                return False
            return None
        except BotoCoreError:
            return None
        return True

    def acquire_many(self, requests: Sequence[LeaseRequest], run_id: str) -> dict[str, bool | None]:
        results = self._map(lambda r: self.acquire(r, run_id), requests)
        return {r.task_uuid: ok for r, ok in zip(requests, results, strict=True)}

    def confirm(self, task_uuid: str, run_id: str) -> bool:
        """The message is on the queue: hold the task for the long TTL.

        False when a consumer already claimed the lease (it received the message before we got
        here); that is fine, the consumer has set its own expiry.
        """
        now = self._now()
        try:
            self._client.update_item(
                TableName=self.table_name,
                Key=self._key(task_uuid),
                UpdateExpression="SET #state = :queued, expires_at = :exp, updated_at = :now",
                ConditionExpression="run_id = :run AND #state = :pending",
                ExpressionAttributeNames={"#state": "state"},
                ExpressionAttributeValues={
                    ":queued": {"S": LeaseState.QUEUED.value},
                    ":pending": {"S": LeaseState.PENDING.value},
                    ":exp": {"N": str(now + self._ttl_seconds)},
                    ":now": {"N": str(now)},
                    ":run": {"S": run_id},
                },
            )
        except ClientError as exc:
            if _is_conditional_failure(exc):
                return False
            raise
        return True

    def confirm_many(self, task_uuids: Sequence[str], run_id: str) -> dict[str, bool | None]:
        def one(task_uuid: str) -> bool | None:
            try:
                return self.confirm(task_uuid, run_id)
            except (ClientError, BotoCoreError):
                # The pending lease then expires on its own; at worst the task is enqueued again
                # after PENDING_LEASE_SECONDS and the consumer's claim drops the duplicate.
                return None

        return dict(zip(task_uuids, self._map(one, task_uuids), strict=True))

    def release(self, task_uuid: str, run_id: str) -> bool:
        """Drop a producer lease whose message could not be sent (a later tick retries)."""
        try:
            self._client.delete_item(
                TableName=self.table_name,
                Key=self._key(task_uuid),
                ConditionExpression="run_id = :run AND #state IN (:pending, :queued)",
                ExpressionAttributeNames={"#state": "state"},
                ExpressionAttributeValues={
                    ":run": {"S": run_id},
                    ":pending": {"S": LeaseState.PENDING.value},
                    ":queued": {"S": LeaseState.QUEUED.value},
                },
            )
        except ClientError as exc:
            if _is_conditional_failure(exc):
                return False
            raise
        return True

    def release_many(self, task_uuids: Sequence[str], run_id: str) -> dict[str, bool | None]:
        def one(task_uuid: str) -> bool | None:
            try:
                return self.release(task_uuid, run_id)
            except (ClientError, BotoCoreError):
                return None

        return dict(zip(task_uuids, self._map(one, task_uuids), strict=True))

    # -- consumer -----------------------------------------------------------------------------

    def claim(
        self,
        request: LeaseRequest,
        *,
        run_token: str,
        run_seconds: float,
    ) -> Claim:
        """Mark the task running for this invocation, unless a live run or stage holds it."""
        now = self._now()
        run_until = now + math.ceil(max(0.0, run_seconds)) + RUN_MARGIN_SECONDS
        try:
            reply = self._client.update_item(
                TableName=self.table_name,
                Key=self._key(request.task_uuid),
                UpdateExpression=(
                    "SET #state = :running, run_token = :token, run_until = :until, "
                    "expires_at = :exp, stage_uuid = :stage, project_hash = :project, "
                    "updated_at = :now, run_id = if_not_exists(run_id, :none), "
                    "claims = if_not_exists(claims, :zero) + :one"
                ),
                ConditionExpression=(
                    "attribute_not_exists(task_uuid) OR expires_at < :now OR "
                    "(stage_uuid = :stage AND (#state <> :running OR run_until < :now) AND "
                    "(attribute_not_exists(parked_message) OR parked_message <> :message))"
                ),
                ExpressionAttributeNames={"#state": "state"},
                ExpressionAttributeValues={
                    ":running": {"S": LeaseState.RUNNING.value},
                    ":token": {"S": run_token},
                    ":until": {"N": str(run_until)},
                    ":exp": {"N": str(now + self._ttl_seconds)},
                    ":stage": {"S": request.stage_uuid},
                    ":project": {"S": request.project_hash},
                    ":now": {"N": str(now)},
                    ":none": {"S": ""},
                    ":zero": {"N": "0"},
                    ":one": {"N": "1"},
                    # Never equal to a stored parked_message: a request without an id is not
                    # checked against it.
                    ":message": {"S": request.message_id or "-"},
                },
                ReturnValues="ALL_OLD",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if not _is_conditional_failure(exc):
                return Claim(ClaimStatus.ERROR, error=_describe(exc))
            item: Mapping[str, Any] | None = exc.response.get("Item")  # type: ignore[assignment]
            blocking = Lease.from_item(item) if item else self._get_or_none(request.task_uuid)
            if blocking is None:
                # Deleted between our write and the read: the next delivery will find it free.
                return Claim(ClaimStatus.RUNNING_ELSEWHERE, retry_after_seconds=1)
            if blocking.stage_uuid != request.stage_uuid:
                return Claim(ClaimStatus.OTHER_STAGE, previous=blocking)
            if request.message_id and blocking.parked_message == request.message_id:
                return Claim(ClaimStatus.PARKED, previous=blocking)
            left = (blocking.run_until or now) - now
            return Claim(
                ClaimStatus.RUNNING_ELSEWHERE,
                previous=blocking,
                retry_after_seconds=max(1, left + 1),
            )
        except BotoCoreError as exc:
            return Claim(ClaimStatus.ERROR, error=_describe(exc))
        old = reply.get("Attributes")
        return Claim(ClaimStatus.CLAIMED, previous=Lease.from_item(old) if old else None)

    def _get_or_none(self, task_uuid: str) -> Lease | None:
        try:
            return self.get(task_uuid)
        except (ClientError, BotoCoreError):
            return None

    def claim_many(
        self, requests: Sequence[tuple[LeaseRequest, str]], *, run_seconds: float
    ) -> list[Claim]:
        """Claim (request, run_token) pairs in parallel; one Claim per pair, same order."""
        return self._map(
            lambda rt: self.claim(rt[0], run_token=rt[1], run_seconds=run_seconds), requests
        )

    def complete(self, task_uuid: str, run_token: str) -> bool:
        """The task left the stage: drop the lease, if this run still holds it."""
        try:
            self._client.delete_item(
                TableName=self.table_name,
                Key=self._key(task_uuid),
                ConditionExpression="run_token = :token",
                ExpressionAttributeValues={":token": {"S": run_token}},
            )
        except ClientError as exc:
            if _is_conditional_failure(exc):
                return False
            raise
        return True

    def fail(self, task_uuid: str, run_token: str, error: str) -> bool:
        """Keep the lease as failed: the retry or the DLQ copy of the message still holds it."""
        return self._finish_run(task_uuid, run_token, LeaseState.FAILED, error)

    def park(self, task_uuid: str, run_token: str, error: str, message_id: str) -> bool:
        """Like ``fail``, once the message's copy is in the DLQ: the lease also names the message,
        so that a stale duplicate of it (SQS delivers at least once) is dropped instead of running
        the task again and parking it a second time. A replay sends a new message, which claims.
        """
        return self._finish_run(
            task_uuid, run_token, LeaseState.FAILED, error, parked_message=message_id
        )

    def requeue(self, task_uuid: str, run_token: str) -> bool:
        """The message was handed back unrun: it is queued again."""
        return self._finish_run(task_uuid, run_token, LeaseState.QUEUED, None)

    def _finish_run(
        self,
        task_uuid: str,
        run_token: str,
        state: LeaseState,
        error: str | None,
        *,
        parked_message: str | None = None,
    ) -> bool:
        now = self._now()
        values: dict[str, Any] = {
            ":state": {"S": state.value},
            ":now": {"N": str(now)},
            ":token": {"S": run_token},
        }
        update = "SET #state = :state, run_until = :now, updated_at = :now"
        if error is not None:
            update += ", last_error = :error"
            values[":error"] = {"S": _truncate(error) or "(no message)"}
        if parked_message:
            update += ", parked_message = :parked"
            values[":parked"] = {"S": parked_message}
        try:
            self._client.update_item(
                TableName=self.table_name,
                Key=self._key(task_uuid),
                UpdateExpression=update,
                ConditionExpression="run_token = :token",
                ExpressionAttributeNames={"#state": "state"},
                ExpressionAttributeValues=values,
            )
        except ClientError as exc:
            if _is_conditional_failure(exc):
                return False
            raise
        return True

    def forget(self, task_uuid: str) -> None:
        """Delete a lease unconditionally (an operator discarding a task's DLQ message)."""
        self._client.delete_item(TableName=self.table_name, Key=self._key(task_uuid))

    def forget_many(self, task_uuids: Iterable[str]) -> None:
        self._map(self.forget, list(task_uuids))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', 'ClientError')}: {error.get('Message', '')}"[:500]
    return f"{type(exc).__name__}: {exc}"[:500]


def _stale_failure(item: Mapping[str, Any], stage_uuid: str) -> bool:
    """A failed lease of another stage: the task has been moved on and may be leased again."""
    state = item.get("state", {}).get("S")
    other = item.get("stage_uuid", {}).get("S")
    return state == LeaseState.FAILED.value and other is not None and other != stage_uuid
