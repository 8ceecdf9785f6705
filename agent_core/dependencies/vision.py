"""Media dependencies: the task's asset on disk, its first frame, and video frames as a stream.

numpy and cv2 are imported inside these functions only, so that agents that never touch media do
not pay for them. Media is downloaded with a plain GET on the storage item's signed URL (the runners
fetch storage items in bulk with signed URLs) into a temporary directory that is removed when the
task is done. Videos are decoded frame by frame with ``cv2.VideoCapture``: at most one decoded frame
is held at a time, whatever the length of the video.
"""

from __future__ import annotations

import mimetypes
import shutil
import tempfile
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from agent_core.exceptions import DependencyError
from agent_core.models import Frame
from agent_core.vendored import ensure_vendored

if TYPE_CHECKING:
    import numpy as np
    from encord.storage import StorageItem
    from encord.workflow.stages.agent import AgentTask
    from numpy.typing import NDArray

# numpy and cv2 may ship zipped (the vision Lambda build); every import of them here comes later.
ensure_vendored()

__all__ = [
    "ASSET_DIR_PREFIX",
    "UnsupportedMediaError",
    "dep_asset",
    "dep_single_frame",
    "dep_video_iterator",
    "dep_video_sampler",
    "download_asset",
]

# Temporary directories holding downloaded assets are named with this prefix.
ASSET_DIR_PREFIX = "agentkit-asset-"
_CHUNK_BYTES = 1 << 20
# (connect, read) seconds: a stalled download fails the task (retryable) instead of hanging it.
_DOWNLOAD_TIMEOUT = (10.0, 120.0)


class UnsupportedMediaError(DependencyError, ValueError, NotImplementedError):
    """The task's data type is not one this dependency can handle (retrying will not help)."""


def _item_type(storage_item: StorageItem) -> str:
    return str(getattr(storage_item.item_type, "value", storage_item.item_type)).upper()


def _require_type(storage_item: StorageItem, allowed: set[str], what: str) -> str:
    item_type = _item_type(storage_item)
    if item_type not in allowed:
        raise UnsupportedMediaError(
            f"{what} supports {', '.join(sorted(allowed)).lower()} data, but storage item "
            f"{storage_item.uuid} ({storage_item.name!r}) is {item_type.lower()}. Use it only in "
            "stages whose data has that type, or depend on dep_storage_item and handle the type."
        )
    return item_type


def _suffix(storage_item: StorageItem, url: str) -> str:
    mime = storage_item.mime_type
    if mime:
        guessed = mimetypes.guess_extension(mime.split(";")[0].strip())
        if guessed:
            return guessed
    for candidate in (urlparse(url).path, storage_item.name or ""):
        suffix = PurePosixPath(candidate).suffix
        if suffix and len(suffix) <= 6:
            return suffix
    return ""


@contextmanager
def download_asset(storage_item: StorageItem, name: str | None = None) -> Iterator[Path]:
    """Download the item behind its signed URL into a temporary directory, removed on exit."""
    import requests

    url = storage_item.get_signed_url()
    if not url:
        raise UnsupportedMediaError(
            f"Storage item {storage_item.uuid} ({_item_type(storage_item).lower()}) has no single "
            "file to download."
        )
    directory = Path(tempfile.mkdtemp(prefix=ASSET_DIR_PREFIX))
    try:
        path = directory / f"{name or storage_item.uuid}{_suffix(storage_item, url)}"
        with requests.get(url, stream=True, timeout=_DOWNLOAD_TIMEOUT) as response:
            response.raise_for_status()
            with path.open("wb") as handle:
                for chunk in response.iter_content(chunk_size=_CHUNK_BYTES):
                    handle.write(chunk)
        yield path
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def dep_asset(storage_item: StorageItem, task: AgentTask) -> Generator[Path, None, None]:
    """A local copy of the task's image, video or audio file, named ``<data_hash><suffix>``.

    The file and its directory are removed when the task is done.
    """
    _require_type(storage_item, {"IMAGE", "VIDEO", "AUDIO"}, "dep_asset")
    with download_asset(storage_item, name=str(task.data_hash)) as path:
        yield path


