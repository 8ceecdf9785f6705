"""The pipeline settings of template.yaml, resolved with the parameters' defaults.

The local stack builds its queues, table and poller from this, so that a run on a laptop has the
shape of the deployed stack (batch size, redrive, visibility, retention, concurrency, environment)
without a second copy of those numbers. Only what a local run needs is resolved: parameter
references, conditions, mappings and ``Fn::Sub``/``Fn::Join`` over them. A value that only exists
once the stack does (a queue URL, a secret ARN) stays unresolved and is reported by the logical id
of the resource it names.

Resources are found by role, not by name: the consumer and producer are the functions whose
handlers are ``handlers/consumer.lambda_handler`` and ``handlers/producer.lambda_handler``; the work
queue, dead-letter queue and lease table are what the functions' WORK_QUEUE_URL,
DEAD_LETTER_QUEUE_URL and LEASE_TABLE_NAME refer to.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict
from samtranslator.yaml_helper import yaml_parse

from agent_core.exceptions import ConfigurationError

DEFAULT_TEMPLATE_PATH = Path(__file__).resolve().parent.parent / "template.yaml"

CONSUMER_HANDLER = "handlers/consumer.lambda_handler"
PRODUCER_HANDLER = "handlers/producer.lambda_handler"

# What the pseudo parameters resolve to when there is no stack; callers may override them.
DEFAULT_PSEUDO_PARAMETERS: dict[str, str] = {
    "AWS::AccountId": "123456789012",
    "AWS::Partition": "aws",
    "AWS::Region": "us-east-1",
    "AWS::StackName": "agentkit",
    "AWS::URLSuffix": "amazonaws.com",
}

# CloudFormation's defaults for properties the template may leave out.
_SQS_DEFAULT_VISIBILITY_SECONDS = 30
_SQS_DEFAULT_RETENTION_SECONDS = 345_600
_LAMBDA_DEFAULT_TIMEOUT_SECONDS = 3
_SQS_ESM_DEFAULT_BATCH_SIZE = 10


class TemplateConfigError(ConfigurationError):
    """template.yaml is missing, unreadable, or lacks a setting the local stack needs."""


class TemplateConfig(BaseModel):
    """The deployed pipeline's settings, as the template defines them with the given parameters."""

    model_config = ConfigDict(frozen=True)

    template_path: Path
    # Every parameter's effective value as CloudFormation passes it (a string), None if unset.
    parameters: dict[str, str | None]

    batch_size: int
    maximum_batching_window_seconds: int
    maximum_concurrency: int
    max_receive_count: int
    consumer_timeout_seconds: int
    producer_timeout_seconds: int
    visibility_timeout_seconds: int
    work_queue_retention_seconds: int
    dlq_retention_seconds: int
    schedule_expression: str
    lease_table_key: str
    lease_ttl_attribute: str

    # Globals.Function.Environment.Variables. A value set from a resource (queue URL, table name,
    # secret ARN) or from a parameter without a value is None here.
    environment: dict[str, str | None]
    # For the variables that name a resource: variable -> logical id of that resource.
    environment_resource_refs: dict[str, str]

    @property
    def environment_names(self) -> tuple[str, ...]:
        return tuple(self.environment)

    def resolved_environment(self) -> dict[str, str]:
        """The variables that have a value without a stack (what a local run sets as is)."""
        return {name: value for name, value in self.environment.items() if value is not None}


def load_template_config(
    path: Path = DEFAULT_TEMPLATE_PATH,
    parameter_overrides: Mapping[str, str | int] | None = None,
    pseudo_parameters: Mapping[str, str] | None = None,
) -> TemplateConfig:
    """Read the SAM template at ``path`` and resolve its pipeline settings.

    ``parameter_overrides`` play the role of ``sam deploy --parameter-overrides`` and are checked
    against the parameters' constraints. Raises TemplateConfigError with what to fix.
    """
    template = _read_template(Path(path))
    pseudo = {**DEFAULT_PSEUDO_PARAMETERS, **(pseudo_parameters or {})}
    resolver = _Resolver(template, _parameter_values(template, parameter_overrides or {}), pseudo)
    return _Extractor(template, resolver, Path(path)).config()


