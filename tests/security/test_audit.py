"""scripts/audit: pip-audit over the Lambda requirement sets and the dev environment.

This machine may not reach a vulnerability service, so the real run only has to end with a verdict
or with the clear "could not audit: <reason>" (exit 0 under --allow-offline). How verdicts map to
exit codes is checked against a stand-in ``pip_audit`` module (a real process answering with a
canned report), so it does not depend on the network.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
VERDICT = re.compile(
    r"^verdict: (no known vulnerabilities|\d+ known vulnerabilities|could not audit: \S.*)$", re.M
)


def _audit(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(REPO / "scripts" / "audit"), *args],
        cwd=REPO,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )


def test_audit_reaches_a_verdict_or_says_why_it_could_not() -> None:
    done = _audit("--allow-offline")
    match = VERDICT.search(done.stdout)
    assert match, (done.stdout, done.stderr)
    if match.group(1).endswith("known vulnerabilities") and match.group(1)[0].isdigit():
        assert done.returncode == 1, done.stdout  # findings are never waved through
    else:
        assert done.returncode == 0, (done.stdout, done.stderr)
    if match.group(1).startswith("could not audit"):
        # Without the flag the same situation is a failure of the audit.
        assert _audit().returncode == 3


def _stand_in(tmp_path: Path, report: dict[str, Any] | None, exit_code: int = 0) -> dict[str, str]:
    """A ``pip_audit`` package first on the path that prints ``report`` (None: fails)."""
    package = tmp_path / "pip_audit"
    package.mkdir()
    (package / "__init__.py").write_text("")
    if report is None:
        body = "import sys\nprint('ConnectionError: no route to host', file=sys.stderr)\n"
    else:
        body = f"import json\nprint(json.dumps({report!r}))\n"
    (package / "__main__.py").write_text(body + f"raise SystemExit({exit_code})\n")
    return {"PYTHONPATH": str(tmp_path)}


def _dependencies(vulnerable: str | None = None, skipped: str | None = None) -> dict[str, Any]:
    names = {"requests": "2.0.0", "pydantic": "2.0.0", "encord": "0.1.0"}
    deps: list[dict[str, Any]] = []
    for name, version in names.items():
        if name == skipped:
            deps.append({"name": name, "skip_reason": f"Dependency not found: {name}"})
            continue
        vulns = []
        if name == vulnerable:
            vulns = [{"id": "PYSEC-0000-1", "fix_versions": ["9.9.9"], "aliases": ["CVE-0-1"]}]
        deps.append({"name": name, "version": version, "vulns": vulns})
    return {"dependencies": deps, "fixes": []}


@pytest.mark.parametrize(
    ("report", "exit_code", "expected", "code", "code_offline"),
    [
        (_dependencies(), 0, "verdict: no known vulnerabilities", 0, 0),
        (_dependencies(vulnerable="requests"), 1, "verdict: ", 1, 1),
        (_dependencies(skipped="encord"), 0, "does not know", 3, 0),
        (None, 1, "could not audit: pip-audit failed (exit 1): ConnectionError", 3, 0),
    ],
    ids=["clean", "vulnerable", "unknown_package", "service_unreachable"],
)
def test_verdicts_and_exit_codes(
    tmp_path: Path,
    report: dict[str, Any] | None,
    exit_code: int,
    expected: str,
    code: int,
    code_offline: int,
) -> None:
    env = _stand_in(tmp_path, report, exit_code)
    strict = _audit("--sets", "producer", env=env)
    offline = _audit("--sets", "producer", "--allow-offline", "--json", env=env)

    assert expected in strict.stdout, strict.stdout + strict.stderr
    assert strict.returncode == code
    assert offline.returncode == code_offline
    summary = json.loads(offline.stdout)
    assert summary["exit_code"] == code_offline and summary["verdict"]
    if report is not None and exit_code == 1:
        assert "requests 2.0.0: PYSEC-0000-1 (CVE-0-1), fixed in 9.9.9" in strict.stdout


def test_an_unpinned_requirement_is_refused(tmp_path: Path) -> None:
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import audit
    finally:
        sys.path.remove(str(REPO / "scripts"))
    (tmp_path / "base.txt").write_text("requests==2.0.0  # pinned\n--index-url https://x\n")
    (tmp_path / "set.txt").write_text("-r base.txt\npydantic>=2\n")
    with pytest.raises(audit.InputError, match=r"set.txt:2: 'pydantic>=2' is not pinned"):
        audit.read_pins(tmp_path / "set.txt")
    (tmp_path / "set.txt").write_text("-r base.txt\nPydantic_Core==2.1\n")
    assert audit.read_pins(tmp_path / "set.txt") == {"requests": "2.0.0", "pydantic-core": "2.1"}
