"""Lambda execution environments as subprocesses, killed with SIGKILL at the function timeout.

``ExecutionEnvironments`` plugs into ``LocalPoller(invoke_wrapper=...)``. Each invocation goes
to an idle environment (a warm one, or a new process: a cold start); the environment runs the
real handler with a context whose clock ends at the function timeout, and answers over a pipe.
If no answer comes by the timeout the process is killed with SIGKILL, as Lambda does, and the
invocation fails (``InvocationKilled``): nothing the handler did in memory survives, nothing is
deleted by the poller. A handler that raises is reported like the Lambda runtime does it: the
runtime itself prints ``errorType``/``errorMessage`` to the function's log (past any log filter
of the handler), and the invocation fails.

The environments' stdout and stderr (the function's "CloudWatch log") go to one file per
environment under ``log_dir``, so a test can scan everything the process wrote.

Run as ``python -m infra.localstack.lambda_env module:function`` it is the environment's side.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent_core.pipeline.context import LocalLambdaContext
from infra.localstack.poller import SimulatedCrash

RESPONSE_FD_ENV = "AGENTKIT_LAMBDA_RESPONSE_FD"
# Time for the request and the answer to cross the pipes; Lambda's own clock has no such slack.
_IPC_SLACK_SECONDS = 0.3
# Lambda gives a function's init phase 10 s; a loaded test machine gets more.
_INIT_TIMEOUT_SECONDS = 60.0


class InvocationKilled(SimulatedCrash):
    """The environment was SIGKILLed at the function timeout (or on purpose by a test)."""


class InvocationError(Exception):
    """The handler raised; ``error`` is what the Lambda runtime would report."""

    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(f"{error.get('errorType')}: {error.get('errorMessage')}")
        self.error = error


@dataclass
class _Env:
    process: subprocess.Popen[bytes]
    responses: Any  # the read end of the response pipe
    log_path: Path
    invocations: int = 0


@dataclass
class EnvironmentStats:
    cold_starts: int = 0
    invocations: int = 0
    killed_at_timeout: int = 0
    killed_on_purpose: int = 0
    handler_errors: int = 0
    runtime_errors: list[dict[str, Any]] = field(default_factory=list)


class ExecutionEnvironments:
    """A pool of subprocess execution environments for one handler."""

    def __init__(
        self,
        handler_spec: str,
        *,
        log_dir: Path,
        env: dict[str, str] | None = None,
        python_path: list[str] | None = None,
        kill_after_answer: Callable[[dict[str, Any]], bool] | None = None,
        prewarm: int = 1,
    ) -> None:
        """``env``: the environment's variables (default: this process's). ``python_path``:
        folders to import from (test agent modules). ``kill_after_answer(event)``: kill the
        environment after the handler answered, before the answer reaches the poller (a crash
        after the handler's work and before Lambda deletes the messages)."""
        self.handler_spec = handler_spec
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.env = dict(os.environ if env is None else env)
        self.python_path = list(python_path or [])
        self.kill_after_answer = kill_after_answer
        self.stats = EnvironmentStats()
        self._idle: list[_Env] = []
        self._all: list[_Env] = []
        self._lock = threading.Lock()
        # Started now, so that the first invocation does not wait for an init.
        for _ in range(prewarm):
            self._give_back(self._start())

    # -- the poller's side --------------------------------------------------------------------

    def __call__(self, handler: object, event: dict[str, Any], context: Any) -> Any:
        """``invoke_wrapper`` for LocalPoller: ``handler`` is ignored (the environment imports
        ``handler_spec`` itself)."""
        timeout = float(getattr(context, "timeout_seconds", 30.0))
        return self.invoke(
            event, timeout_seconds=timeout, request_id=context.aws_request_id, context=context
        )

    def invoke(
        self,
        event: dict[str, Any],
        *,
        timeout_seconds: float,
        request_id: str | None = None,
        context: Any = None,
    ) -> Any:
        env = self._take()
        if context is not None and hasattr(context, "restart_clock"):
            context.restart_clock()
        started = time.monotonic()
        request = {
            "event": event,
            "timeout_ms": int(timeout_seconds * 1000),
            "request_id": request_id or str(uuid.uuid4()),
        }
        with self._lock:
            self.stats.invocations += 1
        try:
            assert env.process.stdin is not None
            env.process.stdin.write((json.dumps(request) + "\n").encode())
            env.process.stdin.flush()
        except OSError:
            self._kill(env)
            raise InvocationKilled("the execution environment died before the invocation") from None
        # The clock starts when the event is handed over, as Lambda's does (cold start included
        # in the first one).
        line = self._read_answer(env, started + timeout_seconds + _IPC_SLACK_SECONDS)
        if line is None:
            self._kill(env)
            with self._lock:
                self.stats.killed_at_timeout += 1
            self._log(env, f"Task timed out after {timeout_seconds:.2f} seconds (SIGKILL)")
            raise InvocationKilled(f"killed at the {timeout_seconds}s function timeout")
        answer = json.loads(line)
        if self.kill_after_answer is not None and self.kill_after_answer(event):
            self._kill(env)
            with self._lock:
                self.stats.killed_on_purpose += 1
            raise InvocationKilled("killed after the handler answered (fault injection)")
        env.invocations += 1
        self._give_back(env)
        if "error" in answer:
            with self._lock:
                self.stats.handler_errors += 1
                self.stats.runtime_errors.append(answer["error"])
            raise InvocationError(answer["error"])
        return answer.get("response")

    def close(self) -> None:
        with self._lock:
            envs, self._all, self._idle = list(self._all), [], []
        for env in envs:
            self._kill(env)

    def __enter__(self) -> ExecutionEnvironments:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def logs(self) -> str:
        """Everything every environment wrote so far."""
        return "".join(
            p.read_text(errors="replace") for p in sorted(self.log_dir.glob("env-*.log"))
        )

    # -- internals ----------------------------------------------------------------------------

    def _take(self) -> _Env:
        with self._lock:
            while self._idle:
                env = self._idle.pop()
                if env.process.poll() is None:
                    return env
        return self._start()

    def _give_back(self, env: _Env) -> None:
        with self._lock:
            if env in self._all:
                self._idle.append(env)

    def _start(self) -> _Env:
        read_fd, write_fd = os.pipe()
        log_path = self.log_dir / f"env-{uuid.uuid4().hex[:12]}.log"
        root = str(Path(__file__).resolve().parents[2])
        env = dict(self.env)
        env[RESPONSE_FD_ENV] = str(write_fd)
        env["PYTHONPATH"] = os.pathsep.join([root, *self.python_path])
        env["PYTHONUNBUFFERED"] = "1"
        env.setdefault("AWS_LAMBDA_FUNCTION_NAME", "ConsumerFunction")
        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "infra.localstack.lambda_env", self.handler_spec],
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                pass_fds=(write_fd,),
                cwd=root,
            )
        os.close(write_fd)
        created = _Env(process, os.fdopen(read_fd, "rb"), log_path)
        # Lambda's init phase (importing the handler module) has its own limit, apart from the
        # function timeout: wait for it before the first invocation's clock starts.
        with self._lock:
            self.stats.cold_starts += 1
            self._all.append(created)
        if self._read_answer(created, time.monotonic() + _INIT_TIMEOUT_SECONDS) is None:
            self._kill(created)
            raise InvocationKilled(f"the execution environment did not start (see {log_path})")
        return created

    @staticmethod
    def _read_answer(env: _Env, deadline: float) -> bytes | None:
        buffer = b""
        fd = env.responses.fileno()
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                return None
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                return None  # the process died
            buffer += chunk
            if buffer.endswith(b"\n"):
                return buffer

    def _kill(self, env: _Env) -> None:
        with self._lock:
            if env in self._all:
                self._all.remove(env)
            if env in self._idle:
                self._idle.remove(env)
        if env.process.poll() is None:
            env.process.send_signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            env.process.wait(timeout=5)
        for stream in (env.process.stdin, env.responses):
            with contextlib.suppress(OSError):
                if stream is not None:
                    stream.close()

    @staticmethod
    def _log(env: _Env, text: str) -> None:
        with open(env.log_path, "a") as log:
            log.write(text + "\n")


