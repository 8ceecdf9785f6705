"""Fault-injection soak: hundreds of tasks through two agent stages while everything goes wrong.

On the Encord emulator and a moto server, with the real producer and consumer handlers driven by
the local event-source poller:

- the agents raise once on 10% of the stage visits and always on 2% of the tasks
  (``reliability_agents``, deterministic by task);
- the emulator answers about 10% of the API requests with 429 or 503 (``Retry-After: 0``) and adds
  latency spikes to commits and label-row reads;
- the poller delivers 5% of the messages twice (in the same batch or a later one);
- one consumer invocation dies after its pathway actions were committed in Encord and before any
  lease was released or the batch reported back (so its messages come back and its leases look
  alive until their ``run_until`` passes);
- producer ticks run while the consumer works, whenever the queue runs low.

It then checks, from the emulator's action history, the DLQ, the lease table and the calls the test
agent counted, that every task took exactly its route (one proceed per agent stage it visited), the
always-failing ones are parked in the DLQ with their error, nothing was lost or proceeded twice, and
no stage function ran more often than the injected faults explain. The figures are printed.
"""

from __future__ import annotations

import collections
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import reliability_agents as agents

from infra.emulator import Emulator, FaultRule
from infra.localstack.poller import LocalLambdaContext, PollerFaults, SimulatedCrash
from infra.localstack.resources import PipelineShape
from infra.localstack.stack import LocalStack

SEED = 20_240_601
TRIAGE_TASKS, CHECK_TASKS = 460, 60
MAX_RECEIVE_COUNT = 5
# Keep the backlog moderate: moto's queue operations slow down with its length.
MAX_TASKS_PER_TICK = 100
TICK_WHEN_DEPTH_BELOW = 40
# The invocation from which one is doomed to die after committing (the first few warm up).
CRASH_FROM_INVOCATION = 4
STRETCH_429_SECONDS = 8
STRETCH_ROUTES = r"re:^GET /v2/|^RPC labelrow"
SOAK_DEADLINE_SECONDS = 330
# Every Encord API route the SDK calls (media blobs are not used by these agents).
API_ROUTES = r"re:^(GET|POST|PUT|PATCH) /v2/|^RPC "


@dataclass
class Crash:
    request_id: str
    batch_tasks: list[str]
    committed_tasks: list[str]
    at: float


@dataclass
class SoakHarness:
    """Records every delivery, and kills one invocation right after its Encord commit.

    Used as the poller's invoke wrapper and as a botocore hook on the consumer's DynamoDB client:
    the lease writes that end a run (complete, fail, requeue: conditioned on ``run_token``) of the
    doomed invocation raise ``SimulatedCrash`` (a BaseException, like a killed process it cannot
    be caught by the handler), but only once Encord shows a proceed from that batch. Every later
    lease write of the dead invocation raises too, as a dead process writes nothing.
    """

    emulator: Emulator
    crash_from_invocation: int
    lock: threading.Lock = field(default_factory=threading.Lock)
    invocations: int = 0
    active: int = 0
    deliveries: set[tuple[str, str]] = field(default_factory=set)
    # Injected duplicate deliveries (a record already handed over, same receipt handle), per task.
    duplicates: collections.Counter[str] = field(default_factory=collections.Counter)
    # Every delivery per task: (stage, message id, receive count, producer run, duplicate?), to
    # explain a failure.
    history: dict[str, list[tuple[str, str, str, str, bool]]] = field(
        default_factory=lambda: collections.defaultdict(list)
    )
    doomed_request: str | None = None
    doomed_before: dict[str, int] = field(default_factory=dict)
    crash: Crash | None = None

    def _actions(self, task_uuid: str) -> int:
        return len(self.emulator.state.pathway_actions(task_uuid))

    def __call__(
        self,
        handler: Callable[[dict[str, Any], Any], Any],
        event: dict[str, Any],
        context: LocalLambdaContext,
    ) -> Any:
        tasks: list[str] = []
        for record in event["Records"]:
            body = json.loads(record["body"])
            task_uuid = body["task"]["uuid"]
            tasks.append(task_uuid)
            key = (record["messageId"], record["receiptHandle"])
            with self.lock:
                duplicate = key in self.deliveries
                if duplicate:
                    self.duplicates[task_uuid] += 1
                self.deliveries.add(key)
                self.history[task_uuid].append(
                    (
                        str(body.get("stage_name")),
                        record["messageId"][:8],
                        record["attributes"]["ApproximateReceiveCount"],
                        str(body.get("origin"))[-8:],
                        duplicate,
                    )
                )
        with self.lock:
            self.invocations += 1
            self.active += 1
            arm = (
                self.crash is None
                and self.doomed_request is None
                and self.invocations >= self.crash_from_invocation
            )
            if arm:
                self.doomed_request = context.aws_request_id
                self.doomed_before = {t: self._actions(t) for t in tasks}
        try:
            return handler(event, context)
        finally:
            with self.lock:
                self.active -= 1
                if self.doomed_request == context.aws_request_id and self.crash is None:
                    # Nothing was committed in this batch: doom a later invocation instead.
                    self.doomed_request = None

    def before_lease_write(self, params: dict[str, Any], **_: Any) -> None:
        # The consumer ends its runs in one transaction per batch; each item is conditioned on
        # its run_token. Producer writes and claims have other conditions.
        items = [next(iter(i.values())) for i in params.get("TransactItems", [])]
        ending = [i for i in items if str(i.get("ConditionExpression", "")).startswith("run_token")]
        if not ending:
            return
        token = str(ending[0]["ExpressionAttributeValues"][":token"]["S"])
        request_id = token.split(":", 1)[0]
        with self.lock:
            if self.crash is not None and self.crash.request_id == request_id:
                raise SimulatedCrash(f"invocation {request_id} is dead")
            if request_id != self.doomed_request:
                return
            committed = [t for t, n in self.doomed_before.items() if self._actions(t) > n]
            if not committed:
                return
            self.crash = Crash(request_id, list(self.doomed_before), committed, time.monotonic())
        raise SimulatedCrash(f"invocation {request_id} killed after its Encord commit")


