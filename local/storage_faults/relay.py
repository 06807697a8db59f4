"""HTTP/1.1 message framing for a proxy that must not change a byte.

Shared Key signs the method, the path and query, and most headers; a SAS signs the
query. So requests and responses are relayed as the raw bytes that arrived, never
re-rendered from parsed headers: the head is read line by line and kept as is, and
a body is copied piece by piece by its framing (``Content-Length``, chunked, or
until the connection closes), without ever holding a whole body in memory. Only
what framing needs is parsed.
"""
from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlsplit

MAX_HEAD_BYTES = 64 * 1024
PIECE = 64 * 1024


class ConnectionClosed(Exception):
    """The peer closed the connection (before a complete message, or between messages)."""


class BadMessage(Exception):
    """Bytes that are not an HTTP/1.1 message this proxy can frame."""


class BufferedSocket:
    """A socket with a read buffer of our own, so that what has been received but not yet used is visible."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self._buf = bytearray()

    def buffered(self) -> bool:
        return bool(self._buf)

    def _fill(self) -> None:
        data = self.sock.recv(PIECE)
        if not data:
            raise ConnectionClosed()
        self._buf += data

    def read_line(self, limit: int) -> bytes:
        """One line, with its CRLF (or LF)."""
        while True:
            end = self._buf.find(b"\n")
            if end >= 0:
                line = bytes(self._buf[:end + 1])
                del self._buf[:end + 1]
                return line
            if len(self._buf) > limit:
                raise BadMessage("line too long")
            self._fill()

    def read_some(self, at_most: int) -> bytes:
        """Up to ``at_most`` bytes: what is buffered, else what one receive brings."""
        if not self._buf:
            self._fill()
        piece = bytes(self._buf[:at_most])
        del self._buf[:len(piece)]
        return piece

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


@dataclass(frozen=True)
class Head:
    """A message's head as received (``raw``) and the few things framing needs."""

    raw: bytes
    start_line: str
    headers: dict[str, str]  # lower-cased names; a repeated header keeps its last value

    @property
    def connection_close(self) -> bool:
        return "close" in self.headers.get("connection", "").lower()

    @property
    def chunked(self) -> bool:
        return "chunked" in self.headers.get("transfer-encoding", "").lower()

    @property
    def content_length(self) -> int | None:
        value = self.headers.get("content-length")
        if value is None:
            return None
        try:
            length = int(value.strip())
        except ValueError:
            raise BadMessage(f"Content-Length {value!r}") from None
        if length < 0:
            raise BadMessage(f"Content-Length {value!r}")
        return length


@dataclass(frozen=True)
class RequestHead(Head):
    @property
    def method(self) -> str:
        return self.start_line.split(" ", 1)[0].upper()

    @property
    def path(self) -> str:
        """The URL path of the request target (no query: a SAS is in the query)."""
        target = self.start_line.split(" ")[1] if " " in self.start_line else "/"
        return urlsplit(target).path or "/"

    @property
    def expects_continue(self) -> bool:
        return self.headers.get("expect", "").lower() == "100-continue"

    @property
    def has_body(self) -> bool:
        return self.chunked or bool(self.content_length)


@dataclass(frozen=True)
class ResponseHead(Head):
    @property
    def status(self) -> int:
        try:
            return int(self.start_line.split(" ")[1])
        except (IndexError, ValueError):
            raise BadMessage(f"status line {self.start_line!r}") from None


H = TypeVar("H", bound=Head)


def read_head(conn: BufferedSocket, kind: type[H]) -> H:
    """Read a message head up to and including its blank line."""
    raw = bytearray()
    lines: list[str] = []
    while True:
        line = conn.read_line(MAX_HEAD_BYTES)
        raw += line
        if len(raw) > MAX_HEAD_BYTES:
            raise BadMessage("head too large")
        text = line.decode("latin-1").rstrip("\r\n")
        if not text:
            if not lines:  # tolerate blank lines before a request (RFC 9112 2.2)
                raw.clear()
                continue
            break
        lines.append(text)
    headers: dict[str, str] = {}
    for text in lines[1:]:
        name, sep, value = text.partition(":")
        if not sep:
            raise BadMessage(f"header line {text!r}")
        headers[name.strip().lower()] = value.strip()
    return kind(bytes(raw), lines[0], headers)


def copy_body(source: BufferedSocket, sink: BufferedSocket | None, head: Head, *, until_close: bool = False) -> None:
    """Copy (or, with no ``sink``, discard) the body that follows ``head``, byte for byte.

    ``until_close`` is for a response framed by neither length nor chunking: its body
    ends when the server closes the connection.
    """
    def emit(data: bytes) -> None:
        if sink is not None:
            sink.send(data)

    if head.chunked:
        while True:
            size_line = source.read_line(MAX_HEAD_BYTES)
            emit(size_line)
            try:
                size = int(size_line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise BadMessage(f"chunk size {size_line!r}") from None
            if size == 0:
                while True:  # trailers, then the blank line that ends the message
                    line = source.read_line(MAX_HEAD_BYTES)
                    emit(line)
                    if not line.strip():
                        return
            _copy_exact(source, emit, size)
            emit(source.read_line(MAX_HEAD_BYTES))  # the CRLF after the chunk's data
        return
    length = head.content_length
    if length is not None:
        _copy_exact(source, emit, length)
        return
    if until_close:
        while True:
            try:
                emit(source.read_some(PIECE))
            except ConnectionClosed:
                return


def _copy_exact(source: BufferedSocket, emit, remaining: int) -> None:
    while remaining:
        piece = source.read_some(min(remaining, PIECE))
        emit(piece)
        remaining -= len(piece)


def response_has_body(method: str, status: int) -> bool:
    return method != "HEAD" and not (100 <= status < 200) and status not in (204, 304)
