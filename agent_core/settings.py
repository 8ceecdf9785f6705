"""Configuration from the environment, and the one place the Encord key is loaded.

The key is looked up in this order: ``ENCORD_SSH_KEY`` (the key text), ``ENCORD_SSH_KEY_FILE``
(a path), ``ENCORD_SSH_KEY_SECRET_ID`` (a Secrets Manager secret name or ARN, cached across
Lambda invocations by Powertools parameters). The key is held as a ``SecretStr`` so that it never
shows up in a repr, a log line or an exception message.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from agent_core.exceptions import CredentialsError

if TYPE_CHECKING:
    from encord.user_client import EncordUserClient

DEFAULT_ENCORD_DOMAIN = "https://api.encord.com"


class EncordSettings(BaseSettings):
    """How to reach Encord and with which key."""

    model_config = SettingsConfigDict(env_prefix="ENCORD_", extra="ignore")

    ssh_key: SecretStr | None = None
    ssh_key_file: Path | None = None
    ssh_key_secret_id: str | None = None
    domain: str = DEFAULT_ENCORD_DOMAIN
    # Seconds a Secrets Manager value is cached in a warm Lambda before it is fetched again.
    secret_max_age: int = 300
    # The SDK's own urllib3 retry on 429/5xx; a queue retry takes over after these.
    max_retries: int = 3
    # urllib3 backoff between those retries (it ignores "Retry-After: 0"); tests set it small.
    backoff_factor: float = 1.5
    connect_timeout: int = 30
    read_timeout: int = 60


class PipelineSettings(BaseSettings):
    """Settings of the producer, the consumer and the local tools (names match template.yaml)."""

    model_config = SettingsConfigDict(extra="ignore")

    agent_module: str = Field(default="agents.starter:runner", alias="AGENT_MODULE")
    project_hash: str | None = Field(default=None, alias="PROJECT_HASH")
    work_queue_url: str | None = Field(default=None, alias="WORK_QUEUE_URL")
    dead_letter_queue_url: str | None = Field(default=None, alias="DEAD_LETTER_QUEUE_URL")
    lease_table_name: str | None = Field(default=None, alias="LEASE_TABLE_NAME")
    max_tasks_per_run: Annotated[int, Field(ge=1)] = Field(
        default=10_000, alias="MAX_TASKS_PER_RUN"
    )
    max_receive_count: Annotated[int, Field(ge=1)] = Field(default=5, alias="MAX_RECEIVE_COUNT")
    # Retry backoff of a failed message: min(base * 2**(receive_count-1), max) seconds.
    retry_backoff_base_seconds: int = Field(default=30, alias="RETRY_BACKOFF_BASE_SECONDS")
    retry_backoff_max_seconds: int = Field(default=900, alias="RETRY_BACKOFF_MAX_SECONDS")
    # Stop starting new work when the Lambda has less than this many milliseconds left.
    time_guard_ms: int = Field(default=10_000, alias="TIME_GUARD_MS")
    # How long a lease outlives its message when nothing releases it (>= DLQ retention).
    lease_ttl_seconds: int = Field(default=15 * 24 * 3600, alias="LEASE_TTL_SECONDS")
    # How long past its invocation's timeout a running lease still blocks another delivery.
    lease_run_margin_seconds: int = Field(default=30, alias="LEASE_RUN_MARGIN_SECONDS")


def load_ssh_key(settings: EncordSettings | None = None) -> SecretStr:
    """Return the Encord private key, or raise one CredentialsError that says how to provide it.

    The key is also handed to ``agent_core.redaction``, so that its text is scrubbed from logs
    and error reports from then on.
    """
    from agent_core.redaction import remember_secret

    key = _find_ssh_key(settings or EncordSettings())
    remember_secret(key.get_secret_value())
    return key


def _find_ssh_key(settings: EncordSettings) -> SecretStr:
    if settings.ssh_key is not None and settings.ssh_key.get_secret_value().strip():
        return settings.ssh_key
    if settings.ssh_key_file is not None:
        path = settings.ssh_key_file.expanduser()
        try:
            text = path.read_text()
        except OSError as exc:
            raise CredentialsError(
                f"ENCORD_SSH_KEY_FILE points at {str(path)!r}, which cannot be read "
                f"({exc.strerror or type(exc).__name__}). Point it at your Encord private key file."
            ) from None
        if not text.strip():
            raise CredentialsError(f"ENCORD_SSH_KEY_FILE {str(path)!r} is empty.")
        return SecretStr(text)
    if settings.ssh_key_secret_id:
        return _key_from_secrets_manager(settings.ssh_key_secret_id, settings.secret_max_age)
    raise CredentialsError(
        "No Encord key configured. Set ENCORD_SSH_KEY to the private key text, "
        "ENCORD_SSH_KEY_FILE to its path, or ENCORD_SSH_KEY_SECRET_ID to a Secrets Manager secret."
    )


def _key_from_secrets_manager(secret_id: str, max_age: int) -> SecretStr:
    from aws_lambda_powertools.utilities import parameters

    try:
        value = parameters.get_secret(secret_id, max_age=max_age)
    except parameters.exceptions.GetParameterError as exc:
        # The cause can carry AWS error text but never the secret value.
        raise CredentialsError(
            f"Could not read the Encord key from Secrets Manager secret {secret_id!r}: "
            f"{_short_cause(exc)}. Create the secret (see README 'Deploy') or fix "
            "ENCORD_SSH_KEY_SECRET_ID and the function's permission to read it."
        ) from None
    text = value.decode() if isinstance(value, bytes) else str(value)
    if not text.strip():
        raise CredentialsError(f"Secrets Manager secret {secret_id!r} is empty.")
    return SecretStr(text)


def _short_cause(exc: BaseException) -> str:
    cause = exc.__cause__ or exc
    return f"{type(cause).__name__}: {str(cause)[:300]}"


def create_user_client(settings: EncordSettings | None = None) -> EncordUserClient:
    """Build an EncordUserClient from the settings; a bad key raises CredentialsError."""
    from encord.http.constants import RequestsSettings
    from encord.user_client import EncordUserClient

    settings = settings or EncordSettings()
    key = load_ssh_key(settings)
    requests_settings = RequestsSettings(
        max_retries=settings.max_retries,
        backoff_factor=settings.backoff_factor,
        connect_timeout=settings.connect_timeout,
        read_timeout=settings.read_timeout,
    )
    try:
        return EncordUserClient.create_with_ssh_private_key(
            key.get_secret_value(), requests_settings=requests_settings, domain=settings.domain
        )
    except Exception as exc:
        # The SDK's parse errors can quote the key text: never chain or repeat them.
        raise CredentialsError(
            f"The configured Encord key could not be used ({type(exc).__name__}). "
            "It must be an unencrypted Ed25519 private key in OpenSSH or PEM format, "
            "as downloaded from Encord."
        ) from None


@functools.cache
def cached_user_client() -> EncordUserClient:
    """One client per process: warm Lambda invocations reuse its HTTP session."""
    return create_user_client()


class Settings(BaseSettings):
    """The credentials encord-agents' ``Settings`` reads, under its field names.

    ``ssh_key_content`` is ``ENCORD_SSH_KEY``, ``ssh_key_file`` is ``ENCORD_SSH_KEY_FILE`` and
    ``domain`` is ``ENCORD_DOMAIN``; ``ssh_key`` is the key text (the content wins when both are
    set). Pass one to ``get_user_client(settings)``. Without either key it raises pydantic's
    ``ValidationError`` (a ``ValueError``) saying which variables to set, as encord-agents' does.
    """

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    ssh_key_file: Path | None = Field(default=None, validation_alias="ENCORD_SSH_KEY_FILE")
    ssh_key_content: SecretStr | None = Field(default=None, validation_alias="ENCORD_SSH_KEY")
    domain: str | None = Field(default=None, validation_alias="ENCORD_DOMAIN")

    def model_post_init(self, context: object, /) -> None:
        if self.ssh_key_content is None and self.ssh_key_file is None:
            raise CredentialsError(
                "Set ENCORD_SSH_KEY to the private key text or ENCORD_SSH_KEY_FILE to its path."
            )

    @property
    def ssh_key(self) -> str:
        """The private key text."""
        return _find_ssh_key(
            EncordSettings(ssh_key=self.ssh_key_content, ssh_key_file=self.ssh_key_file)
        ).get_secret_value()


def get_user_client(settings: Settings | None = None) -> EncordUserClient:
    """An ``EncordUserClient`` from the environment, or from ``settings`` (encord-agents' name).

    Without ``settings`` the key is looked up as everywhere in the kit (``ENCORD_SSH_KEY``,
    ``ENCORD_SSH_KEY_FILE``, ``ENCORD_SSH_KEY_SECRET_ID``).
    """
    if settings is None:
        return create_user_client()
    base = EncordSettings()
    return create_user_client(
        base.model_copy(
            update={
                "ssh_key": SecretStr(settings.ssh_key),
                "ssh_key_file": None,
                "ssh_key_secret_id": None,
                "domain": settings.domain or base.domain,
            }
        )
    )
