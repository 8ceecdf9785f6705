"""Calls that end by a deadline, whatever the code they run does (hangs, BaseExceptions).

Python cannot kill a thread, and Lambda kills the whole execution environment at the function
timeout, which loses every answer of the batch. So a bounded call runs on a worker thread, and
the caller stops waiting at the deadline: the call is then *abandoned* (it fails alone, with
``DeadlineExceeded``) and its worker keeps running it, unobserved. Nothing an abandoned call
returns is used: results travel only through ``bounded_call``'s return value, which the caller no
longer reads.

The workers are one pool per process, reused across calls and invocations (no thread is started
per call once the pool is warm). A worker busy with an abandoned call is never handed new work:
the next call takes another idle worker or starts one, so a hung agent holds exactly one thread
and never makes a later task or invocation wait behind it. When the abandoned call does end, its
worker returns to the pool.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")


class DeadlineExceeded(Exception):
    """A bounded call did not end by its deadline and was abandoned."""

    def __init__(self, what: str, seconds: float) -> None:
        super().__init__(f"{what} did not finish within the {seconds:.1f}s it had; abandoned")
        self.seconds = seconds


@dataclass
class _Job:
    fn: Callable[[], Any]
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: BaseException | None = None


class _Worker:
    def __init__(self, pool: _Pool) -> None:
        self.jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._pool = pool
        self.thread = threading.Thread(target=self._loop, name="agentkit-bounded", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while True:
            job = self.jobs.get()
            try:
                job.result = job.fn()
            except BaseException as exc:  # carried to the caller, whatever it is
                job.error = exc
            job.done.set()
            self._pool.release(self)


class _Pool:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []
        self.started = 0
        self.busy = 0

    def acquire(self) -> _Worker:
        with self._lock:
            self.busy += 1
            if self._idle:
                return self._idle.pop()
            self.started += 1
        return _Worker(self)

    def release(self, worker: _Worker) -> None:
        with self._lock:
            self.busy -= 1
            self._idle.append(worker)


_pool = _Pool()
_fan_out: ThreadPoolExecutor | None = None
_fan_out_lock = threading.Lock()
# Concurrent AWS calls of one fan-out (SendMessageBatch of a page): botocore's pool has 32
# connections (agent_core.pipeline.clients).
FAN_OUT_WORKERS = 8


def fan_out_executor() -> ThreadPoolExecutor:
    """The process's one executor for running independent AWS calls side by side (never for
    user code: that goes through ``bounded_call``)."""
    global _fan_out
    with _fan_out_lock:
        if _fan_out is None:
            _fan_out = ThreadPoolExecutor(max_workers=FAN_OUT_WORKERS, thread_name_prefix="fanout")
        return _fan_out


def pool_stats() -> dict[str, int]:
    """Threads the pool has started in this process, and calls running now (abandoned ones
    included): for benchmarks and tests."""
    return {"threads_started": _pool.started, "busy": _pool.busy}


def bounded_call(fn: Callable[[], T], *, deadline: float | None, what: str) -> T:
    """``fn()`` if it returns or raises by ``deadline`` (``time.monotonic()``), else raise
    DeadlineExceeded. Any exception ``fn`` raises, BaseException included, is re-raised here, in
    the caller's thread; so a ``CancelledError`` or ``SystemExit`` from ``fn`` is the caller's to
    handle, never the runtime's."""
    if deadline is None:
        return fn()
    seconds = deadline - time.monotonic()
    if seconds <= 0:
        # Never start what could only be abandoned: it would still run, unobserved.
        raise DeadlineExceeded(what, 0.0)
    job = _Job(fn)
    _pool.acquire().jobs.put(job)
    if not job.done.wait(seconds):
        raise DeadlineExceeded(what, seconds)
    if job.error is not None:
        raise job.error
    result: T = job.result
    return result
