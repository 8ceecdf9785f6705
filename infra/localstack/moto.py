"""A moto server on 127.0.0.1 in a background thread, and the AWS environment pointing at it.

moto keeps its backends in module globals, so every moto server (and ``mock_aws``) in one process
shares one account state: queues created through one endpoint are visible through another. Names
of local resources are therefore made unique per stack rather than relying on server isolation.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
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


@dataclass
class MotoServer:
    """A running ``ThreadedMotoServer``; use ``MotoServer.start()`` or as a context manager."""

    endpoint_url: str
    region: str = LOCAL_REGION
    _server: Any = field(default=None, repr=False)

    @classmethod
    def start(cls, region: str = LOCAL_REGION) -> MotoServer:
        from moto.server import ThreadedMotoServer

        # werkzeug logs every request at INFO to stderr unless its logger already has a level;
        # a local run makes thousands of SQS calls, which would bury the output people read.
        werkzeug_log = logging.getLogger("werkzeug")
        if werkzeug_log.level == logging.NOTSET:
            werkzeug_log.setLevel(logging.WARNING)
        # port=0: the OS picks a free port, so parallel runs and test sessions never collide.
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
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
