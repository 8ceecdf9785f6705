"""template.yaml as CloudFormation after the SAM transform: queues, trigger, alarms, encryption, IAM."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

# Actions that AWS cannot scope to a resource, so their statements must say Resource "*".
NO_RESOURCE_LEVEL_ACTIONS = {
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "cloudwatch:PutMetricData",
}
# What SAM attaches to every function role: CloudWatch Logs writing (AWSLambdaBasicExecutionRole)
# and X-Ray segment upload for Tracing: Active (AWSXrayWriteOnlyAccess). Both are AWS's minimal
# policies for those features; anything else (notably AWSLambdaSQSQueueExecutionRole, which
# allows reading every queue in the account) must not appear.
ALLOWED_MANAGED_POLICIES = {
    "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
    "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
}
REQUIRED_ENVIRONMENT = {
    "AGENT_MODULE",
    "PROJECT_HASH",
    "WORK_QUEUE_URL",
    "DEAD_LETTER_QUEUE_URL",
    "LEASE_TABLE_NAME",
    "ENCORD_SSH_KEY_SECRET_ID",
    "ENCORD_DOMAIN",
    "MAX_TASKS_PER_RUN",
    "MAX_RECEIVE_COUNT",
    "POWERTOOLS_SERVICE_NAME",
    "POWERTOOLS_METRICS_NAMESPACE",
    "POWERTOOLS_LOG_LEVEL",
}


def of_type(template: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == resource_type}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def references(node: Any) -> set[str]:
    """Every logical id or parameter a value refers to (Ref, GetAtt, ${...} in Fn::Sub)."""
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref" and isinstance(value, str):
                found.add(value)
            elif key == "Fn::GetAtt":
                found.add(value.split(".")[0] if isinstance(value, str) else value[0])
            elif key == "Fn::Sub":
                text = value if isinstance(value, str) else value[0]
                found |= {m.split(".")[0] for m in re.findall(r"\$\{([^}!]+)\}", text)}
                found -= {"AWS::Partition", "AWS::Region", "AWS::AccountId", "AWS::URLSuffix"}
                if not isinstance(value, str):
                    found -= set(value[1])
                    found |= references(value[1])
            else:
                found |= references(value)
    elif isinstance(node, list):
        for item in node:
            found |= references(item)
    return found


def identity_statements(template: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for role_id, role in of_type(template, "AWS::IAM::Role").items():
        for policy in role["Properties"].get("Policies", []):
            for statement in as_list(policy["PolicyDocument"]["Statement"]):
                yield role_id, statement
    for kind in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
        for policy_id, policy in of_type(template, kind).items():
            for statement in as_list(policy["Properties"]["PolicyDocument"]["Statement"]):
                yield policy_id, statement


def resource_policy_statements(template: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    documents = {
        "AWS::KMS::Key": "KeyPolicy",
        "AWS::SQS::QueuePolicy": "PolicyDocument",
        "AWS::SNS::TopicPolicy": "PolicyDocument",
        "AWS::SecretsManager::ResourcePolicy": "ResourcePolicy",
    }
    for kind, key in documents.items():
        for resource_id, resource in of_type(template, kind).items():
            for statement in as_list(resource["Properties"][key]["Statement"]):
                yield resource_id, statement


def trust_statements(template: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for role_id, role in of_type(template, "AWS::IAM::Role").items():
        for statement in as_list(role["Properties"]["AssumeRolePolicyDocument"]["Statement"]):
            yield role_id, statement


def permissions(template: dict[str, Any], role_id: str) -> dict[str, set[str]]:
    """action -> the template resources (logical ids) the role may do it on."""
    granted: dict[str, set[str]] = {}
    for owner, statement in identity_statements(template):
        if owner != role_id or statement["Effect"] != "Allow":
            continue
        targets = references(statement["Resource"]) & set(template["Resources"])
        for action in as_list(statement["Action"]):
            granted.setdefault(action, set()).update(targets)
    return granted


# ------------------------------------------------------------------------------ queues


def test_work_queue_redrives_to_the_dlq_after_max_receive_count(translated: dict[str, Any]) -> None:
    queue = translated["Resources"]["WorkQueue"]["Properties"]
    assert queue["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]},
        "maxReceiveCount": {"Ref": "MaxReceiveCount"},
    }
    dlq = translated["Resources"]["DeadLetterQueue"]["Properties"]
    assert dlq["MessageRetentionPeriod"] == 1209600
    # A moved message keeps its enqueue time: the DLQ must keep messages longer than the source.
    assert queue["MessageRetentionPeriod"] < dlq["MessageRetentionPeriod"]


def test_visibility_timeout_is_at_least_six_times_the_consumer_timeout(
    translated: dict[str, Any],
) -> None:
    resources = translated["Resources"]
    assert resources["ConsumerFunction"]["Properties"]["Timeout"] == {"Ref": "ConsumerTimeout"}
    assert resources["WorkQueue"]["Properties"]["VisibilityTimeout"] == {
        "Fn::FindInMap": ["ConsumerVisibility", {"Ref": "ConsumerTimeout"}, "VisibilityTimeout"]
    }
    allowed = translated["Parameters"]["ConsumerTimeout"]["AllowedValues"]
    mapping = {str(k): v for k, v in translated["Mappings"]["ConsumerVisibility"].items()}
    assert str(translated["Parameters"]["ConsumerTimeout"]["Default"]) in map(str, allowed)
    for timeout in allowed:
        assert str(timeout) in mapping, f"ConsumerTimeout {timeout} has no visibility entry"
        visibility = mapping[str(timeout)]["VisibilityTimeout"]
        assert visibility >= 6 * int(timeout), (timeout, visibility)
        assert visibility <= 43200  # SQS maximum
    # The batching window is spent before the function starts: 6x must still cover both.
    window_max = translated["Parameters"]["MaximumBatchingWindowInSeconds"]["MaxValue"]
    assert all(int(t) + window_max <= mapping[str(t)]["VisibilityTimeout"] for t in allowed)


def test_consumer_trigger_reports_partial_failures_with_bounded_concurrency(
    translated: dict[str, Any],
) -> None:
    mappings = of_type(translated, "AWS::Lambda::EventSourceMapping")
    assert len(mappings) == 1
    (mapping,) = mappings.values()
    properties = mapping["Properties"]
    assert properties["EventSourceArn"] == {"Fn::GetAtt": ["WorkQueue", "Arn"]}
    assert properties["FunctionName"] == {"Ref": "ConsumerFunction"}
    assert properties["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert properties["ScalingConfig"] == {"MaximumConcurrency": {"Ref": "MaximumConcurrency"}}
    assert properties["BatchSize"] == {"Ref": "BatchSize"}
    assert properties["MaximumBatchingWindowInSeconds"] == {"Ref": "MaximumBatchingWindowInSeconds"}
    assert translated["Parameters"]["MaximumConcurrency"]["MinValue"] >= 2  # Lambda's minimum


def test_producer_runs_on_the_schedule(translated: dict[str, Any]) -> None:
    rules = of_type(translated, "AWS::Events::Rule")
    (rule,) = rules.values()
    assert rule["Properties"]["ScheduleExpression"] == {"Ref": "ScheduleExpression"}
    targets = rule["Properties"]["Targets"]
    assert [t["Arn"] for t in targets] == [{"Fn::GetAtt": ["ProducerFunction", "Arn"]}]
    assert translated["Parameters"]["ScheduleExpression"]["Default"] == "rate(5 minutes)"


def test_functions(translated: dict[str, Any], sam_template: dict[str, Any]) -> None:
    functions = of_type(translated, "AWS::Lambda::Function")
    assert set(functions) == {"ProducerFunction", "ConsumerFunction"}
    handlers = {k: f["Properties"]["Handler"] for k, f in functions.items()}
    assert handlers == {
        "ProducerFunction": "handlers/producer.lambda_handler",
        "ConsumerFunction": "handlers/consumer.lambda_handler",
    }
    for logical_id, function in functions.items():
        properties = function["Properties"]
        assert properties["Runtime"] == "python3.12"
        assert properties["Architectures"] == ["x86_64"]
        assert properties["TracingConfig"] == {"Mode": "Active"}
        assert sam_template["Resources"][logical_id]["Metadata"]["BuildMethod"] == "makefile"
        log_group = properties["LoggingConfig"]["LogGroup"]["Ref"]
        assert translated["Resources"][log_group]["Properties"]["RetentionInDays"]


def test_both_functions_get_exactly_the_environment_the_code_reads(
    translated: dict[str, Any],
) -> None:
    from agent_core.settings import EncordSettings, PipelineSettings

    read_by_code = {field.alias for field in PipelineSettings.model_fields.values()}
    prefix = EncordSettings.model_config.get("env_prefix", "")
    read_by_code |= {f"{prefix}{name}".upper() for name in EncordSettings.model_fields}
    for function in of_type(translated, "AWS::Lambda::Function").values():
        variables = function["Properties"]["Environment"]["Variables"]
        assert set(variables) >= REQUIRED_ENVIRONMENT
        for name in variables:
            # AWS_ENDPOINT_URL is read by boto3, and only set for `sam local invoke`.
            assert (
                name in read_by_code
                or name.startswith("POWERTOOLS_")
                or (
                    name == "AWS_ENDPOINT_URL"
                    and variables[name]
                    == {
                        "Fn::If": [
                            "UseLocalEndpoint",
                            {"Ref": "LocalEndpointUrl"},
                            {"Ref": "AWS::NoValue"},
                        ]
                    }
                )
            ), name
        assert variables["WORK_QUEUE_URL"] == {"Ref": "WorkQueue"}
        assert variables["DEAD_LETTER_QUEUE_URL"] == {"Ref": "DeadLetterQueue"}
        assert variables["LEASE_TABLE_NAME"] == {"Ref": "LeaseTable"}
        assert variables["ENCORD_SSH_KEY_SECRET_ID"] == {
            "Fn::If": ["CreateKeySecret", {"Ref": "EncordKeySecret"}, {"Ref": "ExistingSecretArn"}]
        }
        assert "ENCORD_SSH_KEY" not in variables  # the key itself never is an env var in AWS


def test_lease_table(translated: dict[str, Any]) -> None:
    table = translated["Resources"]["LeaseTable"]["Properties"]
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["KeySchema"] == [{"AttributeName": "task_uuid", "KeyType": "HASH"}]
    assert table["AttributeDefinitions"] == [{"AttributeName": "task_uuid", "AttributeType": "S"}]
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}


def test_secret_is_created_only_without_an_existing_one(translated: dict[str, Any]) -> None:
    secret = translated["Resources"]["EncordKeySecret"]
    assert secret["Condition"] == "CreateKeySecret"
    assert translated["Conditions"]["CreateKeySecret"] == {
        "Fn::Equals": [{"Ref": "ExistingSecretArn"}, ""]
    }
    # Created empty: the private key never passes through CloudFormation.
    assert "SecretString" not in secret["Properties"]
    assert "GenerateSecretString" not in secret["Properties"]
    assert translated["Parameters"]["ExistingSecretArn"]["Default"] == ""


# ------------------------------------------------------------------------------ alarms


def alarms_on(translated: dict[str, Any], namespace: str, metric: str) -> list[dict[str, Any]]:
    return [
        alarm["Properties"]
        for alarm in of_type(translated, "AWS::CloudWatch::Alarm").values()
        if alarm["Properties"].get("Namespace") == namespace
        and alarm["Properties"].get("MetricName") == metric
    ]


def dimension(alarm: dict[str, Any], name: str) -> Any:
    (value,) = [d["Value"] for d in alarm["Dimensions"] if d["Name"] == name]
    return value


def test_alarms_watch_the_dlq_the_backlog_and_the_functions(translated: dict[str, Any]) -> None:
    dlq_name = {"Fn::GetAtt": ["DeadLetterQueue", "QueueName"]}
    (depth,) = [
        a
        for a in alarms_on(translated, "AWS/SQS", "ApproximateNumberOfMessagesVisible")
        if dimension(a, "QueueName") == dlq_name
    ]
    assert (depth["Threshold"], depth["ComparisonOperator"]) == (0, "GreaterThanThreshold")
    ages = {
        dimension(a, "QueueName")["Fn::GetAtt"][0]: a
        for a in alarms_on(translated, "AWS/SQS", "ApproximateAgeOfOldestMessage")
    }
    assert set(ages) == {"DeadLetterQueue", "WorkQueue"}
    # The DLQ age alarm must fire well before SQS drops the message (14 days).
    assert ages["DeadLetterQueue"]["Threshold"] < 1209600
    errors = {
        dimension(a, "FunctionName")["Ref"] for a in alarms_on(translated, "AWS/Lambda", "Errors")
    }
    assert errors == {"ConsumerFunction", "ProducerFunction"}

    for alarm in of_type(translated, "AWS::CloudWatch::Alarm").values():
        properties = alarm["Properties"]
        assert properties["AlarmActions"] == [{"Ref": "AlarmTopic"}]
        assert properties["TreatMissingData"] == "notBreaching"
        assert properties["AlarmDescription"]


def test_alarm_email_subscription_is_optional(translated: dict[str, Any]) -> None:
    subscription = translated["Resources"]["AlarmEmailSubscription"]
    assert subscription["Condition"] == "SubscribeAlarmEmail"
    assert subscription["Properties"]["Protocol"] == "email"
    assert subscription["Properties"]["TopicArn"] == {"Ref": "AlarmTopic"}
    assert translated["Parameters"]["AlarmEmail"]["Default"] == ""


# ------------------------------------------------------------------------------ encryption


def test_queues_table_and_topic_are_encrypted(translated: dict[str, Any]) -> None:
    for queue_id, queue in of_type(translated, "AWS::SQS::Queue").items():
        properties = queue["Properties"]
        assert properties.get("SqsManagedSseEnabled") is True or "KmsMasterKeyId" in properties, (
            queue_id
        )
    for table in of_type(translated, "AWS::DynamoDB::Table").values():
        assert table["Properties"]["SSESpecification"]["SSEEnabled"] is True
    for topic in of_type(translated, "AWS::SNS::Topic").values():
        key = topic["Properties"]["KmsMasterKeyId"]
        # CloudWatch can only publish to a topic under a customer managed key it may use.
        assert key == {"Fn::GetAtt": ["AlarmTopicKey", "Arn"]}
    key = translated["Resources"]["AlarmTopicKey"]["Properties"]
    assert key["EnableKeyRotation"] is True
    cloudwatch = [
        s
        for s in key["KeyPolicy"]["Statement"]
        if s["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    ]
    assert cloudwatch and set(cloudwatch[0]["Action"]) == {"kms:Decrypt", "kms:GenerateDataKey"}


# ------------------------------------------------------------------------------ IAM


def test_no_policy_anywhere_grants_a_wildcard_action(translated: dict[str, Any]) -> None:
    statements = [
        *identity_statements(translated),
        *resource_policy_statements(translated),
        *trust_statements(translated),
    ]
    assert statements
    for owner, statement in statements:
        assert "NotAction" not in statement, owner
        assert "NotResource" not in statement, owner
        for action in as_list(statement["Action"]):
            assert isinstance(action, str) and "*" not in action, (owner, action)


def test_every_identity_statement_is_scoped_to_a_resource(translated: dict[str, Any]) -> None:
    declared = set(translated["Resources"]) | set(translated["Parameters"])
    for owner, statement in identity_statements(translated):
        actions = set(as_list(statement["Action"]))
        for resource in as_list(statement["Resource"]):
            if resource == "*":
                assert actions <= NO_RESOURCE_LEVEL_ACTIONS, (owner, actions)
                continue
            assert isinstance(resource, dict), (owner, resource)  # no hand-written ARNs
            targets = references(resource)
            assert targets and targets <= declared, (owner, resource)


def test_resource_policies_name_their_principals(translated: dict[str, Any]) -> None:
    # A key policy's Resource is "*" by definition (it means the key itself); the principals are
    # what must be specific.
    for owner, statement in resource_policy_statements(translated):
        principal = statement["Principal"]
        assert principal != "*" and principal != {"AWS": "*"}, owner


def test_function_roles_use_only_the_minimal_managed_policies(translated: dict[str, Any]) -> None:
    for role_id, role in of_type(translated, "AWS::IAM::Role").items():
        managed = set(role["Properties"].get("ManagedPolicyArns", []))
        assert managed <= ALLOWED_MANAGED_POLICIES, (role_id, managed)


def test_each_function_may_touch_only_its_own_resources(translated: dict[str, Any]) -> None:
    functions = of_type(translated, "AWS::Lambda::Function")
    roles = {k: f["Properties"]["Role"]["Fn::GetAtt"][0] for k, f in functions.items()}
    producer = permissions(translated, roles["ProducerFunction"])
    consumer = permissions(translated, roles["ConsumerFunction"])

    assert producer.get("sqs:SendMessage") == {"WorkQueue"}
    assert not any(a.startswith("sqs:") and a != "sqs:SendMessage" for a in producer)
    for action in ("dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"):
        assert producer.get(action) == {"LeaseTable"}

    for action in (
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:ChangeMessageVisibility",
        "sqs:GetQueueAttributes",
    ):
        assert consumer.get(action) == {"WorkQueue"}, action
    # Poison and finally-failed messages go to the DLQ; nothing else is sent anywhere.
    assert consumer.get("sqs:SendMessage") == {"DeadLetterQueue"}
    for action in ("dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"):
        assert consumer.get(action) == {"LeaseTable"}

    for granted in (producer, consumer):
        assert granted.get("secretsmanager:GetSecretValue") == {"EncordKeySecret"}
        assert not any(a.startswith(("kms:", "iam:", "lambda:")) for a in granted)


def test_outputs(translated: dict[str, Any]) -> None:
    outputs = translated["Outputs"]
    for name in (
        "WorkQueueUrl",
        "WorkQueueArn",
        "DeadLetterQueueUrl",
        "DeadLetterQueueArn",
        "LeaseTableName",
        "ProducerFunctionName",
        "ConsumerFunctionName",
        "EncordKeySecretArn",
        "PutEncordKeyCommand",
        "AlarmTopicArn",
    ):
        assert name in outputs, name
    command = outputs["PutEncordKeyCommand"]["Value"]["Fn::Sub"][0]
    assert command.startswith("aws secretsmanager put-secret-value --secret-id ${SecretArn}")


@pytest.mark.parametrize("parameter", ["ProjectHash", "AgentModule", "EncordDomain"])
def test_parameters_reject_malformed_values(translated: dict[str, Any], parameter: str) -> None:
    spec = translated["Parameters"][parameter]
    pattern = spec["AllowedPattern"]
    assert re.fullmatch(pattern, "not valid at all") is None
    if "Default" in spec:
        assert re.fullmatch(pattern, spec["Default"])
