"""What the benchmarks measure in a fresh interpreter: ``python -m infra.bench.worker MODE IN OUT``.

MODE is ``import`` (time and peak memory of importing modules), ``consume`` (invoke the consumer
handler on SQS events: CPU time per invocation and peak memory) or ``per-task`` (the per-message
baseline consumer: CPU time per task). IN is a JSON file with the mode's arguments, OUT where the
JSON result goes (stdout belongs to the handler's logs).

``python -m infra.bench.worker serve`` is a warm consumer execution environment driven line by
line (see ``infra.bench.lambdas``); ``python -m infra.bench.worker moto`` a moto server in a
process of its own.

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
    """This process's peak resident set size so far, in MB (10**6 bytes).

    On Linux from VmHWM: ``ru_maxrss`` survives execve, so a child started by a large parent
    (subprocess forks or vforks it) would report at least the parent's size.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024 / 1e6
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return peak / 1e6 if sys.platform == "darwin" else peak * 1024 / 1e6


def run_import(args: dict[str, Any]) -> dict[str, Any]:
    started, cpu = time.perf_counter(), time.process_time()
    for name in args["modules"]:
        importlib.import_module(name)
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "cpu_seconds": time.process_time() - cpu,
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


def configure(env: dict[str, str | None], warm_up: Any) -> dict[str, Any]:
    """Make a serving environment another stack's: its variables, then a new execution
    environment's state, warmed (runner loaded) before the next invocation is timed."""
    import os
    import traceback

    from infra.localstack.stack import reset_handler_state

    for name, value in env.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    try:
        reset_handler_state(os.environ.get("AGENT_MODULE"), os.environ.get("PROJECT_HASH"))
        warm_up()
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
    return {"configured": True}


def serve(args: dict[str, Any]) -> dict[str, Any]:
    """A consumer execution environment: one invocation per line on stdin, until EOF.

    With ``args["warm"]`` the runner (project, ontology, Encord client) and the AWS clients are
    loaded before the ready line, as in an environment that has already served an invocation.

    Requests are ``{"event": ..., "remaining_ms": n}`` or ``{"configure": {variable: value}}``
    (see ``configure``); each gets one reply line, ``{"response":
    ...}`` or ``{"error": "..."}``, on the original stdout. The handler's own output (logs, EMF)
    is moved to stderr so that it cannot interleave with the replies.
    """
    import os
    import traceback

    replies = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    from agent_core.pipeline.context import LocalLambdaContext
    from handlers.consumer import lambda_handler

    def warm_up() -> None:
        from agent_core.pipeline.clients import dynamodb_client, sqs_client
        from agent_core.pipeline.loader import get_runner
        from agent_core.settings import PipelineSettings

        get_runner(PipelineSettings())
        sqs_client()
        dynamodb_client()

    if args.get("warm"):
        warm_up()
    replies.write(json.dumps({"ready": True}) + "\n")
    # Threads the handler starts per invocation, from the interpreter's own audit event.
    started_threads = [0]

    def count_threads(event: str, _: tuple[Any, ...]) -> None:
        if event == "_thread.start_new_thread":
            started_threads[0] += 1

    sys.addaudithook(count_threads)
    invocations = 0
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        if "configure" in request:
            replies.write(json.dumps(configure(request["configure"], warm_up)) + "\n")
            continue
        context = LocalLambdaContext(
            function_name="ConsumerFunction", timeout_ms=int(request["remaining_ms"])
        )
        threads_before, began = started_threads[0], time.perf_counter()
        try:
            reply: dict[str, Any] = {"response": lambda_handler(request["event"], context)}
        except Exception as exc:
            reply = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
        reply["seconds"] = time.perf_counter() - began
        reply["threads"] = started_threads[0] - threads_before
        invocations += 1
        replies.write(json.dumps(reply) + "\n")
    return {"invocations": invocations, "peak_rss_mb": peak_rss_mb()}


