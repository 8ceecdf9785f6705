"""Pure-Python parts of the pipeline: backoff, SQS sizes and batching, DLQ copies, the loader."""

from __future__ import annotations

import json
import random
import textwrap
from pathlib import Path

import pytest
from pipeline_helpers import synthetic_record

from agent_core.exceptions import ConfigurationError
from agent_core.message import SQS_MAX_MESSAGE_BYTES, DlqAttributes
from agent_core.pipeline.backoff import (
    SQS_MAX_VISIBILITY_SECONDS,
    jittered_delay,
    retry_visibility_seconds,
)
from agent_core.pipeline.consume import build_dlq_message, lambda_to_sqs_attributes, redact
from agent_core.pipeline.loader import load_runner, parse_agent_module
from agent_core.pipeline.sqs import OutgoingMessage, SqsLimits, message_size, pack_batches

# -- backoff -----------------------------------------------------------------------------------


def test_retry_visibility_doubles_per_receive_and_is_capped() -> None:
    assert [retry_visibility_seconds(n, 30, 900) for n in range(1, 8)] == [
        30, 60, 120, 240, 480, 900, 900,
    ]  # fmt: skip
    assert retry_visibility_seconds(0, 30, 900) == 30
    assert retry_visibility_seconds(10_000, 30, 10**9) == SQS_MAX_VISIBILITY_SECONDS


def test_jittered_delay_stays_within_the_exponential_ceiling() -> None:
    rng = random.Random(7)
    for attempt in range(1, 8):
        ceiling = min(2.0, 0.2 * 2 ** (attempt - 1))
        delays = [jittered_delay(attempt, 0.2, 2.0, rng) for _ in range(50)]
        assert all(0.0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling / 2  # spread out, not a constant


# -- sizes and batches -------------------------------------------------------------------------


def test_message_size_counts_utf8_bytes_and_attributes() -> None:
    body = "é" * 10  # 20 bytes, 10 characters (moto would count 10)
    attrs = {"a.b": {"DataType": "String", "StringValue": "xyz"}}
    assert message_size(body, attrs) == 20 + len("a.b") + len("String") + 3


def test_pack_batches_respects_entry_count_and_total_bytes() -> None:
    limits = SqsLimits(max_message_bytes=1000, max_batch_bytes=2500, max_batch_entries=10)
    small = [OutgoingMessage(key=f"s{i}", body="x" * 10) for i in range(25)]
    batches, oversize = pack_batches(small, limits)
    assert [len(b) for b in batches] == [10, 10, 5] and not oversize

    big = [OutgoingMessage(key=f"b{i}", body="x" * 900) for i in range(5)]
    huge = OutgoingMessage(key="huge", body="x" * 1001)
    batches, oversize = pack_batches([*big, huge], limits)
    assert [len(b) for b in batches] == [2, 2, 1]
    assert all(sum(m.size for m in b) <= 2500 for b in batches)
    assert [m.key for m in oversize] == ["huge"]


# -- DLQ copies ----------------------------------------------------------------------------------


def test_dlq_message_keeps_body_and_records_why() -> None:
    record = synthetic_record('{"hello": 1}', receive_count=3)
    record["messageAttributes"] = {
        DlqAttributes.REPLAYED_FROM: {"dataType": "String", "stringValue": "m-0"},
        "user.tag": {"dataType": "String", "stringValue": "x"},
    }
    message = build_dlq_message(
        record,
        reason="failed",
        error="boom",
        error_type="RuntimeError",
        receive_count=3,
        stage_uuid="s",
        task_uuid="t",
    )
    attrs = message.attributes
    assert message.body == '{"hello": 1}'
    assert attrs[DlqAttributes.REASON]["StringValue"] == "failed"
    assert attrs[DlqAttributes.ERROR]["StringValue"] == "boom"
    assert attrs[DlqAttributes.ERROR_TYPE]["StringValue"] == "RuntimeError"
    assert attrs[DlqAttributes.RECEIVE_COUNT] == {"DataType": "Number", "StringValue": "3"}
    assert attrs[DlqAttributes.SOURCE_MESSAGE_ID]["StringValue"] == record["messageId"]
    assert attrs[DlqAttributes.REPLAYED_FROM]["StringValue"] == "m-0"
    assert attrs["user.tag"]["StringValue"] == "x"
    assert len(attrs) <= 10


def test_dlq_error_is_truncated_to_fit_and_never_carries_a_key() -> None:
    key = "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----"
    body = "b" * (SQS_MAX_MESSAGE_BYTES - 3000)
    message = build_dlq_message(
        synthetic_record(body),
        reason="failed",
        error=f"failed with {key} " + "x" * 50_000,
        error_type="RuntimeError",
        receive_count=1,
    )
    error = message.attributes[DlqAttributes.ERROR]["StringValue"]
    assert "PRIVATE KEY" not in error and "[redacted private key]" in error
    assert error.endswith("...[truncated]")
    assert message.body == body
    assert message.size <= SQS_MAX_MESSAGE_BYTES


def test_oversize_body_is_replaced_by_a_description() -> None:
    body = "z" * (SQS_MAX_MESSAGE_BYTES + 10)
    message = build_dlq_message(
        synthetic_record(body),
        reason="poison",
        error="too big",
        error_type="PoisonMessage",
        receive_count=1,
    )
    described = json.loads(message.body)["agentkit_oversize_body"]
    assert described["bytes"] == len(body)
    assert described["head"] == "z" * 2000
    assert message.size <= SQS_MAX_MESSAGE_BYTES


def test_redact_removes_pem_and_openssh_blocks() -> None:
    text = "a -----BEGIN PRIVATE KEY-----\nMC4CAQ\n-----END PRIVATE KEY----- b"
    assert redact(text) == "a [redacted private key] b"
    assert "MC4" not in redact("x -----BEGIN OPENSSH PRIVATE KEY-----\nMC4 (cut off)")


def test_lambda_attributes_convert_back_to_send_shape() -> None:
    converted = lambda_to_sqs_attributes(
        {
            "s": {"dataType": "String", "stringValue": "v", "stringListValues": []},
            "n": {"dataType": "Number", "stringValue": "3"},
            "b": {"dataType": "Binary", "binaryValue": "aGk="},
        }
    )
    assert converted == {
        "s": {"DataType": "String", "StringValue": "v"},
        "n": {"DataType": "Number", "StringValue": "3"},
        "b": {"DataType": "Binary", "BinaryValue": b"hi"},
    }


# -- loader ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("agents.example", "separated by a colon"),
        ("agents.example:", "separated by a colon"),
        ("agents..example:runner", "not a dotted Python module path"),
        ("agents.example:run-ner", "not a Python identifier"),
    ],
)
def test_agent_module_spec_errors(spec: str, fragment: str) -> None:
    with pytest.raises(ConfigurationError, match=fragment):
        parse_agent_module(spec)


