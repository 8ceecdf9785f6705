"""``Emulator``: the state, the key registry and the threaded HTTP server, started together.

with Emulator.start(port=0, fixture="basic") as emu:
    client = emu.user_client()
    project = client.get_project(emu.project_hashes[0])
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from infra.emulator.app import EmulatorApp
from infra.emulator.auth import KeyRegistry
from infra.emulator.control import ControlHooks
from infra.emulator.counters import Counters
from infra.emulator.faults import Faults
from infra.emulator.fixtures import FixtureSpec, SeededFixture
from infra.emulator.fixtures import seed as seed_fixture
from infra.emulator.media import Blob, MediaStore, default_cache_dir
from infra.emulator.state import EmulatorState
from infra.emulator.transport import EmulatorHTTPServer

if TYPE_CHECKING:
    from encord.user_client import EncordUserClient

# RequestsSettings for tests: fail fast instead of the SDK's 180 s timeouts and 3 s/6 s backoffs.
TEST_REQUESTS_SETTINGS: dict[str, Any] = {
    "max_retries": 3,
    "backoff_factor": 0.02,
    "connection_retries": 3,
    "connect_timeout": 10,
    "read_timeout": 30,
    "write_timeout": 30,
}


class Emulator:
    """A running Encord platform emulator. Create it with ``Emulator.start``."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        seed: int,
        task_page_size: int,
        signed_url_ttl: float,
        media_cache_dir: Path | None,
        quiet: bool,
    ) -> None:
        self._key_dir = Path(tempfile.mkdtemp(prefix="encord-emulator-keys-"))
        self.state = EmulatorState(seed, task_page_size=task_page_size)
        self.keys = KeyRegistry(self._key_dir)
        self.counters = Counters()
        self.faults = Faults(seed)
        self.media = MediaStore(ttl_seconds=signed_url_ttl, cache_dir=media_cache_dir)
        self.seeded: list[SeededFixture] = []
        self._seed_lock = threading.Lock()
        self.app = EmulatorApp(
            self.state,
            self.keys,
            self.counters,
            self.faults,
            self.media,
            control=ControlHooks(
                seed=lambda fixture: self.seed(fixture).to_dict(),
                register_key=self._register_key_for_control,
                info=self.info,
            ),
        )
        self._server = EmulatorHTTPServer((host, port), self.app, quiet=quiet)
        bound_host, bound_port = self._server.server_address[:2]
        self.host = str(bound_host)
        self.port = int(bound_port)
        self.domain = f"http://{self.host}:{self.port}"
        self.app.set_domain(self.domain)
        self.ssh_private_key, self.ssh_key_path, self.main_key = self.keys.create(None, name="main")
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            daemon=True,
            name=f"encord-emulator-{self.port}",
        )
        self._stopped = False

    @classmethod
    def start(
        cls,
        port: int = 0,
        fixture: str | Path | FixtureSpec | dict[str, Any] | None = None,
        seed: int = 0,
        *,
        host: str = "127.0.0.1",
        task_page_size: int = 100,
        signed_url_ttl: float = 3600.0,
        media_cache_dir: Path | bool | None = True,
        quiet: bool = True,
    ) -> Emulator:
        """Start serving in a background thread.

        ``media_cache_dir``: True (default) shares generated media across runs in a temp-dir
        cache; None/False keeps it in memory only; a Path uses that directory.
        """
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("the emulator only listens on the loopback interface")
        cache = default_cache_dir() if media_cache_dir is True else (media_cache_dir or None)
        emulator = cls(
            host=host,
            port=port,
            seed=seed,
            task_page_size=task_page_size,
            signed_url_ttl=signed_url_ttl,
            media_cache_dir=cache,
            quiet=quiet,
        )
        emulator._thread.start()
        try:
            if fixture is not None:
                emulator.seed(fixture)
        except BaseException:
            emulator.stop()
            raise
        return emulator

    # -- seeding and keys ----------------------------------------------------------------------
    def seed(self, fixture: str | Path | FixtureSpec | dict[str, Any]) -> SeededFixture:
        """Seed a fixture (built-in name, JSON path, dict or FixtureSpec); returns its ids."""
        with self._seed_lock:
            before = self.state.item_uuids()
            seeded = seed_fixture(self.state, fixture)
            for item_uuid in self.state.item_uuids() - before:
                self._register_blobs(item_uuid)
            self.seeded.append(seeded)
            return seeded

    def _register_blobs(self, item_uuid: str) -> None:
        item = self.state.storage_item(item_uuid)
        # An image group has no file of its own: its images are items (and blobs) of their own.
        if item.media.kind != "image_group":
            self.media.register(Blob(item.uuid, item.media.mime, spec=item.media))

        def client_metadata() -> bytes:
            return json.dumps(self.state.client_metadata(item_uuid)).encode()

        self.media.register(Blob(f"cm-{item.uuid}", "application/json", producer=client_metadata))

    def prepare_media(self, data_hashes: list[str] | None = None, *, workers: int = 2) -> int:
        """Render media now instead of on first download (e.g. before timing a benchmark).

        ``data_hashes`` None means every item seeded so far; returns how many items were prepared.
        """
        from concurrent.futures import ThreadPoolExecutor

        item_uuids = self.state.media_item_uuids(data_hashes)
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            list(pool.map(self.media.content, item_uuids))
        return len(item_uuids)

    @property
    def project_hashes(self) -> list[str]:
        return self.state.project_hashes()

    def register_key(self, project_hashes: list[str] | None = None) -> tuple[str, Path]:
        """A new key pair with access only to ``project_hashes`` (None: every project)."""
        text, path, _ = self.keys.create(project_hashes, name="key")
        return text, path

    def _register_key_for_control(self, project_hashes: list[str] | None) -> tuple[str, str]:
        text, path = self.register_key(project_hashes)
        return text, str(path)

    def user_client(
        self, *, ssh_private_key: str | None = None, **requests_settings: Any
    ) -> EncordUserClient:
        """An ``EncordUserClient`` for this emulator, with short timeouts and a small backoff."""
        from encord.http.constants import RequestsSettings
        from encord.user_client import EncordUserClient

        settings = RequestsSettings(**{**TEST_REQUESTS_SETTINGS, **requests_settings})
        return EncordUserClient.create_with_ssh_private_key(
            ssh_private_key or self.ssh_private_key, requests_settings=settings, domain=self.domain
        )

    def info(self) -> dict[str, Any]:
        """What the CLI prints: enough for another process to connect."""
        return {
            "domain": self.domain,
            "ssh_key_path": str(self.ssh_key_path),
            "project_hashes": self.project_hashes,
            "fixtures": [s.to_dict() for s in self.seeded],
        }

    # -- lifecycle ---------------------------------------------------------------------------------
    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        shutil.rmtree(self._key_dir, ignore_errors=True)

    def __enter__(self) -> Emulator:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"Emulator(domain={self.domain!r}, projects={len(self.state.project_hashes())})"
