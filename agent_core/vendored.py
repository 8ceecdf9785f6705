"""Packages shipped zipped inside the Lambda package, unpacked to /tmp on first use.

numpy and OpenCV take ~190 MB unpacked, most of the vision build. The Makefile (VISION_ARCHIVE=1,
scripts/lambda_package.py) moves them into one deflate archive, ``_agentkit_vendor/vision.zip`` at
the root of the dependencies layer (``/opt/python`` in Lambda), and the layer shrinks to ~100 MB.
At run time :func:`ensure_vendored` finds it on ``sys.path``, unpacks it once per execution
environment into ``<tmp>/agentkit-vendor-<content hash>`` and puts that directory first on
``sys.path``. ``import agent_core`` calls it, so any code that imports the kit first (both
handlers, and every agent module, which imports the kit to build its runner) gets the packages.

Whatever ships no archive (local development, tests, the lean build) pays one ``os.path.exists``
per ``sys.path`` entry, once per process: the module imports only what an interpreter has loaded
anyway, and the unpacking path imports the rest when it runs.
"""

from __future__ import annotations

import os
import sys

__all__ = [
    "ARCHIVE_DIGEST_SUFFIX",
    "ARCHIVE_NAME",
    "VENDOR_DIR_ENV",
    "ensure_vendored",
    "find_archive",
    "unpack",
]

# Where ensure_vendored unpacks to; unset means the system temporary directory (/tmp in Lambda).
VENDOR_DIR_ENV = "AGENTKIT_VENDOR_DIR"
ARCHIVE_NAME = os.path.join("_agentkit_vendor", "vision.zip")
# The archive's sha256, written beside it at build time so a cold start need not hash ~70 MB.
ARCHIVE_DIGEST_SUFFIX = ".sha256"
_TARGET_PREFIX = "agentkit-vendor-"
_PARTIAL_PREFIX = ".agentkit-vendor-partial-"

# This file is <package root>/agent_core/vendored.py; a package built without a layer (or a test)
# may carry the archive next to the kit's code.
_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# archive path -> directory put on sys.path ("" when no archive ships): later calls are dict hits.
# The key _FOUND stands for "whichever archive find_archive() found".
_activated: dict[str, str] = {}
_FOUND = ""

# Seconds the last unpacking by this process took; None when this process unpacked nothing (no
# archive, or an earlier process of the same environment already had). Reported by the build's
# import check and logged, to keep an eye on the cold-start cost.
last_unpack_seconds: float | None = None


def find_archive() -> str | None:
    """The vendored archive this process ships, or None.

    Looked for next to the kit's code, then at the root of every ``sys.path`` entry: Lambda puts a
    layer's ``python/`` folder on the path as ``/opt/python``.
    """
    for base in (_PACKAGE_ROOT, *sys.path):
        candidate = os.path.join(base or os.curdir, ARCHIVE_NAME)
        if os.path.exists(candidate):
            return candidate
    return None


def ensure_vendored(archive: str | None = None, root: str | None = None) -> str | None:
    """Make the packages of ``archive`` importable; the directory added to sys.path, or None.

    Call it before anything imports numpy or cv2 (``import agent_core`` does). ``archive``
    defaults to :func:`find_archive`'s. Without an archive (every build except the vision one
    with VISION_ARCHIVE=1) this is a no-op. ``root`` is where to unpack: by default
    $AGENTKIT_VENDOR_DIR, else the system temporary directory.
    """
    key = _FOUND if archive is None else archive
    done = _activated.get(key)
    if done is not None:
        return done or None
    path = find_archive() if archive is None else archive
    if path is None or not os.path.exists(path):
        _activated[key] = ""
        return None
    target = unpack(path, root or os.environ.get(VENDOR_DIR_ENV) or _temporary_directory())
    if target not in sys.path:
        # First, so that a numpy from elsewhere on the path cannot shadow the one cv2 was built for.
        sys.path.insert(0, target)
    _activated[key] = target
    return target


def unpack(archive: str, root: str) -> str:
    """Unpack ``archive`` into ``root/agentkit-vendor-<digest>`` unless already there; that path.

    The directory only ever appears by an atomic rename of a completely unpacked one, so its
    existence means it is complete: a warm environment, or a second process, reuses it, and an
    unpacking cut short (a timeout) leaves only a partial directory that the next attempt removes.
    """
    global last_unpack_seconds
    target = os.path.join(root, _TARGET_PREFIX + _archive_digest(archive)[:16])
    if os.path.isdir(target):
        return target

    import errno
    import shutil
    import tempfile
    import time
    import zipfile

    os.makedirs(root, exist_ok=True)
    with _FileLock(target + ".lock"):
        if os.path.isdir(target):
            return target
        # Under the lock no one else is unpacking this archive: leftovers are from a dead process.
        partial_prefix = _PARTIAL_PREFIX + os.path.basename(target) + "-"
        for name in os.listdir(root):
            if name.startswith(partial_prefix):
                shutil.rmtree(os.path.join(root, name), ignore_errors=True)
        started = time.perf_counter()
        with zipfile.ZipFile(archive) as bundle:
            infos = bundle.infolist()
            size = sum(info.file_size for info in infos)
            # Every file also takes up to a block beyond its size.
            if shutil.disk_usage(root).free < size + 4096 * len(infos):
                raise _no_space_error(archive, root, size)
            partial = tempfile.mkdtemp(prefix=partial_prefix, dir=root)
            try:
                bundle.extractall(partial)
                os.rename(partial, target)
            except OSError as exc:
                shutil.rmtree(partial, ignore_errors=True)
                if os.path.isdir(target):
                    return target  # lost a race on a system without flock: theirs is complete
                if exc.errno == errno.ENOSPC:
                    raise _no_space_error(archive, root, size) from exc
                raise
            except BaseException:
                shutil.rmtree(partial, ignore_errors=True)
                raise
        last_unpack_seconds = time.perf_counter() - started

    import logging

    logging.getLogger(__name__).info(
        "unpacked %s (%.0f MB) to %s in %.2f s", archive, size / 1e6, target, last_unpack_seconds
    )
    return target


def _temporary_directory() -> str:
    import tempfile

    return tempfile.gettempdir()


def _archive_digest(archive: str) -> str:
    try:
        with open(archive + ARCHIVE_DIGEST_SUFFIX, encoding="ascii") as handle:
            digest = handle.read().strip()
        if digest:
            return digest
    except FileNotFoundError:
        pass
    return _sha256(archive)


def _sha256(path: str) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class _FileLock:
    """An flock on ``path`` where fcntl exists; elsewhere the atomic rename alone keeps it safe."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._fd = -1

    def __enter__(self) -> None:
        try:
            import fcntl
        except ImportError:
            return
        self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self._fd, fcntl.LOCK_EX)

    def __exit__(self, *exc_info: object) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing releases the flock
            self._fd = -1


def _no_space_error(archive: str, root: str, needed: int) -> Exception:
    import shutil

    from agent_core.exceptions import ConfigurationError

    free = shutil.disk_usage(root).free
    return ConfigurationError(
        f"Not enough space in {root} to unpack {os.path.basename(archive)}: it needs "
        f"{needed / 1e6:.0f} MB and {free / 1e6:.0f} MB are free. Raise the function's "
        "EphemeralStorage (template.yaml, ConsumerFunction: `EphemeralStorage: {Size: 1024}`), "
        "or build the consumer with VISION_ARCHIVE=0 to ship the packages unpacked."
    )
