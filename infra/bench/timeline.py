"""When each Encord request and AWS call of a block ran, in this process.

``with Timeline() as t: stack.producer_tick()`` times every HTTP request the encord SDK sends
(through ``requests``' adapter) and every boto3 API call (through botocore's client), by wall
clock and thread, without changing what they do; ``t.summary()`` turns the spans into the tick's
timeline: per operation, how many, how long in total, which share of the tick some call of that
kind was running, and when it first started and last ended.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any

# /v2/public/projects/<hash>/workflow/stages/<uuid>/tasks -> .../projects/{}/workflow/stages/{}/tasks
_ID = re.compile(r"/[0-9a-fA-F-]{16,}")


@dataclass(frozen=True)
class Span:
    operation: str
    start: float
    end: float
    thread: str


def _encord_operation(request: Any) -> str:
    path = re.sub(r"\?.*$", "", str(getattr(request, "path_url", "")))
    path = _ID.sub("/{}", path)
    if path.rstrip("/").endswith("/public"):  # the RPC endpoint: name the request type
        body = getattr(request, "body", b"") or b""
        text = body.decode(errors="replace") if isinstance(body, bytes) else str(body)
        match = re.search(r'"query_type"\s*:\s*"(\w+)"', text) or re.search(
            r'"resource_type"\s*:\s*"(\w+)"', text
        )
        return f"encord RPC {match.group(1) if match else '?'}"
    return f"encord {request.method} {path}"


class Timeline:
    """Spans of the Encord requests and AWS calls made inside the ``with`` block."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.started = 0.0
        self.ended = 0.0
        self._lock = threading.Lock()
        self._restore: list[tuple[Any, str, Any]] = []

    def _record(self, operation: str, start: float) -> None:
        span = Span(operation, start, time.perf_counter(), threading.current_thread().name)
        with self._lock:
            self.spans.append(span)

    def __enter__(self) -> Timeline:
        import botocore.client
        import requests.adapters

        timeline = self
        send = requests.adapters.HTTPAdapter.send
        call = botocore.client.BaseClient._make_api_call

        def timed_send(adapter: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return send(adapter, request, *args, **kwargs)
            finally:
                timeline._record(_encord_operation(request), start)

        def timed_call(client: Any, operation_name: str, api_params: Any) -> Any:
            start = time.perf_counter()
            try:
                return call(client, operation_name, api_params)
            finally:
                service = client.meta.service_model.endpoint_prefix
                timeline._record(f"{service} {operation_name}", start)

        self._restore = [
            (requests.adapters.HTTPAdapter, "send", send),
            (botocore.client.BaseClient, "_make_api_call", call),
        ]
        requests.adapters.HTTPAdapter.send = timed_send  # type: ignore[method-assign]
        botocore.client.BaseClient._make_api_call = timed_call  # type: ignore[method-assign]
        self.started = time.perf_counter()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.ended = time.perf_counter()
        for owner, name, original in self._restore:
            setattr(owner, name, original)
        self._restore = []

    def summary(self) -> dict[str, Any]:
        total = max(self.ended - self.started, 1e-9)
        by_op: dict[str, list[Span]] = {}
        for span in sorted(self.spans, key=lambda s: s.start):
            by_op.setdefault(span.operation, []).append(span)
        operations: dict[str, dict[str, Any]] = {}
        for op, spans in by_op.items():
            operations[op] = {
                "count": len(spans),
                "seconds": sum(s.end - s.start for s in spans),
                "busy_fraction": _covered(spans) / total,
                "first_start": spans[0].start - self.started,
                "last_end": max(s.end for s in spans) - self.started,
                "threads": len({s.thread for s in spans}),
            }
        ordered = dict(sorted(operations.items(), key=lambda kv: -kv[1]["busy_fraction"]))
        return {
            "seconds": total,
            "by_operation": ordered,
            "spans": [
                {
                    "operation": s.operation,
                    "start": round(s.start - self.started, 4),
                    "end": round(s.end - self.started, 4),
                    "thread": s.thread,
                }
                for s in sorted(self.spans, key=lambda s: s.start)
            ],
        }


def _covered(spans: list[Span]) -> float:
    """Wall time during which at least one of ``spans`` ran (overlaps counted once)."""
    covered, end = 0.0, float("-inf")
    for span in sorted(spans, key=lambda s: s.start):
        if span.start > end:
            covered += span.end - span.start
            end = span.end
        elif span.end > end:
            covered += span.end - end
            end = span.end
    return covered
