"""4. Cold start: importing the consumer handler and the agent in a fresh interpreter.

Each sample is a new interpreter (``worker import``) that times the import of the handler plus
the agent module named by AGENT_MODULE (what a Lambda execution environment loads before its first
batch: wall and CPU time) and reports its peak RSS (VmHWM). The baseline is the import the agent
cannot do without: ``encord.user_client``, plus numpy and cv2 for an agent that uses them.

A shared machine makes wall times swing by a fifth from one interpreter to the next, so kit and
baseline run as adjacent pairs (their order alternating between rounds), and the ratio is the
median of the per-pair ratios; the kit and baseline columns are the medians of each.

The kit runs as outside a traced Lambda: a Powertools Tracer is only created when tracing is on
(``agent_core.pipeline.observability.tracing_enabled``). With X-Ray active (the template's
``Tracing: Active``) aws_xray_sdk is imported too; that case, a package without bytecode caches
and the imports of the first invocation are measured as information.
"""

from __future__ import annotations

import statistics
import tempfile
from dataclasses import dataclass
from typing import Any

from infra.bench.common import REPO, BenchContext, BenchError, Step, run_worker, worker_env
from infra.bench.results import Row, Target

SECTION = "4 cold start"
RATIO_TARGET = Target("ratio_max", 1.10)

PLAIN_AGENT = "infra.bench.agents_plain"
VISION_AGENT = "infra.bench.agents_vision"
HANDLER = "handlers.consumer"

# What the handler imports in its first invocation, beyond the agent: boto3 for the DLQ and the
# lease table, and Powertools' batch processor.
FIRST_EVENT_MODULES = (
    "agent_core.pipeline.clients",
    "boto3",
    "aws_lambda_powertools.utilities.batch",
    "agent_core.queue_runner",
)


@dataclass(frozen=True)
class Case:
    modules: tuple[str, ...]
    traced: bool = False
    bytecode: bool = True  # False: compile every module from source (no .pyc available)


@dataclass(frozen=True)
class Pair:
    key: str
    label: str
    kit: Case
    baseline: Case
    baseline_label: str
    target: bool
    note: str = ""


ENCORD = Case(("encord.user_client",))
PAIRS = (
    Pair("plain", "non-vision agent", Case((HANDLER, PLAIN_AGENT)), ENCORD,
         "import encord.user_client", target=True),
    Pair("vision", "vision agent", Case((HANDLER, VISION_AGENT)),
         Case(("encord.user_client", "numpy", "cv2")), "import encord.user_client, numpy, cv2",
         target=True, note="the agent imports numpy and cv2 itself"),
    Pair("plain_traced", "non-vision agent, X-Ray tracing on",
         Case((HANDLER, PLAIN_AGENT), traced=True), ENCORD, "import encord.user_client",
         target=False,
         note="Tracing: Active imports aws_xray_sdk, whose recorder builds two botocore clients"),
    Pair("plain_source", "non-vision agent, no bytecode cache",
         Case((HANDLER, PLAIN_AGENT), bytecode=False), Case(("encord.user_client",), bytecode=False),
         "import encord.user_client, no bytecode cache", target=False,
         note="every module compiled from source, as from a package shipped without .pyc files"),
    Pair("plain_first_event", "non-vision agent + what the first event imports",
         Case((HANDLER, PLAIN_AGENT, *FIRST_EVENT_MODULES)), ENCORD, "import encord.user_client",
         target=False, note="boto3 (DLQ, leases) and Powertools' batch processor"),
)  # fmt: skip