def _write_module(tmp_path: Path, name: str, source: str) -> None:
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))


def test_loader_explains_each_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    _write_module(tmp_path, "lm_missing_dep", "import surely_not_installed_pkg\n")
    _write_module(tmp_path, "lm_raises", "raise ValueError('bad config value')\n")
    _write_module(
        tmp_path,
        "lm_objects",
        """
        class Runner:
            pass

        class FakeQueueRunner:
            project_hash = ""
            def stage_configs(self): return []
            def run_batch(self, stage, items, *, should_continue=None): return []

        class Other(FakeQueueRunner):
            project_hash = "p-other"

        sequential = Runner()
        no_project = FakeQueueRunner()
        other_project = Other()
        def factory():
            return Other()
        def broken_factory():
            raise KeyError("PROJECT_HASH")
        """,
    )
    cases = {
        "lm_nowhere:runner": "module 'lm_nowhere' was not found",
        "lm_missing_dep:runner": "imports 'surely_not_installed_pkg', which is not installed",
        "lm_raises:runner": "raised ValueError: bad config value",
        "lm_objects:runnerr": "has no attribute 'runnerr'. Runners defined there: ",
        "lm_objects:sequential": "needs QueueRunner",
        "lm_objects:no_project": "has no project hash",
        "lm_objects:broken_factory": "calling the factory broken_factory() raised KeyError",
    }
    for spec, fragment in cases.items():
        with pytest.raises(ConfigurationError) as info:
            load_runner(spec)
        assert fragment in str(info.value), (spec, str(info.value))
    assert load_runner("lm_objects:factory").project_hash == "p-other"
    assert load_runner("lm_objects:other_project").project_hash == "p-other"
    with pytest.raises(ConfigurationError, match="PROJECT_HASH is p-mine"):
        load_runner("lm_objects:other_project", expected_project_hash="p-mine")
