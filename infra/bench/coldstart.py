"""4. Cold start: importing the consumer handler and the agent in a fresh interpreter.

Each measurement is a new interpreter (``worker import``) that times the import of the handler
plus the agent module named by AGENT_MODULE (what a Lambda execution environment loads before its
first batch) and reports its peak RSS. The baseline is the import the agent cannot do without:
``encord.user_client``, plus numpy and cv2 for an agent that uses them. Runs alternate between
kit and baseline (drift on a shared machine hits both) and the medians are compared.

The kit runs as it does outside a traced Lambda: a Powertools Tracer is only created when tracing
is on (``agent_core.pipeline.observability.tracing_enabled``). With X-Ray active (the template's
``Tracing: Active``), aws_xray_sdk is imported as well; that case is measured as information.
"""

from __future__ import annotations

import statistics
import tempfile
from collections.abc import Callable
from typing import Any

from infra.bench.common import REPO, BenchContext, Step, run_worker, worker_env
from infra.bench.results import Row, Target

SECTION = "4 cold start"
RATIO_TARGET = Target("ratio_max", 1.10)

PLAIN_AGENT = "infra.bench.agents_plain"
VISION_AGENT = "infra.bench.agents_vision"

# What the handler imports in its first invocation, beyond the agent: boto3 for the DLQ and the
# lease table, and Powertools' batch processor.
FIRST_EVENT_MODULES = [
    "agent_core.pipeline.clients",
    "boto3",
    "aws_lambda_powertools.utilities.batch",
    "agent_core.queue_runner",
]


def _env(*, traced: bool, pycache: str | None) -> dict[str, str]:
    """The worker's environment: LAMBDA_TASK_ROOT makes Powertools trace; ``pycache`` (an empty
    directory) with PYTHONDONTWRITEBYTECODE makes every module compile from source, as in a
    package shipped without bytecode on Lambda's read-only /var/task."""
    return worker_env(
        POWERTOOLS_TRACE_DISABLED=None,
        LAMBDA_TASK_ROOT=str(REPO) if traced else None,
        AWS_SAM_LOCAL=None,
        AWS_REGION="us-east-1",
        AWS_DEFAULT_REGION="us-east-1",
        PYTHONPYCACHEPREFIX=pycache,
        PYTHONDONTWRITEBYTECODE="1" if pycache else None,
    )


CASES: dict[str, dict[str, Any]] = {
    "encord": {"modules": ["encord.user_client"], "traced": False},
    "plain": {"modules": ["handlers.consumer", PLAIN_AGENT], "traced": False},
    "plain_traced": {"modules": ["handlers.consumer", PLAIN_AGENT], "traced": True},
    "plain_first_event": {
        "modules": ["handlers.consumer", PLAIN_AGENT, *FIRST_EVENT_MODULES],
        "traced": False,
    },
    "encord_vision": {"modules": ["encord.user_client", "numpy", "cv2"], "traced": False},
    "vision": {"modules": ["handlers.consumer", VISION_AGENT], "traced": False},
    "encord_source": {"modules": ["encord.user_client"], "traced": False, "pycache": False},
    "plain_source": {"modules": ["handlers.consumer", PLAIN_AGENT], "traced": False, "pycache": False},
}


def measure(runs: int, step: Step, measure_one: Callable[[str], dict[str, Any]] | None = None) -> dict[str, Any]:
    """``runs`` fresh imports of every case, interleaved; the samples of each case."""

    def default(case: str) -> dict[str, Any]:
        spec = CASES[case]
        with tempfile.TemporaryDirectory(prefix="agentkit-bench-pycache-") as empty:
            env = _env(traced=spec["traced"], pycache=None if spec.get("pycache", True) else empty)
            return run_worker("import", {"modules": spec["modules"]}, env=env, timeout=120)

    one = measure_one or default
    samples: dict[str, list[dict[str, Any]]] = {case: [] for case in CASES}
    order = list(CASES)
    for index in range(runs):
        step(f"cold start: round {index + 1} of {runs} ({len(order)} fresh interpreters)")
        # Reverse every other round, so that no case always runs right after the same neighbour.
        for case in order if index % 2 == 0 else reversed(order):
            samples[case].append(one(case))
    return samples


def _median(samples: list[dict[str, Any]], key: str, scale: float = 1.0) -> float:
    return statistics.median(s[key] for s in samples) * scale


def run(ctx: BenchContext, step: Step) -> list[Row]:
    samples = measure(ctx.options.cold_runs, step)
    runs = ctx.options.cold_runs
    for case, spec in CASES.items():
        if case.startswith("plain") and any(s["cv2"] or s["numpy"] for s in samples[case]):
            # Only encord itself may bring numpy in; the kit never does (see test_import_light).
            encord_numpy = any(s["numpy"] for s in samples["encord"])
            if any(s["cv2"] for s in samples[case]) or not encord_numpy:
                raise RuntimeError(f"{spec['modules']} imported numpy or cv2")
    rows: list[Row] = []

    def pair(key: str, label: str, kit: str, base: str, base_label: str, target: bool, note: str) -> None:
        detail = {"kit_samples": samples[kit], "baseline_samples": samples[base], "runs": runs}
        rows.append(
            Row(
                section=SECTION,
                key=f"coldstart.{key}.wall_ms",
                metric=f"Cold import, {label}: wall time (median of {runs})",
                unit="ms",
                kit=_median(samples[kit], "seconds", 1000),
                baseline=_median(samples[base], "seconds", 1000),
                baseline_label=base_label,
                target=RATIO_TARGET if target else None,
                note=note,
                details=detail,
            )
        )
        rows.append(
            Row(
                section=SECTION,
                key=f"coldstart.{key}.peak_mb",
                metric=f"Cold import, {label}: peak RSS (median of {runs})",
                unit="MB",
                kit=_median(samples[kit], "peak_rss_mb"),
                baseline=_median(samples[base], "peak_rss_mb"),
                baseline_label=base_label,
                target=RATIO_TARGET if target else None,
                note=note,
            )
        )

    pair("plain", "non-vision agent", "plain", "encord", "import encord.user_client", True, "")
    pair(
        "vision",
        "vision agent",
        "vision",
        "encord_vision",
        "import encord.user_client, numpy, cv2",
        True,
        "the agent imports numpy and cv2 itself",
    )
    pair(
        "plain_traced",
        "non-vision agent, X-Ray tracing on",
        "plain_traced",
        "encord",
        "import encord.user_client",
        False,
        "Tracing: Active imports aws_xray_sdk (its recorder builds two botocore clients)",
    )
    pair(
        "plain_source",
        "non-vision agent, no bytecode cache",
        "plain_source",
        "encord_source",
        "import encord.user_client, no bytecode cache",
        False,
        "every module compiled from source, as from a package shipped without .pyc files",
    )
    pair(
        "plain_first_event",
        "non-vision agent + what the first event imports",
        "plain_first_event",
        "encord",
        "import encord.user_client",
        False,
        "boto3 (DLQ, leases) and Powertools' batch processor, loaded with the first batch",
    )
    return rows
