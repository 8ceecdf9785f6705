"""The Encord private key never leaves the process: not in logs (Powertools' JSON logs and every
logger at DEBUG, botocore's included), exception messages, outcome tracebacks, EMF metrics, DLQ
message bodies and attributes, the lease table, nor the CLI's output.

Each test captures all of it while the pipeline runs in one bad situation, then scans everything
for the key material: the whole key text, each base64 line of its body, and the body joined on
one line. Each test also checks that its trap caught something (a DEBUG line from botocore, the
redaction marker where the key would have been), so a scan of empty captures cannot pass.

Decision on agents that put the key into their own error text (the user's doing): the kit redacts
the configured key (and any private-key block) from every error it records or logs, so the DLQ,
the lease and the logs show "[redacted ...]" instead. What an agent prints or sends itself is out
of the kit's reach.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import subprocess
import sys
import traceback
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import reliability_agents as agents
from reliability_helpers import (
    dlq_raw,
    edge_stack,
    enqueue_and_receive,
    invoke_consumer,
    new_ssh_key,
    record,
)

from agent_core.exceptions import CredentialsError
from infra.localstack.moto import patched_environ
from infra.localstack.stack import reset_handler_state

if TYPE_CHECKING:
    from infra.emulator import Emulator
    from infra.localstack.moto import MotoServer
    from infra.localstack.stack import LocalStack

REPO = Path(__file__).resolve().parents[2]
RELIABILITY = REPO / "tests" / "reliability"
DEBUG_ENV = {
    "POWERTOOLS_LOG_LEVEL": "DEBUG",
    "LOG_LEVEL": "DEBUG",
    "POWERTOOLS_DEBUG": "true",
    "POWERTOOLS_LOGGER_LOG_EVENT": "true",
    "POWERTOOLS_METRICS_DISABLED": "false",
}


def key_material(key: str) -> list[str]:
    """What must never be seen: the key, each line of its base64 body, the body on one line."""
    body = [line.strip() for line in key.strip().splitlines() if "-----" not in line]
    pieces = [key.strip(), "".join(body), *(line for line in body if len(line) >= 16)]
    return [p for p in pieces if p]


class Trap:
    """Everything that leaves the process while it is open, as text."""

    def __init__(self) -> None:
        self.texts: dict[str, io.StringIO] = {
            name: io.StringIO() for name in ("root", "powertools", "stdout", "stderr")
        }
        self.extra: dict[str, str] = {}

    def add(self, name: str, value: Any) -> None:
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        self.extra[name] = self.extra.get(name, "") + "\n" + text

    def all(self) -> dict[str, str]:
        return {**{k: v.getvalue() for k, v in self.texts.items()}, **self.extra}

    def assert_clean(self, *keys: str) -> None:
        material = [m for key in keys for m in key_material(key)]
        for name, text in self.all().items():
            for piece in material:
                assert piece not in text, f"key material found in {name}: ...{piece[:24]}..."

    @contextlib.contextmanager
    def open(self) -> Iterator[Trap]:
        import handlers.consumer
        import handlers.producer

        root = logging.getLogger()
        handler = logging.StreamHandler(self.texts["root"])
        handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        old_root_level, old_disable = root.level, root.manager.disable
        root.addHandler(handler)
        root.setLevel(logging.DEBUG)
        logging.disable(logging.NOTSET)
        # Every logger at DEBUG, whatever an earlier test or library set (levels, disabled).
        quieted = [
            (lg, lg.level, lg.disabled)
            for lg in root.manager.loggerDict.values()
            if isinstance(lg, logging.Logger)
        ]
        for lg, _, _ in quieted:
            lg.setLevel(logging.NOTSET)
            lg.disabled = False
        restore: list[Any] = []
        for pt_logger in (handlers.consumer.logger, handlers.producer.logger):
            registered = pt_logger.registered_handler
            assert isinstance(registered, logging.StreamHandler)
            restore.append((pt_logger, registered, pt_logger.log_level))
            registered.setStream(self.texts["powertools"])
            pt_logger.setLevel("DEBUG")
        try:
            with (
                contextlib.redirect_stdout(self.texts["stdout"]),
                contextlib.redirect_stderr(self.texts["stderr"]),
            ):
                yield self
        finally:
            root.removeHandler(handler)
            root.setLevel(old_root_level)
            logging.disable(old_disable)
            for lg, level, disabled in quieted:
                lg.setLevel(level)
                lg.disabled = disabled
            for pt_logger, registered, level in restore:
                registered.setStream(sys.stdout)
                pt_logger.setLevel(level)


@pytest.fixture
def trap() -> Trap:
    return Trap()


def _leases(stack: LocalStack) -> list[dict[str, Any]]:
    reply = stack.moto.client("dynamodb").scan(TableName=stack.queues.lease_table_name)
    return list(reply.get("Items", []))


def _cli(stack: LocalStack, *args: str, env: dict[str, str | None] | None = None) -> str:
    """Run ``agentkit`` as a user would; its stdout and stderr."""
    full = {**os.environ, **stack.cli_env(), **DEBUG_ENV}
    full["PYTHONPATH"] = os.pathsep.join([str(RELIABILITY), str(REPO)])
    for name, value in (env or {}).items():
        if value is None:
            full.pop(name, None)
        else:
            full[name] = value
    done = subprocess.run(
        [sys.executable, "-m", "agent_core.cli", *args],
        cwd=REPO,
        env=full,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"


def _credentials_error(env: dict[str, str | None]) -> CredentialsError:
    from agent_core.settings import create_user_client

    with patched_environ(env):
        reset_handler_state()
        with pytest.raises(CredentialsError) as caught:
            create_user_client()
    reset_handler_state()
    return caught.value


def _exception_text(exc: BaseException) -> str:
    return f"{exc}\n{''.join(traceback.format_exception(exc))}"


def test_a_working_key_and_an_agent_that_quotes_it(
    emulator: Emulator, local_moto: MotoServer, trap: Trap
) -> None:
    """The key comes from Secrets Manager (logged by botocore at DEBUG); one agent raises with
    the key in its message, others fail in other ways; everything runs to the DLQ."""
    key = emulator.ssh_private_key
    with edge_stack(
        emulator, local_moto, use_secret=True, quiet_handlers=False, extra_env=DEBUG_ENV
    ) as stack:
        with trap.open():
            trap.add("producer", stack.producer_tick())
            stats = stack.drain(timeout_seconds=90)
            trap.add("poller", stats.as_dict())
        assert stats.drained
        parked = dlq_raw(stack)
        trap.add("dlq", parked)
        trap.add("leases", _leases(stack))
        trap.add("cli dlq inspect", _cli(stack, "dlq", "inspect", "--json"))
        trap.add("cli dlq inspect table", _cli(stack, "dlq", "inspect"))

    trap.assert_clean(key)
    # The trap worked: the agent did quote the key, and the kit wrote a marker in its place.
    assert agents.calls()[(agents.WORK, "leak_00.jpg")] >= 1
    errors = {
        m["MessageAttributes"]["agentkit.error_type"]["StringValue"]: m["MessageAttributes"][
            "agentkit.error"
        ]["StringValue"]
        for m in parked
    }
    assert "signing failed with key [redacted private key]" in errors["RuntimeError"]
    captured = trap.all()
    assert "GetSecretValue" in captured["root"] and "[redacted secret]" in captured["root"]
    # Powertools' JSON logs were captured (the consumer's DLQ report is a warning there).
    assert "consumer: message moved to the DLQ" in captured["powertools"]
    assert '"_aws"' in captured["stdout"]  # EMF documents were captured (and scanned)
    assert "[redacted private key]" in captured["cli dlq inspect"]


def test_a_key_encord_does_not_know(emulator: Emulator, local_moto: MotoServer, trap: Trap) -> None:
    key = new_ssh_key()
    bad_env: dict[str, str | None] = {"ENCORD_SSH_KEY_FILE": None, "ENCORD_SSH_KEY": key}
    with edge_stack(emulator, local_moto, quiet_handlers=False, extra_env=DEBUG_ENV) as stack:
        messages = enqueue_and_receive(stack)
        with trap.open():
            with patched_environ(bad_env):
                reset_handler_state()
                trap.add("consumer", invoke_consumer([record(stack, messages["ok_00.jpg"])]))
                final = record(stack, messages["ok_01.jpg"], receive_count=3)
                trap.add("consumer", invoke_consumer([final]))
                from handlers.producer import lambda_handler
                from infra.localstack.events import scheduled_event

                with pytest.raises(CredentialsError) as producer_error:
                    lambda_handler(scheduled_event(), None)
            reset_handler_state()
        trap.add("producer exception", _exception_text(producer_error.value))
        trap.add("dlq", dlq_raw(stack))
        trap.add("leases", _leases(stack))
        trap.add("cli produce", _cli(stack, "produce", "--json", env=bad_env))

    trap.assert_clean(key)
    assert "Encord did not accept the configured key" in trap.all()["cli produce"]
    assert "Encord did not accept the configured key" in trap.all()["dlq"]


@pytest.mark.parametrize(
    "wrap",
    [
        pytest.param(lambda k: json.dumps({"ENCORD_SSH_KEY": k}), id="json_wrapped"),
        pytest.param(lambda k: k.replace("OPENSSH PRIVATE", "RSA PRIVATE"), id="wrong_header"),
        pytest.param(lambda k: "\n".join(k.splitlines()[:-2]), id="truncated"),
    ],
)
def test_a_malformed_secret(
    emulator: Emulator, local_moto: MotoServer, trap: Trap, wrap: Any
) -> None:
    key = emulator.ssh_private_key
    with edge_stack(emulator, local_moto, quiet_handlers=False, extra_env=DEBUG_ENV) as stack:
        name = f"agentkit/malformed-{uuid.uuid4().hex[:8]}"
        stack.moto.client("secretsmanager").create_secret(Name=name, SecretString=wrap(key))
        bad_env: dict[str, str | None] = {
            "ENCORD_SSH_KEY_FILE": None,
            "ENCORD_SSH_KEY_SECRET_ID": name,
        }
        messages = enqueue_and_receive(stack)
        with trap.open():
            with patched_environ(bad_env):
                reset_handler_state()
                final = record(stack, messages["ok_00.jpg"], receive_count=3)
                trap.add("consumer", invoke_consumer([final]))
            reset_handler_state()
        error = _credentials_error(bad_env)
        trap.add("exception", _exception_text(error))
        trap.add("dlq", dlq_raw(stack))
        trap.add("cli produce", _cli(stack, "produce", env=bad_env))

    trap.assert_clean(key)
    assert "could not be used" in str(error)
    assert "could not be used" in trap.all()["dlq"]
    assert "GetSecretValue" in trap.all()["root"]  # the secret's fetch was logged, redacted
