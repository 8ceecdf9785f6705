"""``agentkit emulator serve`` as a real subprocess: one JSON line, then it serves until SIGTERM."""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
from pathlib import Path

from encord.http.constants import RequestsSettings
from encord.user_client import EncordUserClient
from encord.workflow import AgentStage

REPO = Path(__file__).resolve().parents[2]


def _read_line(proc: subprocess.Popen[str], timeout: float) -> str:
    assert proc.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            raise AssertionError(f"no JSON line within {timeout} s")
    return proc.stdout.readline()


def test_serve_prints_one_json_line_and_serves(tmp_path: Path) -> None:
    fixture = tmp_path / "tiny.json"
    fixture.write_text(
        json.dumps(
            {
                "title": "tiny",
                "workflow": {
                    "start": "Agent 1",
                    "stages": [
                        {
                            "title": "Agent 1",
                            "type": "AGENT",
                            "pathways": [{"name": "go", "to": "Done"}],
                        },
                        {"title": "Done", "type": "DONE"},
                    ],
                },
                "media": [{"kind": "image", "count": 3}],
            }
        )
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "agent_core.cli",
            "emulator",
            "serve",
            "--port",
            "0",
            "--fixture",
            "basic",
            "--fixture",
            str(fixture),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        info = json.loads(_read_line(proc, timeout=60))
        assert info["domain"].startswith("http://127.0.0.1:")
        assert len(info["project_hashes"]) == 3  # basic + its twin + tiny
        key_path = Path(info["ssh_key_path"])
        assert key_path.exists()
        client = EncordUserClient.create_with_ssh_private_key(
            ssh_private_key_path=key_path,
            domain=info["domain"],
            requests_settings=RequestsSettings(max_retries=0, connect_timeout=5, read_timeout=10),
        )
        tiny = info["fixtures"][1]["project_hash"]
        project = client.get_project(tiny)
        stage = project.workflow.get_stage(name="Agent 1", type_=AgentStage)
        tasks = list(stage.get_tasks())
        assert len(tasks) == 3
        tasks[0].proceed(pathway_name="go")
        assert len(list(stage.get_tasks())) == 2
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
    assert proc.returncode == 0, err
    assert out == ""  # nothing after the one JSON line
    assert not key_path.exists()  # the key directory is removed on shutdown


def test_serve_reports_a_bad_fixture_without_traceback() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "agent_core.cli",
            "emulator",
            "serve",
            "--fixture",
            "no-such-fixture",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "no-such-fixture" in proc.stderr and "Traceback" not in proc.stderr
