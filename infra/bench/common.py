"""What the sections share: options, one emulator and one moto server, fixtures, counters and
the subprocess worker.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from infra.emulator import Emulator
    from infra.localstack import LocalStack, MotoServer

REPO = Path(__file__).resolve().parents[2]
STAGE = "Agent 1"
PATHWAY = "complete"
# The Encord API (REST and RPC), not the media behind signed URLs.
ENCORD_API_ROUTES = r"re:^(RPC |[A-Z]+ /v2/)"

SECTIONS = ("requests", "producer", "throughput", "coldstart", "memory", "package", "peer")


class BenchError(RuntimeError):
    """A measurement could not be made or its run did not do the work it should have."""


@dataclass(frozen=True)
class BenchOptions:
    """Sizes of every measurement; the defaults make a run of a few minutes."""

    sections: tuple[str, ...] = SECTIONS
    # 1. Encord requests per task in the consumer.
    request_kinds: tuple[str, ...] = (
        "task_only",
        "label_row",
        "label_row_storage",
        "save_priority",
    )
    request_warm_batches_1: int = 5
    request_warm_batches_10: int = 3
    request_baseline_tasks: int = 5
    # 2. Producer.
    producer_tasks: int = 1000
    # 3. CPU per task and end-to-end throughput.
    cpu_batches: int = 5
    e2e_tasks: int = 200
    latency_ms: float = 20.0
    # Per-task model-call time of the end-to-end stage function, one measurement each; the
    # throughput target applies to the first.
    model_ms: tuple[float, ...] = (200.0, 50.0)
    e2e_timeout_seconds: float = 300.0
    # 4. Cold start: rounds, and which kit/baseline pairs (empty: all of coldstart.PAIRS).
    cold_runs: int = 5
    cold_pairs: tuple[str, ...] = ()
    # 5. Peak memory.
    image_count: int = 10
    image_width: int = 1920
    image_height: int = 1080
    video_width: int = 1920
    video_height: int = 1080
    video_fps: float = 30.0
    video_seconds: float = 30.0
    short_video_seconds: float = 10.0
    # 6. Lambda package sizes: which variants of scripts/package_size.py (empty: all).
    package_variants: tuple[str, ...] = ()
    package_timeout_seconds: float = 1800.0
    # 7. Against the released peer (encord-agents 0.2.10).
    peer_count_tasks: int = 300  # one batch of the peer Runner's default 300
    peer_count_batches: tuple[int, ...] = (100,)  # kit batch sizes counted beside the template's
    peer_model_ms: tuple[float, ...] = (0.0, 50.0, 200.0)
    peer_concurrency: tuple[int, ...] = (1, 2, 5)  # and the template's MaximumConcurrency
    # Tasks per throughput run by model-call time (other times: the last entry's count).
    peer_tasks: tuple[tuple[float, int], ...] = ((0.0, 100), (50.0, 100), (200.0, 60))
    peer_repeats: int = 3
    # Larger batches at the template's concurrency, to choose the default BatchSize from.
    peer_sweep_model_ms: tuple[float, ...] = (0.0, 50.0)
    peer_sweep_batches: tuple[int, ...] = (10, 30, 60, 100)
    peer_sweep_tasks: int = 300
    peer_sweep_window: float = 1.0
    peer_timeline_tasks: int = 300
    plot_path: Path | None = None

    def peer_tasks_for(self, model_ms: float) -> int:
        table = dict(self.peer_tasks)
        return table.get(model_ms, self.peer_tasks[-1][1])

    @classmethod
    def quick(cls, **changes: Any) -> BenchOptions:
        """Tiny sizes: every section in well under a minute (the smoke test)."""
        tiny = cls(
            request_kinds=("task_only", "label_row"),
            request_warm_batches_1=1,
            request_warm_batches_10=1,
            request_baseline_tasks=2,
            producer_tasks=100,
            cpu_batches=1,
            e2e_tasks=20,
            latency_ms=5.0,
            model_ms=(20.0,),
            e2e_timeout_seconds=60.0,
            cold_runs=1,
            cold_pairs=("plain", "vision"),
            image_count=3,
            image_width=640,
            image_height=360,
            video_width=320,
            video_height=240,
            video_fps=10.0,
            video_seconds=3.0,
            short_video_seconds=1.0,
            package_variants=("lean",),
            peer_count_tasks=20,
            peer_count_batches=(),
            peer_model_ms=(20.0,),
            peer_concurrency=(1, 2),
            peer_tasks=((20.0, 20),),
            peer_repeats=1,
            peer_sweep_model_ms=(0.0,),
            peer_sweep_batches=(20,),
            peer_sweep_tasks=40,
            peer_timeline_tasks=20,
        )
        return replace(tiny, **changes)


def project_spec(
    title: str,
    count: int,
    *,
    kind: str = "image",
    width: int = 320,
    height: int = 240,
    fps: float = 10.0,
    duration: float = 3.0,
) -> dict[str, Any]:
    """A one-agent-stage project (START -> Agent 1 -complete-> Complete) of ``count`` items."""
    media: dict[str, Any] = {
        "kind": kind,
        "count": count,
        "width": width,
        "height": height,
        "title": "image_{index:05d}.jpg" if kind == "image" else "video_{index:03d}.mp4",
    }
    if kind == "video":
        media.update({"fps": fps, "duration": duration})
    return {
        "title": title,
        "workflow": {
            "start": STAGE,
            "stages": [
                {
                    "title": STAGE,
                    "type": "AGENT",
                    "pathways": [{"name": PATHWAY, "to": "Complete"}],
                },
                {"title": "Complete", "type": "DONE"},
            ],
        },
        "media": [media],
    }


class BenchContext:
    """One emulator and one moto server for the whole run, started when first needed."""

    def __init__(self, options: BenchOptions, workdir: Path) -> None:
        self.options = options
        self.workdir = workdir
        self._emulator: Emulator | None = None
        self._moto: MotoServer | None = None
        self._moto_process: subprocess.Popen[str] | None = None

    @property
    def emulator(self) -> Emulator:
        if self._emulator is None:
            from infra.emulator import Emulator

            self._emulator = Emulator.start(port=0, fixture=None, seed=0)
        return self._emulator

    @property
    def moto(self) -> MotoServer:
        """A moto server in a process of its own: its CPU work (moto parses and scans in
        Python) must not compete for this interpreter's GIL with the handlers being measured."""
        if self._moto is None:
            from infra.localstack import MotoServer

            self._moto_process = subprocess.Popen(
                [sys.executable, "-m", "infra.bench.worker", "moto"],
                cwd=REPO,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
            assert self._moto_process.stdout is not None
            line = self._moto_process.stdout.readline()
            if not line:
                self._moto_process.kill()
                raise BenchError("the moto server process did not start")
            self._moto = MotoServer(endpoint_url=json.loads(line)["endpoint_url"])
        return self._moto

    def stack(
        self,
        fixture: Mapping[str, Any],
        agent_module: str,
        *,
        extra_env: Mapping[str, str | None] | None = None,
    ) -> LocalStack:
        """A LocalStack (queues, lease table, handler environment) on the shared servers."""
        from infra.localstack import LocalStack

        return LocalStack(
            fixture=dict(fixture),
            agent_module=agent_module,
            emulator=self.emulator,
            moto=self.moto,
            extra_env=extra_env,
        )

    def encord_requests(self) -> Counter[str]:
        """Encord API requests received so far, by route (media downloads excluded)."""
        from infra.emulator.counters import BLOB_ROUTE_PREFIXES

        snapshot = self.emulator.counters.snapshot()
        return Counter({k: n for k, n in snapshot.items() if not k.startswith(BLOB_ROUTE_PREFIXES)})

    def aws_requests(self) -> Counter[str]:
        """AWS requests the bench's moto server has served so far, by ``service.Operation``
        (counted server-side, so every process's clients are seen)."""
        import urllib.request

        from infra.bench.worker import COUNTS_PATH

        with urllib.request.urlopen(self.moto.endpoint_url + COUNTS_PATH, timeout=10) as reply:
            counts: dict[str, int] = json.loads(reply.read())
        return Counter(counts)

    def close(self) -> None:
        if self._moto_process is not None:
            with contextlib.suppress(OSError):
                if self._moto_process.stdin is not None:
                    self._moto_process.stdin.close()
            try:
                self._moto_process.wait(10)
            except subprocess.TimeoutExpired:
                self._moto_process.kill()
                self._moto_process.wait(5)
            self._moto_process = None
            self._moto = None
        if self._emulator is not None:
            self._emulator.stop()
            self._emulator = None


class CallCounter:
    """Counts the API calls boto3 clients make (one per call, whatever the retries)."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()

    def attach(self, client: Any) -> Any:
        # botocore's emitter is hierarchical: "before-call" sees every before-call.<svc>.<op>.
        client.meta.events.register("before-call", self._count)
        return client

    def _count(self, model: Any, **_: Any) -> None:
        name = f"{model.service_model.endpoint_prefix}.{model.name}"
        with self._lock:
            self.calls[name] += 1

    def total(self, service: str) -> int:
        with self._lock:
            return sum(n for k, n in self.calls.items() if k.startswith(service + "."))

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.calls)


def diff(after: Mapping[str, int], before: Mapping[str, int]) -> dict[str, int]:
    return {k: n - before.get(k, 0) for k, n in after.items() if n - before.get(k, 0)}


def receive_events(stack: LocalStack, count: int, batch_size: int) -> list[dict[str, Any]]:
    """SQS events (Lambda's shape) of ``batch_size`` records holding ``count`` queued messages.

    The messages stay in flight (not deleted), as during a Lambda invocation.
    """
    from infra.localstack.events import record_from_message, sqs_event

    sqs = stack.sqs()
    url = stack.queues.work_queue_url
    arn = stack.queues.work_queue_arn
    records: list[dict[str, Any]] = []
    for _ in range(count // 10 + 20):
        if len(records) >= count:
            break
        reply = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=min(10, count - len(records)),
            WaitTimeSeconds=1,
            VisibilityTimeout=900,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        records += [record_from_message(m, queue_arn=arn) for m in reply.get("Messages", [])]
    if len(records) < count:
        raise BenchError(f"expected {count} messages on the work queue, received {len(records)}")
    return [sqs_event(records[i : i + batch_size]) for i in range(0, count, batch_size)]


def worker_env(**overrides: str | None) -> dict[str, str]:
    """The current environment (the stack's, when one is active) with ``overrides`` applied."""
    env = dict(os.environ)
    for name, value in overrides.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def run_worker(
    mode: str, args: Mapping[str, Any], *, env: Mapping[str, str], timeout: float = 300.0
) -> dict[str, Any]:
    """Run ``infra.bench.worker MODE`` in a fresh interpreter and return its JSON result."""
    with tempfile.TemporaryDirectory(prefix="agentkit-bench-") as scratch:
        source, target = Path(scratch) / "in.json", Path(scratch) / "out.json"
        source.write_text(json.dumps(args))
        try:
            completed = subprocess.run(
                [sys.executable, "-m", "infra.bench.worker", mode, str(source), str(target)],
                cwd=REPO,
                env=dict(env),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise BenchError(f"the {mode} worker did not finish within {timeout:.0f} s") from None
        if completed.returncode != 0 or not target.exists():
            tail = "\n".join(completed.stderr.strip().splitlines()[-12:])
            raise BenchError(f"the {mode} worker failed (exit {completed.returncode}):\n{tail}")
        result: dict[str, Any] = json.loads(target.read_text())
        return result


@contextlib.contextmanager
def fault(emulator: Emulator, **rule: Any) -> Iterator[Any]:
    """A fault rule on the emulator for the duration of the block."""
    from infra.emulator import FaultRule

    added = FaultRule(**rule)
    emulator.faults.add(added)
    try:
        yield added
    finally:
        emulator.faults.remove(added)


@dataclass
class Step:
    """A progress callback the sections report to: ``step("what is running now")``."""

    callback: Callable[[str], None] | None = None
    log: list[str] = field(default_factory=list)

    def __call__(self, text: str) -> None:
        self.log.append(text)
        if self.callback is not None:
            self.callback(text)
