"""``agentkit bench``: the kit's costs measured side by side with the obvious alternatives.

Runs the sections of infra/bench (Encord requests per task, producer calls, CPU and throughput,
cold start, memory with media, Lambda package sizes, and against the released encord-agents 0.2.10
in its own environment) on the local emulator and a moto server,
prints one table and writes it as JSON. Method and last results: BENCHMARKS.md.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from agent_core.exceptions import ConfigurationError

if TYPE_CHECKING:
    from infra.bench.common import BenchOptions

# infra.bench.common.SECTIONS, repeated so that `agentkit --help` does not import infra.
SECTIONS = ("requests", "producer", "throughput", "coldstart", "memory", "package", "peer")


def _options(
    quick: bool, sections: list[str], skip: list[str], sizes: dict[str, Any]
) -> BenchOptions:
    from infra.bench.common import BenchOptions

    chosen = [s for s in (sections or list(SECTIONS)) if s not in skip]
    unknown = sorted((set(chosen) | set(skip)) - set(SECTIONS))
    if unknown:
        raise ConfigurationError(
            f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}"
        )
    if not chosen:
        raise ConfigurationError("every section is skipped: nothing to run")
    base = BenchOptions.quick() if quick else BenchOptions()
    changes: dict[str, Any] = {k: v for k, v in sizes.items() if v is not None}
    if "model_ms" in changes:
        changes["model_ms"] = tuple(changes["model_ms"]) or base.model_ms
    for name, value in changes.items():
        if isinstance(value, int | float) and not isinstance(value, bool) and value <= 0:
            raise ConfigurationError(f"--{name.replace('_', '-')} must be > 0, got {value}")
    if any(m <= 0 for m in changes.get("model_ms", ())):
        raise ConfigurationError("--model-ms values must be > 0")
    if "video_seconds" in changes:
        # The short video shows that memory does not grow with the length: keep it shorter.
        changes["short_video_seconds"] = changes["video_seconds"] / 3
    return dataclasses.replace(base, sections=tuple(chosen), **changes)


def bench(
    section: list[str] = typer.Option(
        [], "--section", "-s", help=f"Run only these sections (repeat): {', '.join(SECTIONS)}."
    ),
    skip: list[str] = typer.Option([], "--skip", help="Leave these sections out (repeat)."),
    quick: bool = typer.Option(
        False, "--quick", help="Tiny sizes: a smoke run of every section in about a minute."
    ),
    producer_tasks: int | None = typer.Option(
        None, help="Tasks the producer enqueues (default 1000)."
    ),
    e2e_tasks: int | None = typer.Option(None, help="Tasks of the throughput run (default 200)."),
    latency_ms: float | None = typer.Option(
        None, help="Latency injected on every Encord route in the throughput run (default 20)."
    ),
    model_ms: list[float] = typer.Option(
        [],
        "--model-ms",
        help="Model-call time per task of the throughput run (repeat; default 200 and 50; the "
        "3x target applies to the first).",
    ),
    cpu_batches: int | None = typer.Option(
        None, help="Warm batches of 10 timed for CPU (default 5)."
    ),
    cold_runs: int | None = typer.Option(
        None, help="Fresh interpreters per cold-start case (default 5)."
    ),
    image_count: int | None = typer.Option(None, help="Images in the memory batch (default 10)."),
    video_seconds: float | None = typer.Option(None, help="Length of the long video (default 30)."),
    json_path: Path = typer.Option(
        Path(".bench/results.json"), "--json", help="Where to write the results as JSON."
    ),
    plot: Path | None = typer.Option(
        None,
        "--plot",
        help="Draw the peer section's figure (tasks/s and requests/task) to this PNG.",
    ),
    peer_repeats: int | None = typer.Option(
        None,
        help="Runs per throughput figure of the peer section, the median reported (default 3).",
    ),
    strict: bool = typer.Option(
        False, "--strict", help="Exit with status 1 if a target is missed."
    ),
) -> None:
    """Measure requests, AWS calls, CPU, throughput, cold start, memory and package sizes."""
    from infra.bench.runner import run_bench

    options = _options(
        quick,
        section,
        skip,
        {
            "producer_tasks": producer_tasks,
            "e2e_tasks": e2e_tasks,
            "latency_ms": latency_ms,
            "model_ms": model_ms or None,
            "cpu_batches": cpu_batches,
            "cold_runs": cold_runs,
            "image_count": image_count,
            "video_seconds": video_seconds,
            "peer_repeats": peer_repeats,
            "plot_path": plot,
        },
    )
    code = run_bench(options, json_path=json_path, strict=strict)
    if code:
        raise typer.Exit(code)
