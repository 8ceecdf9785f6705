"""The vendored archive: packing at build time (scripts/lambda_package.py), unpacking at run time
(agent_core.vendored), and the safe stripping of shared libraries. Small synthetic packages stand in
for numpy and OpenCV; tests/template/test_package_size.py does the real thing with the wheels."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import inspect
import json
import os
import shutil
import struct
import subprocess
import sys
import textwrap
import zipfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from agent_core import vendored
from agent_core.exceptions import ConfigurationError

REPO = Path(__file__).resolve().parents[2]


def _load_script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


lambda_package = _load_script("lambda_package")


def _install(root: Path, name: str, files: dict[str, str]) -> None:
    """Lay out a distribution as `pip install --target` does: its files, a dist-info, a RECORD."""
    dist_info = root / f"{name.replace('-', '_')}-1.0.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    record = [f"{relative},," for relative in files]
    record += [f"{dist_info.name}/METADATA,,", f"{dist_info.name}/RECORD,,", "../../bin/tool,,"]
    (dist_info / "RECORD").write_text("\n".join(record) + "\n")


def _package(root: Path) -> Path:
    """A Lambda package: one 'vision' distribution with a .libs folder, one that stays."""
    _install(
        root,
        "fake-vision",
        {
            "fakevision/__init__.py": "from fakevision.core import VALUE\n",
            "fakevision/core.py": "VALUE = 42\n",
            "fakevision.libs/libfake.so.1": "not really a library\n",
        },
    )
    _install(root, "stays", {"stays.py": "KEPT = True\n"})
    (root / "agent_core").mkdir()
    return root


@pytest.fixture
def isolated(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """ensure_vendored changes sys.path and remembers archives: undo both."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(vendored, "_activated", {})
    monkeypatch.setattr(vendored, "last_unpack_seconds", None)
    monkeypatch.delenv(vendored.VENDOR_DIR_ENV, raising=False)
    yield
    for name in [m for m in sys.modules if m == "fakevision" or m.startswith("fakevision.")]:
        del sys.modules[name]


# ------------------------------------------------------------------------------ pack


def test_pack_moves_the_distributions_into_a_deterministic_archive(tmp_path: Path) -> None:
    first = _package(tmp_path / "a")
    archive = lambda_package.pack(first, ["fake_vision", "not-installed"])
    assert archive == first / "_agentkit_vendor" / "vision.zip"
    with zipfile.ZipFile(archive) as bundle:
        names = bundle.namelist()
        assert names == sorted(names)
        assert set(names) == {
            "fake_vision-1.0.dist-info/METADATA",
            "fake_vision-1.0.dist-info/RECORD",
            "fakevision.libs/libfake.so.1",
            "fakevision/__init__.py",
            "fakevision/core.py",
        }
        assert {info.date_time for info in bundle.infolist()} == {(1980, 1, 1, 0, 0, 0)}
        assert {info.compress_type for info in bundle.infolist()} == {zipfile.ZIP_DEFLATED}
    digest = (first / "_agentkit_vendor" / "vision.zip.sha256").read_text().strip()
    assert len(digest) == 64
    # Moved, not copied; the other distribution is untouched.
    assert not (first / "fakevision").exists() and not (first / "fakevision.libs").exists()
    assert not (first / "fake_vision-1.0.dist-info").exists()
    assert (first / "stays.py").exists() and (first / "stays-1.0.dist-info").exists()

    second = _package(tmp_path / "b")
    os.utime(second / "fakevision" / "core.py", (1_000_000_000, 1_000_000_000))
    (second / "fakevision" / "core.py").chmod(0o600)
    again = lambda_package.pack(second, ["fake-vision"])
    assert again is not None and again.read_bytes() == archive.read_bytes()


def test_pack_without_the_distributions_writes_nothing(tmp_path: Path) -> None:
    root = _package(tmp_path / "pkg")
    assert lambda_package.pack(root, ["numpy", "opencv-python-headless"]) is None
    assert not (root / "_agentkit_vendor").exists()
    assert (root / "fakevision" / "core.py").exists()


def test_pack_refuses_to_break_a_distribution_sharing_a_folder(tmp_path: Path) -> None:
    root = _package(tmp_path / "pkg")
    _install(root, "plugin", {"fakevision/plugin.py": "X = 1\n"})
    with pytest.raises(lambda_package.PackError, match=r"plugin-1\.0\.dist-info installs files"):
        lambda_package.pack(root, ["fake-vision"])
    assert (root / "fakevision" / "core.py").exists()
    assert not (root / "_agentkit_vendor" / "vision.zip").exists()


# ------------------------------------------------------------------------------ unpack


def test_without_an_archive_ensure_vendored_is_a_no_op(tmp_path: Path, isolated: None) -> None:
    path = list(sys.path)
    assert vendored.ensure_vendored(str(tmp_path / "vision.zip"), str(tmp_path / "tmp")) is None
    assert sys.path == path
    assert not (tmp_path / "tmp").exists()


