"""Test agents for the reliability tests, loaded by the real handlers through AGENT_MODULE.

``make_soak_runner`` drives the soak test. What a task does is decided by its title's index, so
every run injects the same agent faults into the same tasks:

- ``triage``: ``i % 50 == 7`` always raises (2% of the tasks end in the DLQ); ``i % 10 == 3``
  raises on its first call only (10%); ``i % 100 == 17`` hangs on its first call and
  ``i % 100 == 27`` raises a BaseException on it (1% each); ``i % 20 == 5`` returns ``drop`` (-> Discarded), every
  other task ``keep`` (-> check).
- ``check``: ``i % 10 == 6`` raises on its first call only (10%); ``i % 25 == 9`` returns
  ``redo`` (-> Annotate), every other task ``accept`` (-> Complete).

Every call is counted per (stage, title), so a test can prove that nothing ran more often than the
injected faults explain. The other factories each break one thing for the bad-input tests.
"""

from __future__ import annotations

import collections
import os
import threading
from typing import Any

from encord.objects.ontology_labels_impl import LabelRowV2
from encord.workflow.stages.agent import AgentTask

from agent_core import QueueRunner

TRIAGE, CHECK = "triage", "check"
# Where each pathway leads (the workflow below).
DESTINATION = {
    (TRIAGE, "keep"): CHECK,
    (TRIAGE, "drop"): "Discarded",
    (CHECK, "accept"): "Complete",
    (CHECK, "redo"): "Annotate",
}


def soak_fixture(triage_tasks: int, check_tasks: int) -> dict[str, Any]:
    """Tasks titled ``t_0000.jpg``... start in triage, ``c_0000.jpg``... in check."""

    def media(count: int, prefix: str, stage: str) -> dict[str, Any]:
        # Tiny images: the agents never download them, but the emulator still registers them.
        title = prefix + "_{index:04d}.jpg"
        return {"count": count, "title": title, "stage": stage, "width": 16, "height": 16}

    return {
        "title": "Reliability soak project",
        "workflow": {
            "start": TRIAGE,
            "stages": [
                {
                    "title": TRIAGE,
                    "type": "AGENT",
                    "pathways": [
                        {"name": "keep", "to": CHECK},
                        {"name": "drop", "to": "Discarded"},
                    ],
                },
                {
                    "title": CHECK,
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
        "media": [media(triage_tasks, "t", TRIAGE), media(check_tasks, "c", CHECK)],
    }


def index_of(title: str) -> int:
    return int(title.split("_")[1].split(".")[0])


def always_fails(stage: str, title: str) -> bool:
    return stage == TRIAGE and title.startswith("t_") and index_of(title) % 50 == 7


def fails_once(stage: str, title: str) -> bool:
    i = index_of(title)
    return (
        (i % 10 == 3 or i % 100 in (HANGS_ONCE, STOPS_ONCE)) if stage == TRIAGE else (i % 10 == 6)
    )


# Triage tasks whose first call hangs past the invocation's deadline, or raises a BaseException
# that is not an Exception (1% each).
HANGS_ONCE, STOPS_ONCE = 17, 27
HANG_RELEASE = threading.Event()


class SoakStop(BaseException):
    """A BaseException an agent's library might raise (not an Exception)."""


def pathway_for(stage: str, title: str) -> str:
    i = index_of(title)
    if stage == TRIAGE:
        return "drop" if i % 20 == 5 else "keep"
    return "redo" if i % 25 == 9 else "accept"


def expected_route(title: str) -> list[tuple[str, str]]:
    """The (stage, pathway) visits a task makes if nothing goes wrong for good."""
    stage = TRIAGE if title.startswith("t_") else CHECK
    route: list[tuple[str, str]] = []
    while stage in (TRIAGE, CHECK):
        pathway = pathway_for(stage, title)
        route.append((stage, pathway))
        stage = DESTINATION[(stage, pathway)]
    return route


class SoakFailure(RuntimeError):
    """What the soak agents raise on purpose."""


_lock = threading.Lock()
CALLS: collections.Counter[tuple[str, str]] = collections.Counter()


def reset() -> None:
    with _lock:
        CALLS.clear()


def calls() -> dict[tuple[str, str], int]:
    with _lock:
        return dict(CALLS)


def _call(stage: str, title: str) -> None:
    with _lock:
        CALLS[(stage, title)] += 1
        n = CALLS[(stage, title)]
    if always_fails(stage, title):
        raise SoakFailure(f"{stage} cannot handle {title} (attempt {n})")
    if fails_once(stage, title) and n == 1:
        if stage == TRIAGE and index_of(title) % 100 == HANGS_ONCE:
            HANG_RELEASE.wait(120)  # hangs: the consumer abandons it at its deadline
        elif stage == TRIAGE and index_of(title) % 100 == STOPS_ONCE:
            raise SoakStop(f"{stage} stopped on {title}")
        else:
            raise SoakFailure(f"{stage} hit a transient error on {title}")


def make_soak_runner() -> QueueRunner:
    runner = QueueRunner(project_hash=os.environ["PROJECT_HASH"])

    # Takes the label row: the producer carries its metadata and the consumer initialises it.
    @runner.stage(TRIAGE)
    def triage(task: AgentTask, lr: LabelRowV2) -> str:
        assert lr.data_hash == str(task.data_hash)
        _call(TRIAGE, task.data_title)
        return pathway_for(TRIAGE, task.data_title)

    @runner.stage(CHECK)
    def check(task: AgentTask) -> str:
        _call(CHECK, task.data_title)
        return pathway_for(CHECK, task.data_title)

    return runner


# -- the bad-input tests ------------------------------------------------------------------------

WORK = "work"
# One stage; the title says what its function does: ok_* -> "done", badpath_* returns a pathway
# the stage lacks, badtype_* returns a number, fails_* raises, leak_* raises with the Encord key
# (read from the environment) in its message.
EDGE_FIXTURE: dict[str, Any] = {
    "title": "Bad-input project",
    "workflow": {
        "start": WORK,
        "stages": [
            {"title": WORK, "type": "AGENT", "pathways": [{"name": "done", "to": "Complete"}]},
            {"title": "Complete", "type": "DONE"},
        ],
    },
    "media": [
        {"count": 6, "title": "ok_{index:02d}.jpg", "width": 16, "height": 16},
        {"count": 1, "title": "badpath_{index:02d}.jpg", "width": 16, "height": 16},
        {"count": 1, "title": "badtype_{index:02d}.jpg", "width": 16, "height": 16},
        {"count": 1, "title": "fails_{index:02d}.jpg", "width": 16, "height": 16},
        {"count": 1, "title": "leak_{index:02d}.jpg", "width": 16, "height": 16},
    ],
}


def _configured_key() -> str:
    from agent_core.settings import load_ssh_key

    return load_ssh_key().get_secret_value()


def make_edge_runner() -> QueueRunner:
    runner = QueueRunner(project_hash=os.environ["PROJECT_HASH"])

    @runner.stage(WORK)
    def work(task: AgentTask) -> Any:
        title = task.data_title
        with _lock:
            CALLS[(WORK, title)] += 1
        if title.startswith("badpath"):
            return "no-such-pathway"
        if title.startswith("badtype"):
            return 42
        if title.startswith("fails"):
            raise SoakFailure(f"{WORK} cannot handle {title}")
        if title.startswith("leak"):
            # A careless agent: the key it was given ends up in its error message.
            raise RuntimeError(f"signing failed with key {_configured_key()}")
        return "done"

    return runner
