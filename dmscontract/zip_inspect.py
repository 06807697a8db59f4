"""Inspecting a dropped study zip without downloading it: its central directory and one member.

Study zips are several GB, so nothing here reads a whole blob. ``RangedBlobReader``
is a seekable, read-only file over ``BlobClient.download_blob(offset, length)``
with read-ahead (64 KiB windows; a window that would run past the end is moved
back to end at the end, so the zip's tail, where the end record and usually the
whole central directory sit, costs one ranged GET). ``zipfile.ZipFile`` runs on
it unchanged. Opening a study zip and reading its ``run.yaml`` typically takes
three or four requests and a few hundred KiB, whatever the zip's size.

``inspect_zip`` checks the archive for hostile or unusable content before
anything runs, and reports every problem as ``path: reason`` (the project's
style): ``<zip name>: ...`` for the archive, ``<entry name>: ...`` for a
member, ``run.yaml: ...`` for the spec file. What it rejects, and why:

- not a zip (no end-of-central-directory record), an empty blob, a corrupt
  central directory or spec member, encrypted entries;
- more than ``max_entries`` entries, more than ``max_total_bytes`` of declared
  uncompressed data, an entry of 1 MiB or more whose declared compression ratio
  exceeds ``max_ratio``, and entries whose data overlap (the "non-recursive"
  zip bomb, where many entries share one compressed stream). Sizes are the ones
  the central directory declares; the extractor on the node is the last line of
  defence against a zip that lies about them;
- names that could write outside the task's directory or mean different things
  to different tools: absolute paths, ``..`` components, drive letters (``C:``),
  any backslash (a separator on Windows: ``..\\x``; Windows PowerShell 5's
  ``Compress-Archive`` writes them, 7-Zip, ``tar -a`` and PowerShell 7 do not),
  NUL or other control characters, and the same name twice;
- symbolic links and other special files (the Unix file type in the high 16
  bits of ``external_attr``): a link can point anywhere on the node;
- names that are not UTF-8. The zip flag bit 11 says "this name is UTF-8"; many
  tools (Info-ZIP's ``zip`` on Linux, macOS) write UTF-8 without setting it. So
  a name without the flag is accepted when its bytes are ASCII or valid UTF-8,
  and rejected otherwise: such a name is in a legacy code page (old Windows
  Explorer zips, CP437/CP850) and would extract under a garbled name;
- no ``run.yaml``/``run.yml``/``run.json`` at the root (or more than one), a
  spec file over ``max_spec_bytes``, a spec that is not UTF-8, not valid YAML
  or JSON (with line and column), nests too deeply, or expands (YAML aliases)
  into more than ``MAX_SPEC_VALUES`` values.

Reading errors from storage (``AzureError``) are not problems of the zip: they
propagate, so the caller retries.
"""
from __future__ import annotations

import io
import re
import stat
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import AzureError
from azure.storage.blob import BlobClient

from dmscontract.spec_text import parse_spec_text

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

READ_AHEAD_BYTES = 64 * KiB
SPEC_NAMES = ("run.yaml", "run.yml", "run.json")
# Entries smaller than this are not held to the ratio limit: a small file of
# blanks legitimately compresses a thousandfold and cannot hurt anyone.
RATIO_MIN_BYTES = 1 * MiB
# The central directory is read in one piece; this bounds it per allowed entry
# (46 bytes of header plus name, extra field and comment).
CENTRAL_DIRECTORY_BYTES_PER_ENTRY = 4 * KiB

_EOCD = b"PK\x05\x06"
_EOCD64_LOCATOR = b"PK\x06\x07"
_EOCD64 = b"PK\x06\x06"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DRIVE = re.compile(r"^[A-Za-z]:")
_UTF8_FLAG = 0x800
_ENCRYPTED_FLAG = 0x1


@dataclass(frozen=True)
class ZipLimits:
    """Bomb and size limits; ``from_settings`` takes them from the app settings (``ZIP_MAX_*``)."""

    max_entries: int = 10_000
    max_total_bytes: int = 32 * GiB
    max_ratio: int = 200
    max_spec_bytes: int = 64 * KiB

    @classmethod
    def from_settings(cls, settings: Any) -> "ZipLimits":
        return cls(
            max_entries=settings.zip_max_entries,
            max_total_bytes=settings.zip_max_total_bytes,
            max_ratio=settings.zip_max_ratio,
            max_spec_bytes=settings.zip_max_spec_bytes,
        )


@dataclass
class Inspection:
    """What inspecting a zip found; ``problems`` empty means it may run."""

    zip_name: str
    size: int
    entries: int = 0
    total_uncompressed: int = 0
    spec_name: str | None = None
    document: Any = None  # the parsed spec file
    spec_parsed: bool = False  # whether ``document`` holds it (it may be None: an empty file)
    problems: list[str] = field(default_factory=list)
    bytes_fetched: int = 0
    requests: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


