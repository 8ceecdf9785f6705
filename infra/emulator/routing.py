"""The emulator's small HTTP framework: ``Request``, ``Response`` and the routing table's rows.

A route is a method, a path template (``/v2/public/projects/{project_hash}``) and a handler; its
``kind`` says how the application treats it (see ``app.py``): REST routes are signed, RPC is the
legacy ``POST /public`` envelope, media serves signed blob URLs, control routes are the unsigned,
uncounted ``/_emulator`` endpoints. ``urls.py`` holds the one table of every route.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from infra.emulator.auth import RegisteredKey
from infra.emulator.errors import bad_request

if TYPE_CHECKING:
    from infra.emulator.app import EmulatorApp

RouteKind = Literal["rest", "rpc", "media", "control"]


@dataclass
class Request:
    method: str
    target: str  # raw request target, undecoded, as the client sent it (it is signed)
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    params: dict[str, str] = field(default_factory=dict)
    key: RegisteredKey | None = None  # the verified caller of a signed route

    def json(self) -> Any:
        if not self.body:
            return None
        try:
            return json.loads(self.body)
        except ValueError:
            raise bad_request("The request body is not valid JSON.") from None

    def q_list(self, name: str) -> list[str] | None:
        values = self.query.get(name)
        return list(values) if values else None

    def q_one(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else None

    def q_bool(self, name: str) -> bool:
        return (self.q_one(name) or "").lower() in ("true", "1")

    @property
    def caller(self) -> RegisteredKey:
        """The key that signed this request (only signed routes' handlers read it)."""
        assert self.key is not None, "read only behind signature verification"
        return self.key


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, payload: Any, status: int = 200) -> Response:
        return cls(status, json.dumps(payload).encode())


Handler = Callable[["EmulatorApp", Request], Response]


@dataclass(frozen=True)
class Route:
    kind: RouteKind
    method: str
    template: str
    handler: Handler
    regex: re.Pattern[str]

    @property
    def name(self) -> str:
        """What counters and fault rules call this route: ``GET /v2/public/projects/{...}``."""
        return f"{self.method} {self.template}"


def route(kind: RouteKind, method: str, template: str, handler: Handler) -> Route:
    pattern = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(template))
    return Route(kind, method, template, handler, re.compile(f"^{pattern}$"))


class RouteTable:
    """Routes in the order they are tried; the first whose method and template match wins."""

    def __init__(self, routes: Sequence[Route]) -> None:
        self.routes = tuple(routes)

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        for candidate in self.routes:
            found = candidate.regex.match(path) if candidate.method == method else None
            if found is not None:
                # Hashes and UUIDs are compared lower-case everywhere, as on the platform.
                params = {
                    k: v.lower() if k.endswith(("hash", "uuid")) else v
                    for k, v in found.groupdict().items()
                }
                return candidate, params
        return None
