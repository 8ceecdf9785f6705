"""What the benchmarks measure in a fresh interpreter: ``python -m infra.bench.worker MODE IN OUT``.

MODE is ``import`` (time and peak memory of importing modules), ``consume`` (invoke the consumer
handler on SQS events: CPU time per invocation and peak memory) or ``per-task`` (the per-message
baseline consumer: CPU time per task). IN is a JSON file with the mode's arguments, OUT where the
JSON result goes (stdout belongs to the handler's logs).

Only the standard library is imported before the measured part, so that the cold-start figures
are those of the modules measured plus an interpreter, the same for the kit and its baseline.
"""

from __future__ import annotations

import importlib
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, in MB (10**6 bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return peak / 1e6 if sys.platform == "darwin" else peak * 1024 / 1e6


def run_import(args: dict[str, Any]) -> dict[str, Any]:
    started = time.perf_counter()
    for name in args["modules"]:
        importlib.import_module(name)
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "peak_rss_mb": peak_rss_mb(),
        "modules_loaded": len(sys.modules),
        "numpy": "numpy" in sys.modules,
        "cv2": "cv2" in sys.modules,
        "aws_xray_sdk": "aws_xray_sdk" in sys.modules,
    }


def _resolve(spec: str) -> Any:
    module, _, attribute = spec.partition(":")
    value: Any = importlib.import_module(module)
    for part in attribute.split(".") if attribute else []:
        value = getattr(value, part)
    return value


def run_consume(args: dict[str, Any]) -> dict[str, Any]:
    from agent_core.pipeline.context import LocalLambdaContext
    from handlers.consumer import lambda_handler

    invocations: list[dict[str, Any]] = []
    for event in args["events"]:
        context = LocalLambdaContext(
            function_name="ConsumerFunction", timeout_ms=int(args.get("timeout_ms", 120_000))
        )
        cpu, wall = time.process_time(), time.perf_counter()
        response = lambda_handler(event, context)
        invocations.append(
            {
                "cpu_seconds": time.process_time() - cpu,
                "wall_seconds": time.perf_counter() - wall,
                "records": len(event["Records"]),
                "failures": len(response.get("batchItemFailures", [])),
            }
        )
    report = _resolve(args["report"]) if args.get("report") else None
    return {
        "invocations": invocations,
        "peak_rss_mb": peak_rss_mb(),
        "report": dict(report) if report is not None else None,
        "numpy": "numpy" in sys.modules,
        "cv2": "cv2" in sys.modules,
    }


def run_per_task(args: dict[str, Any]) -> dict[str, Any]:
    from encord.workflow.stages.agent import AgentStage

    from agent_core.settings import create_user_client
    from infra.bench.baselines import per_task_consume

    project = create_user_client().get_project(args["project_hash"])
    stage = project.workflow.get_stage(name=args["stage"], type_=AgentStage)
    tasks: list[dict[str, float]] = []
    for spec in args["specs"]:
        cpu, wall = time.process_time(), time.perf_counter()
        per_task_consume(project, stage, spec, args["kind"])
        tasks.append(
            {"cpu_seconds": time.process_time() - cpu, "wall_seconds": time.perf_counter() - wall}
        )
    return {"tasks": tasks, "peak_rss_mb": peak_rss_mb()}


MODES = {"import": run_import, "consume": run_consume, "per-task": run_per_task}


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] not in MODES:
        print(f"usage: python -m infra.bench.worker {{{','.join(MODES)}}} IN.json OUT.json")
        return 2
    mode, source, target = argv
    result = MODES[mode](json.loads(Path(source).read_text()))
    Path(target).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