class BlobReadError(Exception):
    """Reading the blob failed for a reason that is not the zip's fault (network, storage); retry."""


# ---- random access over a blob ---------------------------------------------------


class RangedBlobReader(io.RawIOBase):
    """A seekable read-only file over a blob, fetched with ranged GETs and read-ahead.

    ``etag`` pins the version: if the blob changes while it is being read, the next
    fetch fails with ``ResourceModifiedError`` instead of mixing two versions.
    ``bytes_fetched`` and ``requests`` count what was transferred.
    """

    def __init__(self, blob: BlobClient, size: int, *, etag: str | None = None, read_ahead: int = READ_AHEAD_BYTES):
        super().__init__()
        self._blob = blob
        self._size = size
        self._etag = etag
        self._read_ahead = max(1, read_ahead)
        self._pos = 0
        self._window = b""
        self._window_start = 0
        self.bytes_fetched = 0
        self.requests = 0

    @property
    def size(self) -> int:
        return self._size

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            target = offset
        elif whence == io.SEEK_CUR:
            target = self._pos + offset
        elif whence == io.SEEK_END:
            target = self._size + offset
        else:
            raise ValueError(f"invalid whence {whence!r}")
        if target < 0:
            raise OSError(22, "Invalid argument: negative seek position")  # as a real file does
        self._pos = target
        return target

    def read(self, size: int | None = -1) -> bytes:
        if self.closed:
            raise ValueError("I/O operation on closed file")
        end = self._size if size is None or size < 0 else min(self._size, self._pos + size)
        if end <= self._pos:
            return b""
        start = self._pos
        if not (self._window_start <= start and end <= self._window_start + len(self._window)):
            # Fetch at least a read-ahead window; near the end, slide it back so it ends at the
            # end (zip readers look at the tail first, then a little before it).
            length = max(end - start, self._read_ahead)
            window_start = max(0, min(start, self._size - length))
            self._window = self._fetch(window_start, min(length, self._size - window_start))
            self._window_start = window_start
        data = self._window[start - self._window_start:end - self._window_start]
        self._pos = start + len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def _fetch(self, offset: int, length: int) -> bytes:
        conditions = {"etag": self._etag, "match_condition": MatchConditions.IfNotModified} if self._etag else {}
        self.requests += 1
        try:
            data = self._blob.download_blob(offset=offset, length=length, **conditions).readall()
        except AzureError:
            raise
        except Exception as exc:  # e.g. a connection error the SDK did not wrap: never "a bad zip"
            raise BlobReadError(f"reading bytes {offset}-{offset + length - 1} of {self._blob.blob_name} failed: {exc}") from exc
        self.bytes_fetched += len(data)
        return data


# ---- inspection --------------------------------------------------------------------


def inspect_blob(
    blob: BlobClient, *, limits: ZipLimits, zip_name: str | None = None, etag: str | None = None, size: int | None = None,
    read_ahead: int = READ_AHEAD_BYTES,
) -> Inspection:
    """Inspect a zip blob with ranged reads (``size``/``etag`` save a properties request when known)."""
    if size is None:
        properties = blob.get_blob_properties(**({"etag": etag, "match_condition": MatchConditions.IfNotModified} if etag else {}))
        size, etag = properties.size, etag or properties.etag
    reader = RangedBlobReader(blob, size, etag=etag, read_ahead=read_ahead)
    result = inspect_zip(reader, zip_name=zip_name or blob.blob_name.rsplit("/", 1)[-1], limits=limits)
    result.bytes_fetched, result.requests = reader.bytes_fetched, reader.requests
    return result


