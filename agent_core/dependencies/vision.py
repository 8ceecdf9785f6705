"""Media dependencies: the task's asset on disk, its first frame, and video frames as a stream.

numpy and cv2 are imported inside these functions only, so that agents that never touch media do
not pay for them. Media is downloaded with a plain GET on the storage item's signed URL (the runners
fetch storage items in bulk with signed URLs) into a temporary directory that is removed when the
task is done. Videos are decoded frame by frame with ``cv2.VideoCapture``: at most one decoded frame
is held at a time, whatever the length of the video.
"""

from __future__ import annotations

import itertools
import mimetypes
import shutil
import tempfile
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from agent_core.exceptions import DependencyError
from agent_core.models import Frame
from agent_core.vendored import ensure_vendored

if TYPE_CHECKING:
    import numpy as np
    from encord.storage import StorageItem
    from numpy.typing import NDArray

# numpy and cv2 may ship zipped (the vision Lambda build); every import of them here comes later.
ensure_vendored()

__all__ = [
    "ASSET_DIR_PREFIX",
    "DOWNLOAD_NATIVE_IMAGE_GROUP_WO_FRAME_ERROR_MESSAGE",
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


# encord-agents' text (its tests compare it) for asking for a whole image group.
DOWNLOAD_NATIVE_IMAGE_GROUP_WO_FRAME_ERROR_MESSAGE = (
    "`frame` parameter set to None for a Native Image Group. "
    "Downloading entire native image group is currently not supported. "
    "Please contact Encord at support@encord.com for help or submit a PR with an implementation."
)
_GROUP_MESSAGE = (
    "Downloading a data group is not supported: depend on dep_storage_item and fetch its "
    "children (storage_item.get_child_items(get_signed_urls=True)) instead."
)
_VIDEO_ONLY = "`{}` only supported for video label rows"

# Storage item types (``StorageItemType`` values) that a dependency tells apart.
VIDEO = "video"
IMAGE = "image"
IMAGE_GROUP = "imageGroup"
IMAGE_SEQUENCE = "imageSequence"
GROUP = "group"
# Types whose file is a video (an image sequence is stored as one).
_VIDEO_FILES = {VIDEO, IMAGE_SEQUENCE}
# When neither the item's MIME type nor its URL or name tells, as encord-agents guesses.
_FALLBACK_MIME = {
    VIDEO: "video/mp4",
    IMAGE_SEQUENCE: "video/mp4",
    "audio": "audio/mp3",
    IMAGE: "image/png",
    IMAGE_GROUP: "image/png",
    "pdf": "application/pdf",
    "plainText": "text/plain",
    "nifti": "application/octet-stream",
}


def _item_type(storage_item: StorageItem) -> str:
    return str(getattr(storage_item.item_type, "value", storage_item.item_type))


def _suffix(storage_item: StorageItem, url: str) -> str:
    """The file suffix encord-agents gives: from the MIME type's subtype (``image/jpeg``:
    ``.jpeg``, ``text/plain``: ``.txt``, ``audio/mpeg``: ``.mp3``), guessed from the URL or the
    item's name when the item has none."""
    mime = next(
        (
            m
            for m in (
                storage_item.mime_type,
                mimetypes.guess_type(urlparse(url).path)[0],
                mimetypes.guess_type(storage_item.name or "")[0],
                _FALLBACK_MIME.get(_item_type(storage_item)),
            )
            if m
        ),
        "application/octet-stream",
    )
    subtype = mime.split(";")[0].strip().split("/")[-1]
    return "." + subtype.replace("plain", "txt").replace("mpeg", "mp3")


@contextmanager
def download_asset(storage_item: StorageItem, frame: int | None = None) -> Iterator[Path]:
    """Download the item behind its signed URL into a temporary directory, removed on exit.

    The file is named ``<storage item uuid><suffix>``, as encord-agents names it. With ``frame``,
    an image group gives that image, and a video (or image sequence) that frame as a PNG.
    """
    import requests

    item_type = _item_type(storage_item)
    # A group has no URL of its own (the SDK warns when asked for one).
    url = None if item_type in (IMAGE_GROUP, GROUP) else storage_item.get_signed_url()
    if item_type == IMAGE_GROUP:
        if frame is None:
            raise UnsupportedMediaError(DOWNLOAD_NATIVE_IMAGE_GROUP_WO_FRAME_ERROR_MESSAGE)
        children = list(storage_item.get_child_items(get_signed_urls=True))
        if not 0 <= frame < len(children):
            raise UnsupportedMediaError(
                f"Image group {storage_item.uuid} has {len(children)} images; there is no "
                f"image {frame}."
            )
        storage_item = children[frame]
        url = storage_item.get_signed_url()
    elif item_type == GROUP:
        raise UnsupportedMediaError(_GROUP_MESSAGE)
    if not url:
        raise UnsupportedMediaError(
            f"Storage item {storage_item.uuid} ({item_type}) has no signed URL to download."
        )
    directory = Path(tempfile.mkdtemp(prefix=ASSET_DIR_PREFIX))
    try:
        path = directory / f"{storage_item.uuid}{_suffix(storage_item, url)}"
        with requests.get(url, stream=True, timeout=_DOWNLOAD_TIMEOUT) as response:
            response.raise_for_status()
            with path.open("wb") as handle:
                for chunk in response.iter_content(chunk_size=_CHUNK_BYTES):
                    handle.write(chunk)
        if frame is not None and item_type in _VIDEO_FILES:
            path = _frame_to_png(path, frame)
        yield path
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _frame_to_png(video: Path, frame: int) -> Path:
    import cv2

    capture = _open_video(video)
    try:
        found = next(_read_frames(capture, frame.__eq__, frame), None)
    finally:
        capture.release()
    if found is None:
        raise UnsupportedMediaError(f"The video {video.name} has no frame {frame}.")
    target = video.with_name(f"{video.name}_{frame}").with_suffix(".png")
    cv2.imwrite(str(target), cv2.cvtColor(found.content, cv2.COLOR_RGB2BGR))
    return target


def dep_asset(storage_item: StorageItem) -> Generator[Path, None, None]:
    """A local copy of the task's file (image, video, image sequence, audio, pdf, text...).

    Named ``<storage item uuid><suffix>`` (``.jpeg`` for a JPEG, as encord-agents); the file and
    its directory are removed when the task is done. An image group has no single file: use
    ``dep_single_frame`` or the storage item's children.
    """
    with download_asset(storage_item) as path:
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


def dep_single_frame(storage_item: StorageItem) -> NDArray[np.uint8]:
    """The first frame of the task's image, image group, image sequence or video, as an RGB
    ``[h, w, 3]`` uint8 array."""
    import cv2
    import numpy as np

    with download_asset(storage_item, frame=0) as path:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise UnsupportedMediaError(
            f"dep_single_frame reads images and videos; storage item {storage_item.uuid} "
            f"({_item_type(storage_item)}) could not be decoded as one."
        )
    return np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), dtype=np.uint8)


