"""Calls that end by a deadline, whatever the code they run does (hangs, BaseExceptions).

Python cannot kill a thread, and Lambda kills the whole execution environment at the function
timeout, which loses every answer of the batch. So each bounded call runs in a fresh daemon
thread, and the caller stops waiting at the deadline: the call is then *abandoned* (it fails
alone, with ``DeadlineExceeded``) and its thread keeps running, unobserved, until it ends or the
environment is recycled. Nothing an abandoned call returns is used: results travel only through
``bounded_call``'s return value, which the caller no longer reads.

Why a fresh thread per call (measured ~0.1 ms each, see docs/LEASES.md "Threads"): a hung call
then holds only its own thread; the next task or invocation never queues behind it, which a
shared worker pool would do once a hung call occupies a worker.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class DeadlineExceeded(Exception):
    """A bounded call did not end by its deadline and was abandoned."""

    def __init__(self, what: str, seconds: float) -> None:
        super().__init__(f"{what} did not finish within the {seconds:.1f}s it had; abandoned")
        self.seconds = seconds


_abandoned_lock = threading.Lock()
_abandoned: list[threading.Thread] = []


def abandoned_threads() -> int:
    """How many abandoned calls are still running in this process."""
    with _abandoned_lock:
        _abandoned[:] = [t for t in _abandoned if t.is_alive()]
        return len(_abandoned)


def bounded_call(fn: Callable[[], T], *, deadline: float | None, what: str) -> T:
    """``fn()`` if it returns or raises by ``deadline`` (``time.monotonic()``), else raise
    DeadlineExceeded. Any exception ``fn`` raises, BaseException included, is re-raised here, in
    the caller's thread; so a ``CancelledError`` or ``SystemExit`` from ``fn`` is the caller's to
    handle, never the runtime's."""
    if deadline is None:
        return fn()
    box: list[object] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            box.append(fn())
        except BaseException as exc:  # carried to the caller, whatever it is
            failure.append(exc)

    seconds = max(0.0, deadline - time.monotonic())
    thread = threading.Thread(target=target, name=f"bounded:{what[:40]}", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        with _abandoned_lock:
            _abandoned.append(thread)
        raise DeadlineExceeded(what, seconds)
    if failure:
        raise failure[0]
    return box[0]  # type: ignore[return-value]
