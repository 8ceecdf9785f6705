"""Run the benchmark sections, print the table, write ``.bench/results.json``.

    from infra.bench.runner import run_bench
    from infra.bench.common import BenchOptions
    exit_code = run_bench(BenchOptions(), json_path=Path(".bench/results.json"))

``agentkit bench`` and ``scripts/bench`` are the command-line front ends.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import logging
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from infra.bench.common import SECTIONS, BenchContext, BenchOptions, Step
from infra.bench.results import Row, error_row, fmt_number, fmt_ratio, machine

if TYPE_CHECKING:
    from rich.console import Console

SECTION_MODULES = {
    "requests": "infra.bench.encord_requests",
    "producer": "infra.bench.producer",
    "throughput": "infra.bench.throughput",
    "coldstart": "infra.bench.coldstart",
    "memory": "infra.bench.memory",
    "package": "infra.bench.package",
    "peer": "infra.bench.peer",
}
SECTION_TITLES = {
    "requests": "1. Encord requests per task (consumer)",
    "producer": "2. Producer calls per 1,000 tasks",
    "throughput": "3. CPU per task and end-to-end throughput",
    "coldstart": "4. Cold start",
    "memory": "5. Peak memory with media",
    "package": "6. Lambda package sizes",
    "peer": "7. Against the released peer, encord-agents 0.2.10",
}
STATUS_STYLE = {"PASS": "green", "FAIL": "bold red", "ERROR": "bold red", "SKIPPED": "yellow"}


@dataclasses.dataclass
class BenchResult:
    rows: list[Row]
    section_seconds: dict[str, float]
    machine: dict[str, Any]
    options: BenchOptions
    started: float
    finished: float

    @property
    def failed(self) -> list[Row]:
        return [r for r in self.rows if r.status == "FAIL"]

    @property
    def errors(self) -> list[Row]:
        return [r for r in self.rows if r.status == "ERROR"]

    def exit_code(self, strict: bool) -> int:
        """1 when a measurement broke; with ``strict`` also when a target is missed."""
        if self.errors or (strict and self.failed):
            return 1
        return 0

    def as_dict(self, strict: bool) -> dict[str, Any]:
        return {
            "machine": self.machine,
            "options": dataclasses.asdict(self.options),
            "seconds": round(self.finished - self.started, 1),
            "section_seconds": {k: round(v, 1) for k, v in self.section_seconds.items()},
            "summary": {
                "rows": len(self.rows),
                "pass": sum(r.status == "PASS" for r in self.rows),
                "fail": len(self.failed),
                "error": len(self.errors),
            },
            "exit_code": self.exit_code(strict),
            "rows": [r.as_dict() for r in self.rows],
        }


def run_sections(
    options: BenchOptions, *, progress: Callable[[str], None] | None = None
) -> BenchResult:
    """Run every section of ``options.sections``; a section that raises becomes an ERROR row."""
    # The handlers log through Powertools at WARNING in the local stack; the SDK and urllib3 would
    # otherwise print every retry of an injected fault.
    for name in ("encord", "urllib3", "botocore", "werkzeug"):
        logging.getLogger(name).setLevel(logging.ERROR)
    step = Step(progress)
    started = time.time()
    rows: list[Row] = []
    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="agentkit-bench-") as scratch:
        ctx = BenchContext(options, Path(scratch))
        try:
            for section in options.sections:
                if section not in SECTION_MODULES:
                    raise ValueError(f"unknown section {section!r}; choose from {SECTIONS}")
                began = time.perf_counter()
                step(SECTION_TITLES[section])
                try:
                    module = importlib.import_module(SECTION_MODULES[section])
                    rows.extend(module.run(ctx, step))
                except Exception as exc:
                    rows.append(error_row(section, SECTION_TITLES[section], exc))
                seconds[section] = time.perf_counter() - began
        finally:
            ctx.close()
    return BenchResult(rows, seconds, machine(), options, started, time.time())


def render(result: BenchResult, console: Console) -> None:
    from rich.table import Table

    info = result.machine
    table = Table(
        title="agentkit bench",
        caption=(
            f"{info['date']}; {info['nproc']} CPUs, {info['memory_gb']} GB, Python "
            f"{info['python']}; load average {info['load_average']}; "
            f"{result.finished - result.started:.0f} s. Ratio = kit / baseline."
        ),
        show_lines=False,
        expand=False,
    )
    table.add_column("metric", overflow="fold", max_width=70)
    table.add_column("unit", no_wrap=True)
    table.add_column("kit", justify="right", no_wrap=True)
    table.add_column("baseline", justify="right", no_wrap=True)
    table.add_column("ratio", justify="right", no_wrap=True)
    table.add_column("target", no_wrap=True)
    table.add_column("result", no_wrap=True)
    current = None
    for row in result.rows:
        if row.section != current:
            if current is not None:
                table.add_section()
            current = row.section
        status = row.status
        style = STATUS_STYLE.get(status, "")
        table.add_row(
            row.metric if row.error is None else f"{row.metric}: {row.error}",
            row.unit,
            fmt_number(row.kit),
            fmt_number(row.baseline),
            fmt_ratio(row.ratio),
            row.target.describe() if row.target else "",
            f"[{style}]{status}[/]" if style else status,
        )
    console.print(table)
    notes = _notes(result.rows)
    if notes:
        console.print("Baselines and notes:")
        for line in notes:
            console.print(f"  {line}", highlight=False)
    summary = (
        f"{sum(r.status == 'PASS' for r in result.rows)} passed, {len(result.failed)} failed, "
        f"{len(result.errors)} errors"
    )
    console.print(summary, style="bold red" if result.failed or result.errors else "bold green")


def _notes(rows: list[Row]) -> list[str]:
    """Each section's distinct baselines and notes, once each, naming the rows they belong to."""
    lines: list[str] = []
    seen: dict[str, list[str]] = {}
    for row in rows:
        texts = [f"baseline = {row.baseline_label}" if row.baseline_label else "", row.note]
        for text in filter(None, texts):
            seen.setdefault(f"{row.section}\0{text}", []).append(row.key)
    for marker, keys in seen.items():
        section, text = marker.split("\0", 1)
        where = keys[0] if len(keys) == 1 else f"{keys[0]} (+{len(keys) - 1} more)"
        lines.append(f"[{section}] {where}: {text}")
    return lines


def run_bench(
    options: BenchOptions,
    *,
    json_path: Path | None,
    strict: bool = False,
    console: Console | None = None,
    show_progress: bool = True,
) -> int:
    """Run, print the table and write the JSON; returns the exit code."""
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    out = console or Console(width=None if sys.stdout.isatty() else 160)
    if show_progress:
        with Progress(
            SpinnerColumn(),
            TextColumn("[bold]bench[/]"),
            TimeElapsedColumn(),
            TextColumn("{task.description}"),
            console=Console(stderr=True),
            transient=True,
        ) as bar:
            task = bar.add_task("starting", total=None)
            result = run_sections(options, progress=lambda text: bar.update(task, description=text))
    else:
        result = run_sections(options)
    render(result, out)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(result.as_dict(strict), indent=2, default=str) + "\n")
        out.print(f"results written to {json_path}")
    return result.exit_code(strict)
