"""awslabs serverless-rules (cfn-lint-serverless) on template.yaml: no finding is left unexplained.

Each finding the template keeps on purpose is suppressed on its resource (``Metadata: cfn-lint:
config: ignore_checks``) with a comment saying why. These tests keep that list honest: the lint
is clean with the suppressions, every suppression has a reason, and every suppression is still
needed (without them, exactly the suppressed findings come back).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "template.yaml"
SERVERLESS_RULES = "cfn_lint_serverless.rules"


def _config() -> Any:
    from cfnlint.api import ManualArgs

    return ManualArgs(regions=["us-east-1"], append_rules=[SERVERLESS_RULES])


def _suppressions(template: dict[str, Any]) -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for logical_id, resource in template["Resources"].items():
        config = (resource.get("Metadata") or {}).get("cfn-lint", {}).get("config", {})
        found |= {(logical_id, rule) for rule in config.get("ignore_checks", [])}
    return found


def _decoded() -> dict[str, Any]:
    from cfnlint.decode import decode_str

    template, matches = decode_str(TEMPLATE.read_text())
    assert not matches and template is not None
    return dict(template)


def test_serverless_rules_report_nothing_beyond_the_suppressed_findings() -> None:
    from cfnlint.api import lint_file

    matches = lint_file(TEMPLATE, config=_config())
    assert [str(m) for m in matches] == []


def test_the_serverless_rules_are_loaded() -> None:
    # Guards the test above against a rule set that silently failed to load.
    from cfnlint.api import lint

    queue_without_redrive = {
        "Resources": {"Queue": {"Type": "AWS::SQS::Queue", "Properties": {}}},
    }
    matches = lint(json.dumps(queue_without_redrive), config=_config())
    assert "ES6000" in {m.rule.id for m in matches}


def test_every_suppression_is_still_needed() -> None:
    from cfnlint.api import lint

    template = _decoded()
    suppressed = _suppressions(template)
    assert suppressed, "no suppressions found: the test would prove nothing"
    for resource in template["Resources"].values():
        metadata = resource.get("Metadata")
        if metadata and "cfn-lint" in metadata:
            del metadata["cfn-lint"]
            if not metadata:
                del resource["Metadata"]
    matches = lint(json.dumps(template), config=_config())
    found = {(str(m.path[1]), m.rule.id) for m in matches if m.path[:1] == ["Resources"]}
    assert found == suppressed
    assert all(m.path[:1] == ["Resources"] for m in matches), [str(m) for m in matches]


def test_every_suppression_says_why() -> None:
    text = TEMPLATE.read_text()
    blocks = re.findall(r"((?:\s+#.*\n)+)\s+ignore_checks: \[([^\]]+)\]", text)
    assert blocks
    suppressed = {rule for _, rules in blocks for rule in re.split(r",\s*", rules)}
    assert suppressed == {rule for _, rule in _suppressions(_decoded())}
    for comments, rules in blocks:
        for rule in re.split(r",\s*", rules):
            reason = re.search(rf"#\s*{rule}\s+(\S.{{20,}})", comments)
            assert reason, f"{rule} is suppressed without a reason next to it"
