"""Media dependencies against the emulator's generated images and videos (signed-URL downloads)."""

import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pytest
from encord.workflow.stages.agent import AgentTask
from numpy.typing import NDArray

from agent_core import Depends, QueueRunner
from agent_core.dependencies import (
    dep_asset,
    dep_single_frame,
    dep_video_iterator,
    dep_video_sampler,
)
from agent_core.dependencies.vision import ASSET_DIR_PREFIX
from agent_core.models import Frame

VIDEO_FIXTURE: dict[str, Any] = {
    "title": "Vision",
    "workflow": {
        "start": "Agent 1",
        "stages": [
            {"title": "Agent 1", "type": "AGENT", "pathways": [{"name": "done", "to": "Done"}]},
            {"title": "Done", "type": "DONE"},
        ],
    },
    "media": [
        {"kind": "video", "count": 2, "fps": 10, "duration": 3.0, "width": 96, "height": 64},
        {"kind": "image", "count": 1, "width": 40, "height": 30, "mime": "image/png"},
    ],
}


@pytest.fixture
def private_tempdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Downloads go to this test's own folder, so other runs on the machine cannot show up."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


def leftover_asset_dirs() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob(f"{ASSET_DIR_PREFIX}*"))


def runner_with(emulator: Any, client: Any) -> tuple[QueueRunner, Any, list[Any]]:
    seeded = emulator.seed(VIDEO_FIXTURE)
    runner = QueueRunner(project_hash=seeded.project_hash, client=client)
    tasks = list(runner.project.workflow.get_stage(name="Agent 1").get_tasks())
    return runner, seeded, tasks


def items_for(tasks: Sequence[Any]) -> list[Any]:
    from agent_core.models import BatchItem

    return [BatchItem(item_id=str(t.uuid), task=t.model_dump(mode="json")) for t in tasks]


def is_video(task: Any) -> bool:
    return str(task.data_title).startswith("video")


def test_video_iterator_streams_frames_and_removes_the_download(
    emulator: Any, encord_client: Any, private_tempdir: Path
) -> None:
    runner, _, tasks = runner_with(emulator, encord_client)
    videos = [t for t in tasks if is_video(t)]
    before = leftover_asset_dirs()
    seen: dict[str, list[int]] = {}
    during: list[set[Path]] = []

    @runner.stage("Agent 1")
    def agent(
        task: AgentTask, frames: Annotated[Iterator[Frame], Depends(dep_video_iterator)]
    ) -> str:
        during.append(leftover_asset_dirs() - before)
        indices = []
        for frame in frames:
            assert frame.content.shape == (64, 96, 3) and frame.content.dtype == np.uint8
            indices.append(frame.frame)
        seen[str(task.uuid)] = indices
        return "done"

    emulator.counters.reset()
    outcomes = runner.run_batch("Agent 1", items_for(videos))
    assert [o.status for o in outcomes] == ["succeeded", "succeeded"]
    assert all(indices == list(range(30)) for indices in seen.values())
    # Downloaded into a temporary directory while the task ran, removed afterwards.
    assert all(len(d) == 1 for d in during)
    assert leftover_asset_dirs() - before == set()
    # The two downloads went to the signed URLs from one bulk storage-item request.
    assert emulator.counters.media_total() == 2
    assert emulator.counters.get("POST /v2/public/storage/items/get-bulk") == 1