def measure_case(case: Case) -> dict[str, Any]:
    """One fresh interpreter importing the modules of ``case``."""
    with tempfile.TemporaryDirectory(prefix="agentkit-bench-pycache-") as empty:
        env = worker_env(
            POWERTOOLS_TRACE_DISABLED=None,
            # Powertools traces only where LAMBDA_TASK_ROOT is set (in Lambda).
            LAMBDA_TASK_ROOT=str(REPO) if case.traced else None,
            AWS_SAM_LOCAL=None,
            AWS_REGION="us-east-1",
            AWS_DEFAULT_REGION="us-east-1",
            # An empty cache folder that nothing is written to: every module compiles.
            PYTHONPYCACHEPREFIX=None if case.bytecode else empty,
            PYTHONDONTWRITEBYTECODE=None if case.bytecode else "1",
        )
        return run_worker("import", {"modules": list(case.modules)}, env=env, timeout=120)


def measure(
    runs: int, step: Step, pairs: tuple[Pair, ...] = PAIRS
) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """``runs`` rounds; in each, every pair's kit and baseline run back to back."""
    samples: dict[str, dict[str, list[dict[str, Any]]]] = {
        pair.key: {"kit": [], "baseline": []} for pair in pairs
    }
    for index in range(runs):
        step(f"cold start: round {index + 1} of {runs} ({2 * len(pairs)} fresh interpreters)")
        for pair in pairs:
            sides = ("kit", "baseline") if index % 2 == 0 else ("baseline", "kit")
            for side in sides:
                samples[pair.key][side].append(measure_case(getattr(pair, side)))
    return samples


def _median(samples: list[dict[str, Any]], key: str, scale: float = 1.0) -> float:
    return float(statistics.median(s[key] for s in samples)) * scale


def _paired_ratio(kit: list[dict[str, Any]], base: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(k[key] / b[key] for k, b in zip(kit, base, strict=True)))


def _row(pair: Pair, kit: list[dict[str, Any]], base: list[dict[str, Any]], what: str) -> Row:
    key, unit, scale, label = {
        "wall": ("seconds", "ms", 1000.0, "wall time"),
        "cpu": ("cpu_seconds", "ms", 1000.0, "CPU time"),
        "rss": ("peak_rss_mb", "MB", 1.0, "peak RSS"),
    }[what]
    return Row(
        section=SECTION,
        key=f"coldstart.{pair.key}.{what}",
        metric=f"Cold import, {pair.label}: {label} (median of {len(kit)})",
        unit=unit,
        kit=_median(kit, key, scale),
        baseline=_median(base, key, scale),
        baseline_label=pair.baseline_label,
        target=RATIO_TARGET if pair.target and what != "cpu" else None,
        note="; ".join(x for x in (pair.note, "ratio: median of paired runs") if x),
        details={"kit_samples": kit, "baseline_samples": base} if what == "wall" else {},
        measured_ratio=_paired_ratio(kit, base, key),
    )


def run(ctx: BenchContext, step: Step) -> list[Row]:
    wanted = ctx.options.cold_pairs
    unknown = set(wanted) - {pair.key for pair in PAIRS}
    if unknown:
        raise BenchError(f"unknown cold-start pairs {sorted(unknown)}")
    pairs = tuple(pair for pair in PAIRS if not wanted or pair.key in wanted)
    samples = measure(ctx.options.cold_runs, step, pairs)
    for pair in pairs:
        if pair.key.startswith("plain"):
            # A non-vision agent never loads OpenCV, nor numpy unless the SDK itself does (its
            # baseline, import encord.user_client, shows whether it does here).
            sdk_numpy = any(s["numpy"] for s in samples[pair.key]["baseline"])
            for sample in samples[pair.key]["kit"]:
                if sample["cv2"] or (sample["numpy"] and not sdk_numpy):
                    raise BenchError(f"{pair.kit.modules} imported numpy or cv2: {sample}")
        if pair.key == "plain" and any(s["aws_xray_sdk"] for s in samples[pair.key]["kit"]):
            raise BenchError("the consumer imported aws_xray_sdk with tracing off")
    rows: list[Row] = []
    for pair in pairs:
        kit, base = samples[pair.key]["kit"], samples[pair.key]["baseline"]
        whats = ("wall", "rss", "cpu") if pair.target else ("wall", "rss")
        rows += [_row(pair, kit, base, what) for what in whats]
    return rows
