"""The Lambda requirement sets are complete lock files matching what the tests run, and the
Makefile installs them for the Lambda platform."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]
REQUIREMENTS = REPO / "requirements"
SETS = ("producer", "consumer", "vision")
# The python3.12 runtime provides these; the sets leave them out on purpose (see base.txt).
RUNTIME_PROVIDED = {"boto3", "botocore", "s3transfer"}
CLI_ONLY = {"typer", "rich"}
VISION_ONLY = {"numpy", "opencv-python-headless"}
# Marker values on Lambda's python3.12 x86_64 runtime.
LAMBDA_MARKERS = {
    "python_version": "3.12",
    "python_full_version": "3.12.0",
    "implementation_name": "cpython",
    "implementation_version": "3.12.0",
    "platform_python_implementation": "CPython",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "sys_platform": "linux",
    "os_name": "posix",
    "platform_release": "",
    "platform_version": "",
    "extra": "",
}


def read_set(path: Path) -> dict[str, Version]:
    """name -> pinned version, following `-r` includes; anything but `name==version` fails."""
    pins: dict[str, Version] = {}
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("-r "):
            pins.update(read_set(path.parent / line[3:].strip()))
            continue
        requirement = Requirement(line)
        specifiers = list(requirement.specifier)
        assert len(specifiers) == 1 and specifiers[0].operator == "==", f"{path.name}:{number}"
        assert not requirement.marker and not requirement.extras, f"{path.name}:{number}"
        name = canonicalize_name(requirement.name)
        assert name not in pins, f"{name} pinned twice ({path.name}:{number})"
        pins[name] = Version(specifiers[0].version)
    return pins


def lambda_dependencies(name: str) -> list[Requirement]:
    requires = importlib.metadata.distribution(name).requires or []
    found = []
    for text in requires:
        requirement = Requirement(text)
        if requirement.marker is None or Marker(str(requirement.marker)).evaluate(LAMBDA_MARKERS):
            found.append(requirement)
    return found


@pytest.mark.parametrize("name", SETS)
def test_set_ships_exactly_the_tested_versions(name: str) -> None:
    for package, version in read_set(REQUIREMENTS / f"{name}.txt").items():
        try:
            installed = Version(importlib.metadata.version(package))
        except importlib.metadata.PackageNotFoundError:
            pytest.fail(f"{package} is in {name}.txt but not in the test environment")
        assert installed == version, (
            f"{name}.txt pins {package}=={version} but the tests run {installed}: "
            "align the pin (or the environment) so that Lambda runs what was tested"
        )


@pytest.mark.parametrize("name", SETS)
def test_set_is_closed_under_its_dependencies(name: str) -> None:
    # The Makefile installs with --no-deps, so a missing transitive pin would be missing in Lambda.
    pins = read_set(REQUIREMENTS / f"{name}.txt")
    for package in pins:
        for requirement in lambda_dependencies(package):
            dependency = canonicalize_name(requirement.name)
            if dependency in RUNTIME_PROVIDED:
                continue
            assert dependency in pins, f"{package} needs {requirement}, which {name}.txt lacks"
            assert requirement.specifier.contains(pins[dependency], prereleases=True), (
                f"{package} needs {requirement}; {name}.txt pins {pins[dependency]}"
            )


def test_sets_agree_with_pyproject() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = [
        Requirement(text)
        for text in [
            *project["dependencies"],
            *project["optional-dependencies"]["vision"],
            *project["optional-dependencies"]["dev"],
        ]
    ]
    for name in SETS:
        pins = read_set(REQUIREMENTS / f"{name}.txt")
        for requirement in declared:
            package = canonicalize_name(requirement.name)
            if package in pins:
                assert requirement.specifier.contains(pins[package], prereleases=True), (
                    f"{name}.txt pins {package}=={pins[package]}, pyproject says {requirement}"
                )


def test_what_each_set_must_and_must_not_contain() -> None:
    sets = {name: read_set(REQUIREMENTS / f"{name}.txt") for name in SETS}
    for name, pins in sets.items():
        assert not (set(pins) & (CLI_ONLY | RUNTIME_PROVIDED)), name
        for needed in ("encord", "pydantic", "pydantic-settings", "aws-lambda-powertools"):
            assert needed in pins, (name, needed)
        assert pins["encord"] == Version("0.1.211")
    assert not (set(sets["producer"]) & VISION_ONLY)
    assert not (set(sets["consumer"]) & VISION_ONLY)
    assert set(sets["vision"]) >= VISION_ONLY
    assert set(sets["consumer"]) <= set(sets["vision"])


# ------------------------------------------------------------------------------ Makefile


def make(*args: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    env = {k: v for k, v in os.environ.items() if k not in ("ARTIFACTS_DIR", "MAKEFLAGS")}
    env.pop("CONSUMER_REQUIREMENTS", None)
    return subprocess.run(
        ["make", "--no-print-directory", "-C", str(REPO), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("target", "requirements"),
    [("build-ProducerFunction", "producer.txt"), ("build-ConsumerFunction", "vision.txt")],
)
def test_make_targets_install_for_the_lambda_platform(target: str, requirements: str) -> None:
    result = make("-n", target, "ARTIFACTS_DIR=/tmp/agentkit-artifacts")
    assert result.returncode == 0, result.stderr
    commands = result.stdout
    for argument in (
        "--platform manylinux2014_x86_64",
        "--only-binary=:all:",
        "--implementation cp",
        "--python-version 3.12",
        "--no-compile",
        "--no-deps",
        '--target "/tmp/agentkit-artifacts"',
        f"requirements/{requirements}",
    ):
        assert argument in commands, argument
    for package in ("agent_core", "handlers", "agents"):
        assert f'cp -R "{REPO}/{package}" "/tmp/agentkit-artifacts/{package}"' in commands
    assert f'"{REPO}/infra"' not in commands
    assert f'"{REPO}/tests"' not in commands


def test_consumer_requirements_are_selectable() -> None:
    result = make(
        "-n",
        "build-ConsumerFunction",
        "ARTIFACTS_DIR=/tmp/agentkit-artifacts",
        "CONSUMER_REQUIREMENTS=requirements/consumer.txt",
    )
    assert result.returncode == 0, result.stderr
    assert "requirements/consumer.txt" in result.stdout
    assert "vision.txt" not in result.stdout


def test_make_without_artifacts_dir_explains_itself() -> None:
    result = make("build-ProducerFunction")
    assert result.returncode != 0
    assert "ARTIFACTS_DIR is not set" in result.stderr


def test_make_with_a_missing_requirements_file_explains_itself() -> None:
    result = make(
        "build-ConsumerFunction",
        "ARTIFACTS_DIR=/tmp/agentkit-never-created",
        "CONSUMER_REQUIREMENTS=requirements/nope.txt",
    )
    assert result.returncode != 0
    assert "requirements file requirements/nope.txt not found" in result.stderr
    assert not Path("/tmp/agentkit-never-created").exists()
