"""The ``azure.functions.InputStream`` a blob-triggered function receives.

Blobs here can be study archives of several GB, so nothing is downloaded until
the function calls ``read()``, and then only chunk by chunk; a function that only
looks at ``name``/``length`` costs no transfer at all.
"""
from __future__ import annotations

from typing import Any, Optional

import azure.functions as func
from azure.storage.blob import BlobClient, StorageStreamDownloader


class LazyBlobInputStream(func.InputStream):
    """Read-only, forward-only stream over one blob, downloaded on demand."""

    def __init__(
        self,
        blob: BlobClient,
        *,
        name: str,
        length: Optional[int],
        blob_properties: Optional[dict] = None,
        metadata: Optional[dict] = None,
    ) -> None:
        super().__init__()
        self._blob = blob
        self._name = name
        self._length = length
        self._blob_properties = blob_properties
        self._metadata = metadata
        self._downloader: StorageStreamDownloader | None = None

    @property
    def name(self) -> Optional[str]:
        """``<container>/<blob name>``, like the real binding's ``BlobTrigger`` value."""
        return self._name

    @property
    def length(self) -> Optional[int]:
        return self._length

    @property
    def uri(self) -> Optional[str]:
        return self._blob.url

    @property
    def blob_properties(self) -> Optional[dict]:
        return self._blob_properties

    @property
    def metadata(self) -> Optional[dict]:
        return self._metadata

    @property
    def downloaded(self) -> bool:
        """Whether any data has been requested from storage yet."""
        return self._downloader is not None

    def read(self, size: Any = -1) -> bytes:
        if self.closed:
            raise ValueError("I/O operation on closed blob stream")
        if self._downloader is None:
            # The downloader pins the ETag of its first response for later chunks,
            # so a blob overwritten mid-read fails instead of mixing versions.
            self._downloader = self._blob.download_blob()
        if size is None or size < 0:
            return self._downloader.read()
        return self._downloader.read(size)

    read1 = read

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def writable(self) -> bool:
        return False
