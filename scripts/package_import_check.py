"""Import a built Lambda package the way the runtime would, and exercise what it ships.

    python -I -S -B scripts/package_import_check.py ROOTS SDK HANDLERS MODE

Run by scripts/package_size.py in a CPython 3.12 with nothing of its own on sys.path (-I -S):
ROOTS is the function's code folder and the layer's python/ folder joined with os.pathsep (in
Lambda's order), SDK a folder holding the boto3 the runtime provides, HANDLERS the comma-separated
handler modules, MODE one of plain, vision, archive (numpy/OpenCV zipped: the handler's import
must unpack them) or reuse (a second process must find them unpacked). Prints one JSON line of
timings; any failed check is an AssertionError (exit status 1).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import sys
import time
from types import ModuleType
from typing import Any

# The agentkit command line and its libraries run on workstations, never in a function (the
# Makefile's CLI_ONLY). Paths, not imports: importing agent_core here would unpack the archive
# before the handler import that is timed.
CLI_LIBRARIES = ("typer", "rich")
CLI_CODE = ("agent_core/cli.py", "agent_core/commands")
# Provided by the python3.12 runtime: a package that ships its own copy shadows the runtime's.
RUNTIME_PROVIDED = ("boto3", "botocore")
VISION = ("numpy", "cv2")


def exercise_dependencies() -> None:
    """The compiled parts of the lean set: pydantic-core, cryptography's Rust bindings, ..."""
    import aws_xray_sdk.core  # noqa: F401
    import encord.user_client  # noqa: F401
    import orjson  # noqa: F401
    import pydantic
    import pydantic_settings  # noqa: F401
    import requests  # noqa: F401
    from aws_lambda_powertools import Logger, Metrics, Tracer  # noqa: F401
    from aws_lambda_powertools.utilities import parameters  # noqa: F401
    from aws_lambda_powertools.utilities.batch import BatchProcessor  # noqa: F401
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    class Probe(pydantic.BaseModel):
        n: int

    assert Probe.model_validate({"n": "3"}).n == 3
    assert len(Ed25519PrivateKey.generate().sign(b"agentkit")) == 64


def check_contents(roots: list[str]) -> None:
    assert_not_shipped(CLI_LIBRARIES, "must not ship")
    for path in CLI_CODE:
        assert not os.path.exists(os.path.join(roots[0], path)), path + " must not ship"
    for name in RUNTIME_PROVIDED:
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.origin is not None:
            assert not spec.origin.startswith(tuple(roots)), name + " must come from the runtime"


def exercise_vision() -> tuple[ModuleType, ModuleType]:
    import cv2
    import numpy

    assert abs(numpy.linalg.inv(numpy.eye(3) * 2.0)[0, 0] - 0.5) < 1e-9
    image = numpy.full((8, 8, 3), 127, numpy.uint8)
    for suffix in (".png", ".jpg"):
        ok, encoded = cv2.imencode(suffix, image)
        decoded = cv2.imdecode(encoded, cv2.IMREAD_COLOR)
        assert ok and decoded is not None and decoded.shape == (8, 8, 3), suffix
    # A video round trip through FFmpeg, the libraries dep_video_iterator needs.
    video = os.path.join(os.environ["HOME"], "probe.avi")
    writer = cv2.VideoWriter(video, cv2.VideoWriter.fourcc(*"MJPG"), 5.0, (16, 16))
    for _ in range(3):
        writer.write(numpy.zeros((16, 16, 3), numpy.uint8))
    writer.release()
    capture = cv2.VideoCapture(video, cv2.CAP_FFMPEG)
    frames = 0
    while frames < 10 and capture.read()[0]:
        frames += 1
    capture.release()
    assert frames == 3, f"FFmpeg decoded {frames} of 3 frames"
    return numpy, cv2


def import_handlers(code_root: str, handlers: list[str]) -> None:
    for handler in handlers:
        module_file = os.path.join(code_root, *handler.split(".")) + ".py"
        assert os.path.exists(module_file), handler + " is not in the function's code"
        module = importlib.import_module(handler)
        assert callable(getattr(module, "lambda_handler", None)), handler + " has no lambda_handler"


def assert_not_shipped(names: tuple[str, ...], why: str) -> None:
    for name in names:
        assert importlib.util.find_spec(name) is None, f"{name} {why}"


def main(argv: list[str]) -> dict[str, Any]:
    roots, sdk, handlers, mode = argv[0].split(os.pathsep), argv[1], argv[2].split(","), argv[3]
    sys.path[:0] = roots
    sys.path.append(sdk)
    report: dict[str, Any] = {"notes": []}
    exercise_dependencies()
    check_contents(roots)
    if mode == "archive":
        assert_not_shipped(VISION, "must ship zipped")
        started = time.perf_counter()
        import_handlers(roots[0], handlers)  # as the Lambda init does: this unpacks the archive
        report["handler_import_seconds"] = time.perf_counter() - started
        import agent_core.vendored as vendored

        assert vendored.last_unpack_seconds is not None, "importing the handler unpacked nothing"
        report["unpack_seconds"] = vendored.last_unpack_seconds
        unpacked_into = os.path.realpath(os.environ[vendored.VENDOR_DIR_ENV])
        for module in exercise_vision():
            origin = os.path.realpath(str(module.__file__))
            assert origin.startswith(unpacked_into + os.sep), f"{module.__name__} from {origin}"
    elif mode == "reuse":
        started = time.perf_counter()
        import agent_core.vendored as vendored

        assert vendored.ensure_vendored() is not None, "the package ships no archive"
        assert vendored.last_unpack_seconds is None, "unpacked again instead of reusing"
        report["reuse_seconds"] = time.perf_counter() - started
        exercise_vision()
    elif mode == "vision":
        exercise_vision()
        import_handlers(roots[0], handlers)
    else:
        assert_not_shipped(VISION, "must not ship here")
        import_handlers(roots[0], handlers)
    return report


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:])))
