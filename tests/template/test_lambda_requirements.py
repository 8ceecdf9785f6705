"""The Lambda requirement sets are generated from uv.lock (never hand-edited), ship exactly the
locked versions the tests run, and the Makefile installs them for the Lambda platform."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]
REQUIREMENTS = REPO / "requirements"
sys.path.insert(0, str(REPO / "scripts"))
import lock_requirements  # noqa: E402

SETS = tuple(lock_requirements.SETS)
RUNTIME_PROVIDED = set(lock_requirements.RUNTIME_PROVIDED)
CLI_ONLY = {"typer", "rich", "click"}
VISION_ONLY = {"numpy", "opencv-python-headless"}


def read_set(path: Path) -> dict[str, Version]:
    """name -> pinned version; anything but a plain `name==version` line fails."""
    pins: dict[str, Version] = {}
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        requirement = Requirement(line)
        specifiers = list(requirement.specifier)
        assert len(specifiers) == 1 and specifiers[0].operator == "==", f"{path.name}:{number}"
        assert not requirement.marker and not requirement.extras, f"{path.name}:{number}"
        name = canonicalize_name(requirement.name)
        assert name not in pins, f"{name} pinned twice ({path.name}:{number})"
        pins[name] = Version(specifiers[0].version)
    return pins


def locked_versions() -> dict[str, set[Version]]:
    """name -> every version uv.lock holds for it (one per Python version at most)."""
    lock = tomllib.loads((REPO / "uv.lock").read_text())
    found: dict[str, set[Version]] = {}
    for package in lock["package"]:
        if "version" in package:
            found.setdefault(canonicalize_name(package["name"]), set()).add(
                Version(package["version"])
            )
    return found


def test_sets_are_generated_from_the_lock() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts/lock_requirements.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("name", SETS)
def test_set_pins_locked_versions(name: str) -> None:
    locked = locked_versions()
    for package, version in read_set(REQUIREMENTS / f"{name}.txt").items():
        assert version in locked.get(package, set()), (
            f"{name}.txt: {package}=={version} not in uv.lock"
        )


def test_environment_runs_the_locked_versions() -> None:
    # The suite runs on Lambda's Python minor version, so it tests what the sets ship.
    assert sys.version_info[:2] == (3, 12), "run the suite in the .venv that scripts/setup makes"
    locked = locked_versions()
    for name in SETS:
        for package, version in read_set(REQUIREMENTS / f"{name}.txt").items():
            installed = Version(importlib.metadata.version(package))
            assert installed == version, f"{package}: .venv has {installed}, {name}.txt {version}"
            assert installed in locked[package]


def test_what_each_set_must_and_must_not_contain() -> None:
    sets = {name: read_set(REQUIREMENTS / f"{name}.txt") for name in SETS}
    for name, pins in sets.items():
        assert not (set(pins) & (CLI_ONLY | RUNTIME_PROVIDED)), name
        for needed in ("encord", "pydantic", "pydantic-settings", "aws-lambda-powertools"):
            assert needed in pins, (name, needed)
        assert pins["encord"] == Version("0.1.211")
    assert not (set(sets["consumer"]) & VISION_ONLY)
    assert set(sets["vision"]) >= VISION_ONLY
    assert set(sets["consumer"]) <= set(sets["vision"])


# ------------------------------------------------------------------------------ Makefile


def make(*args: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    env = {k: v for k, v in os.environ.items() if k not in ("ARTIFACTS_DIR", "MAKEFLAGS")}
    env.pop("LAYER_REQUIREMENTS", None)
    return subprocess.run(
        ["make", "--no-print-directory", "-C", str(REPO), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_the_layer_installs_for_the_lambda_platform() -> None:
    result = make("-n", "build-DependenciesLayer", "ARTIFACTS_DIR=/tmp/agentkit-artifacts")
    assert result.returncode == 0, result.stderr
    commands = result.stdout
    for argument in (
        "--platform manylinux2014_x86_64",
        "--only-binary=:all:",
        "--implementation cp",
        "--python-version 3.12",
        "--no-compile",
        "--no-deps",
        # Lambda puts a layer's python/ folder on sys.path (/opt/python).
        '--target "/tmp/agentkit-artifacts/python"',
        "requirements/vision.txt",  # the default: what the demo agent needs
    ):
        assert argument in commands, argument
    for package in ("agent_core", "handlers", "agents", "infra", "tests"):
        assert f'"{REPO}/{package}"' not in commands, f"{package} is code, not a dependency"


@pytest.mark.parametrize("target", ["build-ProducerFunction", "build-ConsumerFunction"])
def test_functions_carry_only_the_code(target: str) -> None:
    result = make("-n", target, "ARTIFACTS_DIR=/tmp/agentkit-artifacts")
    assert result.returncode == 0, result.stderr
    commands = result.stdout
    for package in ("agent_core", "handlers", "agents"):
        assert f'cp -R "{REPO}/{package}" "/tmp/agentkit-artifacts/{package}"' in commands
    assert "pip" not in commands, "dependencies belong in the layer"
    assert f'"{REPO}/infra"' not in commands
    assert f'"{REPO}/tests"' not in commands


def test_layer_requirements_are_selectable_and_combine() -> None:
    result = make(
        "-n",
        "build-DependenciesLayer",
        "ARTIFACTS_DIR=/tmp/agentkit-artifacts",
        "LAYER_REQUIREMENTS=requirements/consumer.txt requirements/producer.txt",
    )
    assert result.returncode == 0, result.stderr
    assert f'-r "{REPO}/requirements/consumer.txt" -r "{REPO}/requirements/producer.txt"' in (
        result.stdout
    )
    assert "vision.txt" not in result.stdout


def test_make_without_artifacts_dir_explains_itself() -> None:
    for target in ("build-DependenciesLayer", "build-ProducerFunction"):
        result = make(target)
        assert result.returncode != 0
        assert "ARTIFACTS_DIR is not set" in result.stderr


def test_make_with_a_missing_requirements_file_explains_itself() -> None:
    result = make(
        "build-DependenciesLayer",
        "ARTIFACTS_DIR=/tmp/agentkit-never-created",
        "LAYER_REQUIREMENTS=requirements/nope.txt",
    )
    assert result.returncode != 0
    assert "requirements file requirements/nope.txt not found" in result.stderr
    assert not Path("/tmp/agentkit-never-created").exists()


# ------------------------------------------------------------------------------ tool environments


def _locked_versions(lock: Path) -> dict[str, str]:
    import tomllib

    packages = tomllib.loads(lock.read_text()).get("package", [])
    return {p["name"]: p["version"] for p in packages if "version" in p}


def test_the_lambda_runtime_stand_in_has_the_kits_boto3() -> None:
    # tests/lambda_runtime runs the built functions with tools/lambda-runtime's boto3 standing in
    # for the runtime's; it must be the version the kit is tested with (uv.lock).
    kit = _locked_versions(REPO / "uv.lock")
    runtime = _locked_versions(REPO / "tools" / "lambda-runtime" / "uv.lock")
    for name in ("boto3", "botocore", "s3transfer"):
        assert runtime[name] == kit[name], (
            f"{name}: tools/lambda-runtime has {runtime[name]}, uv.lock {kit[name]}. Pin boto3 "
            "in tools/lambda-runtime/pyproject.toml to uv.lock's version and run `bash scripts/lock`."
        )
    assert "awslambdaric" in runtime


def test_tool_locks_pin_what_their_projects_ask_for() -> None:
    import tomllib

    for tool in ("sam", "lambda-runtime"):
        project = tomllib.loads((REPO / "tools" / tool / "pyproject.toml").read_text())["project"]
        locked = _locked_versions(REPO / "tools" / tool / "uv.lock")
        for requirement in project["dependencies"]:
            name, _, version = requirement.partition("==")
            assert locked.get(name) == version, (
                f"tools/{tool}: {requirement} but uv.lock has {locked.get(name)}: run `bash scripts/lock`"
            )


def test_the_old_per_function_variables_are_refused_with_the_new_name() -> None:
    result = make(
        "build-DependenciesLayer",
        "ARTIFACTS_DIR=/tmp/agentkit-never-created",
        "CONSUMER_REQUIREMENTS=requirements/consumer.txt",
    )
    assert result.returncode != 0
    assert "Set LAYER_REQUIREMENTS instead" in result.stderr
    assert not Path("/tmp/agentkit-never-created").exists()