def _open_video(path: Path) -> Any:
    import cv2

    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        capture.release()
        raise UnsupportedMediaError(f"OpenCV cannot decode the video {path.name}.")
    return capture


def _read_frames(capture: Any, keep: Callable[[int], bool], last: int | None) -> Iterator[Frame]:
    """Decode ``capture`` frame by frame, yielding (as RGB) those whose index ``keep`` accepts."""
    import cv2

    index = 0
    while last is None or index <= last:
        if not capture.grab():
            return
        if keep(index):
            ok, bgr = capture.retrieve()
            if not ok:
                return
            yield Frame(frame=index, content=cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        index += 1


def dep_single_frame(storage_item: StorageItem, task: AgentTask) -> NDArray[np.uint8]:
    """The first frame of the task's image or video, as an RGB ``[h, w, 3]`` uint8 array."""
    import cv2
    import numpy as np

    item_type = _require_type(storage_item, {"IMAGE", "VIDEO"}, "dep_single_frame")
    with download_asset(storage_item, name=str(task.data_hash)) as path:
        if item_type == "IMAGE":
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if bgr is None:
                raise UnsupportedMediaError(f"OpenCV cannot decode the image {path.name}.")
            return np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), dtype=np.uint8)
        capture = _open_video(path)
        try:
            first = next(_read_frames(capture, lambda _: True, 0), None)
        finally:
            capture.release()
    if first is None:
        raise UnsupportedMediaError(f"The video of task {task.uuid} has no frames.")
    return np.asarray(first.content, dtype=np.uint8)


def dep_video_iterator(
    storage_item: StorageItem, task: AgentTask
) -> Generator[Iterator[Frame], None, None]:
    """An iterator over the task's video frames, decoded one at a time.

    The video is downloaded to a temporary file (removed after the task); frames are not kept in
    memory, so iterate once.
    """
    _require_type(storage_item, {"VIDEO"}, "dep_video_iterator")
    with download_asset(storage_item, name=str(task.data_hash)) as path:
        capture = _open_video(path)
        try:
            yield _read_frames(capture, lambda _: True, None)
        finally:
            capture.release()


VideoSampler = Callable[[float | Sequence[int]], Iterator[Frame]]


def dep_video_sampler(
    storage_item: StorageItem, task: AgentTask
) -> Generator[VideoSampler, None, None]:
    """A function that samples the task's video: ``sampler(fps)`` or ``sampler([frame indices])``.

    ``sampler(2.0)`` yields about two frames per second of video (every frame when the video has
    fewer); ``sampler([0, 10, 20])`` yields those frames, in increasing order, skipping indices past
    the end. Each call decodes the video again from the start, one frame at a time.
    """
    _require_type(storage_item, {"VIDEO"}, "dep_video_sampler")
    with download_asset(storage_item, name=str(task.data_hash)) as path:
        captures: list[Any] = []

        def sample(spec: float | Sequence[int]) -> Iterator[Frame]:
            import cv2

            capture = _open_video(path)
            captures.append(capture)
            if isinstance(spec, bool):
                raise TypeError("sample with a frame rate (float) or a list of frame indices")
            if isinstance(spec, int | float):
                if spec <= 0:
                    raise ValueError(f"sampling rate must be > 0 frames per second, got {spec}")
                video_fps = float(capture.get(cv2.CAP_PROP_FPS) or storage_item.fps or 0.0)
                if video_fps <= 0:
                    raise UnsupportedMediaError(
                        f"The video of task {task.uuid} has no frame rate; sample by frame index."
                    )
                ratio = float(spec) / video_fps

                def by_rate(i: int) -> bool:
                    return ratio >= 1 or i == 0 or int(i * ratio) != int((i - 1) * ratio)

                return _read_frames(capture, by_rate, None)
            wanted = sorted({int(i) for i in spec if int(i) >= 0})
            if not wanted:
                return iter(())
            wanted_set = set(wanted)
            return _read_frames(capture, wanted_set.__contains__, wanted[-1])

        try:
            yield sample
        finally:
            for capture in captures:
                capture.release()