# ------------------------------------------------------------------------------------ YAML


def _read_template(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise TemplateConfigError(
            f"Cannot read the SAM template {str(path)!r} ({exc.strerror or type(exc).__name__}). "
            "Run from the agentkit repository or pass the template's path."
        ) from None
    try:
        # SAM's own reader: short tags (!Ref, !GetAtt a.b, ...) become their JSON form.
        document = yaml_parse(text)
    except yaml.YAMLError as exc:
        raise TemplateConfigError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("Resources"), dict):
        raise TemplateConfigError(f"{path} is not a CloudFormation template (no Resources).")
    return document


# ------------------------------------------------------------------------------- parameters


def _parameter_values(
    template: Mapping[str, Any], overrides: Mapping[str, str | int]
) -> dict[str, str | None]:
    declared: Mapping[str, Any] = template.get("Parameters") or {}
    unknown = sorted(set(overrides) - set(declared))
    if unknown:
        raise TemplateConfigError(
            f"Unknown template parameter(s) {', '.join(unknown)}; "
            f"the template declares {', '.join(sorted(declared))}."
        )
    values: dict[str, str | None] = {}
    for name, spec in declared.items():
        spec = spec or {}
        if name in overrides:
            value = _cfn_string(overrides[name])
            _check_parameter(name, spec, value)
        elif "Default" in spec:
            value = _cfn_string(spec["Default"])
        else:
            value = None
        values[name] = value
    return values


def _cfn_string(value: Any) -> str:
    # CloudFormation hands every parameter value over as a string.
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _check_parameter(name: str, spec: Mapping[str, Any], value: str) -> None:
    allowed = spec.get("AllowedValues")
    if allowed is not None and value not in [_cfn_string(v) for v in allowed]:
        raise TemplateConfigError(
            f"Parameter {name}={value!r} is not one of {', '.join(_cfn_string(v) for v in allowed)}."
        )
    if spec.get("Type") == "Number":
        try:
            number = float(value)
        except ValueError:
            raise TemplateConfigError(f"Parameter {name}={value!r} must be a number.") from None
        if "MinValue" in spec and number < float(spec["MinValue"]):
            raise TemplateConfigError(f"Parameter {name}={value} is below {spec['MinValue']}.")
        if "MaxValue" in spec and number > float(spec["MaxValue"]):
            raise TemplateConfigError(f"Parameter {name}={value} is above {spec['MaxValue']}.")
    pattern = spec.get("AllowedPattern")
    if pattern is not None and re.fullmatch(pattern, value) is None:
        hint = str(spec.get("ConstraintDescription") or f"must match {pattern}").rstrip(".")
        raise TemplateConfigError(f"Parameter {name}={value!r} is invalid: it {hint}.")


# ------------------------------------------------------------------------------ intrinsics


@dataclass(frozen=True)
class ResourceRef:
    """A value that exists only in a deployed stack: a Ref or GetAtt of a resource."""

    logical_id: str
    attribute: str | None = None


@dataclass(frozen=True)
class Unresolved:
    """A value this resolver cannot compute without a stack (named for error messages)."""

    what: str