def inspect_zip(fileobj: Any, *, zip_name: str, limits: ZipLimits) -> Inspection:
    """Check an open, seekable zip file and parse its spec file; storage errors propagate."""
    size = fileobj.seek(0, io.SEEK_END)
    fileobj.seek(0)
    result = Inspection(zip_name=zip_name, size=size)
    if size == 0:
        result.problems.append(f"{zip_name}: is empty, not a zip archive")
        return result
    try:
        end = _end_record(fileobj, size)
        if end is None:
            result.problems.append(f"{zip_name}: is not a zip archive, or is cut short (it has no end-of-central-directory record)")
            return result
        entries, directory_size = end
        result.entries = entries
        if entries > limits.max_entries:
            result.problems.append(f"{zip_name}: has {entries:,} entries; a study zip may have at most {limits.max_entries:,}")
            return result
        if directory_size > max(limits.max_entries, 1) * CENTRAL_DIRECTORY_BYTES_PER_ENTRY:
            result.problems.append(f"{zip_name}: its central directory is {directory_size:,} bytes, too big for "
                                   f"{limits.max_entries:,} entries; the zip is corrupt or hostile")
            return result
        with zipfile.ZipFile(fileobj) as archive:
            infos = archive.infolist()
            result.entries = len(infos)
            names = _check_entries(infos, zip_name, limits, result)
            if len(infos) > limits.max_entries:
                result.problems.append(f"{zip_name}: has {len(infos):,} entries; a study zip may have at most {limits.max_entries:,}")
            _read_spec(archive, infos, names, limits, result)
    except (AzureError, BlobReadError):
        raise
    except UnicodeDecodeError:
        result.problems.append(f"{zip_name}: an entry's name is marked as UTF-8 but is not valid UTF-8")
    except RecursionError:
        result.problems.append(f"{zip_name}: is corrupt (its structure nests too deeply)")
    except NotImplementedError as exc:
        result.problems.append(f"{zip_name}: uses a zip feature that is not supported ({exc})")
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib.error, struct.error, ValueError, OSError) as exc:
        result.problems.append(f"{zip_name}: is corrupt ({_describe(exc)})")
    return result


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    if isinstance(exc, zipfile.BadZipFile) and text == "File is not a zip file":
        return "its central directory could not be read"
    return text or type(exc).__name__


def _end_record(fileobj: Any, size: int) -> tuple[int, int] | None:
    """(entry count, central directory size) from the end record (ZIP64 aware), or None if there is none."""
    tail_length = min(size, 22 + 0xFFFF)  # the end record plus the longest possible comment
    fileobj.seek(size - tail_length)
    tail = fileobj.read(tail_length)
    at = tail.rfind(_EOCD)
    if at < 0 or len(tail) - at < 22:
        return None
    (_, _, _, _, entries, directory_size, _, _) = struct.unpack("<4s4H2LH", tail[at:at + 22])
    if entries == 0xFFFF or directory_size == 0xFFFFFFFF:
        locator_at = size - tail_length + at - 20
        if locator_at >= 0:
            fileobj.seek(locator_at)
            locator = fileobj.read(20)
            if len(locator) == 20 and locator[:4] == _EOCD64_LOCATOR:
                (_, _, record_offset, _) = struct.unpack("<4sLQL", locator)
                fileobj.seek(record_offset)
                record = fileobj.read(56)
                if len(record) == 56 and record[:4] == _EOCD64:
                    fields = struct.unpack("<4sQ2H2L4Q", record)
                    entries, directory_size = fields[7], fields[8]
    return entries, directory_size


def _raw_name(info: zipfile.ZipInfo) -> bytes:
    """The name's bytes as stored (zipfile decoded names without the UTF-8 flag as CP437, which round-trips)."""
    return info.orig_filename.encode("utf-8" if info.flag_bits & _UTF8_FLAG else "cp437")


def _entry_name(info: zipfile.ZipInfo) -> tuple[str, str, bool]:
    """(name to check, name to show, whether it is UTF-8) of an entry.

    A name that is not UTF-8 is checked as CP437 text (its ASCII characters, which are
    all that the path checks look at, are the same in every code page) and shown with
    its other bytes escaped.
    """
    if info.flag_bits & _UTF8_FLAG:
        name = info.orig_filename
        return name, name.replace("\x00", "\\x00"), True
    raw = _raw_name(info)
    try:
        name = raw.decode("utf-8")
        return name, name.replace("\x00", "\\x00"), True
    except UnicodeDecodeError:
        return info.orig_filename, raw.decode("ascii", errors="backslashreplace").replace("\x00", "\\x00"), False


def _check_entries(infos: list[zipfile.ZipInfo], zip_name: str, limits: ZipLimits, result: Inspection) -> dict[str, zipfile.ZipInfo]:
    """Check every entry's name, type and sizes; return the entries by their (UTF-8) names."""
    problems = result.problems
    names: dict[str, zipfile.ZipInfo] = {}
    seen_twice: set[str] = set()
    total = 0
    for info in infos:
        name, shown, is_utf8 = _entry_name(info)
        if not is_utf8:
            problems.append(f"{shown}: the name is not UTF-8 (it is in a legacy code page, so it would extract under a "
                            "garbled name); rename it with plain letters or zip it with a tool that writes UTF-8 names, such as 7-Zip")
        problems.extend(f"{shown}: {reason}" for reason in _name_problems(name))
        if name in names and name not in seen_twice:
            seen_twice.add(name)
            problems.append(f"{shown}: appears twice in the zip; tools disagree about which copy wins")
        names.setdefault(name, info)
        # The Unix file type: checked for links whatever system made the zip; other special
        # files only for Unix-made zips (other systems may leave unrelated bits there).
        file_type = stat.S_IFMT(info.external_attr >> 16)
        if file_type == stat.S_IFLNK:
            problems.append(f"{shown}: is a symbolic link; links can point outside the study folder and are not allowed")
        elif info.create_system == 3 and file_type and file_type not in (stat.S_IFREG, stat.S_IFDIR):
            problems.append(f"{shown}: is a special file (not a regular file or folder)")
        if info.flag_bits & _ENCRYPTED_FLAG:
            problems.append(f"{shown}: is encrypted; encrypted zips are not supported")
        total += info.file_size
        if info.file_size >= RATIO_MIN_BYTES:
            ratio = info.file_size / max(info.compress_size, 1)
            if ratio > limits.max_ratio:
                problems.append(f"{shown}: compresses {ratio:,.0f} to 1 ({info.file_size:,} bytes from {info.compress_size:,}); "
                                f"at most {limits.max_ratio} to 1 is allowed (a zip bomb?)")
    result.total_uncompressed = total
    if total > limits.max_total_bytes:
        problems.append(f"{zip_name}: unpacks to {total:,} bytes; a study zip may unpack to at most {limits.max_total_bytes:,}")
    problems.extend(_overlaps(infos, zip_name))
    return names


