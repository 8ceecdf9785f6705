"""Request counters per endpoint, named by route template (``GET /v2/public/projects/{project_hash}``).

Every request the server receives is counted once, before authentication and fault injection,
so a retried request counts once per attempt. Control endpoints (``/_emulator/...``) are not
counted. Requests that match no route are counted as ``UNMATCHED <METHOD> <path>`` so that a
missing route shows up in a test's counter snapshot instead of only as an SDK exception.
"""

from __future__ import annotations

import threading
from collections import Counter

BLOB_ROUTE_PREFIXES = ("GET /blobs/", "HEAD /blobs/")


class Counters:
    """Thread-safe request counters; ``injected`` counts the faults that were actually applied."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: Counter[str] = Counter()
        self._injected: Counter[str] = Counter()

    def incr(self, name: str) -> None:
        with self._lock:
            self._requests[name] += 1

    def incr_injected(self, name: str, kind: str) -> None:
        with self._lock:
            self._injected[f"{kind} {name}"] += 1

    def snapshot(self) -> dict[str, int]:
        """Requests received per route name since the last reset."""
        with self._lock:
            return dict(self._requests)

    def injected(self) -> dict[str, int]:
        """Faults applied, keyed ``"<429|500|503|drop> <route name>"``."""
        with self._lock:
            return dict(self._injected)

    def get(self, name: str) -> int:
        with self._lock:
            return self._requests.get(name, 0)

    def reset(self) -> None:
        with self._lock:
            self._requests.clear()
            self._injected.clear()

    def encord_total(self) -> int:
        """Requests to the Encord API (REST and RPC), excluding media blob downloads."""
        with self._lock:
            return sum(
                n for k, n in self._requests.items() if not k.startswith(BLOB_ROUTE_PREFIXES)
            )

    def media_total(self) -> int:
        """Requests for media blobs behind signed URLs."""
        with self._lock:
            return sum(n for k, n in self._requests.items() if k.startswith(BLOB_ROUTE_PREFIXES))
