"""scripts/package_size.py builds every Lambda package with the Makefile: sizes and imports.

The first run downloads the wheels (~100 MB) into .build/wheels; later runs are offline and take
about half a minute (four pip installs from the wheelhouse, the vision archive, the import checks).

Sizes: Lambda's limit is 262,144,000 bytes (AWS's "250 MB", i.e. MiB). The vision consumer's
budget is 200 MB read as decimal megabytes, 200,000,000 bytes: the stricter of the two readings.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "package_size.py"
LAMBDA_LIMIT_BYTES = 262_144_000
MIB = 1024 * 1024
MB = 1000 * 1000
VISION_BUDGET_BYTES = 200 * MB
# Lambda's default ephemeral storage; the unpacked archive must leave at least half for media.
EPHEMERAL_STORAGE_DEFAULT_BYTES = 512 * MIB
EXIT_NO_WHEELS = 3
VARIANTS = {"lean", "vision", "vision-unpacked"}


@pytest.fixture(scope="module")
def size_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("package-size")
    report_path = work / "report.json"
    command = [sys.executable, str(SCRIPT), "--json", str(report_path), "--clean"]
    command += ["--build-dir", str(work / "build")]
    result = subprocess.run(
        command,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    output = result.stdout[-4000:] + result.stderr[-4000:]
    if result.returncode == EXIT_NO_WHEELS:
        pytest.skip(f"Lambda wheels cannot be fetched (no network?):\n{result.stderr[-1500:]}")
    # 0: all within budget, 1: some budget exceeded; anything else is a broken build or import.
    assert result.returncode in (0, 1), output
    report: dict[str, Any] = json.loads(report_path.read_text())
    report["output"] = output
    report["by_variant"] = {row["variant"]: row for row in report["variants"]}
    return report


def _require_import_check(row: dict[str, Any]) -> dict[str, Any]:
    check: dict[str, Any] = row["import_check"]
    if check["status"] == "skipped":
        pytest.skip(
            f"{row['variant']}: import check skipped ({check['detail']}); install CPython 3.12"
        )
    assert check["status"] == "passed", check["detail"]
    return check


@pytest.mark.package_size
@pytest.mark.timeout(900)
def test_every_package_fits_lambdas_limit_and_imports(size_report: dict[str, Any]) -> None:
    rows = size_report["by_variant"]
    assert set(rows) == VARIANTS, size_report["output"]
    for name, row in rows.items():
        assert row["bytes"] < LAMBDA_LIMIT_BYTES, f"{name}: {row['bytes']:,} bytes"
        assert row["import_check"]["status"] != "failed", row["import_check"]["detail"]


@pytest.mark.package_size
@pytest.mark.timeout(900)
def test_lean_build_stays_within_60_mib(size_report: dict[str, Any]) -> None:
    row = size_report["by_variant"]["lean"]
    assert row["budget_bytes"] == 60 * MIB
    assert row["within_budget"], f"lean: {row['mib']} MiB\n{size_report['output']}"
    assert row["archive_bytes"] is None, "the lean layer must not ship a vendored archive"


@pytest.mark.package_size
@pytest.mark.timeout(900)
def test_vision_build_is_at_most_200_mb(size_report: dict[str, Any]) -> None:
    row = size_report["by_variant"]["vision"]
    assert row["budget_bytes"] == VISION_BUDGET_BYTES
    assert row["bytes"] <= VISION_BUDGET_BYTES, (
        f"vision build is {row['bytes']:,} bytes, over 200 MB\n{size_report['output']}"
    )
    assert row["within_budget"]
    # The archive is where numpy and OpenCV went: most of the package, well compressed.
    assert row["archive_bytes"] is not None
    assert row["archive_bytes"] > row["bytes"] / 2


@pytest.mark.package_size
@pytest.mark.timeout(900)
def test_vision_build_unpacks_its_archive_and_imports(size_report: dict[str, Any]) -> None:
    check = _require_import_check(size_report["by_variant"]["vision"])
    # The handler's import unpacked it; numpy and cv2 came from there; a second process reused it.
    assert check["unpack_seconds"] > 0
    assert check["reuse_seconds"] < check["unpack_seconds"]
    assert 0 < check["unpacked_bytes"] < EPHEMERAL_STORAGE_DEFAULT_BYTES // 2, check


@pytest.mark.package_size
@pytest.mark.timeout(900)
def test_unpacked_vision_build_is_the_opt_out(size_report: dict[str, Any]) -> None:
    row = size_report["by_variant"]["vision-unpacked"]
    assert row["archive_bytes"] is None
    assert row["bytes"] < LAMBDA_LIMIT_BYTES
    assert row["bytes"] > size_report["by_variant"]["vision"]["bytes"]
    _require_import_check(row)


# ------------------------------------------------------------------------------ Makefile switches


def _make_dry_run(*variables: str) -> str:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    env = {k: v for k, v in os.environ.items() if k not in ("ARTIFACTS_DIR", "MAKEFLAGS")}
    for name in ("LAYER_REQUIREMENTS", "VISION_ARCHIVE", "STRIP_LIBRARIES"):
        env.pop(name, None)
    result = subprocess.run(
        ["make", "--no-print-directory", "-n", "-C", str(REPO), "build-DependenciesLayer",
         "ARTIFACTS_DIR=/tmp/agentkit-artifacts", *variables],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_make_packs_numpy_and_opencv_and_strips_by_default() -> None:
    commands = _make_dry_run()
    assert 'lambda_package.py" strip "/tmp/agentkit-artifacts/python"' in commands
    assert (
        'lambda_package.py" pack "/tmp/agentkit-artifacts/python" --dist numpy '
        "--dist opencv-python-headless" in commands
    )
    # A reused ARTIFACTS_DIR must not keep an archive (or packages) from an earlier build.
    assert 'rm -rf "/tmp/agentkit-artifacts/python"' in commands
    # Pack after pruning and stripping, so the archive holds what would have shipped unpacked.
    assert commands.index("-name tests") < commands.index('" strip "') < commands.index('" pack "')


def test_make_switches_turn_the_archive_and_stripping_off() -> None:
    commands = _make_dry_run("VISION_ARCHIVE=0", "STRIP_LIBRARIES=0")
    assert "lambda_package.py" not in commands
    assert "requirements/vision.txt" in commands


def test_make_rejects_an_unknown_switch_value() -> None:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    result = subprocess.run(
        ["make", "--no-print-directory", "-C", str(REPO), "build-DependenciesLayer",
         "ARTIFACTS_DIR=/tmp/agentkit-never-created", "VISION_ARCHIVE=yes"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "VISION_ARCHIVE and STRIP_LIBRARIES take 0 or 1" in result.stderr
    assert not Path("/tmp/agentkit-never-created").exists()
