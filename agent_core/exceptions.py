"""Errors a user of the kit can cause. Each message says what to do about it.

The CLI prints these without a traceback; the consumer records them on the failed message.
"""

from __future__ import annotations


class AgentkitError(Exception):
    """Base class of every error the kit raises on purpose."""


class PrintableError(AgentkitError, ValueError):
    """An error with a message meant for the user, as ``encord_agents.exceptions.PrintableError``.

    encord-agents raises its ``PrintableError`` (a ``ValueError``) for a wrong stage, a pathway the
    stage does not have, a stage registered twice, bad runner options and missing credentials;
    ours are raised in the same places, so ported ``except PrintableError`` / ``pytest.raises``
    code keeps working. Unlike the peer's, ``str()`` is plain text (no terminal colour codes).
    """


class ConfigurationError(PrintableError):
    """Settings are missing or inconsistent (e.g. no Encord key, bad AGENT_MODULE)."""


class CredentialsError(ConfigurationError):
    """The Encord private key could not be found, read or used."""


class StageNotFoundError(PrintableError):
    """A stage name/UUID is not an agent stage of the project, or has no registered function."""


class PathwayNotFoundError(PrintableError):
    """A stage function returned a pathway the stage does not have."""


class InvalidReturnError(AgentkitError):
    """A stage function returned something that is not a pathway, None or TaskAgentReturnStruct."""


class DependencyError(AgentkitError):
    """A stage function's dependency could not be resolved (bad signature, unsupported media...)."""


class PoisonMessageError(AgentkitError):
    """A queue message can never be processed (unparsable, wrong schema, unknown version/project/stage).

    Poison messages go straight to the dead-letter queue with this error's text as the reason.
    """
