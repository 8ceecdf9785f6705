"""The peer section of BENCHMARKS.md, rendered from results files:

    python -m infra.bench.report .bench/results.json [--before .bench/before.json]

prints Markdown: the comparison with encord-agents 0.2.10 (our figure, the peer's, the ratio and
the issue's target for every row; with ``--before``, the earlier figure beside it), the batch-size
table, the producer tick's timeline and the cost of 100,000 tasks.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from infra.bench.results import fmt_number, fmt_ratio


def _rows(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["key"]: r for r in results["rows"] if r["key"].startswith("peer.")}


def _measured(results: dict[str, Any]) -> dict[str, Any]:
    from infra.bench.plot import measured

    return measured(results)


def _cell(row: dict[str, Any] | None, field: str = "kit") -> str:
    return "-" if row is None else fmt_number(row.get(field))


def comparison(after: dict[str, Any], before: dict[str, Any] | None) -> list[str]:
    rows, old = _rows(after), _rows(before) if before else {}
    head = "| figure | peer | ours" + (" before | ours after" if before else "")
    lines = [
        head + " | ratio (ours ÷ peer) | goal | met |",
        "| --- | ---: | ---:" + (" | ---:" if before else "") + " | ---: | --- | --- |",
    ]
    for key, row in rows.items():
        if key.startswith(("peer.batch", "peer.producer_tick", "peer.cost")):
            continue
        peer = row.get("baseline_label") or ""
        metric = row["metric"]
        if peer and "Tasks/s" not in metric:
            metric += f" vs {peer.replace('encord-agents 0.2.10 ', '')}"
        cells = [metric, _cell(row, "baseline")]
        if before:
            cells.append(_cell(old.get(key)))
        cells += [
            _cell(row),
            fmt_ratio(row.get("ratio")),
            row.get("target") or "",
            {"PASS": "yes", "FAIL": "**no**"}.get(row["status"], row["status"]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def threads_and_calls(after: dict[str, Any], before: dict[str, Any] | None) -> list[str]:
    """DynamoDB calls per task by operation, and consumer threads per batch, before and after."""
    lines = ["| | " + ("before | after |" if before else "measured |"), "| --- | ---: |"]
    if before:
        lines[1] += " ---: |"
    runs = [r for r in (before, after) if r is not None]

    def calls(results: dict[str, Any]) -> dict[str, float]:
        data = _measured(results)
        template = data["template"]
        kind = "label_row" if "label_row" in data["requests"] else next(iter(data["requests"]))
        kit = data["requests"][kind]["kit"][str(template["batch_size"])]
        out: dict[str, float] = {}
        for phase in ("producer", "consumer"):
            for name, n in kit[f"{phase}_aws"]["calls"].items():
                if name.startswith("dynamodb.") and "#" not in name:
                    out[f"{phase}: {name}"] = n / data["requests"][kind]["peer"]["runner"]["tasks"]
        grid = data["throughput"]["by_model"]
        for model, entry in grid.items():
            conc = str(template["concurrency"])
            out[f"consumer threads started per batch ({model} ms, concurrency {conc})"] = entry[
                "kit"
            ][conc]["threads_per_invocation"]
        return out

    tables = [calls(r) for r in runs]
    for key in dict.fromkeys(k for t in tables for k in t):
        lines.append(f"| {key} | " + " | ".join(fmt_number(t.get(key, 0.0)) for t in tables) + " |")
    return lines


def batches(results: dict[str, Any]) -> list[str]:
    data = _measured(results)
    lines = [
        "The consumers alone: an untimed producer tick fills the queue, then the consumers drain "
        "it at the template's concurrency.",
        "",
        "| batch | window s | model ms | tasks | tasks/s | Encord req/task | DynamoDB calls/task "
        "| handler s/invocation | invocations |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for run in sorted(data["batches"], key=lambda r: (r["model_ms"], r["batch_size"])):
        lines.append(
            f"| {run['batch_size']} | {run['window_seconds']:g} | {run['model_ms']:g} | "
            f"{run['tasks']} | {fmt_number(run['tasks_per_second'])} | "
            f"{run['encord_per_task']:.3f} | {run['aws']['dynamodb_calls_per_task']:.2f} | "
            f"{run['handler_seconds_per_invocation']:.1f} | {run['invocations']} |"
        )
    return lines


def timeline(results: dict[str, Any], top: int = 10) -> list[str]:
    data = _measured(results)["timeline"]
    lines = [
        f"Tick of {data['tasks']} tasks: {data['seconds']:.2f} s.",
        "",
        "| operation | calls | summed s | share of the tick busy | first start s | last end s "
        "| threads |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for op, v in list(data["by_operation"].items())[:top]:
        lines.append(
            f"| {op} | {v['count']} | {v['seconds']:.2f} | {100 * v['busy_fraction']:.0f}% | "
            f"{v['first_start']:.2f} | {v['last_end']:.2f} | {v['threads']} |"
        )
    return lines


def cost(results: dict[str, Any]) -> list[str]:
    row = _rows(results)["peer.cost_100k"]
    model = row["details"]
    kit, peer = model["kit"], model["peer"]
    names: dict[str, tuple[str, Callable[[float], str]]] = {
        "lambda_gb_seconds": ("Lambda GB-seconds (consumer + producer)", lambda q: f"{q:,.0f}"),
        "lambda_requests": ("Lambda requests (consumer batches)", lambda q: f"{q:,.0f}"),
        "sqs_requests": ("SQS requests (handlers + event-source mapping)", lambda q: f"{q:,.0f}"),
        "dynamodb_write_units": ("DynamoDB write request units", lambda q: f"{q:,.0f}"),
        "dynamodb_read_units": ("DynamoDB read request units", lambda q: f"{q:,.0f}"),
    }
    lines = [
        f"{model['tasks']:,} tasks, {model['model_ms']:g} ms model call per task, us-east-1 "
        "on-demand prices, free tiers left out.",
        "",
        "| item | quantity | USD |",
        "| --- | ---: | ---: |",
    ]
    for name, line in kit["lines"].items():
        label, fmt = names[name]
        lines.append(f"| {label} | {fmt(line['quantity'])} | {line['usd']:.4f} |")
    lines += [
        f"| **kit total** | | **{kit['total_usd']:.2f}** |",
        f"| Encord requests, kit | {kit['encord_requests']:,.0f} | - |",
        f"| peer Runner on one {peer['instance']}: {peer['hours']:.1f} h at "
        f"{peer['tasks_per_second']:.2f} tasks/s | {peer['hours']:.1f} h | "
        f"{peer['usd_for_the_run']:.2f} |",
        f"| peer instance always on, per month | 730 h | {peer['usd_per_month']:.2f} |",
        f"| Encord requests, peer Runner | {peer['encord_requests']:,.0f} | - |",
        "",
        "Prices: "
        + "; ".join(
            f"{p['unit']} {p['usd']:.10g} USD ({p['source']})" for p in model["prices"].values()
        ),
    ]
    return lines


def render(after: dict[str, Any], before: dict[str, Any] | None = None) -> str:
    sections = [
        ("Comparison", comparison(after, before)),
        ("DynamoDB calls per task and threads per batch", threads_and_calls(after, before)),
        ("Consumer batch size", batches(after)),
        ("The producer tick's timeline" + (" (after)" if before else ""), timeline(after)),
    ]
    if before:
        sections.append(("The producer tick's timeline (before)", timeline(before)))
    sections.append(("Cost of 100,000 tasks", cost(after)))
    out: list[str] = []
    for title, lines in sections:
        out += [f"#### {title}", "", *lines, ""]
    return "\n".join(out)


def main(argv: list[str]) -> int:
    if not argv or len(argv) not in (1, 3) or (len(argv) == 3 and argv[1] != "--before"):
        print("usage: python -m infra.bench.report RESULTS.json [--before BEFORE.json]")
        return 2
    after = json.loads(Path(argv[0]).read_text())
    before = json.loads(Path(argv[2]).read_text()) if len(argv) == 3 else None
    print(render(after, before))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
