"""The peer section's figure: tasks/s and requests/task against model time and batch size.

    python -m infra.bench.plot .bench/results.json docs/bench-peer.png

draws it from a results file (``agentkit bench --plot PATH`` draws it at the end of a run).
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any


def plot(data: dict[str, Any], path: Path) -> Path:
    """Write the figure for the peer section's measurements ``data`` to ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = data["throughput"]
    models = sorted(grid["by_model"].values(), key=lambda e: e["model_ms"])
    batches = data["batches"]
    figure, axes = plt.subplots(2, 2, figsize=(11, 8))
    figure.suptitle(
        "agentkit vs encord-agents 0.2.10 on the emulator (20 ms per Encord request), "
        f"median of {max(len(e['peer_runs']) for e in models)}",
        fontsize=11,
    )

    ax = axes[0][0]
    xs = [e["model_ms"] for e in models]
    for concurrency in grid["concurrencies"]:
        ys = [e["kit"][str(concurrency)]["tasks_per_second"] for e in models]
        ax.plot(xs, ys, marker="o", label=f"kit, concurrency {concurrency}")
    ax.plot(
        xs, [e["peer_tasks_per_second"] for e in models], "k--", marker="s", label="peer Runner"
    )
    ax.set(xlabel="model call per task (ms)", ylabel="tasks/s", yscale="log")
    ax.set_title("Throughput vs model time (batch = template)", fontsize=10)
    ax.legend(fontsize=8)

    sweep_models = sorted({r["model_ms"] for r in batches})
    peer_requests = statistics.median(r["encord_per_task"] for e in models for r in e["peer_runs"])
    for index, (key, ylabel, title) in enumerate(
        (
            ("tasks_per_second", "tasks/s", "Consumers alone: throughput vs batch size"),
            ("encord_per_task", "Encord requests/task", "Consumers alone: Encord requests"),
            ("dynamodb_calls_per_task", "DynamoDB calls/task", "Consumers alone: DynamoDB calls"),
        )
    ):
        ax = axes[(index + 1) // 2][(index + 1) % 2]
        for model_ms in sweep_models:
            runs = sorted(
                (r for r in batches if r["model_ms"] == model_ms), key=lambda r: r["batch_size"]
            )
            values = [r["aws"][key] if key.startswith("dynamodb") else r[key] for r in runs]
            ax.plot(
                [r["batch_size"] for r in runs], values, marker="o", label=f"kit, {model_ms:g} ms"
            )
        if key == "encord_per_task":
            ax.axhline(peer_requests, color="k", linestyle="--", label="peer Runner, whole run")
        if key == "dynamodb_calls_per_task":
            ax.axhline(1.0, color="r", linestyle=":", label="goal: 1 call/task")
        ax.set(xlabel="consumer batch size (messages)", ylabel=ylabel, xscale="log")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def measured(results: dict[str, Any]) -> dict[str, Any]:
    """The peer section's measurements inside a results file."""
    for row in results["rows"]:
        if row["key"] == "peer.cost_100k":
            data: dict[str, Any] = row["details"]["measured"]
            return data
    raise KeyError("the results file holds no peer section (run `agentkit bench -s peer`)")


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m infra.bench.plot RESULTS.json OUT.png")
        return 2
    plot(measured(json.loads(Path(argv[0]).read_text())), Path(argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