# -- the environment's side -------------------------------------------------------------------


def _runtime_error(exc: BaseException) -> dict[str, Any]:
    # What awslambdaric reports for an exception escaping the handler: its type, its str(), its
    # stack, unfiltered.
    try:
        message = str(exc)
    except BaseException:
        message = "<unprintable>"
    return {
        "errorMessage": message,
        "errorType": type(exc).__name__,
        "stackTrace": traceback.format_tb(exc.__traceback__),
    }


def main(argv: list[str]) -> None:
    import importlib

    module_name, _, function_name = argv[0].partition(":")
    responses = os.fdopen(int(os.environ[RESPONSE_FD_ENV]), "w")
    handler = getattr(importlib.import_module(module_name), function_name)
    responses.write(json.dumps({"ready": True}) + "\n")
    responses.flush()
    for line in sys.stdin:
        request = json.loads(line)
        context = LocalLambdaContext(
            function_name="ConsumerFunction",
            timeout_ms=request["timeout_ms"],
            aws_request_id=request["request_id"],
            invoked_function_arn="arn:aws:lambda:us-east-1:000000000000:function:ConsumerFunction",
            log_group_name="/aws/lambda/ConsumerFunction",
        )
        try:
            answer: dict[str, Any] = {"response": handler(request["event"], context)}
        except BaseException as exc:
            error = _runtime_error(exc)
            print(f"[ERROR] {json.dumps(error)}", flush=True)
            answer = {"error": error}
        responses.write(json.dumps(answer) + "\n")
        responses.flush()


if __name__ == "__main__":
    main(sys.argv[1:])
