"""Benchmark: `dmsbatch submit` of a 1 GiB study folder (zipped while uploading) vs zipping first, then uploading.

Generates a study folder of about 1 GiB in a temporary directory: six 128 MiB
incompressible "tidefiles" (``os.urandom``, what HDF5/DSS outputs look like to
deflate), 32 files of 8 MiB of model-like CSV text, 500 small ``.inp`` files and a
``run.yaml``. Starts a private Azurite on free ports in the same directory, and
measures, each in a fresh process so that its memory high-water mark is its own:

- **streamed**: ``dmsbatch.submit.submit(clients, folder, via="inbox")``, the code
  behind ``dmsbatch submit``: validate, zip on the fly (``dmsbatch.zipstream``),
  staged blocks (``dmsbatch.blockupload``), commit;
- **zip, then upload** (the baseline): ``zipfile`` writes the folder to a temporary
  .zip (``ZIP_DEFLATED`` at zlib's default level for every file, as ``zipfile`` or
  ``shutil.make_archive`` does), then the plain SDK uploads it
  (``BlobClient.upload_blob(file, max_concurrency=4)``);
- **zip (same choices), then upload**: the same baseline with the streamed path's
  per-file choices (level 1, incompressible files stored), to separate what
  streaming gains from what the compression choices gain.

For each: seconds, MB/s of study bytes (folder in, blob committed), the zip's size,
and the process's peak RSS (``resource.getrusage``, ``ru_maxrss``) beside its RSS
before the measured work. ``--tracemalloc`` adds a second streamed run with
``tracemalloc`` on, for the peak of Python allocations.

    .venv/bin/python bench/submit_throughput.py [--gib 1] [--tracemalloc]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

MiB = 1024 * 1024
CONNECTION_ENV = "BENCH_STORAGE_CONNECTION"  # the worker's connection string: by environment, never argv


def rss_mib() -> float:
    """The process's peak resident set size so far, MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mib() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / MiB


# ---- the study ---------------------------------------------------------------------------------

def text_block(seed: int, size: int = MiB) -> bytes:
    """Model-like CSV: dates, station names, stages and flows (deflates about 2.5:1 at level 1)."""
    rng = random.Random(seed)
    lines, total = [], 0
    while total < size:
        line = (f"{rng.randint(1990, 2024)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d},"
                f"RSAC{rng.randint(0, 999):03d},{rng.uniform(-2, 12):.4f},{rng.uniform(0, 90000):.1f},"
                f"{rng.choice(('ok', 'ok', 'ok', 'missing', 'est'))}\n")
        lines.append(line)
        total += len(line)
    return "".join(lines).encode()[:size]


def make_study(folder: Path, gib: float) -> int:
    scale = gib
    (folder / "output_prev").mkdir(parents=True)
    (folder / "timeseries").mkdir()
    (folder / "inputs_small").mkdir()
    (folder / "run.yaml").write_text("name: bench-study\ncommand: >-\n  for z in *.zip; do python3 -m zipfile -e \"$z\" .; done &&"
                                     " ./hydro hydro.inp && ./qual qual_ec.inp\noutputs: ['**/output/*']\n")
    chunk = MiB
    for i in range(6):
        with open(folder / "output_prev" / f"hist_v82_{i}.h5", "wb") as handle:
            for _ in range(int(128 * scale)):
                handle.write(os.urandom(chunk))
    blocks = [text_block(seed) for seed in range(16)]
    for i in range(32):
        with open(folder / "timeseries" / f"boundary_{i:02d}.csv", "wb") as handle:
            for j in range(int(8 * scale)):
                handle.write(blocks[(i + j) % len(blocks)])
    for i in range(500):
        (folder / "inputs_small" / f"station_{i:03d}.inp").write_text(f"STATION {i}\n" + "0.0 1.0 2.0 3.5\n" * 250)
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


# ---- workers (each in its own process) ------------------------------------------------------------

def _clients():
    from dmscontract.clients import Clients
    from dmscontract.settings import Settings

    return Clients(Settings.from_env({"DataStorage": os.environ[CONNECTION_ENV], "BATCH_ACCOUNT_URL": "http://127.0.0.1:1"}))


def worker_streamed(folder: Path, trace: bool) -> dict:
    import tracemalloc

    from dmsbatch.submit import submit

    clients = _clients()
    clients.blob_service.get_container_client("inbox").get_container_properties()  # connections and imports warm
    before = current_rss_mib()
    if trace:
        tracemalloc.start()
    started = time.perf_counter()
    submission = submit(clients, folder, via="inbox")
    seconds = time.perf_counter() - started
    peak_traced = tracemalloc.get_traced_memory()[1] / MiB if trace else None
    container, name = submission.blob.split("/", 1)
    size = clients.blob_service.get_blob_client(container, name).get_blob_properties().size
    assert size == submission.bytes_uploaded, (size, submission.bytes_uploaded)
    return {"seconds": seconds, "zip_bytes": size, "rss_before_mib": before, "rss_peak_mib": rss_mib(),
            "traced_peak_mib": peak_traced}