class _Resolver:
    def __init__(
        self,
        template: Mapping[str, Any],
        parameters: Mapping[str, str | None],
        pseudo: Mapping[str, str],
    ) -> None:
        self._template = template
        self.parameters = dict(parameters)
        self._pseudo = pseudo
        self._resources: Mapping[str, Any] = template.get("Resources") or {}
        self._conditions: Mapping[str, Any] = template.get("Conditions") or {}
        self._condition_values: dict[str, bool] = {}

    def resolve(self, node: Any) -> Any:
        """Resolve intrinsic functions in ``node`` as far as parameters allow."""
        if isinstance(node, list):
            return [self.resolve(item) for item in node]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            ((key, arg),) = node.items()
            if key == "Ref":
                return self._ref(arg)
            if key == "Fn::GetAtt":
                logical_id, attribute = _getatt_parts(arg)
                return ResourceRef(logical_id, attribute)
            if key == "Fn::If":
                condition, when_true, when_false = arg
                return self.resolve(when_true if self.condition(condition) else when_false)
            if key == "Fn::FindInMap":
                return self._find_in_map(arg)
            if key == "Fn::Sub":
                return self._sub(arg)
            if key == "Fn::Join":
                return self._join(arg)
            if key.startswith("Fn::") or key == "Condition":
                return Unresolved(key)
        return {key: self.resolve(value) for key, value in node.items()}

    def condition(self, name: str) -> bool:
        if name not in self._condition_values:
            if name not in self._conditions:
                raise TemplateConfigError(
                    f"The template uses condition {name!r} but declares none."
                )
            self._condition_values[name] = self._evaluate(self._conditions[name])
        return self._condition_values[name]

    def _evaluate(self, node: Any) -> bool:
        if not isinstance(node, dict) or len(node) != 1:
            raise TemplateConfigError(f"Cannot evaluate condition {node!r}.")
        ((key, arg),) = node.items()
        if key == "Condition":
            return self.condition(arg)
        if key == "Fn::Equals":
            left, right = (self.resolve(item) for item in arg)
            return _cfn_string(left) == _cfn_string(right)
        if key == "Fn::Not":
            return not self._evaluate(arg[0])
        if key == "Fn::And":
            return all(self._evaluate(item) for item in arg)
        if key == "Fn::Or":
            return any(self._evaluate(item) for item in arg)
        raise TemplateConfigError(f"Cannot evaluate condition function {key}.")

    def _ref(self, name: str) -> Any:
        if name in self.parameters:
            return self.parameters[name]
        if name in self._pseudo:
            return self._pseudo[name]
        if name == "AWS::NoValue":
            return None
        if name in self._resources:
            return ResourceRef(name)
        raise TemplateConfigError(f"The template refers to {name!r}, which it does not declare.")

    def _find_in_map(self, arg: list[Any]) -> Any:
        map_name, top_key, second_key = (self.resolve(item) for item in arg)
        mappings: Mapping[str, Any] = self._template.get("Mappings") or {}
        table = {_cfn_string(k): v for k, v in (mappings.get(map_name) or {}).items()}
        row = table.get(_cfn_string(top_key))
        if row is None or second_key not in row:
            raise TemplateConfigError(
                f"Mapping {map_name} has no entry {top_key}/{second_key}; "
                f"its keys are {', '.join(sorted(table))}."
            )
        return row[second_key]

    def _sub(self, arg: Any) -> Any:
        text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
        local = {name: self.resolve(value) for name, value in variables.items()}
        missing: list[str] = []

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):  # ${!Literal} is an escaped "${Literal}"
                return "${" + name[1:] + "}"
            value = local[name] if name in local else self._sub_variable(name)
            if value is None or isinstance(value, ResourceRef | Unresolved):
                missing.append(name)
                return ""
            return _cfn_string(value)

        result = re.sub(r"\$\{([^}]+)\}", replace, text)
        return Unresolved(f"Fn::Sub of {', '.join(missing)}") if missing else result

    def _sub_variable(self, name: str) -> Any:
        if "." in name:
            logical_id, attribute = name.split(".", 1)
            return ResourceRef(logical_id, attribute)
        return self._ref(name)

    def _join(self, arg: list[Any]) -> Any:
        delimiter, items = arg[0], self.resolve(arg[1])
        if not isinstance(items, list) or any(
            item is None or isinstance(item, ResourceRef | Unresolved) for item in items
        ):
            return Unresolved("Fn::Join")
        return delimiter.join(_cfn_string(item) for item in items)


def _getatt_parts(arg: Any) -> tuple[str, str]:
    if isinstance(arg, str):
        logical_id, _, attribute = arg.partition(".")
        return logical_id, attribute
    return str(arg[0]), str(arg[1])


# ------------------------------------------------------------------------------ extraction


