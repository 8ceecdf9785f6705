"""Consumer execution environments in processes of their own, as Lambda runs them.

The local poller invokes the handler in threads of one interpreter, so five concurrent invocations
share one GIL with the poller and the emulator. For throughput, ``ProcessPool`` gives each
concurrency slot a warm interpreter of its own (``python -m infra.bench.worker serve``), and the
poller hands it the event through ``invoke_wrapper``: receiving, deleting and honouring
``batchItemFailures`` stay the poller's, running the batch is the worker's, as in Lambda.
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
from collections.abc import Mapping
from types import TracebackType
from typing import Any

from infra.bench.common import REPO, BenchError


class _Environment:
    """One worker process: a warm Lambda execution environment."""

    def __init__(self, env: Mapping[str, str], start_timeout: float, warm: bool) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "infra.bench.worker", "serve", *(["--warm"] if warm else [])],
            cwd=REPO,
            env=dict(env),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            bufsize=1,
        )
        self.invocations = 0
        # Per invocation: records, handler wall seconds, threads the handler started.
        self.records: list[dict[str, Any]] = []
        ready = self._read_line(start_timeout)
        if not ready.get("ready"):
            raise BenchError(f"consumer worker did not start: {ready}")

    def _read_line(self, timeout: float) -> dict[str, Any]:
        assert self.process.stdout is not None
        result: list[str] = []
        reader = threading.Thread(
            target=lambda: result.append(self.process.stdout.readline()),  # type: ignore[union-attr]
            daemon=True,
        )
        reader.start()
        reader.join(timeout)
        if not result or not result[0]:
            self.kill()
            raise BenchError(f"consumer worker gave no answer within {timeout:.0f} s")
        reply: dict[str, Any] = json.loads(result[0])
        return reply

    def invoke(self, event: Mapping[str, Any], remaining_ms: int) -> Any:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"event": event, "remaining_ms": remaining_ms}) + "\n")
        self.process.stdin.flush()
        reply = self._read_line(remaining_ms / 1000 + 30)
        self.invocations += 1
        self.records.append(
            {
                "records": len(event.get("Records", [])),
                "seconds": float(reply.get("seconds", 0.0)),
                "threads": int(reply.get("threads", 0)),
            }
        )
        if "error" in reply:
            raise RuntimeError(f"consumer invocation failed: {reply['error']}")
        return reply.get("response")

    def send_configure(self, env: Mapping[str, str | None]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"configure": dict(env)}) + "\n")
        self.process.stdin.flush()

    def finish_configure(self, timeout: float) -> None:
        reply = self._read_line(timeout)
        if not reply.get("configured"):
            raise BenchError(f"consumer worker could not be configured: {reply.get('error')}")
        self.records = []
        self.invocations = 0

    def close(self, timeout: float = 10.0) -> None:
        if self.process.poll() is None and self.process.stdin is not None:
            try:
                self.process.stdin.close()
                self.process.wait(timeout)
            except (OSError, subprocess.TimeoutExpired):
                self.kill()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)


class ProcessPool:
    """``size`` warm consumer processes; ``invoke`` is a LocalPoller ``invoke_wrapper``."""

    def __init__(
        self,
        size: int,
        env: Mapping[str, str],
        *,
        warm: bool = True,
        start_timeout: float = 120.0,
    ) -> None:
        self.size = size
        self.warm = warm
        self._env = dict(env)
        self._start_timeout = start_timeout
        self._idle: queue.Queue[_Environment] = queue.Queue()
        self._all: list[_Environment] = []
        self._active: list[_Environment] = []

    def start(self) -> ProcessPool:
        """Start every process and wait until each is ready (handler imported; with ``warm``,
        runner and clients loaded too)."""
        try:
            for _ in range(self.size):
                environment = _Environment(self._env, self._start_timeout, self.warm)
                self._all.append(environment)
                self._active.append(environment)
                self._idle.put(environment)
        except BaseException:
            self.close()
            raise
        return self

    def configure(self, env: Mapping[str, str | None], size: int | None = None) -> ProcessPool:
        """Make the first ``size`` environments (all by default) serve another stack (``env``,
        e.g. ``worker_env()`` inside it), warm, with their invocation records cleared; only they
        take invocations until the next ``configure``. Reusing started interpreters saves each
        run the imports of a cold start, which on a busy 2-core machine take seconds each."""
        size = len(self._all) if size is None else size
        if not 1 <= size <= len(self._all):
            raise ValueError(f"size must be between 1 and {len(self._all)}, got {size}")
        while not self._idle.empty():
            self._idle.get_nowait()
        self._active = self._all[:size]
        # All at once: each warms (imports the agent, fetches the project) in its own process.
        for environment in self._active:
            environment.send_configure(env)
        for environment in self._active:
            environment.finish_configure(self._start_timeout)
            self._idle.put(environment)
        return self

    def invoke(self, handler: Any, event: dict[str, Any], context: Any) -> Any:
        environment = self._idle.get(timeout=self._start_timeout)
        try:
            return environment.invoke(event, int(context.get_remaining_time_in_millis()))
        finally:
            self._idle.put(environment)

    @property
    def invocations(self) -> list[int]:
        return [e.invocations for e in self._active]

    @property
    def invocation_records(self) -> list[dict[str, Any]]:
        """Every invocation of every environment: records, handler seconds, threads started."""
        return [r for e in self._active for r in e.records]

    def close(self) -> None:
        for environment in self._all:
            environment.close()
        self._all.clear()

    def __enter__(self) -> ProcessPool:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