def worker_zip_then_upload(folder: Path, scratch: Path, same_choices: bool) -> dict:
    from dmsbatch.zipstream import COMPRESS_LEVEL, compresses, study_files, zip_entry

    clients = _clients()
    clients.blob_service.get_container_client("inbox").get_container_properties()
    before = current_rss_mib()
    target = scratch / f"study-{os.getpid()}.zip"
    started = time.perf_counter()
    files = study_files(folder)
    if same_choices:
        with zipfile.ZipFile(target, "w", compresslevel=COMPRESS_LEVEL) as archive:
            for file in files:
                archive.write(file.path, file.name, compress_type=zip_entry(file, compresses(file.path)).compress_type)
    else:
        with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
            for file in files:
                archive.write(file.path, file.name)
    zipped = time.perf_counter()
    blob = clients.blob_service.get_blob_client("inbox", f"baseline-{os.getpid()}/study.zip")
    with open(target, "rb") as data:
        blob.upload_blob(data, overwrite=True, max_concurrency=4)
    done = time.perf_counter()
    size = target.stat().st_size
    target.unlink()
    assert blob.get_blob_properties().size == size
    return {"seconds": done - started, "zip_seconds": zipped - started, "upload_seconds": done - zipped, "zip_bytes": size,
            "rss_before_mib": before, "rss_peak_mib": rss_mib()}


def run_worker(kind: str, folder: Path, scratch: Path, connection: str, trace: bool = False) -> dict:
    argv = [sys.executable, __file__, "--worker", kind, "--folder", str(folder), "--scratch", str(scratch)]
    if trace:
        argv.append("--tracemalloc")
    result = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, CONNECTION_ENV: connection,
                                                                      "PYTHONPATH": str(REPO_ROOT)})
    if result.returncode != 0:
        raise RuntimeError(f"worker {kind} failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


# ---- main -----------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=1.0, help="study size, GiB (default 1)")
    parser.add_argument("--tracemalloc", action="store_true", help="also a streamed run with tracemalloc on")
    parser.add_argument("--worker", choices=("streamed", "zip-default", "zip-same"), help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--scratch", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        if args.worker == "streamed":
            print(json.dumps(worker_streamed(args.folder, args.tracemalloc)))
        else:
            print(json.dumps(worker_zip_then_upload(args.folder, args.scratch, args.worker == "zip-same")))
        return

    from local.azurite import AzuriteEndpoints, start_azurite
    from local.processes import free_port, stop_group

    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}, "
          f"Python {platform.python_version()}")
    with tempfile.TemporaryDirectory(prefix="submit-bench-") as tmp:
        tmp_path = Path(tmp)
        folder = tmp_path / "bench-study"
        started = time.perf_counter()
        total = make_study(folder, args.gib)
        files = sum(1 for p in folder.rglob("*") if p.is_file())
        print(f"study folder: {total:,} bytes ({total / 2**30:.2f} GiB) in {files} files, made in {time.perf_counter() - started:.0f} s")
        endpoints = AzuriteEndpoints("127.0.0.1", free_port(), free_port())
        azurite = start_azurite(endpoints, tmp_path / "azurite", tmp_path / "azurite.log")
        try:
            from azure.storage.blob import BlobServiceClient

            BlobServiceClient.from_connection_string(endpoints.connection_string).create_container("inbox")
            runs = [("streamed (dmsbatch submit)", "streamed", False),
                    ("zip to a temp file (zipfile defaults), then upload_blob", "zip-default", False),
                    ("zip to a temp file (level 1, incompressible stored), then upload_blob", "zip-same", False)]
            if args.tracemalloc:
                runs.append(("streamed, tracemalloc on", "streamed", True))
            print(f"\n{'path':<72} {'seconds':>8} {'MB/s':>7} {'zip MiB':>8} {'RSS before':>11} {'RSS peak':>9}  detail")
            for label, kind, trace in runs:
                result = run_worker(kind, folder, tmp_path, endpoints.connection_string, trace)
                rate = total / result["seconds"] / 1e6
                detail = (f"zip {result['zip_seconds']:.1f} s + upload {result['upload_seconds']:.1f} s" if "zip_seconds" in result
                          else (f"tracemalloc peak {result['traced_peak_mib']:.1f} MiB" if result.get("traced_peak_mib") is not None else ""))
                print(f"{label:<72} {result['seconds']:>8.1f} {rate:>7.1f} {result['zip_bytes'] / MiB:>8.0f} "
                      f"{result['rss_before_mib']:>9.0f} M {result['rss_peak_mib']:>7.0f} M  {detail}", flush=True)
            print("\nMB/s: study bytes (10^6) from folder to committed blob. RSS: the worker process's resident set before "
                  "the measured work and its high-water mark (ru_maxrss), MiB.")
        finally:
            stop_group(azurite.pid)


if __name__ == "__main__":
    main()
