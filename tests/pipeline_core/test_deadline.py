"""bounded_call: a hung or BaseException-raising call fails alone, and threads are reused."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from agent_core.pipeline.deadline import DeadlineExceeded, bounded_call, pool_stats


def test_a_hung_call_is_abandoned_at_its_deadline_and_holds_only_its_worker() -> None:
    release = threading.Event()
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        # Bounded here too, so that an unbounded bounded_call fails this test fast.
        bounded_call(lambda: release.wait(3), deadline=time.monotonic() + 0.2, what="hang")
    assert time.monotonic() - started < 1.0
    # The next call does not wait behind the hung one.
    assert bounded_call(lambda: 42, deadline=time.monotonic() + 1, what="next") == 42
    release.set()


@pytest.mark.parametrize(
    "error", [asyncio.CancelledError("x"), SystemExit(3), KeyboardInterrupt(), ValueError("v")]
)
def test_whatever_the_call_raises_comes_back_to_the_caller(error: BaseException) -> None:
    def fail() -> None:
        raise error

    with pytest.raises(type(error)):
        bounded_call(fail, deadline=time.monotonic() + 1, what="fail")


def test_workers_are_reused_across_calls() -> None:
    bounded_call(lambda: None, deadline=time.monotonic() + 1, what="warm")
    before = pool_stats()["threads_started"]
    for _ in range(100):
        bounded_call(lambda: None, deadline=time.monotonic() + 1, what="call")
    assert pool_stats()["threads_started"] == before


def test_a_call_whose_deadline_has_passed_never_starts() -> None:
    # An abandoned call still runs, unobserved (an Encord commit would land later): so a call
    # with no time left must not be started at all.
    ran = threading.Event()
    with pytest.raises(DeadlineExceeded):
        bounded_call(ran.set, deadline=time.monotonic() - 0.001, what="a late call")
    time.sleep(0.05)
    assert not ran.is_set()
