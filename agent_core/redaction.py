"""Keep the Encord private key out of text that leaves the process (logs, DLQ attributes, leases).

Two layers:

* ``redact(text)`` removes any PEM/OpenSSH private-key block, any Secrets Manager value in a
  JSON body (``"SecretString": ...``), and every fragment of a key this process has loaded
  (``remember_secret``, called by ``agent_core.settings.load_ssh_key``): the whole key text and
  each base64 line of its body, so a key quoted in pieces or re-joined on one line is caught.
* ``RedactingFilter`` applies ``redact`` to log records. ``install_log_redaction()`` puts it on
  the handlers of the root logger and of the kit's Powertools loggers, so that DEBUG output of
  any library (botocore logs response bodies, a Secrets Manager value included) is scrubbed.

What an agent does with the key itself (printing it, sending it somewhere) is out of reach; what
the kit writes, it redacts.
"""

from __future__ import annotations

import logging
import re
import threading

REDACTED_KEY = "[redacted private key]"
REDACTED_FRAGMENT = "[redacted key material]"
# Shorter lines (the last line of a base64 body can be a few characters) would match ordinary
# text; the longer lines of the same key still give it away.
MIN_FRAGMENT_CHARS = 16

_PRIVATE_KEY_BLOCK = re.compile(
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|$)", re.S
)

# A Secrets Manager value in a response body, as botocore logs it at DEBUG ("Response body:"),
# before the kit has even seen (and remembered) the value.
_SECRET_FIELD = re.compile(r'("Secret(?:String|Binary)"\s*:\s*")((?:[^"\\]|\\.)*)"')
REDACTED_SECRET = "[redacted secret]"

_lock = threading.Lock()
_fragments: tuple[str, ...] = ()


def secret_fragments(secret: str) -> set[str]:
    """The pieces of ``secret`` that must never appear in output: the whole text, and each line
    of at least MIN_FRAGMENT_CHARS characters (a PEM/OpenSSH body is base64 in lines)."""
    pieces = {secret.strip()} if len(secret.strip()) >= MIN_FRAGMENT_CHARS else set()
    for line in secret.splitlines():
        line = line.strip()
        if len(line) >= MIN_FRAGMENT_CHARS and not line.startswith("-----"):
            pieces.add(line)
    # The body joined on one line (a key stored with its newlines removed).
    body = "".join(
        line.strip() for line in secret.splitlines() if line.strip() and "-----" not in line
    )
    if len(body) >= MIN_FRAGMENT_CHARS:
        pieces.add(body)
    return pieces


def remember_secret(secret: str) -> None:
    """Redact this secret's text and fragments from now on (idempotent, thread-safe)."""
    global _fragments
    new = secret_fragments(secret)
    with _lock:
        merged = set(_fragments) | new
        # Longest first: a whole key is replaced before its lines are.
        _fragments = tuple(sorted(merged, key=len, reverse=True))


def redact(text: str) -> str:
    """``text`` without private-key blocks or fragments of a key this process has loaded."""
    if not text:
        return text
    text = _PRIVATE_KEY_BLOCK.sub(REDACTED_KEY, text)
    text = _SECRET_FIELD.sub(lambda m: f'{m.group(1)}{REDACTED_SECRET}"', text)
    for fragment in _fragments:
        if fragment in text:
            text = text.replace(fragment, REDACTED_FRAGMENT)
    return text


