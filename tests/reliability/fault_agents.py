"""Agents for the fault suite, loaded by the real consumer handler in subprocess execution
environments (``AGENT_MODULE=fault_agents:make_fault_runner``).

What a task does is its data title's prefix: ``good_*`` returns "done"; ``hang_*`` never returns;
``cancel_*`` raises ``asyncio.CancelledError``, ``custom_*`` a custom ``BaseException``, both
quoting the Encord key; ``badstr_*`` raises an exception whose ``__str__`` raises; ``slow_*``
sleeps ``SLOW_AGENT_SECONDS``; ``fails_*`` raises while the file named by ``FAIL_FLAG_FILE``
exists. Nothing is counted in memory (the processes are killed): the tests read the emulator.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

from encord.workflow.stages.agent import AgentTask

from agent_core import QueueRunner
from agent_core.exceptions import ConfigurationError

WORK = "work"
ELSEWHERE = "elsewhere"


def fault_fixture(**counts: int) -> dict[str, Any]:
    """One agent stage ``work`` (pathway ``done``) and a human stage to move tasks back from."""
    return {
        "title": "Fault suite project",
        "workflow": {
            "start": WORK,
            "stages": [
                {"title": WORK, "type": "AGENT", "pathways": [{"name": "done", "to": "Complete"}]},
                {"title": ELSEWHERE, "type": "ANNOTATION", "to": "Complete"},
                {"title": "Complete", "type": "DONE"},
            ],
        },
        "media": [
            {"count": n, "title": f"{kind}_{{index:02d}}.jpg", "width": 16, "height": 16}
            for kind, n in counts.items()
        ],
    }


def _key() -> str:
    from agent_core.settings import load_ssh_key

    return load_ssh_key().get_secret_value()


class CustomStop(BaseException):
    """A BaseException that is not an Exception, as some libraries define."""


class BadStr(Exception):
    def __str__(self) -> str:
        raise RuntimeError("__str__ itself fails")


def make_fault_runner() -> QueueRunner:
    runner = QueueRunner(project_hash=os.environ["PROJECT_HASH"])

    @runner.stage(WORK)
    def work(task: AgentTask) -> str:
        kind = task.data_title.split("_")[0]
        if kind == "hang":
            time.sleep(3600)
        elif kind == "cancel":
            raise asyncio.CancelledError(f"cancelled while signing with {_key()}")
        elif kind == "custom":
            raise CustomStop(f"stopped; key was {_key()}")
        elif kind == "badstr":
            raise BadStr()
        elif kind == "slow":
            time.sleep(float(os.environ.get("SLOW_AGENT_SECONDS", "1")))
        elif kind == "fails" and Path(os.environ.get("FAIL_FLAG_FILE", "/nonexistent")).exists():
            raise RuntimeError(f"{task.data_title} cannot be handled yet")
        return "done"

    return runner


def make_leaky_runner() -> QueueRunner:
    """A runner factory that fails with the key in its message (a careless configuration check)."""
    raise ConfigurationError(f"could not use key {_key()}")
