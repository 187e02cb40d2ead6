"""The compression codecs: one table, by name and by file extension, for writing and reading.

Compression writes a rotated backup as ``<name><ext>`` (``_policy/compress``); merge and audit
read such backups back by their extension. All three use this table, so a codec added here is
written, recognised and read everywhere.

zstd is in the table whatever the interpreter has, so ``.zst`` backups are recognised (counted,
removed by retention) everywhere; writing or reading one needs ``compression.zstd`` (Python
3.14+) or the ``zstandard`` package, imported when first used (not by ``import safelog``).
"""

from __future__ import annotations

import bz2
import functools
import gzip
import importlib
import io
import lzma
import zlib
from collections.abc import Callable
from typing import IO, Any

__all__ = ["Codec", "CODECS", "EXTENSIONS", "BY_EXT", "DECODE_ERRORS", "ZSTD_EXTRA", "codec_for", "open_read"]

# What to install for zstd on a Python before 3.14 (the distribution's extra).
ZSTD_EXTRA = "pip install 'safelog-handlers[zstd]'"


def _always() -> str | None:
    return None


class Codec:
    """One compressor: its name in the options, its file extension, its writer and reader, and
    why it cannot be used here (None when it can)."""

    __slots__ = ("name", "ext", "_writer", "_reader", "missing")

    def __init__(
        self,
        name: str,
        ext: str,
        writer: Callable[[IO[bytes], str, float], IO[bytes]],
        reader: Callable[[str | IO[bytes]], IO[bytes]],
        missing: Callable[[], str | None] = _always,
    ) -> None:
        self.name = name
        self.ext = ext
        self._writer = writer
        self._reader = reader
        self.missing = missing

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


# zstd's own default level: it compresses logs about as well as gzip -9 at several times its speed.
_ZSTD_LEVEL = 3


@functools.cache
def _zstd() -> tuple[str, Any] | None:
    """The zstd implementation this interpreter has: the stdlib's (3.14+), else ``zstandard``."""
    for name in ("compression.zstd", "zstandard"):
        try:
            return name, importlib.import_module(name)
        except ImportError:
            pass
    return None


def _zstd_missing() -> str | None:
    if _zstd() is not None:
        return None
    return f"zstd needs Python 3.14+ (compression.zstd) or the zstandard package: {ZSTD_EXTRA}"


def _zstd_module() -> tuple[str, Any]:
    found = _zstd()
    if found is None:
        raise OSError(_zstd_missing())
    return found


class _ZstdStream(io.RawIOBase):
    """A zstd decoder as a raw stream over ``f``: one frame after another, the library's errors
    and a stream that ends inside a frame (a truncated backup) raised as ``OSError`` (one of
    :data:`DECODE_ERRORS`, which cannot name a class of a module not imported yet). Written over
    ``decompressobj``: ``zstandard``'s own stream reader ends quietly at a truncated frame."""

    def __init__(self, mod: Any, f: IO[bytes], owned: bool) -> None:
        self._mod = mod
        self._f = f
        self._owned = owned  # the file was opened for this stream, and is closed with it
        self._obj = mod.ZstdDecompressor().decompressobj()
        self._in_frame = False
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            data = self._f.read(_CHUNK)
            if not data:
                if self._in_frame:
                    raise OSError("zstd: the file ends inside a frame (truncated)")
                return 0
            self._pending = self._feed(data)
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def _feed(self, data: bytes) -> bytes:
        out = []
        while data:
            try:
                out.append(self._obj.decompress(data))
            except self._mod.ZstdError as exc:
                raise OSError(f"zstd: {exc}") from exc
            self._in_frame = not self._obj.eof
            if not self._obj.eof:
                break
            data = self._obj.unused_data  # the next frame, if any
            self._obj = self._mod.ZstdDecompressor().decompressobj()
        return b"".join(out)

    def close(self) -> None:
        if not self.closed:
            try:
                if self._owned:
                    self._f.close()
            finally:
                super().close()


_CHUNK = 1 << 16


def _zstd_writer(raw: IO[bytes], name: str, mtime: float) -> IO[bytes]:
    # A zstd frame has no file name or time: the backup's own mtime is what there is. With a
    # checksum of the content, as gzip (CRC-32) and xz have: damage is found on reading.
    kind, mod = _zstd_module()
    if kind == "compression.zstd":
        p = mod.CompressionParameter
        options = {p.compression_level: _ZSTD_LEVEL, p.checksum_flag: 1}
        return mod.ZstdFile(raw, "wb", options=options)  # type: ignore[no-any-return]
    compressor = mod.ZstdCompressor(level=_ZSTD_LEVEL, write_checksum=True)
    return compressor.stream_writer(raw, closefd=False)  # type: ignore[no-any-return]


def _zstd_reader(src: str | IO[bytes]) -> IO[bytes]:
    kind, mod = _zstd_module()
    if kind == "compression.zstd":
        return io.BufferedReader(_StdlibZstd(mod.ZstdFile(src, "rb"), mod.ZstdError))
    if isinstance(src, str):
        return io.BufferedReader(_ZstdStream(mod, open(src, "rb"), owned=True))
    return io.BufferedReader(_ZstdStream(mod, src, owned=False))


class _StdlibZstd(io.RawIOBase):
    """``compression.zstd.ZstdFile`` (which raises EOFError at a truncated frame, as gzip does)
    with its ``ZstdError`` raised as ``OSError``."""

    def __init__(self, inner: Any, error: type[Exception]) -> None:
        self._inner = inner
        self._error = error

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            return int(self._inner.readinto(buffer))
        except self._error as exc:
            raise OSError(f"zstd: {exc}") from exc

    def close(self) -> None:
        if not self.closed:
            try:
                self._inner.close()
            finally:
                super().close()


CODECS = {
    "gzip": Codec("gzip", ".gz", _gzip_writer, _gzip_reader),
    "bz2": Codec("bz2", ".bz2", _bz2_writer, _bz2_reader),
    "xz": Codec("xz", ".xz", _xz_writer, _xz_reader),
    "zstd": Codec("zstd", ".zst", _zstd_writer, _zstd_reader, _zstd_missing),
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