class RedactingFilter(logging.Filter):
    """Rewrites a record's message, exception and string fields through ``redact``."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string is the caller's bug; leave it be
            return True
        cleaned = redact(message)
        if record.exc_info and record.exc_info[0] is not None:
            formatted = logging.Formatter().formatException(record.exc_info)
            if redact(formatted) != formatted:
                # Formatters (Powertools' among them) render exc_info themselves, so a traceback
                # that quotes a secret is folded into the message, redacted, instead.
                cleaned = f"{cleaned}\n{redact(formatted)}"
                record.exc_info, record.exc_text = None, None
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        for name, value in list(vars(record).items()):
            # Structured fields (Powertools' extra=...) are attributes of the record, and may be
            # dicts or lists (a producer summary) holding strings.
            if name in ("msg", "args", "exc_text"):
                continue
            cleaned_value = _redact_value(value)
            if cleaned_value is not value:
                setattr(record, name, cleaned_value)
        return True


def _redact_value(value: object, depth: int = 0) -> object:
    """``value`` with its strings redacted; the same object when nothing changed."""
    if isinstance(value, str):
        cleaned = redact(value)
        return cleaned if cleaned != value else value
    if depth >= 6:  # log fields are shallow; bound the walk whatever a caller passes
        return value
    if isinstance(value, dict):
        items = {k: _redact_value(v, depth + 1) for k, v in value.items()}
        return items if any(items[k] is not value[k] for k in value) else value
    if isinstance(value, list | tuple):
        cleaned_items = [_redact_value(v, depth + 1) for v in value]
        if any(c is not v for c, v in zip(cleaned_items, value, strict=True)):
            return type(value)(cleaned_items) if isinstance(value, tuple) else cleaned_items
        return value
    return value


_FILTER = RedactingFilter()


def install_log_redaction(*loggers: object) -> None:
    """Add the redacting filter to every handler of the root logger and of ``loggers``
    (standard ``logging.Logger``s or Powertools ``Logger``s).

    A handler's filters see every record that reaches it, whichever logger emitted it. Safe to
    call repeatedly: the handlers call it on each invocation, which is cheap and also covers
    handlers that appeared since (such as the Lambda runtime's).
    """
    handlers: list[logging.Handler] = list(logging.getLogger().handlers)
    for logger in loggers:
        registered = getattr(logger, "registered_handler", None)  # Powertools' Logger
        if isinstance(registered, logging.Handler):
            handlers.append(registered)
        elif isinstance(logger, logging.Logger):
            handlers.extend(logger.handlers)
    for handler in handlers:
        if _FILTER not in handler.filters:
            handler.addFilter(_FILTER)


def exception_text(exc: BaseException) -> str:
    """``str(exc)`` redacted, or a stand-in when the exception's own ``__str__`` raises: text
    about an error must never become a second error (that would fail the whole batch)."""
    try:
        text = str(exc)
    except BaseException:
        text = f"<{type(exc).__name__}: its message could not be rendered>"
    return redact(text)


def traceback_text(exc: BaseException) -> str:
    """The formatted traceback of ``exc``, redacted; never raises."""
    import traceback

    try:
        text = "".join(traceback.format_exception(exc))
    except BaseException:
        text = f"{type(exc).__name__} (traceback could not be rendered)"
    return redact(text)


class RedactedError(Exception):
    """What leaves a handler in place of an exception: the same class name and a redacted text.

    The Lambda runtime logs ``errorType`` and ``errorMessage`` of whatever a handler raises,
    past every log filter; it gets this copy, never the original (whose text, arguments, cause
    and traceback may quote the key).
    """

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type

    def __str__(self) -> str:
        return f"{self.error_type}: {self.args[0]}"


def escaping(exc: BaseException) -> BaseException:
    """What a handler lets escape in place of ``exc``: a redacted copy, except for a bare
    process-stop signal (KeyboardInterrupt, SystemExit, a harness's kill) whose text is clean,
    which keeps its type so that whoever stops the process still recognises it."""
    from agent_core.exceptions import AgentkitError

    text = exception_text(exc)
    if isinstance(exc, AgentkitError):
        # Our own types keep their class (errorType names what to fix), with a redacted text.
        try:
            return type(exc)(text)
        except Exception:  # a subclass with another constructor
            return RedactedError(type(exc).__name__, text)
    if not isinstance(exc, Exception):
        try:
            clean = str(exc) == text
        except BaseException:
            clean = False
        if clean:
            return exc
    return RedactedError(type(exc).__name__, text)