def _name_problems(name: str) -> list[str]:
    reasons: list[str] = []
    if not name:
        return ["an entry has an empty name"]
    if _CONTROL.search(name):
        reasons.append("the name contains a NUL or other control character")
    if "\\" in name:
        reasons.append("the name contains '\\', a folder separator on Windows; entry names must use '/' "
                       "(make the zip with 7-Zip, tar -a or PowerShell 7, not Windows PowerShell 5's Compress-Archive)")
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")):
        reasons.append("is an absolute path; entries must be relative to the study folder")
    elif _DRIVE.match(name):
        reasons.append("starts with a drive letter; entries must be relative to the study folder")
    if ".." in parts:
        reasons.append("has a '..' component, which would unpack outside the study folder")
    return reasons


def _overlaps(infos: list[zipfile.ZipInfo], zip_name: str) -> list[str]:
    """Entries whose data overlap another's: a well-formed zip never does this, a zip bomb does."""
    spans = sorted(((info.header_offset, info.header_offset + 30 + len(_raw_name(info)) + info.compress_size, info) for info in infos),
                   key=lambda span: span[:2])
    for (start, end, info), (next_start, _, other) in zip(spans, spans[1:]):
        if next_start < end:
            return [f"{zip_name}: entries '{info.filename}' and '{other.filename}' share data (overlapping entries are a zip bomb technique)"]
    return []


def _read_spec(
    archive: zipfile.ZipFile, infos: list[zipfile.ZipInfo], names: dict[str, zipfile.ZipInfo], limits: ZipLimits, result: Inspection,
) -> None:
    present = [n for n in SPEC_NAMES if n in names]
    if not present:
        nearly = sorted(n for n in names if n.rsplit("/", 1)[-1].lower() in SPEC_NAMES)
        hint = ""
        if nearly and "/" in nearly[0]:
            hint = f" (found {nearly[0]}: zip the study folder's contents, so that the spec file is at the top)"
        elif nearly:
            hint = f" (found {nearly[0]}: the name must be lower-case)"
        result.problems.append(f"{result.zip_name}: has no run.yaml or run.json at its root{hint}")
        return
    if len(present) > 1:
        result.problems.append(f"{result.zip_name}: has {' and '.join(present)} at its root; keep exactly one spec file")
        return
    spec_name = present[0]
    result.spec_name = spec_name
    info = names[spec_name]
    if info.is_dir():
        result.problems.append(f"{spec_name}: is a folder, not a file")
        return
    if info.file_size > limits.max_spec_bytes:
        result.problems.append(f"{spec_name}: is {info.file_size:,} bytes; a spec file may be at most {limits.max_spec_bytes:,}")
        return
    if any(p.startswith(f"{spec_name}: ") for p in result.problems):
        return  # already unusable (encrypted, a link...)
    try:
        with archive.open(info) as member:
            raw = member.read(limits.max_spec_bytes + 1)  # never more, whatever the header claims
            if len(raw) <= limits.max_spec_bytes:
                member.read()  # to the end, so the CRC is checked
    except (zipfile.BadZipFile, EOFError, zlib.error) as exc:
        result.problems.append(f"{spec_name}: cannot be read, the zip is corrupt ({_describe(exc)})")
        return
    except NotImplementedError as exc:
        result.problems.append(f"{spec_name}: uses a compression method that is not supported ({exc}); use deflate")
        return
    if len(raw) > limits.max_spec_bytes:
        result.problems.append(f"{spec_name}: is more than {limits.max_spec_bytes:,} bytes; a spec file may be at most {limits.max_spec_bytes:,}")
        return
    document, problems = parse_spec_text(spec_name, raw)
    result.problems.extend(problems)
    result.document, result.spec_parsed = document, not problems


