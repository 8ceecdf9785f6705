"""A test agent for the end-to-end tests, with failures controlled by the data title.

Loaded by the real handlers through ``AGENT_MODULE=e2e_agents:make_runner`` (a factory, so that
every new project seeded by a test gets a runner bound to it).

Titles (see ``E2E_FIXTURE``):
- ``ok_*``     triage -> keep -> check -> accept -> Complete
- ``drop_*``   triage -> drop -> Discarded
- ``flaky_*``  fails its first ``FLAKY_FAILURES`` attempts in triage, then like ``ok_*``
- ``broken_*`` fails every time in triage until ``fix_broken()`` is called
- ``chk_*``    seeded in check -> accept -> Complete
- ``redo_*``   seeded in check -> redo -> Annotate
"""

from __future__ import annotations

import collections
import os
import threading
from typing import Any

from encord.objects import LabelRowV2
from encord.workflow.stages.agent import AgentTask

from agent_core import QueueRunner

FLAKY_FAILURES = 2

E2E_FIXTURE: dict[str, Any] = {
    "title": "End-to-end two-stage project",
    "workflow": {
        "start": "triage",
        "stages": [
            {
                "title": "triage",
                "type": "AGENT",
                "pathways": [{"name": "keep", "to": "check"}, {"name": "drop", "to": "Discarded"}],
            },
            {
                "title": "check",
                "type": "AGENT",
                "pathways": [
                    {"name": "accept", "to": "Complete"},
                    {"name": "redo", "to": "Annotate"},
                ],
            },
            {"title": "Annotate", "type": "ANNOTATION", "to": "Complete"},
            {"title": "Discarded", "type": "DONE"},
            {"title": "Complete", "type": "DONE"},
        ],
    },
    "media": [
        {"count": 6, "title": "ok_{index:02d}.jpg", "stage": "triage", "width": 64, "height": 48},
        {"count": 3, "title": "drop_{index:02d}.jpg", "stage": "triage", "width": 64, "height": 48},
        {
            "count": 1,
            "title": "flaky_{index:02d}.jpg",
            "stage": "triage",
            "width": 64,
            "height": 48,
        },
        {
            "count": 2,
            "title": "broken_{index:02d}.jpg",
            "stage": "triage",
            "width": 64,
            "height": 48,
        },
        {"count": 4, "title": "chk_{index:02d}.jpg", "stage": "check", "width": 64, "height": 48},
        {"count": 2, "title": "redo_{index:02d}.jpg", "stage": "check", "width": 64, "height": 48},
    ],
}


# The same project without the failing items, for tests that do not need retries.
E2E_FIXTURE_NO_FAILURES = {
    **E2E_FIXTURE,
    "media": [
        m for m in E2E_FIXTURE["media"] if not str(m["title"]).startswith(("flaky", "broken"))
    ],
}


class TransientModelError(RuntimeError):
    """A failure a retry cures."""


class BrokenModelError(RuntimeError):
    """A failure only a fix of the agent cures."""


_lock = threading.Lock()
ATTEMPTS: collections.Counter[tuple[str, str]] = collections.Counter()
_broken_fixed = threading.Event()


def reset() -> None:
    with _lock:
        ATTEMPTS.clear()
    _broken_fixed.clear()


def fix_broken() -> None:
    _broken_fixed.set()


def attempts(stage: str, title: str) -> int:
    with _lock:
        return ATTEMPTS[(stage, title)]


def _attempt(stage: str, task: AgentTask) -> int:
    with _lock:
        ATTEMPTS[(stage, task.data_title)] += 1
        return ATTEMPTS[(stage, task.data_title)]


def make_runner() -> QueueRunner:
    runner = QueueRunner(project_hash=os.environ["PROJECT_HASH"])

    @runner.stage("triage")
    def triage(task: AgentTask, lr: LabelRowV2) -> str:
        attempt = _attempt("triage", task)
        title = task.data_title
        if title.startswith("flaky") and attempt <= FLAKY_FAILURES:
            raise TransientModelError(f"model timed out on {title} (attempt {attempt})")
        if title.startswith("broken") and not _broken_fixed.is_set():
            raise BrokenModelError(f"model cannot read {title}")
        assert lr.data_hash == str(task.data_hash)
        return "drop" if title.startswith("drop") else "keep"

    @runner.stage("check")
    def check(task: AgentTask) -> str:
        _attempt("check", task)
        return "redo" if task.data_title.startswith("redo") else "accept"

    return runner
