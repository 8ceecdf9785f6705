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
        if "error" in reply:
            raise RuntimeError(f"consumer invocation failed: {reply['error']}")
        return reply.get("response")

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

    def start(self) -> ProcessPool:
        """Start every process and wait until each is ready (handler imported; with ``warm``,
        runner and clients loaded too)."""
        try:
            for _ in range(self.size):
                environment = _Environment(self._env, self._start_timeout, self.warm)
                self._all.append(environment)
                self._idle.put(environment)
        except BaseException:
            self.close()
            raise
        return self

    def invoke(self, handler: Any, event: dict[str, Any], context: Any) -> Any:
        environment = self._idle.get(timeout=self._start_timeout)
        try:
            return environment.invoke(event, int(context.get_remaining_time_in_millis()))
        finally:
            self._idle.put(environment)

    @property
    def invocations(self) -> list[int]:
        return [e.invocations for e in self._all]

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
