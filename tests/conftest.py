"""Shared pytest fixtures: one Encord emulator per session, a fresh seeded project per test.

- ``emulator``: session-scoped ``infra.emulator.Emulator`` on 127.0.0.1 with no fixture preloaded.
  Tests that add fault rules must remove them (``emulator.faults.clear()``) before they end; the
  ``basic_project`` fixture clears them for you.
- ``basic_project``: ``emulator.seed("basic")``: a new project (and twin) per test, so tests never
  see each other's tasks. Returns the ``SeededFixture`` (project_hash, stage_uuids, ...).
- ``encord_client``: session-scoped ``EncordUserClient`` with the emulator's all-access key.
- ``encord_env``: sets ENCORD_DOMAIN and ENCORD_SSH_KEY_FILE (and clears ENCORD_SSH_KEY /
  ENCORD_SSH_KEY_SECRET_ID) for code that builds its own client from the environment.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from encord.user_client import EncordUserClient

    from infra.emulator import Emulator, SeededFixture


@pytest.fixture(scope="session")
def emulator() -> Iterator[Emulator]:
    from infra.emulator import Emulator

    emu = Emulator.start(port=0, fixture=None, seed=0)
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture
def basic_project(emulator: Emulator) -> Iterator[SeededFixture]:
    emulator.faults.clear()
    yield emulator.seed("basic")
    emulator.faults.clear()


@pytest.fixture(scope="session")
def encord_client(emulator: Emulator) -> EncordUserClient:
    return emulator.user_client()


@pytest.fixture
def encord_env(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> Emulator:
    monkeypatch.setenv("ENCORD_DOMAIN", emulator.domain)
    monkeypatch.setenv("ENCORD_SSH_KEY_FILE", str(emulator.ssh_key_path))
    monkeypatch.delenv("ENCORD_SSH_KEY", raising=False)
    monkeypatch.delenv("ENCORD_SSH_KEY_SECRET_ID", raising=False)
    return emulator
