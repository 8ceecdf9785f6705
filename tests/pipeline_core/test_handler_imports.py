"""The handlers stay light: no numpy or cv2 unless the user's agent needs them.

Checked in fresh interpreters: importing the handlers pulls in neither numpy, cv2 nor the encord
SDK, and a consumer invocation with a non-vision agent runs where numpy and cv2 cannot be
imported at all (as in a Lambda package built without the vision extra).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pipeline_helpers import Pipeline, invoke_producer, sqs_event

from infra.emulator import SeededFixture

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent

BLOCK_VISION = """
import importlib.abc, sys

class _NoVision(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("numpy", "cv2"):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
        return None

sys.meta_path.insert(0, _NoVision())
"""


def run_python(code: str, *, stdin: str = "", env: dict[str, str] | None = None) -> str:
    environment = dict(env or os.environ)
    environment["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(HERE)])
    completed = subprocess.run(
        [sys.executable, "-c", code],
        input=stdin,
        capture_output=True,
        text=True,
        env=environment,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed.stdout


def test_importing_the_handlers_loads_no_vision_and_no_sdk() -> None:
    out = run_python(
        "import json, sys\n"
        "import handlers.consumer, handlers.producer\n"
        "print(json.dumps({m: m in sys.modules for m in ('numpy', 'cv2', 'encord')}))\n"
    )
    assert json.loads(out.strip().splitlines()[-1]) == {
        "numpy": False,
        "cv2": False,
        "encord": False,
    }


def test_non_vision_consumer_runs_without_numpy_and_cv2(
    agent_env: SeededFixture, pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENT_MODULE", "agents_for_tests:task_only_runner")
    monkeypatch.setenv("MAX_TASKS_PER_RUN", "3")
    invoke_producer()
    messages = pipeline.receive(pipeline.work_queue_url, max_messages=3)
    assert len(messages) == 3

    code = BLOCK_VISION + (
        "import json, sys\n"
        "from handlers.consumer import lambda_handler\n"
        "from agent_core.pipeline.context import LocalLambdaContext\n"
        "event = json.loads(sys.stdin.read())\n"
        "result = lambda_handler(event, LocalLambdaContext(timeout_ms=60_000))\n"
        "print('RESULT ' + json.dumps({'result': result, 'numpy': 'numpy' in sys.modules,"
        " 'cv2': 'cv2' in sys.modules, 'encord': 'encord' in sys.modules}))\n"
    )
    out = run_python(code, stdin=json.dumps(sqs_event(messages)))
    line = next(x for x in out.splitlines() if x.startswith("RESULT "))
    report = json.loads(line.removeprefix("RESULT "))
    assert report == {
        "result": {"batchItemFailures": []},
        "numpy": False,
        "cv2": False,
        "encord": True,
    }
    for message in messages:
        task = json.loads(message["Body"])["task"]["uuid"]
        assert pipeline.lease(task) is None