def test_the_no_archive_path_imports_nothing_new() -> None:
    # In a fresh interpreter: what `import agent_core.vendored; ensure_vendored()` loads.
    code = textwrap.dedent(
        """
        import json, sys
        before = set(sys.modules)
        import agent_core.vendored
        assert agent_core.vendored.ensure_vendored() is None
        print(json.dumps(sorted(set(sys.modules) - before)))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    loaded = set(json.loads(result.stdout))
    assert {"agent_core", "agent_core.vendored"} <= loaded
    heavy = {"zipfile", "shutil", "tempfile", "hashlib", "logging", "numpy", "cv2"}
    assert not loaded & heavy, loaded & heavy


def test_ensure_vendored_unpacks_once_and_makes_the_packages_importable(
    tmp_path: Path, isolated: None
) -> None:
    root = _package(tmp_path / "pkg")
    archive = lambda_package.pack(root, ["fake-vision"])
    assert archive is not None
    scratch = tmp_path / "tmp"

    target = vendored.ensure_vendored(str(archive), str(scratch))
    assert target is not None and sys.path[0] == target
    digest = (root / "_agentkit_vendor" / "vision.zip.sha256").read_text().strip()
    assert Path(target) == scratch / f"agentkit-vendor-{digest[:16]}"
    assert vendored.last_unpack_seconds is not None
    import fakevision  # type: ignore[import-not-found]

    assert fakevision.VALUE == 42
    assert Path(fakevision.__file__).is_relative_to(target)
    assert importlib.metadata.version("fake-vision") == "1.0"  # dist-info came along

    # Warm: the same call is a lookup; another process (a re-init) finds the folder complete.
    vendored.last_unpack_seconds = None
    assert vendored.ensure_vendored(str(archive), str(scratch)) == target
    assert vendored.unpack(str(archive), str(scratch)) == target
    assert vendored.last_unpack_seconds is None
    assert sys.path.count(target) == 1
    assert sorted(p.name for p in scratch.iterdir()) == [
        Path(target).name,
        Path(target).name + ".lock",
    ]


def test_the_unpack_folder_comes_from_the_environment(
    tmp_path: Path, isolated: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = lambda_package.pack(_package(tmp_path / "pkg"), ["fake-vision"])
    assert archive is not None
    monkeypatch.setenv(vendored.VENDOR_DIR_ENV, str(tmp_path / "elsewhere"))
    target = vendored.ensure_vendored(str(archive))
    assert target is not None and Path(target).parent == tmp_path / "elsewhere"


def test_a_partial_unpacking_left_by_a_dead_process_is_replaced(tmp_path: Path) -> None:
    archive = lambda_package.pack(_package(tmp_path / "pkg"), ["fake-vision"])
    assert archive is not None
    scratch = tmp_path / "tmp"
    digest = Path(str(archive) + ".sha256").read_text().strip()
    leftover = scratch / f".agentkit-vendor-partial-agentkit-vendor-{digest[:16]}-x1"
    (leftover / "fakevision").mkdir(parents=True)
    (leftover / "fakevision" / "core.py").write_text("half written")

    target = Path(vendored.unpack(str(archive), str(scratch)))
    assert not leftover.exists()
    assert (target / "fakevision" / "core.py").read_text() == "VALUE = 42\n"


def test_concurrent_processes_unpack_once_into_one_folder(tmp_path: Path) -> None:
    archive = lambda_package.pack(_package(tmp_path / "pkg"), ["fake-vision"])
    assert archive is not None
    scratch = tmp_path / "tmp"
    code = textwrap.dedent(
        """
        import json, sys
        import agent_core.vendored as v
        path = v.unpack(sys.argv[1], sys.argv[2])
        print(json.dumps([path, v.last_unpack_seconds is not None]))
        """
    )
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(archive), str(scratch)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    results = []
    for worker in workers:
        out, err = worker.communicate(timeout=60)
        assert worker.returncode == 0, err
        results.append(json.loads(out))
    assert len({path for path, _ in results}) == 1
    assert sum(unpacked for _, unpacked in results) == 1
    target = Path(results[0][0])
    assert (target / "fakevision" / "core.py").read_text() == "VALUE = 42\n"
    assert not [p for p in scratch.iterdir() if p.name.startswith(".agentkit-vendor-partial-")]


def test_too_little_space_says_how_to_get_more(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = lambda_package.pack(_package(tmp_path / "pkg"), ["fake-vision"])
    assert archive is not None

    class Full:
        total = used = 1 << 30
        free = 10

    monkeypatch.setattr(shutil, "disk_usage", lambda _path: Full)
    with pytest.raises(ConfigurationError, match="EphemeralStorage") as raised:
        vendored.unpack(str(archive), str(tmp_path / "tmp"))
    assert "VISION_ARCHIVE=0" in str(raised.value)
    assert [p.name for p in (tmp_path / "tmp").iterdir()] == [
        next((tmp_path / "tmp").glob("*.lock")).name
    ]


# ------------------------------------------------------------------------------ strip


def _extension_module() -> Path:
    spec = importlib.util.find_spec("_cffi_backend")
    if spec is None or spec.origin is None or not spec.origin.endswith(".so"):
        pytest.skip("needs cffi's compiled _cffi_backend as a sample ELF extension module")
    return Path(spec.origin)


def _misalign_first_load_segment(path: Path) -> None:
    """Shift the first PT_LOAD's file offset by one byte, as a bad strip of a patched lib does."""
    data = bytearray(path.read_bytes())
    (table,) = struct.unpack_from("<Q", data, 32)
    size, count = struct.unpack_from("<HH", data, 54)
    for index in range(count):
        entry = table + index * size
        if struct.unpack_from("<I", data, entry)[0] == 1:
            (offset,) = struct.unpack_from("<Q", data, entry + 8)
            struct.pack_into("<Q", data, entry + 8, offset + 1)
            break
    path.write_bytes(bytes(data))


def test_elf_loadable_knows_elf_files_and_misaligned_segments(tmp_path: Path) -> None:
    sample = tmp_path / _extension_module().name
    shutil.copy(_extension_module(), sample)
    assert lambda_package.elf_loadable(sample) is True
    _misalign_first_load_segment(sample)
    assert lambda_package.elf_loadable(sample) is False
    text = tmp_path / "libnot.so"
    text.write_text("INPUT(-lc)\n")  # a linker script, as some distributions ship
    assert lambda_package.elf_loadable(text) is None


def test_strip_keeps_libraries_importable(tmp_path: Path) -> None:
    if shutil.which("strip") is None:
        pytest.skip("no strip on PATH")
    original = _extension_module()
    package = tmp_path / "pkg"
    package.mkdir()
    shutil.copy(original, package / original.name)
    (package / "libscript.so").write_text("INPUT(-lc)\n")

    count, saved = lambda_package.strip_shared_libraries(package)
    assert count == (1 if saved else 0)
    stripped = package / original.name
    assert stripped.stat().st_size == original.stat().st_size - saved
    assert lambda_package.elf_loadable(stripped) is True
    assert (package / "libscript.so").read_text() == "INPUT(-lc)\n"
    assert sorted(p.name for p in package.iterdir()) == sorted([original.name, "libscript.so"])
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import _cffi_backend as b;"
        "assert b.__file__.startswith(sys.argv[1]), b.__file__"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(package)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


def test_a_strip_result_that_would_not_load_is_discarded(tmp_path: Path) -> None:
    original = _extension_module()
    package = tmp_path / "pkg"
    package.mkdir()
    shutil.copy(original, package / original.name)
    # A strip that shrinks the file but leaves a misaligned segment (what binutils does to
    # numpy.libs' OpenBLAS): a real executable standing in for binutils.
    bad_strip = tmp_path / "strip"
    script = [
        f"#!{sys.executable}",
        "import struct, sys",
        "from pathlib import Path",
        inspect.getsource(_misalign_first_load_segment),
        "output, source = Path(sys.argv[3]), Path(sys.argv[4])",  # strip --strip-unneeded -o O S
        "output.write_bytes(source.read_bytes()[:-1])",
        "_misalign_first_load_segment(output)",
    ]
    bad_strip.write_text("\n".join(script) + "\n")
    bad_strip.chmod(0o755)
    before = (package / original.name).read_bytes()

    assert lambda_package.strip_shared_libraries(package, strip=str(bad_strip)) == (0, 0)
    assert (package / original.name).read_bytes() == before
    assert [p.name for p in package.iterdir()] == [original.name]


def test_the_archive_is_found_in_a_layer_on_sys_path(
    tmp_path: Path, isolated: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Lambda puts the dependencies layer's python/ folder on sys.path as /opt/python; the code
    # root (agent_core's parent) has no archive of its own.
    layer = _package(tmp_path / "opt" / "python")
    archive = lambda_package.pack(layer, ["fake-vision"])
    assert archive is not None
    monkeypatch.setattr(sys, "path", [*sys.path, str(layer)])
    monkeypatch.setenv(vendored.VENDOR_DIR_ENV, str(tmp_path / "tmp"))
    assert vendored.find_archive() == str(archive)
    target = vendored.ensure_vendored()
    assert target is not None and sys.path[0] == target
    import fakevision  # type: ignore[import-not-found]

    assert Path(fakevision.__file__).is_relative_to(target)
    # Remembered: a second call is a dict hit, not another search.
    assert vendored.ensure_vendored() == target


def test_importing_agent_core_makes_the_vendored_packages_importable(tmp_path: Path) -> None:
    # The producer imports the agent module (which may import cv2 first thing) after the kit:
    # `import agent_core` alone must have unpacked the layer's archive.
    layer = _package(tmp_path / "opt" / "python")
    assert lambda_package.pack(layer, ["fake-vision"]) is not None
    code = "import agent_core, fakevision; print(fakevision.VALUE)"
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{layer}"}
    env[vendored.VENDOR_DIR_ENV] = str(tmp_path / "tmp")
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "42"
