"""The application: one request in, one response (or a dropped connection) out.

Between the transport (``transport.py``) and the handlers it applies what every route shares:
control routes only for loopback clients; for every other request the counter, the fault rules
(delay, injected status, dropped connection) and, by route kind, signature verification and the
shape of an error (JSON ``{message}``, the RPC envelope, plain text for media).
"""

from __future__ import annotations

import json
import sys
import threading
import time
import traceback
from http import HTTPStatus
from typing import Final

from infra.emulator import blobs, rpc
from infra.emulator.auth import KeyRegistry, verify_rest, verify_rpc
from infra.emulator.control import ControlHooks
from infra.emulator.counters import Counters
from infra.emulator.errors import ApiError
from infra.emulator.faults import Faults
from infra.emulator.media import MediaStore
from infra.emulator.render import Links
from infra.emulator.routing import Request, Response, Route, RouteTable
from infra.emulator.state import EmulatorState
from infra.emulator.urls import ROUTES


class _Drop:
    """The answer "close the connection without a response" (an injected ``drop`` fault)."""


DROP: Final = _Drop()
LOOPBACK = ("127.0.0.1", "::1")


class EmulatorApp:
    """Dispatches parsed requests; shared by all server threads (its parts are thread-safe)."""

    def __init__(
        self,
        state: EmulatorState,
        keys: KeyRegistry,
        counters: Counters,
        faults: Faults,
        media: MediaStore,
        *,
        control: ControlHooks | None = None,
        routes: RouteTable = ROUTES,
    ) -> None:
        self.state = state
        self.keys = keys
        self.counters = counters
        self.faults = faults
        self.media = media
        self.control = control
        self.routes = routes
        self.links = Links(media, "")  # the domain is set once the server has its port
        self._warned: set[str] = set()
        self._warned_lock = threading.Lock()

    def set_domain(self, domain: str) -> None:
        self.links = Links(self.media, domain)

    def handle(self, req: Request, client_host: str) -> Response | _Drop:
        if req.path.startswith("/_emulator"):
            if client_host not in LOOPBACK:
                return Response.json({"message": "Control endpoints are loopback-only."}, 403)
            return self._control(req)

        matched = self.routes.match(req.method, req.path)
        name = self._name(req, matched[0] if matched else None)
        self.counters.incr(name)
        decision = self.faults.decide(name)
        if decision.delay_s > 0:
            time.sleep(decision.delay_s)
        if decision.action == "drop":
            self.counters.incr_injected(name, "drop")
            return DROP
        if decision.action is not None:
            self.counters.incr_injected(name, str(decision.action))
            headers = {}
            if decision.retry_after is not None and decision.action in (429, 503, 413):
                headers["Retry-After"] = str(int(decision.retry_after))
            message = HTTPStatus(decision.action).phrase
            return Response(
                decision.action, json.dumps({"message": message}).encode(), headers=headers
            )
        if matched is None:
            self.warn_once(name)
            return Response.json(
                {"message": f"The emulator has no route {req.method} {req.path}."}, 404
            )
        return self._call(req, *matched)

    @staticmethod
    def _name(req: Request, matched: Route | None) -> str:
        if matched is None:
            return f"UNMATCHED {req.method} {req.path}"
        if matched.kind == "rpc":
            return f"RPC {rpc.call_name(req.body)}"
        return matched.name

    def _control(self, req: Request) -> Response:
        path = req.path.rstrip("/")
        matched = self.routes.match(req.method, path)
        if matched is None or matched[0].kind != "control":
            return Response.json({"message": f"No control endpoint {req.method} {path}."}, 404)
        return self._call(req, *matched)

    def _call(self, req: Request, matched: Route, params: dict[str, str]) -> Response:
        req.params = params
        try:
            if matched.kind == "rest":
                req.key = verify_rest(
                    self.keys,
                    method=req.method,
                    target=req.target,
                    headers=req.headers,
                    body=req.body,
                )
            elif matched.kind == "rpc":
                req.key = verify_rpc(self.keys, headers=req.headers, body=req.body)
            return matched.handler(self, req)
        except ApiError as exc:
            if matched.kind == "rpc":
                return rpc.error(exc)
            if matched.kind == "media":
                return blobs.error(exc)
            return Response.json({"message": exc.message}, exc.status)
        except Exception as exc:  # a bug in the emulator: answer 500 and say so on stderr
            traceback.print_exc()
            return Response.json({"message": f"Emulator error: {type(exc).__name__}: {exc}"}, 500)

    def warn_once(self, name: str) -> None:
        """Say once on stderr that the SDK called something the emulator does not answer."""
        with self._warned_lock:
            if name in self._warned:
                return
            self._warned.add(name)
        print(f"encord emulator: no route for {name}", file=sys.stderr)
