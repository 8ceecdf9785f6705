"""Run a function that `sam build` produced the way the python3.12 Lambda runtime runs it.

The Runtime Interface Emulator shipped in the SAM CLI wheel (samcli/local/rapid) serves the Lambda
Runtime API; it starts awslambdaric on CPython 3.12 from .tools/lambda-runtime (the runtime client
and boto3, nothing else: tools/lambda-runtime/pyproject.toml), with the function's build folder as
the working directory and code root (first on sys.path, like /var/task) and the layer's python/
folder on PYTHONPATH (like /opt/python). Both are mounted read-only in a private mount namespace
when the machine allows it (`unshare -m`, root); either way the caller can check that nothing was
written into them. The environment is what template.yaml sets plus the local endpoints, never the
test process's own.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
TOOLS = REPO / ".tools"
SAM = TOOLS / "sam" / "bin" / "sam"
RUNTIME_PYTHON = TOOLS / "lambda-runtime" / "bin" / "python"
SETUP_HINT = "run `bash scripts/setup` (it installs the SAM CLI and the Lambda runtime client)"

# label -> seconds, printed at the end of the session (conftest.py): builds, cold and warm invokes.
TIMINGS: dict[str, float] = {}


def rie_binary() -> Path:
    """The x86_64 Runtime Interface Emulator inside the locked SAM CLI."""
    found = sorted((TOOLS / "sam" / "lib").glob("python3.*/site-packages/samcli/local/rapid"))
    if not found or not (found[0] / "aws-lambda-rie-x86_64").exists():
        raise FileNotFoundError(f"no aws-lambda-rie-x86_64 under {TOOLS / 'sam'}: {SETUP_HINT}")
    return found[0] / "aws-lambda-rie-x86_64"


def require_tools() -> None:
    for path in (SAM, RUNTIME_PYTHON):
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: {SETUP_HINT}")
    rie_binary()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _can_mount_read_only() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "mount", "--bind", "/", "/"],
        capture_output=True,
        timeout=10,
        check=False,
    )
    return probe.returncode == 0


def tree_snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """relative path -> (size, mtime_ns) of every file and folder: to prove nothing was written."""
    snapshot = {}
    for path in [root, *root.rglob("*")]:
        stat = path.lstat()
        snapshot[str(path.relative_to(root))] = (stat.st_size, stat.st_mtime_ns)
    return snapshot


class LambdaFunction:
    """One built function under the RIE: ``invoke(event)`` returns what Lambda would return."""

    def __init__(
        self,
        code_dir: Path,
        handler: str,
        environment: Mapping[str, str],
        *,
        layer_dir: Path | None,
        scratch: Path,
        timeout_seconds: int,
        memory_mb: int = 1024,
        name: str = "function",
    ) -> None:
        self.code_dir = code_dir
        self.layer_python = layer_dir / "python" if layer_dir is not None else None
        self.handler = handler
        self.name = name
        self.port = _free_port()
        self.log_path = scratch / f"{name}.log"
        tmp = scratch / f"{name}-tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        self.read_only = _can_mount_read_only()
        self.env = {
            # What the runtime sets (plus what the RIE adds: request ids, deadlines).
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "LANG": "en_US.UTF-8",
            "TZ": ":UTC",
            "HOME": str(tmp),
            "TMPDIR": str(tmp),  # Lambda's writable /tmp
            "LAMBDA_TASK_ROOT": str(code_dir),
            "AWS_EXECUTION_ENV": "AWS_Lambda_python3.12",
            "AWS_LAMBDA_FUNCTION_NAME": name,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory_mb),
            "AWS_LAMBDA_FUNCTION_TIMEOUT": str(timeout_seconds),
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{name}",
            "PYTHONPATH": str(self.layer_python) if self.layer_python else "",
            **environment,
        }
        if not self.read_only:
            # Without a read-only mount (no root), at least keep Python from writing bytecode
            # caches where Lambda could not; the callers' tree_snapshot check catches the rest.
            self.env["PYTHONDONTWRITEBYTECODE"] = "1"
        self._process: subprocess.Popen[bytes] | None = None

    def _command(self) -> list[str]:
        rie = [
            str(rie_binary()),
            "--runtime-interface-emulator-address",
            f"127.0.0.1:{self.port}",
            "--runtime-api-address",
            f"127.0.0.1:{_free_port()}",
            "--log-level",
            "error",
            str(RUNTIME_PYTHON),
            "-m",
            "awslambdaric",
            self.handler,
        ]
        if not self.read_only:
            return rie
        mounts = [self.code_dir] + ([self.layer_python] if self.layer_python else [])
        script = " && ".join(
            f"mount --bind {shlex.quote(str(d))} {shlex.quote(str(d))} && "
            f"mount -o remount,ro,bind {shlex.quote(str(d))}"
            for d in mounts
        )
        return [
            "unshare",
            "-m",
            "--propagation",
            "private",
            "sh",
            "-c",
            f"{script} && exec {shlex.join(rie)}",
        ]

    def start(self) -> LambdaFunction:
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(
                self._command(),
                cwd=self.code_dir,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"the RIE exited at start:\n{self.log()}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5),
            ):
                return self
            time.sleep(0.1)
        raise RuntimeError(f"the RIE did not listen on port {self.port}:\n{self.log()}")

    def timed_invoke(self, event: Any, label: str) -> Any:
        """invoke(), recording the wall time under ``label`` in TIMINGS."""
        started = time.monotonic()
        try:
            return self.invoke(event)
        finally:
            TIMINGS[label] = time.monotonic() - started

    def invoke(self, event: Any, timeout: float = 120) -> Any:
        """POST the event as Lambda's Invoke API does; the handler's result or error object."""
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/2015-03-31/functions/function/invocations",
            data=json.dumps(event).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.URLError as exc:
            raise RuntimeError(f"invoking {self.name} failed: {exc}\n{self.log()}") from exc

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:] if self.log_path.exists() else ""

    def stop(self) -> None:
        if self._process is None:
            return
        if self._process.poll() is None:
            os.killpg(self._process.pid, 15)
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self._process.pid, 9)
                self._process.wait(timeout=10)
        self._process = None


@contextlib.contextmanager
def running(function: LambdaFunction) -> Iterator[LambdaFunction]:
    try:
        yield function.start()
    finally:
        function.stop()


def sam_build(build_dir: Path, env: Mapping[str, str], timeout: float = 480) -> float:
    """`sam build` from the repository (samconfig.toml applies) into build_dir; seconds taken.

    Runs in the repository, where samconfig.toml's build_in_source keeps SAM from copying the
    whole tree (.venv included) first."""
    started = time.monotonic()
    result = subprocess.run(
        [str(SAM), "build", "--build-dir", str(build_dir)],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return time.monotonic() - started
