"""Smoke test of ``agentkit bench``: every section at tiny size, in one run.

Checks that each section but the peer's (tests/bench/test_peer.py) produces well-formed rows (finite numbers, a verdict for every target,
no errors), that the JSON written with the table round-trips, and that the targets that do not
depend on size hold: (b) label row at batch 10 needs at most 0.2 Encord requests per task, the
producer makes at most a tenth of the per-message SQS calls, peak memory stays under 300 MB, the
consumer's import adds at most 10% peak memory over the SDK's, and the producer package fits its
budget. Throughput and wall times are only checked for shape: at this size they measure noise.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from infra.bench.results import Row
    from infra.bench.runner import BenchResult


@pytest.fixture(scope="module")
def result() -> BenchResult:
    from infra.bench.common import SECTIONS, BenchOptions
    from infra.bench.runner import run_sections

    # The peer section installs encord-agents on first use: tests/bench/test_peer.py covers it.
    return run_sections(BenchOptions.quick(sections=tuple(s for s in SECTIONS if s != "peer")))


def by_key(result: BenchResult) -> dict[str, Row]:
    return {row.key: row for row in result.rows}


def test_every_section_produces_well_formed_rows(result: BenchResult) -> None:
    errors = [f"{r.key}: {r.error}" for r in result.rows if r.status == "ERROR"]
    assert not errors, errors
    sections = {row.section.split()[1] for row in result.rows}
    assert sections == {"requests", "producer", "throughput", "cold", "memory", "package"}
    for row in result.rows:
        if row.skipped:
            continue
        assert row.kit is not None and math.isfinite(row.kit) and row.kit >= 0, row
        if row.baseline is not None:
            assert math.isfinite(row.baseline) and row.baseline >= 0, row
        if row.target is not None:
            assert row.status in ("PASS", "FAIL"), row
    assert len({row.key for row in result.rows}) == len(result.rows)


def test_size_independent_targets_hold(result: BenchResult) -> None:
    rows = by_key(result)
    label_row = rows["requests.label_row.batch10.warm"]
    assert label_row.kit is not None and label_row.kit <= 0.2
    assert label_row.status == "PASS"
    # One task at a time: list the row, initialise it, proceed.
    assert label_row.baseline == 3.0
    # A cold invocation also fetches the project and its ontology.
    assert (
        rows["requests.label_row.batch1.cold"].kit == rows["requests.label_row.batch1.warm"].kit + 2
    )  # type: ignore[operator]

    sqs = rows["producer.sqs_calls"]
    assert sqs.ratio is not None and sqs.ratio <= 0.1 and sqs.status == "PASS"

    for key in ("memory.images_batch", "memory.video_long"):
        assert rows[key].status == "PASS", rows[key]
    assert rows["coldstart.plain.rss"].status == "PASS", rows["coldstart.plain.rss"]

    package = rows["package.lean"]
    assert package.skipped or package.status == "PASS", package


def test_throughput_rows_compare_like_with_like(result: BenchResult) -> None:
    rows = by_key(result)
    e2e = next(r for k, r in rows.items() if k.startswith("throughput.end_to_end."))
    assert e2e.kit and e2e.baseline and e2e.target is not None
    details = e2e.details
    assert details["poller"]["deleted"] == details["producer_totals"]["enqueued"]
    assert sum(details["invocations_per_environment"]) == details["poller"]["invocations"]
    cpu = rows["throughput.consumer_cpu_ms_per_task"]
    assert cpu.kit and cpu.baseline


def test_results_json_round_trips(result: BenchResult, tmp_path: Path) -> None:
    data = result.as_dict(strict=True)
    path = tmp_path / "results.json"
    path.write_text(json.dumps(data, default=str))
    loaded = json.loads(path.read_text())
    assert loaded["summary"]["rows"] == len(result.rows)
    assert {r["key"] for r in loaded["rows"]} == {r.key for r in result.rows}
    assert loaded["machine"]["nproc"] >= 1
    failed = [r for r in loaded["rows"] if r["status"] == "FAIL"]
    assert loaded["exit_code"] == (1 if failed else 0)


def test_cli_sections_match_the_bench() -> None:
    from infra.bench.common import SECTIONS
    from infra.bench.runner import SECTION_MODULES
    from infra.commands.bench import SECTIONS as CLI_SECTIONS

    assert CLI_SECTIONS == SECTIONS == tuple(SECTION_MODULES)
