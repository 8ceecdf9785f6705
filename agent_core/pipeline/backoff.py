"""Backoff schedules: the consumer's retry delay for a failed message, and jittered waits for
retrying our own AWS calls."""

from __future__ import annotations

import random

# SQS refuses a visibility timeout above 12 hours.
SQS_MAX_VISIBILITY_SECONDS = 43_200


def retry_visibility_seconds(receive_count: int, base_seconds: int, max_seconds: int) -> int:
    """Seconds a failed message stays invisible before its next attempt.

    ``min(base * 2**(receive_count - 1), max)``: the first failure waits ``base``, each later one
    twice as long, capped at ``max`` and at SQS's 12-hour limit.
    """
    if receive_count < 1:
        receive_count = 1
    base_seconds = max(0, base_seconds)
    cap = min(max(0, max_seconds), SQS_MAX_VISIBILITY_SECONDS)
    # Cap the exponent first: a message received thousands of times must not build a huge int.
    exponent = min(receive_count - 1, 32)
    return int(min(base_seconds * 2**exponent, cap))


def jittered_delay(
    attempt: int,
    base_seconds: float,
    max_seconds: float,
    rng: random.Random | None = None,
) -> float:
    """ "Full jitter" delay before retry ``attempt`` (1-based): uniform in [0, min(max, base*2**(n-1))].

    Random spread keeps many producers that failed together from retrying in lockstep.
    """
    ceiling = min(max_seconds, base_seconds * 2 ** min(max(attempt - 1, 0), 32))
    return (rng or random).uniform(0.0, max(0.0, ceiling))
