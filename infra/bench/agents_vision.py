"""Stage functions with media, loaded by the benchmarks through AGENT_MODULE.

Like a real vision agent this module imports numpy and cv2 at the top; the kit's own media
dependencies import them only when they run. ``seen`` counts what the functions looked at, so that
a measurement can check the work was really done (every frame of the video decoded).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from typing import Annotated

import cv2
import numpy as np
from encord.workflow.stages.agent import AgentTask
from numpy.typing import NDArray

from agent_core import Depends, Frame, QueueRunner
from agent_core.dependencies import dep_single_frame, dep_video_iterator

STAGE = "Agent 1"
PATHWAY = "complete"

_lock = threading.Lock()
seen = {"images": 0, "frames": 0, "pixels": 0}


def _count(key: str, pixels: int) -> None:
    with _lock:
        seen[key] += 1
        seen["pixels"] += pixels


def _runner() -> QueueRunner:
    return QueueRunner(project_hash=os.environ["PROJECT_HASH"])


def brightness(frame: NDArray[np.uint8]) -> float:
    grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    return float(np.mean(grey)) / 255.0


def image_frame() -> QueueRunner:
    """Takes the first frame of each image (dep_single_frame) and measures its brightness."""
    runner = _runner()

    @runner.stage(STAGE)
    def run(task: AgentTask, frame: Annotated[NDArray[np.uint8], Depends(dep_single_frame)]) -> str:
        _count("images", int(frame.shape[0] * frame.shape[1]))
        return PATHWAY if brightness(frame) >= 0.0 else "missing"

    return runner


def video_frames() -> QueueRunner:
    """Streams every frame of each video (dep_video_iterator), one decoded frame at a time."""
    runner = _runner()

    @runner.stage(STAGE)
    def run(
        task: AgentTask, frames: Annotated[Iterator[Frame], Depends(dep_video_iterator)]
    ) -> str:
        for frame in frames:
            _count("frames", int(frame.content.shape[0] * frame.content.shape[1]))
            brightness(frame.content)
        return PATHWAY

    return runner
