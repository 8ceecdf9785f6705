"""template.yaml passes cfn-lint, and `sam validate --lint` / `sam build` where the SAM CLI exists."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "template.yaml"


def _sam_cli() -> str | None:
    # The SAM CLI is not a Python dependency of the kit; point SAM_CLI at one to include it.
    return os.environ.get("SAM_CLI") or shutil.which("sam")


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


@pytest.mark.skipif(_sam_cli() is None, reason="SAM CLI not installed (set SAM_CLI=/path/to/sam)")
def test_sam_validate_lint() -> None:
    result = subprocess.run(
        [str(_sam_cli()), "validate", "--lint", "--template-file", str(TEMPLATE)],
        cwd=REPO,
        env=_sam_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is a valid SAM Template" in result.stdout + result.stderr


@pytest.mark.skipif(_sam_cli() is None, reason="SAM CLI not installed (set SAM_CLI=/path/to/sam)")
def test_sam_build_runs_the_makefile_in_the_source_tree(tmp_path: Path) -> None:
    wheelhouse = REPO / ".build" / "wheels"
    if not any(wheelhouse.glob(".complete-*")):
        pytest.skip("no wheelhouse yet: scripts/package-size (or its test) fills .build/wheels")
    env = {
        **_sam_env(),
        "PIP_INSTALL_ARGS": f"--quiet --no-index --find-links {wheelhouse}",
        "CONSUMER_REQUIREMENTS": "requirements/consumer.txt",
    }
    build_dir = tmp_path / "sam-build"
    result = subprocess.run(
        [str(_sam_cli()), "build", "--build-dir", str(build_dir), "--template-file", str(TEMPLATE)],
        cwd=REPO,  # samconfig.toml's build_in_source applies from here
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for function in ("ProducerFunction", "ConsumerFunction"):
        package = build_dir / function
        assert (package / "handlers" / "__init__.py").exists()
        assert (package / "agent_core" / "settings.py").exists()
        assert (package / "encord").is_dir()
        assert not (package / "infra").exists()
        assert not (package / "tests").exists()
        assert not (package / "numpy").exists()  # the lean consumer set was selected
        assert not list(package.rglob("__pycache__"))
