"""infra.template_config: the template's pipeline settings, resolved from the parameter defaults."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agent_core.exceptions import ConfigurationError
from infra.template_config import TemplateConfigError, load_template_config

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "template.yaml"


def test_defaults_resolve_to_the_deployed_shape() -> None:
    config = load_template_config()
    assert config.template_path == TEMPLATE
    assert config.batch_size == 10
    assert config.maximum_batching_window_seconds == 5
    assert config.maximum_concurrency == 5
    assert config.max_receive_count == 5
    assert config.consumer_timeout_seconds == 120
    assert config.visibility_timeout_seconds == 720
    assert config.dlq_retention_seconds == 1_209_600
    assert config.work_queue_retention_seconds == 345_600
    assert config.producer_timeout_seconds == 300
    assert config.schedule_expression == "rate(5 minutes)"
    assert config.lease_table_key == "task_uuid"
    assert config.lease_ttl_attribute == "expires_at"
    assert config.parameters["ProjectHash"] is None  # no default: sam deploy --guided asks


def test_environment_separates_values_from_resources() -> None:
    config = load_template_config()
    assert config.environment_resource_refs == {
        "WORK_QUEUE_URL": "WorkQueue",
        "DEAD_LETTER_QUEUE_URL": "DeadLetterQueue",
        "LEASE_TABLE_NAME": "LeaseTable",
        "ENCORD_SSH_KEY_SECRET_ID": "EncordKeySecret",
    }
    resolved = config.resolved_environment()
    assert resolved == {
        "AGENT_MODULE": "agents.starter:runner",
        "ENCORD_DOMAIN": "https://api.encord.com",
        "MAX_TASKS_PER_RUN": "10000",
        "MAX_RECEIVE_COUNT": "5",
        "LEASE_TTL_SECONDS": "1296000",
        "POWERTOOLS_SERVICE_NAME": "agentkit",
        "POWERTOOLS_METRICS_NAMESPACE": "Agentkit",
        "POWERTOOLS_LOG_LEVEL": "INFO",
    }
    assert set(config.environment_names) == set(resolved) | set(
        config.environment_resource_refs
    ) | {"PROJECT_HASH", "AWS_ENDPOINT_URL"}  # no value without LocalEndpointUrl


def test_template_environment_is_valid_for_the_pipeline_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from agent_core.settings import EncordSettings, PipelineSettings

    project_hash = "0a1b2c3d-0000-4000-8000-00000000abcd"
    config = load_template_config(parameter_overrides={"ProjectHash": project_hash})
    for name, value in config.resolved_environment().items():
        monkeypatch.setenv(name, value)
    settings = PipelineSettings()
    assert settings.agent_module == "agents.starter:runner"
    assert settings.project_hash == project_hash == config.environment["PROJECT_HASH"]
    assert settings.max_receive_count == config.max_receive_count
    assert settings.max_tasks_per_run == 10_000
    # Leases outlive a message parked in the DLQ.
    assert settings.lease_ttl_seconds > config.dlq_retention_seconds
    assert EncordSettings().domain == "https://api.encord.com"


def test_overrides_behave_like_parameter_overrides() -> None:
    config = load_template_config(
        parameter_overrides={
            "ConsumerTimeout": 300,
            "BatchSize": "20",
            "MaxReceiveCount": 3,
            "ScheduleExpression": "cron(0/10 * * * ? *)",
            "AgentModule": "my_agents.review:runner",
        },
        pseudo_parameters={"AWS::StackName": "review-agents"},
    )
    assert config.consumer_timeout_seconds == 300
    assert config.visibility_timeout_seconds == 1800
    assert config.batch_size == 20
    assert config.max_receive_count == 3
    assert config.schedule_expression == "cron(0/10 * * * ? *)"
    assert config.environment["AGENT_MODULE"] == "my_agents.review:runner"
    assert config.environment["MAX_RECEIVE_COUNT"] == "3"
    assert config.environment["POWERTOOLS_SERVICE_NAME"] == "review-agents"


def test_an_existing_secret_replaces_the_created_one() -> None:
    arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:encord-key-AbCdEf"
    config = load_template_config(parameter_overrides={"ExistingSecretArn": arn})
    assert config.environment["ENCORD_SSH_KEY_SECRET_ID"] == arn
    assert "ENCORD_SSH_KEY_SECRET_ID" not in config.environment_resource_refs


def test_every_allowed_consumer_timeout_gets_six_times_the_visibility() -> None:
    config = load_template_config()
    allowed = _allowed_consumer_timeouts()
    assert str(config.consumer_timeout_seconds) in allowed
    for timeout in allowed:
        resolved = load_template_config(parameter_overrides={"ConsumerTimeout": timeout})
        assert resolved.visibility_timeout_seconds >= 6 * resolved.consumer_timeout_seconds


def _allowed_consumer_timeouts() -> list[str]:
    from samtranslator.yaml_helper import yaml_parse

    template = yaml_parse(TEMPLATE.read_text())
    return [str(v) for v in template["Parameters"]["ConsumerTimeout"]["AllowedValues"]]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"ConsumerTimeout": 100}, "is not one of 30, 60"),
        ({"BatchSize": 0}, "is below 1"),
        ({"MaximumConcurrency": 1}, "is below 2"),
        ({"BatchSize": "ten"}, "must be a number"),
        ({"ProjectHash": "my project"}, "must be the project's UUID"),
        ({"NoSuchParameter": 1}, "Unknown template parameter(s) NoSuchParameter"),
    ],
)
def test_bad_overrides_say_what_is_wrong(overrides: dict[str, str | int], message: str) -> None:
    with pytest.raises(TemplateConfigError, match=re.escape(message)):
        load_template_config(parameter_overrides=overrides)


def test_missing_template_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="Cannot read the SAM template"):
        load_template_config(tmp_path / "template.yaml")


def test_template_without_redrive_is_rejected(tmp_path: Path) -> None:
    text = TEMPLATE.read_text()
    start = text.index("      RedrivePolicy:")
    end = text.index("maxReceiveCount: !Ref MaxReceiveCount") + len(
        "maxReceiveCount: !Ref MaxReceiveCount"
    )
    broken = tmp_path / "template.yaml"
    broken.write_text(text[:start] + text[end + 1 :])
    with pytest.raises(TemplateConfigError, match="no RedrivePolicy"):
        load_template_config(broken)


def test_a_sam_sqs_event_is_read_like_an_event_source_mapping(tmp_path: Path) -> None:
    # Users may switch back to SAM's `SQS` event; the local stack must still find its settings.
    text = TEMPLATE.read_text()
    start = text.index("  ConsumerEventSourceMapping:")
    end = text.index("  # ---------------------------------------------------------------- alarms")
    sam_event = (
        "      Events:\n"
        "        Work:\n"
        "          Type: SQS\n"
        "          Properties:\n"
        "            Queue: !GetAtt WorkQueue.Arn\n"
        "            BatchSize: 7\n"
        "            MaximumBatchingWindowInSeconds: !Ref MaximumBatchingWindowInSeconds\n"
        "            FunctionResponseTypes: [ReportBatchItemFailures]\n"
        "            ScalingConfig:\n"
        "              MaximumConcurrency: 3\n"
    )
    text = text[:start] + text[end:]
    anchor = "      LoggingConfig:\n        LogGroup: !Ref ConsumerLogGroup\n"
    variant = tmp_path / "template.yaml"
    variant.write_text(text.replace(anchor, anchor + sam_event))
    config = load_template_config(variant)
    assert (config.batch_size, config.maximum_concurrency) == (7, 3)
    assert config.maximum_batching_window_seconds == 5
