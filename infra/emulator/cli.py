"""``agentkit emulator serve``: run the Encord emulator in the foreground.

Prints exactly one JSON line on stdout (domain, ssh_key_path, project_hashes, seeded fixtures) once
the server is listening, then serves until SIGINT or SIGTERM. Everything else goes to stderr, so a
parent process can read the line and connect.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from types import FrameType
from typing import Annotated

import typer

from agent_core.exceptions import ConfigurationError

emulator_app = typer.Typer(
    help="The local Encord platform emulator.", no_args_is_help=True, pretty_exceptions_enable=False
)


@emulator_app.command("serve")
def serve(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1; 0 picks a free one.")] = 0,
    fixture: Annotated[
        list[str] | None,
        typer.Option(help="basic, demo or a fixture JSON file; repeat to seed several."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed for ids, media and fault decisions.")] = 0,
    page_size: Annotated[int, typer.Option(help="Tasks per page of a stage's task listing.")] = 100,
    url_ttl: Annotated[
        float, typer.Option(help="Seconds a signed media URL stays valid.")
    ] = 3600.0,
    verbose: Annotated[bool, typer.Option(help="Log every request to stderr.")] = False,
) -> None:
    """Serve the emulator until interrupted; prints one JSON line with how to connect."""
    from infra.emulator import Emulator

    try:
        emulator = Emulator.start(
            port=port,
            seed=seed,
            task_page_size=page_size,
            signed_url_ttl=url_ttl,
            quiet=not verbose,
        )
    except OSError as exc:
        raise ConfigurationError(
            f"Cannot listen on 127.0.0.1:{port} ({exc.strerror}). Pick another --port or 0."
        ) from None
    try:
        for name in fixture or []:
            try:
                emulator.seed(name)
            except ValueError as exc:
                raise ConfigurationError(str(exc)) from None

        stop = threading.Event()

        def on_signal(signum: int, frame: FrameType | None) -> None:
            stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        sys.stdout.write(json.dumps(emulator.info()) + "\n")
        sys.stdout.flush()
        while not stop.wait(0.5):
            pass
    finally:
        emulator.stop()
