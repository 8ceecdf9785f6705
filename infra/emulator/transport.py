"""The transport: a threaded ``http.server`` that parses requests for ``EmulatorApp``.

It reads the raw request target (the REST signature covers it undecoded), the headers and the
body, hands them to the app and writes the response back over HTTP/1.1 keep-alive. An injected
``drop`` closes the socket without answering; a client that went away is not an error.
"""

from __future__ import annotations

import contextlib
import socket
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from infra.emulator.app import DROP, EmulatorApp
from infra.emulator.routing import Request, Response

MAX_BODY_BYTES = 64 * 1024 * 1024


class EmulatorHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], app: EmulatorApp, *, quiet: bool = True) -> None:
        self.app = app
        self.quiet = quiet
        super().__init__(address, EmulatorRequestHandler)


class EmulatorRequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: EmulatorHTTPServer
    # Idle keep-alive connections must not pin a thread forever.
    timeout = 60
    # Headers and body go out in separate writes; with Nagle's algorithm the body then waits for
    # the client's delayed ACK (about 40 ms per request on a keep-alive connection).
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        if not self.server.quiet:
            sys.stderr.write(f"emulator {self.address_string()} {format % args}\n")

    def do_GET(self) -> None:
        self._handle()

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def _read_body(self) -> bytes | None:
        """The body, or None if its Content-Length is malformed or too large."""
        length = self.headers.get("Content-Length")
        if length is None:
            return b""
        try:
            size = int(length)
        except ValueError:
            return None
        return self.rfile.read(size) if size <= MAX_BODY_BYTES else None

    def _handle(self) -> None:
        body = self._read_body()
        if body is None:
            self._send(Response.json({"message": "Bad or too large Content-Length."}, 413))
            return
        split = urlsplit(self.path)
        req = Request(
            method=self.command,
            target=self.path,
            path=split.path,
            query=parse_qs(split.query, keep_blank_values=True),
            headers={k: v for k, v in self.headers.items()},
            body=body,
        )
        response = self.server.app.handle(req, self.client_address[0])
        if response is DROP:
            self._drop()
        else:
            assert isinstance(response, Response)
            self._send(response, head=req.method == "HEAD")

    def _drop(self) -> None:
        self.close_connection = True
        # The peer may already be gone; a drop only needs the socket closed.
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _send(self, response: Response, *, head: bool = False) -> None:
        try:
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            for key, value in response.headers.items():
                self.send_header(key, value)
            if "Content-Length" not in response.headers:
                self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            if not head and response.body:
                self.wfile.write(response.body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
