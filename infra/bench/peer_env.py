"""The released peer, encord-agents 0.2.10, in an environment of its own (``.bench/peer-venv``).

Installed on first use with the pinned uv (``.tools/uv/bin/uv``, from ``scripts/setup``) from
``peer_requirements.txt``: every version pinned and hash-checked, so every run measures the same
peer. It is never a dependency of the kit: nothing of the kit is installed there, and the peer's
code runs only in subprocesses (``peer_worker.py``) that talk to the same emulator.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from infra.bench.common import REPO, BenchError

PEER_VERSION = "0.2.10"
REQUIREMENTS = Path(__file__).with_name("peer_requirements.txt")
DEFAULT_VENV = REPO / ".bench" / "peer-venv"
# Written after a successful install: the hash of the requirements it was installed from.
_STAMP = "agentkit-peer.stamp"


def _uv() -> str:
    pinned = REPO / ".tools" / "uv" / "bin" / "uv"
    if pinned.exists():
        return str(pinned)
    found = shutil.which("uv")
    if found is None:
        raise BenchError("no uv to install the peer with: run `bash scripts/setup` first")
    return found


def _requirements_hash() -> str:
    return hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()


def peer_python(venv: Path = DEFAULT_VENV) -> Path:
    return venv / "bin" / "python"


def is_installed(venv: Path = DEFAULT_VENV) -> bool:
    """True if ``venv`` holds the peer installed from the current requirements."""
    stamp = venv / _STAMP
    return (
        peer_python(venv).exists()
        and stamp.exists()
        and stamp.read_text().strip() == _requirements_hash()
    )


def ensure_peer(venv: Path = DEFAULT_VENV, *, timeout: float = 600.0) -> Path:
    """The peer environment's interpreter, installing the peer first if it is not there yet."""
    if is_installed(venv):
        return peer_python(venv)
    uv = _uv()
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
    env.pop("VIRTUAL_ENV", None)
    steps = [
        # The kit's interpreter version (Lambda's python3.12), never a downloaded one.
        [uv, "venv", "--quiet", "--clear", "--python", sys.executable, str(venv)],
        [
            uv,
            "pip",
            "install",
            "--quiet",
            "--require-hashes",
            "--python",
            str(peer_python(venv)),
            "-r",
            str(REQUIREMENTS),
        ],
    ]
    for command in steps:
        try:
            done = subprocess.run(
                command, env=env, capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired:
            raise BenchError(f"installing the peer took over {timeout:.0f} s") from None
        if done.returncode != 0:
            tail = "\n".join(done.stderr.strip().splitlines()[-8:])
            raise BenchError(f"installing encord-agents {PEER_VERSION} failed:\n{tail}")
    version = subprocess.run(
        [str(peer_python(venv)), "-c", "import encord_agents; print(encord_agents.__version__)"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    ).stdout.strip()
    if version.lstrip("v") != PEER_VERSION:
        raise BenchError(
            f"the peer environment holds encord-agents {version!r}, not {PEER_VERSION}"
        )
    (venv / _STAMP).write_text(_requirements_hash() + "\n")
    return peer_python(venv)