def test_video_sampler_by_rate_and_by_index(emulator: Any, encord_client: Any) -> None:
    runner, _, tasks = runner_with(emulator, encord_client)
    samples: list[list[int]] = []

    @runner.stage("Agent 1")
    def agent(
        sampler: Annotated[
            Callable[[float | Sequence[int]], Iterator[Frame]], Depends(dep_video_sampler)
        ],
    ) -> None:
        samples.append([f.frame for f in sampler(0.2)])
        samples.append([f.frame for f in sampler([25, 3, 3, 400, 0])])
        samples.append([f.frame for f in sampler(1)])
        for outside in (1.5, 0, -0.5):
            with pytest.raises(ValueError, match="between 0 and 1"):
                sampler(outside)

    outcomes = runner.run_batch("Agent 1", items_for([t for t in tasks if is_video(t)][:1]))
    assert outcomes[0].status == "succeeded", outcomes[0].traceback
    by_rate, by_index, every = samples
    # encord-agents' sampler takes a fraction of the frames (silent difference 1 of issue 10):
    # on a 30-frame clip, 0.2 is every fifth frame and 1 is all 30, whatever the frame rate.
    assert by_rate == [0, 5, 10, 15, 20, 25]
    assert by_index == [0, 3, 3, 25]  # sorted; repeats repeat; past the end stops
    assert every == list(range(30))


def test_asset_and_single_frame_on_an_image(emulator: Any, encord_client: Any) -> None:
    runner, _, tasks = runner_with(emulator, encord_client)
    image = next(t for t in tasks if not is_video(t))
    seen: list[Any] = []

    @runner.stage("Agent 1")
    def agent(
        task: AgentTask,
        asset: Annotated[Path, Depends(dep_asset)],
        frame: Annotated[NDArray[np.uint8], Depends(dep_single_frame)],
    ) -> str:
        seen.append((asset.name, asset.read_bytes()[:8], frame.shape, frame.dtype))
        return "done"

    outcomes = runner.run_batch("Agent 1", items_for([image]))
    assert outcomes[0].status == "succeeded", outcomes[0].traceback
    [(name, head, shape, dtype)] = seen
    item_uuid = emulator.state.data_units[str(image.data_hash)].item_uuid
    assert name == f"{item_uuid}.png" and head == b"\x89PNG\r\n\x1a\n"
    assert shape == (30, 40, 3) and dtype == np.uint8


def test_single_frame_of_a_video_and_unsupported_media(emulator: Any, encord_client: Any) -> None:
    runner, _, tasks = runner_with(emulator, encord_client)
    shapes: list[tuple[int, ...]] = []

    @runner.stage("Agent 1")
    def agent(frame: Annotated[NDArray[np.uint8], Depends(dep_single_frame)]) -> str:
        shapes.append(frame.shape)
        return "done"

    video = next(t for t in tasks if is_video(t))
    assert runner.run_batch("Agent 1", items_for([video]))[0].status == "succeeded"
    assert shapes == [(64, 96, 3)]

    @runner.stage("Agent 1", overwrite=True)
    def frames_of_anything(frames: Annotated[Iterator[Frame], Depends(dep_video_iterator)]) -> str:
        return "done"

    image = next(t for t in tasks if not is_video(t))
    [outcome] = runner.run_batch("Agent 1", items_for([image]))
    assert outcome.status == "failed" and not outcome.retryable
    assert outcome.error_type == "UnsupportedMediaError"
    assert outcome.error == "`dep_video_iterator` only supported for video label rows"


def test_frame_base64_encodings() -> None:
    import base64

    import cv2

    content = np.zeros((4, 6, 3), dtype=np.uint8)
    content[..., 0] = 255  # red in RGB
    frame = Frame(frame=7, content=content)
    # The default is a data URL, as in encord-agents (silent difference 6 of issue 10).
    assert frame.b64_encoding() == "data:image/jpeg;base64," + frame.b64_encoding(
        output_format="raw"
    )
    raw = frame.b64_encoding(".png", "raw")
    decoded = cv2.imdecode(np.frombuffer(base64.b64decode(raw), np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == (4, 6, 3) and decoded[0, 0].tolist() == [0, 0, 255]  # BGR on disk
    assert frame.b64_encoding(".png", "url").startswith("data:image/png;base64,")
    openai = frame.b64_encoding(output_format="openai")
    assert openai["type"] == "image_url" and openai["image_url"]["url"].startswith(
        "data:image/jpeg"
    )
    anthropic = frame.b64_encoding(output_format="anthropic")
    assert anthropic["source"]["media_type"] == "image/jpeg"