# The path on the bench's moto server that answers with the AWS requests it has served.
COUNTS_PATH = "/__agentkit_bench__/counts"


class CountingApp:
    """WSGI middleware that counts AWS requests by ``service.Operation`` on the server side.

    Counting where the requests arrive sees every client of every process (the handlers' own,
    the consumer environments', the poller's) without touching the code that makes them.
    """

    def __init__(self, app: Any) -> None:
        import threading
        from collections import Counter

        self.app = app
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("PATH_INFO") == COUNTS_PATH:
            with self._lock:
                body = json.dumps(dict(self.counts)).encode()
            start_response("200 OK", [("Content-Type", "application/json")])
            return [body]
        # JSON protocols (DynamoDB, SQS since botocore 1.34) name the operation in X-Amz-Target:
        # "DynamoDB_20120810.PutItem", "AmazonSQS.SendMessageBatch".
        target = str(environ.get("HTTP_X_AMZ_TARGET", ""))
        prefix, _, operation = target.partition(".")
        service = {"DynamoDB_20120810": "dynamodb", "AmazonSQS": "sqs"}.get(prefix, prefix.lower())
        name = f"{service}.{operation}" if operation else "other"
        items = self._batched_items(environ, operation) if service == "dynamodb" else 0
        with self._lock:
            self.counts[name] += 1
            if items:
                self.counts[f"{name}#items"] += items
        return self.app(environ, start_response)

    @staticmethod
    def _batched_items(environ: dict[str, Any], operation: str) -> int:
        """Items in a DynamoDB batch or transaction (each is billed as its own request unit);
        the body is read and put back for moto."""
        if operation not in (
            "TransactWriteItems",
            "BatchWriteItem",
            "TransactGetItems",
            "BatchGetItem",
        ):
            return 0
        import io

        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        try:
            request = json.loads(body or b"{}")
        except ValueError:
            return 0
        if operation.startswith("Transact"):
            return len(request.get("TransactItems", []))
        tables = request.get("RequestItems", {}).values()
        if operation == "BatchWriteItem":
            return sum(len(requests) for requests in tables)
        return sum(len(table.get("Keys", [])) for table in tables)


def serve_moto(_: dict[str, Any]) -> dict[str, Any]:
    """A moto server in this process: prints its endpoint on stdout, serves until stdin closes.

    ``GET COUNTS_PATH`` answers with the requests served so far, by ``service.Operation``.
    """
    import logging

    from moto.moto_server.threaded_moto_server import ThreadedMotoServer
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    class CountingMotoServer(ThreadedMotoServer):
        def _server_entry(self) -> None:
            # ThreadedMotoServer's entry, with the dispatcher wrapped in the counter.
            app = CountingApp(DomainDispatcherApplication(create_backend_app))
            self._server = make_server(
                self._ip_address, self._port, app, True, request_handler=MotoRequestHandler
            )
            self._server_ready_event.set()
            self._server.serve_forever()

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = CountingMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    print(json.dumps({"endpoint_url": f"http://{host}:{port}"}), flush=True)
    sys.stdin.read()
    server.stop()
    return {}


MODES = {
    "import": run_import,
    "consume": run_consume,
    "per-task": run_per_task,
    "serve": serve,
    "moto": serve_moto,
}


def main(argv: list[str]) -> int:
    if argv and argv[0] in ("serve", "moto") and len(argv) <= 2:
        MODES[argv[0]]({"warm": argv[1:] == ["--warm"]})
        return 0
    if len(argv) != 3 or argv[0] not in MODES:
        print(
            f"usage: python -m infra.bench.worker {{{','.join(MODES)}}} IN.json OUT.json\n"
            "       python -m infra.bench.worker serve [--warm] | moto   (line protocol)"
        )
        return 2
    mode, source, target = argv
    result = MODES[mode](json.loads(Path(source).read_text()))
    Path(target).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
