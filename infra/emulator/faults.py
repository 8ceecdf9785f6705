"""Fault injection per endpoint: added latency, error statuses (429 / 500 / 503), dropped connections.

A rule matches route names (the same names the counters use, e.g.
``GET /v2/public/projects/{project_hash}/workflow/stages/{stage_uuid}/tasks`` or
``RPC labelrow.GET``) by glob, or by regular expression when the pattern starts with ``re:``.
Random decisions come from one ``random.Random(seed)``, so a run with the same seed and the same
request order injects the same faults.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import random
import re
import threading
from dataclasses import dataclass, field
from typing import Any, Literal

from infra.emulator.errors import bad_request

FAULT_STATUSES = frozenset({413, 429, 500, 502, 503, 504})
SequenceEntry = int | Literal["ok", "drop"]


@dataclass
class FaultRule:
    """One fault rule. All matching rules add their latency; the first one that fires decides the fault.

    - ``endpoint``: glob on the route name (``*`` matches everything, including ``/``), or
      ``re:<regex>`` searched in it.
    - ``latency_ms`` + uniform ``[0, jitter_ms]``: delay before the request is handled.
    - ``rate``: fraction of matching requests answered with ``status``.
    - ``sequence``: a fixed script for the matching requests in order: an HTTP status fails that
      request, ``"ok"`` (or 200) lets it through, ``"drop"`` closes the connection without an
      answer. After the script ends the rule only adds latency.
    - ``drop_rate``: fraction of matching requests whose connection is dropped.
    - ``retry_after``: seconds sent as ``Retry-After`` on 429 and 503 (``None``: no header).
    - ``max_count``: at most this many faults from this rule (latency is not counted).
    """

    endpoint: str = "*"
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    rate: float = 0.0
    status: int = 503
    sequence: list[SequenceEntry] | None = None
    drop_rate: float = 0.0
    retry_after: int | None = 0
    max_count: int | None = None
    # Bookkeeping, not configuration.
    matched: int = field(default=0, compare=False)
    injected: int = field(default=0, compare=False)

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate <= 1.0 or not 0.0 <= self.drop_rate <= 1.0:
            raise ValueError("FaultRule rate and drop_rate must be between 0 and 1")
        if self.status not in FAULT_STATUSES:
            raise ValueError(f"FaultRule status must be one of {sorted(FAULT_STATUSES)}")
        if self.latency_ms < 0 or self.jitter_ms < 0:
            raise ValueError("FaultRule latency_ms and jitter_ms must not be negative")
        for entry in self.sequence or []:
            if entry not in ("ok", "drop", 200) and entry not in FAULT_STATUSES:
                raise ValueError(
                    f"FaultRule sequence entry {entry!r}: use 'ok', 'drop' or one of "
                    f"{sorted(FAULT_STATUSES)}"
                )
        if self.endpoint.startswith("re:"):
            self._regex: re.Pattern[str] | None = re.compile(self.endpoint[3:])
        else:
            self._regex = re.compile(fnmatch.translate(self.endpoint))

    def matches(self, route: str) -> bool:
        assert self._regex is not None
        if self.endpoint.startswith("re:"):
            return self._regex.search(route) is not None
        return self._regex.match(route) is not None

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FaultRule:
        known = {f.name for f in dataclasses.fields(cls)} - {"matched", "injected"}
        unknown = set(data) - known
        if unknown:
            raise bad_request(f"Unknown FaultRule fields {sorted(unknown)}; known: {sorted(known)}")
        try:
            return cls(**data)
        except (TypeError, ValueError, re.error) as exc:
            raise bad_request(f"Invalid FaultRule: {exc}") from None


@dataclass(frozen=True)
class FaultDecision:
    delay_s: float = 0.0
    # None: handle normally; "drop": close the connection; an int: answer with that status.
    action: int | Literal["drop"] | None = None
    retry_after: int | None = None


NO_FAULT = FaultDecision()


class Faults:
    """The active fault rules; ``decide`` is called once per counted request."""

    def __init__(self, seed: int = 0) -> None:
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []
        self._rng = random.Random(seed)

    def add(self, rule: FaultRule) -> FaultRule:
        with self._lock:
            self._rules.append(rule)
        return rule

    def remove(self, rule: FaultRule) -> None:
        with self._lock:
            self._rules = [r for r in self._rules if r is not rule]

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def rules(self) -> list[FaultRule]:
        with self._lock:
            return list(self._rules)

    def decide(self, route: str) -> FaultDecision:
        with self._lock:
            if not self._rules:
                return NO_FAULT
            delay = 0.0
            action: int | Literal["drop"] | None = None
            retry_after: int | None = None
            for rule in self._rules:
                if not rule.matches(route):
                    continue
                index = rule.matched
                rule.matched += 1
                delay += rule.latency_ms / 1000.0
                if rule.jitter_ms:
                    delay += self._rng.uniform(0.0, rule.jitter_ms) / 1000.0
                if action is not None:
                    continue
                if rule.max_count is not None and rule.injected >= rule.max_count:
                    continue
                chosen = self._choose(rule, index)
                if chosen is not None:
                    rule.injected += 1
                    action = chosen
                    retry_after = rule.retry_after
            return FaultDecision(delay_s=delay, action=action, retry_after=retry_after)

    def _choose(self, rule: FaultRule, index: int) -> int | Literal["drop"] | None:
        if rule.sequence is not None:
            if index >= len(rule.sequence):
                return None
            entry = rule.sequence[index]
            if entry == "drop":
                return "drop"
            if entry == "ok" or entry == 200:
                return None
            return int(entry)
        if rule.drop_rate and self._rng.random() < rule.drop_rate:
            return "drop"
        if rule.rate and self._rng.random() < rule.rate:
            return rule.status
        return None
