"""Post-processing of a Lambda package folder, run by the Makefile after pip installed it.

    python scripts/lambda_package.py strip ARTIFACTS_DIR
    python scripts/lambda_package.py pack ARTIFACTS_DIR --dist numpy --dist opencv-python-headless

``strip`` removes symbols from the ELF shared libraries where that is safe (see
strip_shared_libraries). ``pack`` moves installed distributions into the package's vendored
archive, which agent_core.vendored unpacks to /tmp at run time (see docs/PACKAGING.md). Only the
standard library is used, so any Python 3.11+ can run this whatever the Lambda runtime is.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import os
import re
import shutil
import struct
import subprocess
import sys
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# The runtime side owns the layout; importing it here keeps writer and reader in step.
from agent_core.vendored import ARCHIVE_DIGEST_SUFFIX, ARCHIVE_NAME  # noqa: E402

# Fixed so that the same files give the same archive bytes (and the same unpack directory).
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
# Deflate level 9 saves ~0.5% over 6 for three times the build time; unpacking speed is the same.
DEFAULT_COMPRESSLEVEL = 6
_PAGE = 4096
_PT_LOAD = 1


class PackError(Exception):
    """The package cannot be post-processed as asked; the message says why and what to do."""


# ------------------------------------------------------------------------------ archive


def archive_path(package_root: Path) -> Path:
    return package_root / ARCHIVE_NAME


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def installed_distributions(package_root: Path) -> dict[str, str]:
    """Normalised distribution name -> its .dist-info folder name, for what pip installed."""
    found = {}
    for entry in package_root.glob("*.dist-info"):
        if entry.is_dir():
            found[_normalise(entry.name.removesuffix(".dist-info").rsplit("-", 1)[0])] = entry.name
    return found


def top_level_entries(package_root: Path, dist_info: str) -> set[str]:
    """The top-level files and folders a distribution installed (per its RECORD) that exist."""
    entries = {dist_info}
    with (package_root / dist_info / "RECORD").open(newline="") as handle:
        for row in csv.reader(handle):
            if not row or os.path.isabs(row[0]) or row[0].startswith(".."):
                continue  # console scripts land outside site-packages (and are pruned)
            top = row[0].replace("\\", "/").split("/", 1)[0]
            if top and (package_root / top).exists():
                entries.add(top)
    return entries


def _files_under(package_root: Path, entries: Sequence[str]) -> Iterator[str]:
    for entry in entries:
        path = package_root / entry
        if path.is_file():
            yield entry
            continue
        for file in path.rglob("*"):
            if file.is_file() or file.is_symlink():
                yield file.relative_to(package_root).as_posix()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def pack(
    package_root: Path, distributions: Sequence[str], compresslevel: int = DEFAULT_COMPRESSLEVEL
) -> Path | None:
    """Move the installed ``distributions`` into the package's archive; the archive, or None.

    Distributions that are not installed are skipped, and with none installed nothing is written
    (the lean consumer and the producer go through the same Makefile step). Deterministic: sorted
    entries, fixed timestamps and permissions, deflate at a fixed level.
    """
    installed = installed_distributions(package_root)
    wanted = [installed[n] for n in dict.fromkeys(map(_normalise, distributions)) if n in installed]
    if not wanted:
        return None
    entries: set[str] = set()
    for dist_info in wanted:
        entries |= top_level_entries(package_root, dist_info)
    for other in sorted(set(installed.values()) - set(wanted)):
        shared = entries & top_level_entries(package_root, other)
        if shared:
            raise PackError(
                f"cannot archive {', '.join(sorted(shared))}: {other} installs files there too "
                "and would lose them. Leave that distribution out of the archive list "
                "(VISION_ARCHIVE_DISTS in the Makefile)."
            )

    archive = archive_path(package_root)
    archive.parent.mkdir(parents=True, exist_ok=True)
    partial = archive.with_name(archive.name + ".partial")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED, compresslevel=compresslevel) as out:
        for relative in sorted(_files_under(package_root, sorted(entries))):
            source = package_root / relative
            if source.is_symlink():
                raise PackError(f"{relative} is a symlink; wheels installed by pip have none")
            info = zipfile.ZipInfo(relative, date_time=_ZIP_EPOCH)
            info.create_system = 3  # unix, whatever the build host
            executable = source.stat().st_mode & 0o111
            info.external_attr = (0o100755 if executable else 0o100644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            with source.open("rb") as reader, out.open(info, "w") as writer:
                shutil.copyfileobj(reader, writer, 1 << 20)
    partial.replace(archive)
    archive.with_name(archive.name + ARCHIVE_DIGEST_SUFFIX).write_text(_sha256(archive) + "\n")
    for entry in entries:
        path = package_root / entry
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    return archive


# ------------------------------------------------------------------------------ strip


def elf_loadable(path: Path) -> bool | None:
    """Whether glibc would map this 64-bit little-endian ELF file; None if it is not one.

    The test is glibc's own (elf/dl-load.c): every PT_LOAD segment's alignment is a multiple of
    the page size, and its address and file offset agree modulo the page size and the alignment.
    """
    try:
        with path.open("rb") as handle:
            header = handle.read(64)
            if len(header) < 64 or header[:4] != b"\x7fELF" or header[4:6] != b"\x02\x01":
                return None
            (table_offset,) = struct.unpack_from("<Q", header, 32)
            entry_size, count = struct.unpack_from("<HH", header, 54)
            handle.seek(table_offset)
            table = handle.read(entry_size * count)
    except OSError:
        return None
    if entry_size < 56 or len(table) < entry_size * count:
        return False
    for index in range(count):
        kind, _flags, offset, address, _phys, _filesz, _memsz, align = struct.unpack_from(
            "<IIQQQQQQ", table, index * entry_size
        )
        if kind != _PT_LOAD:
            continue
        if align % _PAGE or (address - offset) % _PAGE or (address - offset) % max(align, 1):
            return False
    return True


def strip_shared_libraries(package_root: Path, strip: str | None = None) -> tuple[int, int]:
    """Strip symbols off the ELF shared libraries under ``package_root``; (files, bytes saved).

    Best effort and safe: each library is stripped to a copy that replaces it only if strip
    succeeded and the copy still loads. strip rewrites the segments of some libraries that
    auditwheel patched with patchelf (numpy.libs' OpenBLAS and gfortran) so that glibc refuses
    them ("ELF load command address/offset not page-aligned"): those keep their symbols. Without
    a strip on PATH, or with one that does not know x86-64 ELF (macOS), nothing changes.
    """
    strip = strip or shutil.which("strip")
    if strip is None:
        return 0, 0
    count = saved = 0
    for path in sorted(package_root.rglob("*.so*")):
        if not (path.name.endswith(".so") or ".so." in path.name):
            continue
        if path.is_symlink() or not path.is_file() or elf_loadable(path) is not True:
            continue
        candidate = path.with_name(path.name + ".stripped")
        try:
            result = subprocess.run(
                [strip, "--strip-unneeded", "-o", str(candidate), str(path)],
                capture_output=True,
                check=False,
                timeout=120,
            )
            before = path.stat().st_size
            if (
                result.returncode == 0
                and elf_loadable(candidate) is True
                and candidate.stat().st_size < before
            ):
                shutil.copymode(path, candidate)
                saved += before - candidate.stat().st_size
                candidate.replace(path)
                count += 1
        except (OSError, subprocess.SubprocessError):
            pass  # keep the library as it is
        finally:
            candidate.unlink(missing_ok=True)
    return count, saved


# ------------------------------------------------------------------------------ command line


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    pack_command = commands.add_parser("pack", help="move distributions into the archive")
    pack_command.add_argument("root", type=Path, help="the package folder (ARTIFACTS_DIR)")
    pack_command.add_argument("--dist", action="append", required=True, help="a distribution")
    pack_command.add_argument("--compresslevel", type=int, default=DEFAULT_COMPRESSLEVEL)
    strip_command = commands.add_parser("strip", help="strip symbols off shared libraries")
    strip_command.add_argument("root", type=Path, help="the package folder (ARTIFACTS_DIR)")
    args = parser.parse_args(argv)

    root: Path = args.root
    if not root.is_dir():
        print(f"error: {root} is not a folder", file=sys.stderr)
        return 2
    if args.command == "pack":
        try:
            archive = pack(root, args.dist, args.compresslevel)
        except PackError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        if archive is None:
            print(f"archive: none of {', '.join(args.dist)} installed, nothing to pack")
        else:
            print(f"archive: {archive} ({archive.stat().st_size / 1e6:.1f} MB)")
    else:
        count, saved = strip_shared_libraries(root)
        print(f"strip: {count} shared libraries stripped, {saved / 1e6:.1f} MB saved")
    return 0


if __name__ == "__main__":
    sys.exit(main())
