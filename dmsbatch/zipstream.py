"""A study folder as a stream of zip bytes: produced while it is uploaded, never written to disk.

``zipfile`` writes to an unseekable sink here, so it puts each entry's CRC and
sizes in a data descriptor after the data instead of seeking back to the local
header; the central directory at the end carries them as usual, which is all
that intake (``dmscontract.zip_inspect``, ranged reads of the central directory) and
``unzip`` on the node read. The generator hands out what ``zipfile`` wrote after
every chunk of input, so memory holds one read chunk and the compressor's state,
whatever the folder's size.

Files that would not shrink (tidefiles, DSS, HDF5, zips) are stored instead of
deflated: the first 256 KiB of each file is compressed as a sample, and a file
whose sample stays above 95 % of its size is stored. Deflating incompressible data
is the slowest part of zipping and gains nothing. Files that would shrink too much
are stored as well: intake refuses an entry of 1 MiB or more that compresses more
than ``ZIP_MAX_RATIO`` to 1 (200 by default, its zip-bomb check), and a file of
blanks or one repeated record does; a sample that compresses more than a quarter of
that limit is taken as such a file.

Entries keep their Unix mode bits (``unzip`` restores executables) and
modification times (clamped to 1980, the earliest a zip can hold).
"""
from __future__ import annotations

import fnmatch
import os
import stat
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

READ_CHUNK = 1024 * 1024
SAMPLE_BYTES = 256 * 1024
STORE_ABOVE_RATIO = 0.95
COMPRESS_LEVEL = 1  # zlib level 1: about three times faster than the default, most of its gain on model text
DEFAULT_MAX_RATIO = 200  # intake's ZIP_MAX_RATIO default (shared/settings.py)


@dataclass(frozen=True)
class StudyFile:
    path: Path  # on disk
    name: str  # in the zip: POSIX, relative to the study folder
    size: int


def study_files(root: Path, exclude: Iterable[str] = ()) -> list[StudyFile]:
    """Regular files under ``root`` (symbolic links to files are followed, linked directories are not), sorted by name.

    ``exclude`` holds glob patterns matched against the zip name and each of its
    folders (``output``, ``*.log``, ``.git``).
    """
    patterns = list(exclude)
    found: list[StudyFile] = []
    for directory, subdirs, names in os.walk(root):
        base = Path(directory)
        relative_dir = base.relative_to(root).as_posix()
        subdirs[:] = sorted(d for d in subdirs if not _excluded(_join(relative_dir, d), patterns))
        for name in sorted(names):
            relative = _join(relative_dir, name)
            path = base / name
            if _excluded(relative, patterns):
                continue
            try:
                info = path.stat()  # follows a link to a file
            except OSError:
                continue  # a dangling link
            if stat.S_ISREG(info.st_mode):
                found.append(StudyFile(path, relative, info.st_size))
    return sorted(found, key=lambda f: f.name)


def _join(directory: str, name: str) -> str:
    return name if directory in ("", ".") else f"{directory}/{name}"


def _excluded(relative: str, patterns: list[str]) -> bool:
    parts = relative.split("/")
    return any(fnmatch.fnmatch(relative, p) or fnmatch.fnmatch(parts[-1], p) for p in patterns)


class _Sink:
    """An unseekable file that collects what ``zipfile`` writes until it is drained."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data) -> int:
        if data:
            self._parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def drain(self) -> Iterator[bytes]:
        parts, self._parts = self._parts, []
        yield from parts


def compresses(path: Path, max_ratio: float | None = DEFAULT_MAX_RATIO) -> bool:
    """Whether to deflate the file, judged on its first ``SAMPLE_BYTES``: it must shrink, but not past ``max_ratio / 4``."""
    with open(path, "rb") as handle:
        sample = handle.read(SAMPLE_BYTES)
    if len(sample) < 64:
        return True
    compressed = len(zlib.compress(sample, COMPRESS_LEVEL))
    if max_ratio and len(sample) >= 64 * 1024 and len(sample) / max(compressed, 1) > max_ratio / 4:
        return False  # intake's zip-bomb check would refuse it deflated (module docstring)
    return compressed < STORE_ABOVE_RATIO * len(sample)


def zip_entry(file: StudyFile, compress: bool) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo.from_file(file.path, arcname=file.name, strict_timestamps=False)
    info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    _set_level(info)
    # the mode of what was read (a link's target), as a regular file: unzip restores executables, never links
    mode = stat.S_IMODE(os.stat(file.path).st_mode) or 0o644
    info.external_attr = (stat.S_IFREG | mode) << 16
    return info


def _set_level(info: zipfile.ZipInfo) -> None:
    """``ZipFile.open(info, "w")`` compresses at the entry's own level, not the archive's (zlib's default 6 if unset)."""
    info._compresslevel = COMPRESS_LEVEL  # Python 3.11-3.12; 3.13 names it compress_level
    if hasattr(info, "compress_level"):
        info.compress_level = COMPRESS_LEVEL


def iter_zip(files: Iterable[StudyFile], extra: Iterable[tuple[str, bytes]] = (), chunk: int = READ_CHUNK,
             max_ratio: float | None = DEFAULT_MAX_RATIO) -> Iterator[bytes]:
    """The zip of ``files`` (plus ``extra`` (name, bytes) entries first, e.g. a rewritten run.yaml), as it is made.

    ``max_ratio`` is the intake's per-entry compression limit (``ZipLimits.max_ratio``).
    """
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=COMPRESS_LEVEL, allowZip64=True) as archive:
        for name, data in extra:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            _set_level(info)
            info.external_attr = (stat.S_IFREG | 0o644) << 16
            archive.writestr(info, data)
            yield from sink.drain()
        for file in files:
            info = zip_entry(file, compresses(file.path, max_ratio))
            # sizes known up front; zip64 extras are written when a file might pass 2 GiB (compressed or not)
            with open(file.path, "rb") as source, archive.open(info, "w", force_zip64=file.size > 0x7FFF0000) as target:
                while block := source.read(chunk):
                    target.write(block)
                    yield from sink.drain()
            yield from sink.drain()
    yield from sink.drain()  # the central directory, written on close