def dep_video_iterator(storage_item: StorageItem) -> Generator[Iterator[Frame], None, None]:
    """An iterator over the frames of the task's video or image sequence, decoded one at a time.

    The file is downloaded to a temporary directory (removed after the task); frames are not
    kept in memory, so iterate once. Other data types raise ``NotImplementedError``.
    """
    if _item_type(storage_item) not in _VIDEO_FILES:
        raise UnsupportedMediaError(_VIDEO_ONLY.format("dep_video_iterator"))
    with download_asset(storage_item) as path:
        capture = _open_video(path)
        try:
            yield _read_frames(capture, lambda _: True, None)
        finally:
            capture.release()


VideoSampler = Callable[[float | Sequence[int]], Iterator[Frame]]


def dep_video_sampler(storage_item: StorageItem) -> Generator[VideoSampler, None, None]:
    """A function that samples the task's video, as encord-agents' does.

    ``sampler(rate)`` with a rate in (0, 1] yields frames ``int(k / rate)`` for k = 0, 1, ...:
    ``sampler(1)`` every frame, ``sampler(0.5)`` every second one, ``sampler(1 / 5)`` every
    fifth; a rate outside (0, 1] raises ``ValueError``. ``sampler([1, 2, 3])`` yields those
    frames in increasing order (repeated indices repeat), stopping at the end of the video. Each
    call decodes the video again from the start, one frame at a time. Videos only.
    """
    if _item_type(storage_item) != VIDEO:
        raise UnsupportedMediaError(_VIDEO_ONLY.format("dep_video_sampler"))
    with download_asset(storage_item) as path:
        captures: list[Any] = []

        def sample(spec: float | Sequence[int]) -> Iterator[Frame]:
            if isinstance(spec, int | float):
                if spec <= 0 or spec > 1:
                    raise ValueError(
                        f"Frame sampling rate must be between 0 and 1 (a fraction of the frames: "
                        f"1 for every frame, 0.5 for every second one), got {spec}."
                    )
                rate = float(spec)
                wanted: Iterator[int] = (int(k / rate) for k in itertools.count())
            else:
                wanted = iter(sorted(int(i) for i in spec))
            capture = _open_video(path)
            captures.append(capture)
            return _frames_at(capture, wanted)

        try:
            yield sample
        finally:
            for capture in captures:
                capture.release()


def _frames_at(capture: Any, wanted: Iterator[int]) -> Iterator[Frame]:
    """The frames at the (non-decreasing) indices ``wanted``, until the video ends."""
    frames = _read_frames(capture, lambda _: True, None)
    current = next(frames, None)
    for index in wanted:
        if index < 0:
            continue
        while current is not None and current.frame < index:
            current = next(frames, None)
        if current is None:
            return
        yield current
