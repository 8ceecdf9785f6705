"""The part of Lambda's context object the pipeline uses, and a local stand-in for it.

The CLI, the local poller and the tests call the real handlers with a ``LocalLambdaContext``;
in AWS the runtime passes its own context object, which has the same attributes.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Protocol


class LambdaContextLike(Protocol):
    """The attributes of ``awslambdaric``'s context that the handlers and Powertools read."""

    @property
    def aws_request_id(self) -> str: ...

    @property
    def function_name(self) -> str: ...

    @property
    def memory_limit_in_mb(self) -> int | str: ...

    @property
    def invoked_function_arn(self) -> str: ...

    def get_remaining_time_in_millis(self) -> int: ...


@dataclass
class LocalLambdaContext:
    """A Lambda context for running a handler outside Lambda; the clock starts when it is made."""

    function_name: str = "agentkit-local"
    timeout_ms: int = 900_000
    memory_limit_in_mb: int = 1024
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:000000000000:function:agentkit-local"
    function_version: str = "$LATEST"
    log_group_name: str = "/aws/lambda/agentkit-local"
    log_stream_name: str = "local"
    _started: float = field(default_factory=time.monotonic, repr=False)

    def get_remaining_time_in_millis(self) -> int:
        elapsed_ms = (time.monotonic() - self._started) * 1000
        return max(0, int(self.timeout_ms - elapsed_ms))


def ensure_context(context: object | None, *, timeout_ms: int = 900_000) -> LambdaContextLike:
    """The given context, or a fresh local one when a caller passes None (e.g. a script)."""
    if context is None:
        return LocalLambdaContext(timeout_ms=timeout_ms)
    return context  # type: ignore[return-value]
