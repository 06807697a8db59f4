"""Upload a stream of bytes of unknown length as a block blob: staged blocks, then one commit.

The bytes come from a generator (``dmsbatch.zipstream.iter_zip``); they are cut
into blocks of ``block_size`` and each block is staged (``Put Block``) by a small
pool of threads while the generator makes the next. At most ``concurrency``
blocks are in flight and one is being filled, so memory stays near
``(concurrency + 1) * block_size`` whatever the stream's length. The blob appears
only when the block list is committed (``Put Block List``), with the MD5 of the
whole stream as its Content-MD5 and the given metadata: a reader never sees half
a zip, and the blob trigger fires once.

An upload that fails leaves only uncommitted blocks, which the service discards
(after a week on Azure); nothing partial is ever visible.
"""
from __future__ import annotations

import base64
import hashlib
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterable

from azure.storage.blob import BlobBlock, BlobClient, ContentSettings

DEFAULT_BLOCK_SIZE = 8 * 1024 * 1024
DEFAULT_CONCURRENCY = 4
MAX_BLOCKS = 50_000  # what a block blob may hold


@dataclass(frozen=True)
class UploadResult:
    etag: str
    size: int
    content_md5: str  # base64, as the blob's Content-MD5 and the manifest carry it
    blocks: int
    seconds: float


def block_size_for(expected_bytes: int, minimum: int = DEFAULT_BLOCK_SIZE) -> int:
    """A block size that fits ``expected_bytes`` in the blob's 50,000 blocks with room to spare."""
    needed = -(-expected_bytes // (MAX_BLOCKS * 9 // 10)) if expected_bytes > 0 else 0
    size = max(minimum, needed)
    return -(-size // (1024 * 1024)) * 1024 * 1024  # whole MiB


def upload_stream(blob: BlobClient, chunks: Iterable[bytes], *, block_size: int = DEFAULT_BLOCK_SIZE,
                  concurrency: int = DEFAULT_CONCURRENCY, content_type: str = "application/zip",
                  metadata: dict[str, str] | None = None, overwrite: bool = True,
                  progress: Callable[[int], None] | None = None) -> UploadResult:
    """Stage ``chunks`` as blocks and commit them; ``progress(n)`` is called with each block's size once it is staged."""
    started = time.monotonic()
    md5 = hashlib.md5()
    ids: list[str] = []
    size = 0
    slots = threading.BoundedSemaphore(concurrency)
    futures: list[Future] = []
    buffer = bytearray()

    def stage(block_id: str, data: bytes) -> None:
        try:
            blob.stage_block(block_id, data, length=len(data))
            if progress is not None:
                progress(len(data))
        finally:
            slots.release()

    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="stage-block") as pool:
        def submit(length: int) -> None:
            """Stage the buffer's first ``length`` bytes as the next block, once a slot is free."""
            if len(ids) >= MAX_BLOCKS:
                raise ValueError(f"the stream needs more than {MAX_BLOCKS:,} blocks of {block_size:,} bytes; use a larger block size")
            # wait while `concurrency` blocks are in flight, before copying the next out of the buffer:
            # the producer slows to the upload's pace and no finished block waits in memory for a slot
            slots.acquire()
            for done in [f for f in futures if f.done()]:
                done.result()  # a failed block fails the upload now, not after the whole stream
                futures.remove(done)
            with memoryview(buffer) as view:
                data = bytes(view[:length])
            del buffer[:length]
            block_id = base64.b64encode(f"{len(ids):08d}".encode()).decode()
            ids.append(block_id)
            futures.append(pool.submit(stage, block_id, data))

        try:
            for chunk in chunks:
                md5.update(chunk)
                size += len(chunk)
                buffer += chunk
                while len(buffer) >= block_size:
                    submit(block_size)
            if buffer:
                submit(len(buffer))
            for future in futures:
                future.result()
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    digest = md5.digest()
    kwargs = {} if overwrite else {"if_none_match": "*"}
    result = blob.commit_block_list([BlobBlock(block_id=i) for i in ids], metadata=metadata,
                                    content_settings=ContentSettings(content_type=content_type, content_md5=bytearray(digest)),
                                    **kwargs)
    return UploadResult(etag=result["etag"], size=size, content_md5=base64.b64encode(digest).decode(), blocks=len(ids),
                        seconds=time.monotonic() - started)
