"""encord-agents' test fixtures (its ``tests/fixtures.py``), rebuilt on the emulator's seeding.

The peer creates a project per test from its ontology, dataset and workflow template and reads
the key from ``ENCORD_SSH_KEY``; here each project is seeded in the emulator and the environment
points the kit at it, for this package's tests only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING
from unittest.mock import MagicMock

import pytest

from .peer_fixtures import (
    AGENT_TO_COMPLETE_PATHWAY_NAME,
    IMAGES_520_MEDIA,
    ONE_OF_EACH_MEDIA,
    project_spec,
)

if TYPE_CHECKING:
    from encord.user_client import EncordUserClient

    from infra.emulator import Emulator, SeededFixture


@pytest.fixture(scope="package", autouse=True)
def peer_environment(emulator: Emulator) -> Iterator[None]:
    """The peer's invariant: ``ENCORD_SSH_KEY`` holds the key, ``ENCORD_SSH_KEY_FILE`` is unset."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ENCORD_SSH_KEY", emulator.ssh_key_path.read_text())
        patch.setenv("ENCORD_DOMAIN", emulator.domain)
        patch.delenv("ENCORD_SSH_KEY_FILE", raising=False)
        patch.delenv("ENCORD_SSH_KEY_SECRET_ID", raising=False)
        yield


@pytest.fixture(scope="package")
def user_client(emulator: Emulator) -> EncordUserClient:
    return emulator.user_client()


def _seed(emulator: Emulator, media: list[dict[str, object]]) -> str:
    emulator.faults.clear()
    return emulator.seed(project_spec(media, "encord-agents test project")).project_hash


@pytest.fixture
def ephemeral_project_hash(emulator: Emulator) -> str:
    return _seed(emulator, ONE_OF_EACH_MEDIA)


@pytest.fixture
def ephemeral_image_project_hash(emulator: Emulator) -> str:
    return _seed(emulator, IMAGES_520_MEDIA)


@pytest.fixture(scope="class")
def _class_level_seeded(emulator: Emulator) -> SeededFixture:
    emulator.faults.clear()
    spec = project_spec(ONE_OF_EACH_MEDIA, "encord-agents test project")
    spec["twin"] = {"title": "encord-agents twin project"}  # a second project on the same data
    return emulator.seed(spec)


@pytest.fixture(scope="class")
def class_level_ephemeral_project_hash(_class_level_seeded: SeededFixture) -> str:
    return _class_level_seeded.project_hash


@pytest.fixture(scope="class")
def class_level_ephemeral_twin_project_hash(_class_level_seeded: SeededFixture) -> str:
    assert _class_level_seeded.twin_project_hash is not None
    return _class_level_seeded.twin_project_hash


@pytest.fixture
def mock_agent() -> MagicMock:
    return MagicMock(return_value=AGENT_TO_COMPLETE_PATHWAY_NAME)


class RequestCount:
    """How many requests the emulator received on one route since it was created.

    Stands in for the peer's ``patch.object(<SDK method>, side_effect=<itself>)`` call counters:
    one SDK call of those methods is one request.
    """

    def __init__(self, emulator: Emulator, route: str) -> None:
        self._emulator = emulator
        self._route = route
        self._start = emulator.counters.get(route)

    @property
    def call_count(self) -> int:
        return self._emulator.counters.get(self._route) - self._start

    def assert_not_called(self) -> None:
        assert self.call_count == 0, f"{self._route} was requested {self.call_count} times"

    def assert_called_once(self) -> None:
        assert self.call_count == 1, f"{self._route} was requested {self.call_count} times"


@pytest.fixture
def emulator_requests(emulator: Emulator) -> Callable[[str], AbstractContextManager[RequestCount]]:
    def count(route: str) -> AbstractContextManager[RequestCount]:
        return nullcontext(RequestCount(emulator, route))

    return count