@dataclass
class ProducerLoop:
    """Producer ticks in a thread whenever the work queue runs low, as the schedule would."""

    stack: LocalStack
    harness: SoakHarness
    ticks: int = 0
    ticks_during_consumer_runs: int = 0
    enqueued: int = 0
    left_stage: int = 0  # leased after the listing, but moved on meanwhile: not enqueued
    errors: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.wait(0.5):
            try:
                if self.stack.queue_depth() >= TICK_WHEN_DEPTH_BELOW:
                    continue
                during = self.harness.active > 0
                summary = self.stack.producer_tick()
            except Exception as exc:  # reported by the test, not lost in a thread
                self.errors.append(f"{type(exc).__name__}: {exc}")
                continue
            self.ticks += 1
            self.ticks_during_consumer_runs += int(during or self.harness.active > 0)
            self.enqueued += int(summary["totals"]["enqueued"])
            self.left_stage += int(summary["totals"]["left_stage"])


def _soak_shape() -> PipelineShape:
    return PipelineShape.from_template().replace(
        batch_size=10,
        maximum_batching_window_seconds=0.2,
        max_receive_count=MAX_RECEIVE_COUNT,
        consumer_timeout_seconds=15,
        visibility_timeout_seconds=30,
        maximum_concurrency=3,
    )


def _faults(emulator: Emulator) -> list[FaultRule]:
    rules = [
        FaultRule(endpoint=API_ROUTES, rate=0.05, status=429, retry_after=0),
        # Applied to what the 429 rule let through: ~5% of all requests more.
        FaultRule(endpoint=API_ROUTES, rate=0.053, status=503, retry_after=0),
        FaultRule(endpoint=r"re:/actions$|^RPC labelrow", latency_ms=5, jitter_ms=250),
    ]
    for rule in rules:
        emulator.faults.add(rule)
    return rules


def _finished(stack: LocalStack, always_failing: int) -> bool:
    counts = stack.emulator.state.stage_counts(stack.project_hash)
    return (
        counts[agents.TRIAGE] == always_failing
        and counts[agents.CHECK] == 0
        and stack.queue_depth() == 0
        and stack.queue_depth(dlq=True) >= always_failing
    )


