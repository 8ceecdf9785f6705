"""The peer section's parts: server-side AWS counting, per-task AWS figures, the producer
timeline, the cost model, the report and the plot, and the pinned peer install.

The end-to-end comparison with encord-agents needs the peer installed in .bench/peer-venv
(``agentkit bench -s peer`` does it on first use); its smoke test is skipped where it is not, so
that the suite never downloads.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from infra.bench.common import BenchContext
    from infra.localstack.moto import MotoServer

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ctx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BenchContext]:
    from infra.bench.common import BenchContext, BenchOptions

    context = BenchContext(BenchOptions.quick(), tmp_path_factory.mktemp("peer"))
    try:
        yield context
    finally:
        context.close()


def test_aws_requests_are_counted_where_they_arrive(ctx: BenchContext) -> None:
    dynamodb = ctx.moto.client("dynamodb")
    dynamodb.create_table(
        TableName="bench-count",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    before = ctx.aws_requests()
    dynamodb.put_item(TableName="bench-count", Item={"pk": {"S": "a"}})
    dynamodb.transact_write_items(
        TransactItems=[
            {"Put": {"TableName": "bench-count", "Item": {"pk": {"S": key}}}} for key in "bc"
        ]
    )
    # The body was read for the item count and handed on: moto stored both items.
    assert dynamodb.scan(TableName="bench-count")["Count"] == 3
    ctx.moto.client("sqs").list_queues()
    after = ctx.aws_requests()
    grew = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
    assert grew == {
        "dynamodb.PutItem": 1,
        "dynamodb.TransactWriteItems": 1,
        "dynamodb.TransactWriteItems#items": 2,
        "dynamodb.Scan": 1,
        "sqs.ListQueues": 1,
    }


def test_aws_summary_bills_transactions_and_batches_per_item() -> None:
    from infra.bench.peer import aws_summary

    calls = {
        "dynamodb.TransactWriteItems": 2,
        "dynamodb.TransactWriteItems#items": 10,
        "dynamodb.BatchWriteItem": 1,
        "dynamodb.BatchWriteItem#items": 5,
        "dynamodb.UpdateItem": 5,
        "dynamodb.BatchGetItem": 1,
        "dynamodb.BatchGetItem#items": 10,
        "sqs.SendMessageBatch": 1,
        "sqs.ReceiveMessage": 3,
        "sqs.DeleteMessageBatch": 1,
    }
    summary = aws_summary(calls, tasks=10)
    assert summary["dynamodb_calls_per_task"] == pytest.approx(0.9)
    assert summary["dynamodb_write_units_per_task"] == pytest.approx((20 + 5 + 5) / 10)
    assert summary["dynamodb_read_units_per_task"] == pytest.approx(1.0)
    assert summary["sqs_handler_calls_per_task"] == pytest.approx(0.1)
    assert summary["sqs_esm_calls_per_task"] == pytest.approx(0.4)


def test_timeline_times_boto_calls_and_restores_the_client(bench_moto: MotoServer) -> None:
    import botocore.client

    from infra.bench.timeline import Span, Timeline, _covered

    original = botocore.client.BaseClient._make_api_call
    sqs = bench_moto.client("sqs")
    with Timeline() as timeline:
        sqs.list_queues()
        sqs.list_queues()
    assert botocore.client.BaseClient._make_api_call is original
    summary = timeline.summary()
    assert summary["by_operation"]["sqs ListQueues"]["count"] == 2
    assert 0 < summary["by_operation"]["sqs ListQueues"]["busy_fraction"] <= 1
    # Overlapping spans count once.
    spans = [Span("x", 0.0, 2.0, "a"), Span("x", 1.0, 3.0, "b"), Span("x", 5.0, 6.0, "a")]
    assert _covered(spans) == pytest.approx(4.0)


def _kit_run(
    model_ms: float, concurrency: int, batch: int = 10, tps: float = 10.0
) -> dict[str, Any]:
    return {
        "tasks": 100,
        "model_ms": model_ms,
        "concurrency": concurrency,
        "batch_size": batch,
        "window_seconds": 1.0,
        "tasks_per_second": tps,
        "producer_tick_seconds": 2.0,
        "invocations": 100 // batch,
        "records_per_invocation": batch,
        "handler_seconds_per_task": 0.25,
        "handler_seconds_per_invocation": 0.25 * batch,
        "threads_per_invocation": 3.0,
        "encord_per_task": 0.05,
        "aws": {
            "dynamodb_calls_per_task": 1.0,
            "dynamodb_write_units_per_task": 2.0,
            "dynamodb_read_units_per_task": 0.0,
            "sqs_handler_calls_per_task": 0.1,
            "sqs_esm_calls_per_task": 0.3,
            "calls": {},
        },
    }


def synthetic_measurements() -> dict[str, Any]:
    """What ``peer.measure`` returns, small and made up."""
    counts = {
        "encord_per_task": 0.03,
        "producer_encord_per_task": 0.01,
        "consumer_encord_per_task": 0.02,
        "producer_aws": {"dynamodb_calls_per_task": 0.1, "calls": {"dynamodb.PutItem": 10}},
        "consumer_aws": {"dynamodb_calls_per_task": 0.9, "calls": {"dynamodb.UpdateItem": 90}},
        "aws": {"dynamodb_calls_per_task": 1.0, "dynamodb_write_units_per_task": 1.0, "calls": {}},
    }
    peer = {"tasks": 100, "encord_per_task": 0.024, "tasks_per_second": 4.9, "seconds": 20.4}
    by_model = {}
    for model in (0.0, 200.0):
        runs = {c: [_kit_run(model, c, tps=5.0 * c)] for c in (1, 5)}
        by_model[f"{model:g}"] = {
            "model_ms": model,
            "tasks": 100,
            "peer_runs": [peer],
            "peer_tasks_per_second": 4.9,
            "kit": {
                str(c): {
                    "runs": r,
                    "tasks_per_second": r[0]["tasks_per_second"],
                    "dynamodb_calls_per_task": 1.0,
                    "threads_per_invocation": 3.0,
                    "handler_seconds_per_task": 0.25,
                    "encord_per_task": 0.05,
                }
                for c, r in runs.items()
            },
        }
    return {
        "template": {
            "batch_size": 10,
            "window_seconds": 5.0,
            "concurrency": 5,
            "consumer_memory_mb": 1024,
            "producer_memory_mb": 512,
        },
        "requests": {
            "label_row": {
                "kit": {10: counts, 100: {**counts, "encord_per_task": 0.02}},
                "peer": {"runner": peer, "queue10": peer, "queue1": peer},
            }
        },
        "throughput": {"concurrencies": [1, 5], "by_model": by_model},
        "batches": [_kit_run(0.0, 5, batch=b, tps=float(b)) for b in (10, 100)],
        "timeline": {
            "tasks": 100,
            "seconds": 2.0,
            "by_operation": {
                "dynamodb PutItem": {
                    "count": 100,
                    "seconds": 1.0,
                    "busy_fraction": 0.5,
                    "first_start": 0.1,
                    "last_end": 1.2,
                    "threads": 4,
                }
            },
            "spans": [],
        },
    }


def test_cost_model_multiplies_measured_counts_by_prices() -> None:
    from infra.bench.cost import PRICES, cost_model

    cost = cost_model(synthetic_measurements())
    lines = cost["kit"]["lines"]
    # 100,000 tasks x 0.25 s x 1 GB, plus the producer's 0.02 s per task x 0.5 GB.
    assert lines["lambda_gb_seconds"]["quantity"] == pytest.approx(25_000 + 1_000)
    assert lines["lambda_requests"]["quantity"] == 10_000
    # Handlers' 0.1 per task, plus one receive and one delete per 10 messages.
    assert lines["sqs_requests"]["quantity"] == pytest.approx(10_000 + 20_000)
    assert lines["dynamodb_write_units"]["usd"] == pytest.approx(
        200_000 * PRICES["dynamodb_write_unit"]["usd"]
    )
    assert cost["peer"]["hours"] == pytest.approx(100_000 / 4.9 / 3600)
    assert cost["peer"]["usd_per_month"] == pytest.approx(730 * 0.0208)
    assert all(p["source"].startswith("https://") for p in PRICES.values())


def test_rows_report_and_plot_from_measurements(tmp_path: Path) -> None:
    from infra.bench.peer import rows_from
    from infra.bench.plot import plot
    from infra.bench.report import render

    data = synthetic_measurements()
    rows = {row.key: row for row in rows_from(data)}
    runner = rows["peer.requests.label_row.runner"]
    assert runner.baseline == 0.024 and runner.status == "FAIL"  # 0.03 > the peer's 0.024
    assert rows["peer.requests.label_row.best_batch"].status == "PASS"  # 0.02 at batch 100
    assert rows["peer.dynamodb_calls_per_task"].status == "PASS"
    assert rows["peer.tps.model200ms.c5"].target is not None
    assert rows["peer.tps.model200ms.c5"].status == "PASS"  # 25 / 4.9 >= 4
    assert rows["peer.tps.model200ms.c1"].status == "PASS"  # 5 / 4.9 >= 0.9

    last = rows["peer.cost_100k"]
    last.details["measured"] = data
    results = json.loads(json.dumps({"rows": [r.as_dict() for r in rows.values()]}, default=str))
    text = render(results, before=results)
    for heading in ("Comparison", "Consumer batch size", "timeline (before)", "Cost of 100,000"):
        assert heading in text
    assert "| 0.024 |" in text

    png = plot(data, tmp_path / "peer.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_peer_install_is_pinned_with_hashes_on_the_kits_sdk() -> None:
    from infra.bench.peer_env import PEER_VERSION, REQUIREMENTS

    text = REQUIREMENTS.read_text()
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", text, flags=re.M))
    assert pins["encord-agents"] == PEER_VERSION == "0.2.10"
    blocks = [b for b in re.split(r"\n(?=[A-Za-z])", text) if "==" in b]
    assert all("--hash=sha256:" in block for block in blocks)
    lock = tomllib.loads((REPO / "uv.lock").read_text())
    kit_encord = next(p["version"] for p in lock["package"] if p["name"] == "encord")
    assert pins["encord"] == kit_encord, "the peer must run on the kit's encord SDK"


def test_peer_against_the_kit_when_installed(ctx: BenchContext) -> None:
    from infra.bench.peer import kit_counts, run_peer
    from infra.bench.peer_env import is_installed

    if not is_installed():
        pytest.skip("encord-agents is not installed in .bench/peer-venv (agentkit bench -s peer)")
    peer = run_peer(ctx, "runner", "label_row", 5, 300)
    # One page of tasks, one label-row listing, one initialisation bundle, one pathway bundle.
    assert peer["tasks"] == 5 and 0 < peer["encord_per_task"] <= 1.0
    kit = kit_counts(ctx, "label_row", 10, 10)
    assert kit["encord_per_task"] == pytest.approx(
        kit["producer_encord_per_task"] + kit["consumer_encord_per_task"]
    )
    assert kit["aws"]["dynamodb_calls_per_task"] > 0
