"""The consumer with a non-vision agent never loads OpenCV, and numpy only as the SDK does.

encord's SDK imports numpy when it is installed (``encord.common.bitmask_operations`` prefers a
numpy implementation), so "no numpy at all" cannot hold in an environment that has it. What the
kit controls, and this test checks in a fresh interpreter that imports the consumer handler and
runs it on a real producer message: cv2 is never imported; every numpy module loaded is one that
``import encord.user_client`` alone loads; and the first import of numpy comes from encord, not
from agent_core, handlers or the agent.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from infra.emulator import Emulator
    from infra.localstack.moto import MotoServer

ROOT = Path(__file__).resolve().parents[2]
AGENT_MODULE = "infra.bench.agents_plain:save_priority"

# Records which module's code first asked for numpy: the first frame outside the import system.
PROBE = r"""
import importlib.abc, json, sys

first_importer = []

class _WhoImportsNumpy(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "numpy" and not first_importer:
            frame = sys._getframe(1)
            while frame is not None:
                module = frame.f_globals.get("__name__", "")
                if not module.startswith(("importlib", "_frozen_importlib")) and module != __name__:
                    first_importer.append(module)
                    break
                frame = frame.f_back
        return None

sys.meta_path.insert(0, _WhoImportsNumpy())
"""

INVOKE = (
    PROBE
    + r"""
from handlers.consumer import lambda_handler
from agent_core.pipeline.context import LocalLambdaContext

event = json.loads(sys.stdin.read())
response = lambda_handler(event, LocalLambdaContext(timeout_ms=60_000))
print("RESULT " + json.dumps({
    "response": response,
    "cv2": sorted(m for m in sys.modules if m == "cv2" or m.startswith("cv2.")),
    "numpy": sorted(m for m in sys.modules if m == "numpy" or m.startswith("numpy.")),
    "first_importer": first_importer[0] if first_importer else None,
}))
"""
)

SDK_ONLY = (
    PROBE
    + r"""
import encord.user_client
print("RESULT " + json.dumps({
    "numpy": sorted(m for m in sys.modules if m == "numpy" or m.startswith("numpy.")),
    "first_importer": first_importer[0] if first_importer else None,
}))
"""
)


def run_python(code: str, env: dict[str, str], stdin: str = "") -> dict[str, Any]:
    completed = subprocess.run(
        [sys.executable, "-c", code],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    line = next(x for x in completed.stdout.splitlines() if x.startswith("RESULT "))
    result: dict[str, Any] = json.loads(line.removeprefix("RESULT "))
    return result


def test_non_vision_consumer_loads_no_cv2_and_only_the_sdks_numpy(
    emulator: Emulator, bench_moto: MotoServer
) -> None:
    from infra.bench.common import project_spec, receive_events
    from infra.localstack.stack import LocalStack

    spec = project_spec("import-light", 3)
    with LocalStack(
        fixture=spec, agent_module=AGENT_MODULE, emulator=emulator, moto=bench_moto
    ) as stack:
        summary = stack.producer_tick()
        assert summary["totals"]["enqueued"] == 3
        event = receive_events(stack, 3, 3)[0]
        env = {**os.environ, **stack.cli_env()}
        env.pop("PYTHONPATH", None)
        kit = run_python(INVOKE, env, json.dumps(event))
        counts = emulator.state.stage_counts(stack.project_hash)

    # The invocation did the work: every task saved, prioritised and moved on.
    assert kit["response"] == {"batchItemFailures": []}
    assert counts == {"Agent 1": 0, "Complete": 3}

    assert kit["cv2"] == []
    sdk = run_python(SDK_ONLY, dict(os.environ))
    assert set(kit["numpy"]) <= set(sdk["numpy"]), sorted(set(kit["numpy"]) - set(sdk["numpy"]))
    if kit["numpy"]:
        # numpy is here only because encord asked for it (and encord alone asks for it too).
        assert kit["first_importer"].startswith("encord."), kit["first_importer"]
        assert sdk["first_importer"] == kit["first_importer"]


def test_x_ray_sdk_is_only_imported_when_tracing_is_on() -> None:
    """A disabled Powertools Tracer still imports aws_xray_sdk (~0.2 s, ~10 MB of cold start):
    the handlers create one only where Powertools would trace (in Lambda, not disabled)."""
    code = (
        "import json, sys\n"
        "import handlers.consumer, handlers.producer\n"
        "print('RESULT ' + json.dumps({'xray': 'aws_xray_sdk' in sys.modules, "
        "'traced': handlers.consumer.tracer is not None}))\n"
    )
    base = {k: v for k, v in os.environ.items() if k not in ("LAMBDA_TASK_ROOT", "AWS_SAM_LOCAL")}
    base.pop("POWERTOOLS_TRACE_DISABLED", None)
    outside_lambda = run_python(code, base)
    in_lambda = run_python(code, {**base, "LAMBDA_TASK_ROOT": str(ROOT)})
    disabled = run_python(
        code, {**base, "LAMBDA_TASK_ROOT": str(ROOT), "POWERTOOLS_TRACE_DISABLED": "true"}
    )
    assert outside_lambda == {"xray": False, "traced": False}
    assert in_lambda == {"xray": True, "traced": True}
    assert disabled == {"xray": False, "traced": False}
