"""A moto server on 127.0.0.1 in a background thread, and the AWS environment pointing at it.

moto keeps its backends in module globals, so every moto server (and ``mock_aws``) in one process
shares one account state: queues created through one endpoint are visible through another. Names
of local resources are therefore made unique per stack rather than relying on server isolation.

The server serialises DynamoDB requests (``AtomicDynamoDB``): moto evaluates a condition expression
and writes without a lock, so two parallel conditional writes to one item can both succeed, where
DynamoDB admits exactly one. The task leases depend on that guarantee. SQS requests (long polls
included) stay concurrent. RELIABILITY.md lists this and the other local-stand-in differences.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

LOCAL_REGION = "us-east-1"
LOCAL_ACCOUNT_ID = "123456789012"  # moto's default account

# Variables that would send boto3 somewhere else (a real profile, real credentials) if inherited.
_AWS_VARIABLES_TO_CLEAR = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
)


def local_aws_env(endpoint_url: str, region: str = LOCAL_REGION) -> dict[str, str | None]:
    """The environment that points every boto3 client at ``endpoint_url`` with dummy credentials.

    A value of None means "unset this variable".
    """
    env: dict[str, str | None] = dict.fromkeys(_AWS_VARIABLES_TO_CLEAR)
    env.update(
        {
            "AWS_ENDPOINT_URL": endpoint_url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": region,
            "AWS_REGION": region,
            # Never read ~/.aws: a developer's real config must not leak into a local run.
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        }
    )
    return env


@contextlib.contextmanager
def patched_environ(values: Mapping[str, str | None]) -> Iterator[None]:
    """Set (or, for None, unset) environment variables, restoring the previous values on exit."""
    saved = {name: os.environ.get(name) for name in values}
    try:
        for name, value in values.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        yield
    finally:
        for name, old in saved.items():
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old


# The X-Amz-Target prefix of every DynamoDB API call (JSON protocol, API version 2012-08-10).
_DYNAMODB_TARGET_PREFIX = "DynamoDB_"

WsgiApp = Callable[[dict[str, Any], Any], Iterable[bytes]]


class AtomicDynamoDB:
    """WSGI middleware that lets moto serve one DynamoDB request at a time.

    DynamoDB applies a conditional write atomically; moto checks the condition and then writes,
    without a lock, so parallel lease claims on one task can all succeed against it (measured on
    a plain moto server: 9 double claims in 40 six-way races). Holding one lock across each
    DynamoDB request, response body included, restores AWS's guarantee. Other services pass
    straight through, so an SQS long poll never waits behind a DynamoDB call or the reverse.
    """

    def __init__(self, app: WsgiApp) -> None:
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if not str(environ.get("HTTP_X_AMZ_TARGET", "")).startswith(_DYNAMODB_TARGET_PREFIX):
            return self.app(environ, start_response)
        with self.lock:
            result = self.app(environ, start_response)
            try:
                # Render the whole body under the lock: a lazy iterable would run moto's code
                # after the lock is released.
                return [b"".join(result)]
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()


def start_threaded_moto_server(ip_address: str = "127.0.0.1", port: int = 0) -> Any:
    """A started ``ThreadedMotoServer`` whose DynamoDB requests go through ``AtomicDynamoDB``."""
    from moto.moto_server.threaded_moto_server import ThreadedMotoServer
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    class AtomicMotoServer(ThreadedMotoServer):
        # Same as ThreadedMotoServer._server_entry, with the app wrapped.
        def _server_entry(self) -> None:
            app = AtomicDynamoDB(DomainDispatcherApplication(create_backend_app))
            self._server = make_server(
                self._ip_address, self._port, app, True, request_handler=MotoRequestHandler
            )
            self._server_ready_event.set()
            self._server.serve_forever()

    server = AtomicMotoServer(ip_address=ip_address, port=port, verbose=False)
    server.start()
    return server


@dataclass
class MotoServer:
    """A running moto server (DynamoDB made atomic, see ``AtomicDynamoDB``); use
    ``MotoServer.start()`` or as a context manager."""

    endpoint_url: str
    region: str = LOCAL_REGION
    _server: Any = field(default=None, repr=False)

    @classmethod
    def start(cls, region: str = LOCAL_REGION) -> MotoServer:
        # werkzeug logs every request at INFO to stderr unless its logger already has a level;
        # a local run makes thousands of SQS calls, which would bury the output people read.
        werkzeug_log = logging.getLogger("werkzeug")
        if werkzeug_log.level == logging.NOTSET:
            werkzeug_log.setLevel(logging.WARNING)
        # port=0: the OS picks a free port, so parallel runs and test sessions never collide.
        server = start_threaded_moto_server("127.0.0.1", 0)
        host, port = server.get_host_and_port()
        return cls(endpoint_url=f"http://{host}:{port}", region=region, _server=server)

    def aws_env(self) -> dict[str, str | None]:
        return local_aws_env(self.endpoint_url, self.region)

    def client(self, service: str) -> Any:
        """A boto3 client for this server that does not depend on the process environment."""
        import boto3

        return boto3.session.Session().client(
            service,  # type: ignore[call-overload]
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> MotoServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
