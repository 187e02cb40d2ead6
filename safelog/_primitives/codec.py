"""The compression codecs: one table, by name and by file extension, for writing and reading.

Compression writes a rotated backup as ``<name><ext>`` (``_policy/compress``); merge and audit
read such backups back by their extension. All three use this table, so a codec added here is
written, recognised and read everywhere.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import zlib
from collections.abc import Callable
from typing import IO

__all__ = ["Codec", "CODECS", "EXTENSIONS", "BY_EXT", "DECODE_ERRORS", "codec_for", "open_read"]

class Codec:
    """One stdlib compressor: its name in the options, its file extension, its writer and reader."""

    __slots__ = ("name", "ext", "_writer", "_reader")

    def __init__(
        self,
        name: str,
        ext: str,
        writer: Callable[[IO[bytes], str, float], IO[bytes]],
        reader: Callable[[str | IO[bytes]], IO[bytes]],
    ) -> None:
        self.name = name
        self.ext = ext
        self._writer = writer
        self._reader = reader

    def writer(self, raw: IO[bytes], source_name: str, mtime: float) -> IO[bytes]:
        """A file object that compresses what is written to it into ``raw`` (left open)."""
        return self._writer(raw, source_name, mtime)

    def reader(self, src: str | IO[bytes]) -> IO[bytes]:
        """The decoded stream of a compressed file: a path (closed with the stream) or an open
        binary file object (left open, so its position can be followed)."""
        return self._reader(src)

    def __repr__(self) -> str:
        return f"Codec({self.name!r})"


def _gzip_writer(raw: IO[bytes], name: str, mtime: float) -> IO[bytes]:
    # Level 6 (zlib's default) is about 3x faster than gzip.open's 9 for a few percent of size.
    return gzip.GzipFile(filename=name, mode="wb", compresslevel=6, fileobj=raw, mtime=int(mtime))  # type: ignore[return-value]


def _gzip_reader(src: str | IO[bytes]) -> IO[bytes]:
    if isinstance(src, str):
        return gzip.GzipFile(filename=src, mode="rb")  # type: ignore[return-value]
    return gzip.GzipFile(fileobj=src, mode="rb")  # type: ignore[return-value]


def _bz2_writer(raw: IO[bytes], name: str, mtime: float) -> IO[bytes]:
    return bz2.BZ2File(raw, "wb")


def _bz2_reader(src: str | IO[bytes]) -> IO[bytes]:
    return bz2.BZ2File(src, "rb")


def _xz_writer(raw: IO[bytes], name: str, mtime: float) -> IO[bytes]:
    return lzma.LZMAFile(raw, "wb", preset=6)


def _xz_reader(src: str | IO[bytes]) -> IO[bytes]:
    return lzma.LZMAFile(src, "rb")


CODECS = {
    "gzip": Codec("gzip", ".gz", _gzip_writer, _gzip_reader),
    "bz2": Codec("bz2", ".bz2", _bz2_writer, _bz2_reader),
    "xz": Codec("xz", ".xz", _xz_writer, _xz_reader),
}
EXTENSIONS = tuple(c.ext for c in CODECS.values())
BY_EXT = {c.ext: c for c in CODECS.values()}
# What reading a damaged compressed file raises (a truncated stream, bad data).
DECODE_ERRORS: tuple[type[Exception], ...] = (OSError, EOFError, lzma.LZMAError, zlib.error)


def codec_for(path: str) -> Codec | None:
    """The codec of a file named ``<name><ext>``, or None for an uncompressed one."""
    for ext, codec in BY_EXT.items():
        if path.endswith(ext):
            return codec
    return None


def open_read(path: str) -> IO[bytes]:
    """``path`` opened for reading, decoded when its extension names a codec."""
    codec = codec_for(path)
    return open(path, "rb") if codec is None else codec.reader(path)
