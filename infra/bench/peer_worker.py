"""The peer's side of the comparison, run by the peer environment's interpreter (``peer_env``):

    .bench/peer-venv/bin/python -m infra.bench.peer_worker      (cwd: the repository)

Imports only the standard library, the encord SDK, encord-agents 0.2.10 and ``stage_work`` (the
work every benchmark stage function does), never agent_core. One JSON request on the first line
of stdin: ``{"mode": "runner" | "queue", "project_hash", "kind", "model_ms", "batch_size"}``. It
builds the peer's runner (fetching the project, as a started worker has), prints ``{"ready":
true}`` and waits for a ``go`` line, so that the caller counts the Encord requests of the run
alone; then runs and prints one JSON result line.

* ``runner``: the sequential ``Runner`` over the stage, ``task_batch_size=batch_size`` (its
  default is 300), no retries.
* ``queue``: the ``QueueRunner`` recipe: list the stage's tasks (the producer), then call the
  wrapped function on lists of ``batch_size`` specs (1 = one task per message, as its Celery and
  Modal recipes do).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from encord.objects import LabelRowV2
from encord.storage import StorageItem
from encord.workflow.stages.agent import AgentTask

from infra.bench.stage_work import MODEL_MS_ENV, PATHWAY, PRIORITY, STAGE, model_call, set_quality


def stage_function(kind: str) -> Callable[..., Any]:
    """The same stage functions as ``agents_plain``, written against encord-agents."""
    from encord_agents.tasks.models import TaskAgentReturnStruct

    def task_only(task: AgentTask) -> str:
        return PATHWAY if task.data_hash else "missing"

    def label_row(lr: LabelRowV2) -> str:
        return PATHWAY if lr.is_labelling_initialised else "missing"

    def label_row_storage(lr: LabelRowV2, item: StorageItem) -> str:
        return PATHWAY if lr.is_labelling_initialised and item.uuid else "missing"

    def save_priority(lr: LabelRowV2) -> Any:
        set_quality(lr)
        return TaskAgentReturnStruct(pathway=PATHWAY, label_row=lr, label_row_priority=PRIORITY)

    def pipeline(lr: LabelRowV2) -> Any:
        model_call()
        set_quality(lr)
        return TaskAgentReturnStruct(pathway=PATHWAY, label_row=lr)

    functions: dict[str, Callable[..., Any]] = {
        "task_only": task_only,
        "label_row": label_row,
        "label_row_storage": label_row_storage,
        "save_priority": save_priority,
        "pipeline": pipeline,
    }
    return functions[kind]


def _wait_for_go(out: Any) -> None:
    out.write(json.dumps({"ready": True}) + "\n")
    out.flush()
    if sys.stdin.readline().strip() != "go":
        raise SystemExit("peer worker: expected a 'go' line")


def run_runner(request: dict[str, Any], out: Any) -> dict[str, Any]:
    from encord_agents.tasks import Runner

    runner = Runner(project_hash=request["project_hash"])
    runner.stage(STAGE)(stage_function(request["kind"]))
    _wait_for_go(out)
    started = time.perf_counter()
    runner(num_retries=0, task_batch_size=int(request["batch_size"]))
    return {"seconds": time.perf_counter() - started}


def run_queue(request: dict[str, Any], out: Any) -> dict[str, Any]:
    from encord_agents.tasks import QueueRunner
    from encord_agents.tasks.models import TaskCompletionResult

    runner = QueueRunner(project_hash=request["project_hash"])
    wrapped = runner.stage(STAGE)(stage_function(request["kind"]))
    size = int(request["batch_size"])
    _wait_for_go(out)
    started = time.perf_counter()
    specs = [
        task.model_dump_json() for stage in runner.get_agent_stages() for task in stage.get_tasks()
    ]
    listed = time.perf_counter() - started
    succeeded = 0
    for index in range(0, len(specs), size):
        chunk = specs[index : index + size]
        result = TaskCompletionResult.model_validate_json(wrapped(chunk if size > 1 else chunk[0]))
        if isinstance(result.success, list):
            succeeded += len(result.success)
        elif result.success:
            succeeded += 1
        elif result.error:
            raise RuntimeError(f"the peer's QueueRunner failed: {result.error[-800:]}")
    return {
        "seconds": time.perf_counter() - started,
        "list_seconds": listed,
        "tasks": len(specs),
        "succeeded": succeeded,
    }


MODES = {"runner": run_runner, "queue": run_queue}


def main() -> int:
    request = json.loads(sys.stdin.readline())
    if request.get("model_ms") is not None:
        os.environ[MODEL_MS_ENV] = str(request["model_ms"])
    # The replies go to the original stdout; the peer's progress bars and logs go to stderr.
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    with contextlib.redirect_stdout(sys.stderr):
        result = MODES[request["mode"]](request, out)
    out.write(json.dumps(result) + "\n")
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