@pytest.mark.soak
@pytest.mark.timeout(SOAK_DEADLINE_SECONDS + 150)
def test_soak_every_task_exactly_once_or_parked(capsys: pytest.CaptureFixture[str]) -> None:
    from agent_core.pipeline.clients import dynamodb_client

    fixture = agents.soak_fixture(TRIAGE_TASKS, CHECK_TASKS)
    # Label rows exist already, so the triage stage reads them (a request the SDK retries).
    fixture["media"][0]["prelabelled"] = TRIAGE_TASKS
    agents.reset()
    started = time.monotonic()
    with (
        Emulator.start(port=0, fixture=None, seed=SEED) as emulator,
        LocalStack(
            fixture=fixture,
            agent_module="reliability_agents:make_soak_runner",
            shape=_soak_shape(),
            emulator=emulator,
            retry_backoff_base_seconds=1,
            retry_backoff_max_seconds=4,
            extra_env={
                "MAX_TASKS_PER_RUN": str(MAX_TASKS_PER_TICK),
                "TIME_GUARD_MS": "3000",
                # The SDK's own retries absorb the 429/503s, fast (Retry-After: 0).
                "ENCORD_MAX_RETRIES": "6",
                "ENCORD_BACKOFF_FACTOR": "0.01",
            },
        ) as stack,
    ):
        assert stack.seeded is not None
        state = emulator.state
        title_of = {
            task_uuid: state.data_units[data_hash].title
            for data_hash, task_uuid in stack.seeded.task_by_data.items()
        }
        always_failing = {
            t for t, title in title_of.items() if agents.always_fails("triage", title)
        }

        harness = SoakHarness(emulator, CRASH_FROM_INVOCATION)
        # The consumer's cached client: its lease writes get the crash hook.
        dynamodb_client().meta.events.register(
            "before-parameter-build.dynamodb", harness.before_lease_write
        )
        rules = _faults(emulator)
        producer = ProducerLoop(stack, harness)
        poller = stack.poller(
            invoke_wrapper=harness,
            faults=PollerFaults(seed=SEED, duplicate_fraction=0.05, duplicate_later_fraction=0.5),
        )
        ticker = threading.Thread(target=producer.run, name="soak-producer", daemon=True)
        ticker.start()
        # A long 429 stretch: every Encord read refused (Retry-After: 2) for a while. Reads
        # only: a refused read fails a batch before its agents run, while a commit abandoned at
        # the deadline makes its agents run again (allowed, but not what this soak counts).
        stretch = FaultRule(endpoint=STRETCH_ROUTES, rate=1.0, status=429, retry_after=2)
        stretch_on = threading.Timer(40, lambda: emulator.faults.add(stretch))
        stretch_off = threading.Timer(
            40 + STRETCH_429_SECONDS, lambda: emulator.faults.remove(stretch)
        )
        stretch_on.start()
        stretch_off.start()
        deadline = time.monotonic() + SOAK_DEADLINE_SECONDS
        done = False
        try:
            while time.monotonic() < deadline:
                stats = poller.drain(timeout_seconds=min(60.0, deadline - time.monotonic()))
                if stats.drained and _finished(stack, len(always_failing)):
                    done = True
                    break
                time.sleep(0.5)
        finally:
            producer.stop.set()
            ticker.join(timeout=60)
            stretch_on.cancel()
            stretch_off.join(timeout=STRETCH_429_SECONDS + 45)
            for rule in rules:
                emulator.faults.remove(rule)
        # Tasks come back: the tasks "redo" sent to Annotate are rejected back into check, a new
        # visit each; one tick enqueues them (their old leases are gone or of another visit) and
        # each proceeds once more.
        came_back = {t for t in title_of if state.task_stage(t).title == "Annotate"}
        if done and came_back:
            annotate = state.stage_uuid(stack.project_hash, "Annotate")
            check = state.stage_uuid(stack.project_hash, agents.CHECK)
            state.move_tasks(stack.project_hash, annotate, check, sorted(came_back), "reviewer")
            came_back_enqueued = stack.producer_tick()["totals"]["enqueued"]
            poller.drain(timeout_seconds=60)
        else:
            came_back_enqueued = 0
        agents.HANG_RELEASE.set()
        elapsed = time.monotonic() - started

        # -- gather ---------------------------------------------------------------------------
        routes = {
            t: [(e.from_stage_title, e.pathway_name) for e in state.pathway_actions(t)]
            for t in title_of
        }
        final_stage = {t: state.task_stage(t).title for t in title_of}
        dlq = stack.dlq_messages()
        dlq_by_task = collections.Counter(m.task_uuid for m in dlq)
        calls = agents.calls()
        leases = stack.moto.client("dynamodb").scan(TableName=stack.queues.lease_table_name)
        lease_states = {
            item["task_uuid"]["S"]: item["state"]["S"] for item in leases.get("Items", [])
        }
        faults_by_status: collections.Counter[str] = collections.Counter()
        for name, n in emulator.counters.injected().items():
            faults_by_status[name.split(" ", 1)[0]] += n
        api_requests = emulator.counters.encord_total()
        stats = poller.stats

    visits = collections.Counter(stage for route in routes.values() for stage, _ in route)

    def expected_route(t: str) -> list[tuple[str, str]]:
        route = agents.expected_route(title_of[t])
        return [*route, (agents.CHECK, "redo")] if t in came_back else route

    expected_visits = collections.Counter(
        stage for t in title_of if t not in always_failing for stage, _ in expected_route(t)
    )
    once_failures = sum(
        1
        for t, title in title_of.items()
        for stage, _ in agents.expected_route(title)
        if agents.fails_once(stage, title) and t not in always_failing
    )
    extra_runs: dict[str, tuple[str, int]] = {}
    for t, title in title_of.items():
        for stage, _ in agents.expected_route(title)[: 1 if t in always_failing else None]:
            ran = calls.get((stage, title), 0)
            allowed = 2 if agents.fails_once(stage, title) else 1
            allowed += int(t in came_back and stage == agents.CHECK)
            if t in always_failing:
                allowed = MAX_RECEIVE_COUNT + harness.duplicates[t]
            if ran > allowed or (t not in always_failing and ran != allowed):
                extra_runs[title] = (stage, ran)
    crash = harness.crash
    figures = {
        "tasks": len(title_of),
        "elapsed_s": round(elapsed, 1),
        "finished": done,
        "proceeds": dict(visits),
        "expected_proceeds": dict(expected_visits),
        "final_stages": dict(collections.Counter(final_stage.values())),
        "dlq_messages": len(dlq),
        "always_failing_tasks": len(always_failing),
        "stage_calls": sum(calls.values()),
        "always_failing_calls": sum(
            n for (_, title), n in calls.items() if agents.always_fails("triage", title)
        ),
        "duplicate_deliveries_of_always_failing": sum(
            harness.duplicates[t] for t in always_failing
        ),
        "runs_beyond_expected": len(extra_runs),
        "hangs_and_base_exceptions_injected": sum(
            1
            for title in title_of.values()
            if title.startswith("t_")
            and agents.index_of(title) % 100 in (agents.HANGS_ONCE, agents.STOPS_ONCE)
            and not agents.always_fails("triage", title)
        ),
        "came_back_to_check": len(came_back),
        "came_back_enqueued": came_back_enqueued,
        "stretch_429_seconds": STRETCH_429_SECONDS,
        "stretch_429_refusals": stretch.injected,
        "injected_once_failures": once_failures,
        "encord_api_requests": api_requests,
        "encord_faults_injected": dict(faults_by_status),
        "latency_rule_matched": rules[2].matched,
        "poller": {
            "invocations": stats.invocations,
            "records": stats.messages,
            "deleted": stats.deleted,
            "failures_reported": stats.failures_reported,
            "redeliveries": stats.redeliveries,
            "duplicates_injected": stats.duplicates_injected,
            "crashes": stats.crashes,
            "handler_errors": stats.handler_errors,
        },
        "crash": None
        if crash is None
        else {
            "batch_tasks": len(crash.batch_tasks),
            "committed_before_crash": len(crash.committed_tasks),
        },
        "producer": {
            "ticks": producer.ticks,
            "ticks_while_consumer_ran": producer.ticks_during_consumer_runs,
            "enqueued": producer.enqueued,
            "left_stage_after_listing": producer.left_stage,
        },
        "leases_left": dict(collections.Counter(lease_states.values())),
    }
    with capsys.disabled():
        print("\nSOAK FIGURES " + json.dumps(figures, indent=2, sort_keys=True))

    # -- assert -------------------------------------------------------------------------------
    assert done, f"the soak did not finish in {SOAK_DEADLINE_SECONDS}s: {figures}"
    assert not producer.errors, producer.errors
    assert stats.handler_errors == 0, stats.errors
    # The injected faults happened.
    assert crash is not None and crash.committed_tasks, "no invocation died after a commit"
    assert stats.crashes == 1
    assert stats.duplicates_injected > 0 and harness.duplicates
    assert faults_by_status["429"] > 0 and faults_by_status["503"] > 0, faults_by_status
    assert producer.ticks_during_consumer_runs > 0
    assert stretch.injected > 0
    assert came_back and came_back_enqueued == len(came_back)
    assert once_failures > 0 and always_failing

    # Every task took exactly its route: one proceed per agent stage, the expected pathway.
    wrong = {
        title_of[t]: route
        for t, route in routes.items()
        if route != ([] if t in always_failing else expected_route(t))
    }
    assert not wrong, f"tasks lost or proceeded twice: {dict(list(wrong.items())[:10])}"
    for t, title in title_of.items():
        expected_stage = (
            agents.TRIAGE
            if t in always_failing
            else agents.DESTINATION[agents.expected_route(title)[-1]]
        )
        assert final_stage[t] == expected_stage, title
    # The always-failing tasks, and only they, are parked in the DLQ with their own error.
    assert set(dlq_by_task) == always_failing
    for message in dlq:
        assert message.reason == "failed", message
        assert message.error_type == "SoakFailure", message
        assert "cannot handle" in (message.error or ""), message
    assert all(n == 1 for n in dlq_by_task.values()), dlq_by_task
    # No stage function ran more often than the injected faults explain.
    assert not extra_runs, {
        title: (runs, harness.history[t])
        for t, title in title_of.items()
        if (runs := extra_runs.get(title))
    }
    # Leases: the parked tasks keep theirs (so no tick re-enqueues them); no other is left.
    assert lease_states == dict.fromkeys(always_failing, "failed")
