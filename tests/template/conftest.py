"""Fixtures for the template checks: template.yaml as written and as SAM translates it (offline)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "template.yaml"
PROJECT_HASH = "00000000-1111-2222-3333-444444444444"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "package_size: builds the Lambda packages with the Makefile (fetches wheels on first run)",
    )


@pytest.fixture(scope="session")
def sam_template() -> dict[str, Any]:
    from samtranslator.yaml_helper import yaml_parse

    template: dict[str, Any] = yaml_parse(TEMPLATE.read_text())
    return template


@pytest.fixture(scope="session")
def translated(sam_template: dict[str, Any]) -> dict[str, Any]:
    """The CloudFormation SAM makes of the template, without any AWS call."""
    import boto3
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator

    template = copy.deepcopy(sam_template)
    # `sam package` would upload the build and put its S3 address here.
    template["Globals"]["Function"]["CodeUri"] = "s3://agentkit-artifacts/function.zip"
    template["Resources"]["DependenciesLayer"]["Properties"]["ContentUri"] = (
        "s3://agentkit-artifacts/layer.zip"
    )

    def managed_policy_map() -> dict[str, str]:
        raise AssertionError("the template must not need a managed-policy lookup (an AWS call)")

    translator = Translator(
        None, Parser(), boto_session=boto3.session.Session(region_name="us-east-1")
    )
    result: dict[str, Any] = translator.translate(
        template,
        parameter_values={"ProjectHash": PROJECT_HASH},
        get_managed_policy_map=managed_policy_map,
    )
    return result
