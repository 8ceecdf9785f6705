"""agent_core.redaction on its own: what it removes, and the logging filter's reach."""

from __future__ import annotations

import io
import json
import logging
from typing import Any

import pytest
from reliability_helpers import new_ssh_key

from agent_core.exceptions import ConfigurationError
from agent_core.redaction import (
    REDACTED_FRAGMENT,
    RedactingFilter,
    escaping,
    install_log_redaction,
    redact,
    remember_secret,
)


@pytest.fixture
def key() -> str:
    # Remembered for the rest of the process, which is harmless: nobody else has this key.
    text = new_ssh_key()
    remember_secret(text)
    return text


def _body(key: str) -> list[str]:
    return [line for line in key.splitlines() if line and "-----" not in line]


def test_a_remembered_key_is_removed_whole_in_lines_and_rejoined(key: str) -> None:
    lines = _body(key)
    assert "[redacted private key]" in redact(f"x {key} y")
    quoted_line = redact(f"line two was {lines[1]}!")
    assert lines[1] not in quoted_line and REDACTED_FRAGMENT in quoted_line
    joined = redact("body=" + "".join(lines))
    assert all(line not in joined for line in lines if len(line) >= 16)
    escaped = redact(json.dumps({"key": key}))  # newlines escaped: no PEM line structure left
    assert all(line not in escaped for line in lines if len(line) >= 16)


def test_secrets_manager_values_in_json_bodies_are_removed() -> None:
    body = b'{"Name": "s", "SecretString": "abc\\"def\\\\n", "VersionId": "v1"}'
    cleaned = redact(repr(body))
    assert "abc" not in cleaned and '"VersionId": "v1"' in cleaned
    assert redact('{"SecretBinary": "AAAA"}') == '{"SecretBinary": "[redacted secret]"}'


def test_text_without_secrets_is_unchanged() -> None:
    text = "task 1234 failed: pathway 'x' not found (see AGENT_MODULE)"
    assert redact(text) == text
    assert redact("") == ""


def test_the_filter_cleans_messages_arguments_fields_and_tracebacks(key: str) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s %(detail)s"))
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("agentkit.test.redaction")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        try:
            raise RuntimeError(f"cannot sign with {key}")
        except RuntimeError:
            logger.exception("failed with %s", key, extra={"detail": _body(key)[0]})
    finally:
        logger.removeHandler(handler)
    output = stream.getvalue()
    assert "RuntimeError" in output and "failed with" in output
    assert all(line not in output for line in _body(key) if len(line) >= 16), output


def test_the_filter_cleans_strings_nested_in_structured_fields(key: str) -> None:
    # A producer summary is logged as a dict whose "error" may quote whatever an exception said.
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "summary", None, None)
    untouched = {"listed": 3, "title": "Agent 1"}
    record.summary = {
        "error": f"boom: {key}",
        "stages": [{"error": _body(key)[1]}],
        "ok": untouched,
    }
    RedactingFilter().filter(record)
    dumped = json.dumps(record.summary)
    assert all(line not in dumped for line in _body(key) if len(line) >= 16), dumped
    assert record.summary["error"].startswith("boom: ")
    assert record.summary["ok"] is untouched  # nothing to clean: the same object


def test_install_adds_the_filter_once_to_root_and_given_handlers() -> None:
    root_handler, own = logging.StreamHandler(io.StringIO()), logging.StreamHandler(io.StringIO())
    logger = logging.getLogger("agentkit.test.install")
    logger.addHandler(own)
    logging.getLogger().addHandler(root_handler)
    try:
        install_log_redaction(logger)
        install_log_redaction(logger)
        for handler in (root_handler, own):
            assert sum(isinstance(f, RedactingFilter) for f in handler.filters) == 1
    finally:
        logging.getLogger().removeHandler(root_handler)
        logger.removeHandler(own)


class _Stop(BaseException):
    pass


class _BadStr(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no text")


@pytest.mark.parametrize(
    "make",
    [
        lambda k: RuntimeError(f"signing with {k}"),
        lambda k: ConfigurationError(f"could not use key {k}"),
        lambda k: _Stop(f"stopped with {k}"),
        lambda k: _BadStr(),
    ],
    ids=["exception", "own-error-type", "base-exception", "str-raises"],
)
def test_what_escapes_a_handler_carries_no_key_and_renders(key: str, make: Any) -> None:
    original = make(key)
    escaped = escaping(original)
    text = f"{type(escaped).__name__}: {escaped}"
    assert "PRIVATE KEY" not in text and all(line not in text for line in _body(key))
    assert escaped.__cause__ is None and escaped.__traceback__ is None
    if isinstance(original, ConfigurationError):
        assert type(escaped) is ConfigurationError  # errorType still names what to fix
