"""template.yaml passes cfn-lint and `sam validate --lint` (the SAM CLI locked in tools/sam).

`sam build` runs in tests/lambda_runtime, once per session, and the built functions are run there.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "template.yaml"
# Installed by scripts/setup from tools/sam/uv.lock, so every machine runs the same version.
SAM = REPO / ".tools" / "sam" / "bin" / "sam"


def _sam_env() -> dict[str, str]:
    return {**os.environ, "SAM_CLI_TELEMETRY": "0", "AWS_DEFAULT_REGION": "us-east-1"}


def test_cfn_lint_reports_nothing_including_informational() -> None:
    from cfnlint.api import ManualArgs, lint_file

    matches = lint_file(
        TEMPLATE,
        config=ManualArgs(
            regions=["us-east-1", "eu-west-1", "ap-southeast-2"], include_checks=["I"]
        ),
    )
    assert [str(match) for match in matches] == []


def test_cfn_lint_catches_a_broken_template(tmp_path: Path) -> None:
    # Guards the test above against a cfn-lint that silently checks nothing.
    from cfnlint.api import ManualArgs, lint_file

    broken = tmp_path / "template.yaml"
    broken.write_text(TEMPLATE.read_text().replace("BatchSize: !Ref BatchSize", "BatchSize: many"))
    matches = lint_file(broken, config=ManualArgs(regions=["us-east-1"]))
    assert any(match.rule.id == "E3012" for match in matches)


def test_sam_validate_lint() -> None:
    assert SAM.exists(), f"{SAM} is missing: run `bash scripts/setup`"
    result = subprocess.run(
        [str(SAM), "validate", "--lint", "--template-file", str(TEMPLATE)],
        cwd=REPO,
        env=_sam_env(),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is a valid SAM Template" in result.stdout + result.stderr
