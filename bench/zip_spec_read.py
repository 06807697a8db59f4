"""Benchmark: reading a dropped study zip's spec with ranged GETs vs downloading the whole blob.

Builds a study zip of about 1 GiB in a private Azurite (started on free ports in
a temporary directory, stopped at the end): ``run.yaml``, 2,000 small deflated
input files and eight 128 MiB incompressible "tidefiles" (``os.urandom``), the
zip streamed straight into ``upload_blob`` from a generator, never held in
memory or written to disk. Then, on the same blob:

- ``dmscontract.zip_inspect.inspect_blob`` (what intake does): end record, central
  directory and ``run.yaml`` through ``RangedBlobReader``; bytes fetched,
  requests and time, best and median of several runs;
- the baseline: downloading the whole blob (``download_blob().readinto``,
  4 connections) into a counting sink, then nothing else.

    .venv/bin/python bench/zip_spec_read.py [--tidefiles 8] [--tidefile-mib 128] [--repeat 5]
"""
from __future__ import annotations

import argparse
import io
import os
import platform
import queue
import statistics
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path
from typing import Iterator

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from azure.storage.blob import BlobServiceClient  # noqa: E402

from local.azurite import AzuriteEndpoints, start_azurite  # noqa: E402
from local.processes import free_port, stop_group  # noqa: E402
from dmscontract.zip_inspect import ZipLimits, inspect_blob  # noqa: E402

SPEC = """name: bench-study
command: unzip -o -q study.zip && cd study && ./hydro hydro.inp && ./qual qual.inp
outputs: ["**/output/*"]
"""
CHUNK = 1024 * 1024


class _Pipe:
    """A write-only, unseekable file whose writes come out of ``chunks()`` (zipfile then writes data descriptors)."""

    def __init__(self) -> None:
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=16)
        self.size = 0

    def write(self, data: bytes) -> int:
        if data:
            self._queue.put(bytes(data))
            self.size += len(data)
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self._queue.put(None)

    def chunks(self) -> Iterator[bytes]:
        pending = b""
        while (data := self._queue.get()) is not None:
            pending += data
            if len(pending) >= 4 * CHUNK:
                yield pending
                pending = b""
        if pending:
            yield pending


def write_study(pipe: _Pipe, tidefiles: int, tidefile_mib: int, errors: list[BaseException]) -> None:
    try:
        with zipfile.ZipFile(pipe, "w") as archive:
            archive.writestr("run.yaml", SPEC, compress_type=zipfile.ZIP_DEFLATED)
            for i in range(2000):
                archive.writestr(f"study/timeseries/station-{i:04d}.inp", f"STATION {i}\n" + "0.0 1.0 2.0\n" * 80,
                                 compress_type=zipfile.ZIP_DEFLATED)
            for i in range(tidefiles):
                with archive.open(zipfile.ZipInfo(f"study/tide/tidefile-{i}.h5"), "w") as member:
                    for _ in range(tidefile_mib):
                        member.write(os.urandom(CHUNK))
    except BaseException as exc:  # handed to the main thread
        errors.append(exc)
    finally:
        pipe.close()


class _CountingSink(io.RawIOBase):
    """Discards what it is given, counting it; seekable, so the SDK downloads with several connections."""

    def __init__(self) -> None:
        super().__init__()
        self.size = 0
        self._pos = 0

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._pos = offset if whence == io.SEEK_SET else self._pos + offset
        return self._pos

    def tell(self) -> int:
        return self._pos

    def write(self, data) -> int:
        self.size += len(data)
        self._pos += len(data)
        return len(data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tidefiles", type=int, default=8)
    parser.add_argument("--tidefile-mib", type=int, default=128)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}, "
          f"Python {platform.python_version()}")
    with tempfile.TemporaryDirectory(prefix="zip-bench-") as tmp:
        endpoints = AzuriteEndpoints("127.0.0.1", free_port(), free_port())
        azurite = start_azurite(endpoints, Path(tmp) / "azurite", Path(tmp) / "azurite.log")
        try:
            service = BlobServiceClient.from_connection_string(endpoints.connection_string)
            container = service.create_container("inbox")
            blob = container.get_blob_client("study.zip")

            pipe, errors = _Pipe(), []
            writer = threading.Thread(target=write_study, args=(pipe, args.tidefiles, args.tidefile_mib, errors), daemon=True)
            started = time.perf_counter()
            writer.start()
            blob.upload_blob(pipe.chunks(), blob_type="BlockBlob", overwrite=True)
            writer.join()
            if errors:
                raise errors[0]
            size = blob.get_blob_properties().size
            assert size == pipe.size, (size, pipe.size)
            print(f"built and uploaded a {size / 2**30:.2f} GiB zip ({size:,} bytes, {2001 + args.tidefiles:,} entries) "
                  f"in {time.perf_counter() - started:.1f} s")

            limits = ZipLimits()
            timings, result = [], None
            for _ in range(args.repeat):
                started = time.perf_counter()
                result = inspect_blob(blob, limits=limits)
                timings.append(time.perf_counter() - started)
                assert result.problems == [] and result.document["name"] == "bench-study", result.problems
            assert result is not None
            print(f"inspect_blob (ranged): {result.bytes_fetched:,} bytes in {result.requests} GETs "
                  f"(+1 properties request), {result.bytes_fetched / size:.4%} of the zip; "
                  f"best {min(timings) * 1000:.1f} ms, median {statistics.median(timings) * 1000:.1f} ms over {args.repeat} runs")

            sink = _CountingSink()
            started = time.perf_counter()
            blob.download_blob(max_concurrency=4).readinto(sink)
            download = time.perf_counter() - started
            assert sink.size == size
            print(f"baseline, download the whole blob: {sink.size:,} bytes in {download:.2f} s "
                  f"({sink.size / 2**20 / download:.0f} MiB/s)")
            print(f"ratio: {size / result.bytes_fetched:,.0f}x fewer bytes, {download / statistics.median(timings):,.0f}x faster (median)")
        finally:
            stop_group(azurite.pid)


if __name__ == "__main__":
    main()