class _Extractor:
    def __init__(self, template: Mapping[str, Any], resolver: _Resolver, path: Path) -> None:
        self._template = template
        self._resolver = resolver
        self._path = path
        self._resources: Mapping[str, Any] = template["Resources"]
        globals_: Mapping[str, Any] = template.get("Globals") or {}
        self._function_globals: Mapping[str, Any] = globals_.get("Function") or {}

    def config(self) -> TemplateConfig:
        environment, resource_refs = self._environment()
        consumer_id = self._function_with_handler(CONSUMER_HANDLER)
        producer_id = self._function_with_handler(PRODUCER_HANDLER)
        queue_id = self._referenced(resource_refs, "WORK_QUEUE_URL", "AWS::SQS::Queue")
        dlq_id = self._referenced(resource_refs, "DEAD_LETTER_QUEUE_URL", "AWS::SQS::Queue")
        table_id = self._referenced(resource_refs, "LEASE_TABLE_NAME", "AWS::DynamoDB::Table")

        queue = self._properties(queue_id)
        redrive = self._resolver.resolve(queue.get("RedrivePolicy"))
        if not isinstance(redrive, dict):
            raise TemplateConfigError(f"{queue_id} has no RedrivePolicy to the dead-letter queue.")
        target = redrive.get("deadLetterTargetArn")
        if not (isinstance(target, ResourceRef) and target.logical_id == dlq_id):
            raise TemplateConfigError(
                f"{queue_id}'s RedrivePolicy must send to {dlq_id} (DEAD_LETTER_QUEUE_URL)."
            )
        dlq = self._properties(dlq_id)
        table = self._properties(table_id)
        mapping = self._event_source(consumer_id, queue_id)

        return TemplateConfig(
            template_path=self._path,
            parameters=dict(self._resolver.parameters),
            batch_size=self._int(mapping, "BatchSize", _SQS_ESM_DEFAULT_BATCH_SIZE),
            maximum_batching_window_seconds=self._int(mapping, "MaximumBatchingWindowInSeconds", 0),
            maximum_concurrency=self._maximum_concurrency(mapping),
            max_receive_count=self._int(redrive, "maxReceiveCount"),
            consumer_timeout_seconds=self._function_int(consumer_id, "Timeout"),
            producer_timeout_seconds=self._function_int(producer_id, "Timeout"),
            visibility_timeout_seconds=self._int(
                queue, "VisibilityTimeout", _SQS_DEFAULT_VISIBILITY_SECONDS
            ),
            work_queue_retention_seconds=self._int(
                queue, "MessageRetentionPeriod", _SQS_DEFAULT_RETENTION_SECONDS
            ),
            dlq_retention_seconds=self._int(
                dlq, "MessageRetentionPeriod", _SQS_DEFAULT_RETENTION_SECONDS
            ),
            schedule_expression=self._schedule(producer_id),
            lease_table_key=self._hash_key(table_id, table),
            lease_ttl_attribute=self._ttl_attribute(table_id, table),
            environment=environment,
            environment_resource_refs=resource_refs,
        )

    def _environment(self) -> tuple[dict[str, str | None], dict[str, str]]:
        variables = (self._function_globals.get("Environment") or {}).get("Variables") or {}
        environment: dict[str, str | None] = {}
        resource_refs: dict[str, str] = {}
        for name, raw in variables.items():
            value = self._resolver.resolve(raw)
            if isinstance(value, ResourceRef):
                resource_refs[name] = value.logical_id
                environment[name] = None
            elif value is None or isinstance(value, Unresolved):
                environment[name] = None
            else:
                environment[name] = _cfn_string(value)
        return environment, resource_refs

    def _function_with_handler(self, handler: str) -> str:
        found = [
            logical_id
            for logical_id, resource in self._resources.items()
            if resource.get("Type") in ("AWS::Serverless::Function", "AWS::Lambda::Function")
            and (resource.get("Properties") or {}).get("Handler") == handler
        ]
        if len(found) != 1:
            raise TemplateConfigError(
                f"{self._path} must declare exactly one function with Handler {handler} "
                f"(found {len(found)})."
            )
        return found[0]

    def _referenced(self, refs: Mapping[str, str], variable: str, resource_type: str) -> str:
        logical_id = refs.get(variable)
        resource = self._resources.get(logical_id) if logical_id else None
        if resource is None or resource.get("Type") != resource_type:
            raise TemplateConfigError(
                f"Globals.Function.Environment.Variables.{variable} must be a !Ref of the "
                f"template's {resource_type}."
            )
        return str(logical_id)

    def _properties(self, logical_id: str) -> dict[str, Any]:
        properties = self._resources[logical_id].get("Properties") or {}
        return dict(properties)

    def _event_source(self, consumer_id: str, queue_id: str) -> dict[str, Any]:
        """The consumer's SQS trigger: an EventSourceMapping resource or a SAM SQS event."""
        for resource in self._resources.values():
            if resource.get("Type") != "AWS::Lambda::EventSourceMapping":
                continue
            properties = self._resolver.resolve(resource.get("Properties") or {})
            function = properties.get("FunctionName")
            source = properties.get("EventSourceArn")
            if (
                isinstance(function, ResourceRef)
                and function.logical_id == consumer_id
                and isinstance(source, ResourceRef)
                and source.logical_id == queue_id
            ):
                return dict(properties)
        events = (self._resources[consumer_id].get("Properties") or {}).get("Events") or {}
        for event in events.values():
            if event.get("Type") == "SQS":
                properties = self._resolver.resolve(event.get("Properties") or {})
                queue = properties.get("Queue")
                if isinstance(queue, ResourceRef) and queue.logical_id == queue_id:
                    return dict(properties)
        raise TemplateConfigError(
            f"No SQS event source connects {queue_id} to {consumer_id} in {self._path}."
        )

    def _maximum_concurrency(self, mapping: Mapping[str, Any]) -> int:
        scaling = mapping.get("ScalingConfig")
        if not isinstance(scaling, dict) or "MaximumConcurrency" not in scaling:
            raise TemplateConfigError(
                "The consumer's event source needs ScalingConfig.MaximumConcurrency."
            )
        return self._int(scaling, "MaximumConcurrency")

    def _function_int(self, logical_id: str, key: str) -> int:
        properties = self._resources[logical_id].get("Properties") or {}
        if key in properties:
            return self._int(properties, key)
        return self._int(self._function_globals, key, _LAMBDA_DEFAULT_TIMEOUT_SECONDS)

    def _schedule(self, producer_id: str) -> str:
        events = (self._resources[producer_id].get("Properties") or {}).get("Events") or {}
        for event in events.values():
            kind = event.get("Type")
            if kind in ("Schedule", "ScheduleV2"):
                properties = event.get("Properties") or {}
                key = "Schedule" if kind == "Schedule" else "ScheduleExpression"
                return self._str(properties, key)
        raise TemplateConfigError(f"{producer_id} has no Schedule event.")

    def _hash_key(self, table_id: str, table: Mapping[str, Any]) -> str:
        for key in table.get("KeySchema") or []:
            if key.get("KeyType") == "HASH":
                return self._str(key, "AttributeName")
        raise TemplateConfigError(f"{table_id} has no HASH key in its KeySchema.")

    def _ttl_attribute(self, table_id: str, table: Mapping[str, Any]) -> str:
        ttl = table.get("TimeToLiveSpecification") or {}
        if not ttl.get("Enabled") or not ttl.get("AttributeName"):
            raise TemplateConfigError(f"{table_id} must enable TimeToLiveSpecification.")
        return self._str(ttl, "AttributeName")

    def _int(self, properties: Mapping[str, Any], key: str, default: int | None = None) -> int:
        if key not in properties:
            if default is None:
                raise TemplateConfigError(f"The template sets no {key}.")
            return default
        value = self._resolver.resolve(properties[key])
        try:
            return int(_cfn_string(value))
        except ValueError:
            raise TemplateConfigError(
                f"{key} resolves to {value!r}, not a whole number: give the parameter it uses "
                "a default or pass it in parameter_overrides."
            ) from None

    def _str(self, properties: Mapping[str, Any], key: str) -> str:
        value = self._resolver.resolve(properties.get(key))
        if not isinstance(value, str | int):
            raise TemplateConfigError(
                f"{key} resolves to {value!r}: give the parameter it uses a default "
                "or pass it in parameter_overrides."
            )
        return _cfn_string(value)
