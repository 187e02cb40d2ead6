"""Compression as configured: the ``compress`` option, and the names of the hidden files that
compressing and removing a backup make beside it. The work itself is the background
:mod:`.compressor`'s.
"""

from __future__ import annotations

import os
import secrets
from typing import Any

from .._primitives.atomic import TMP_SUFFIX, temp_name
from .._primitives.codec import CODECS as CODECS
from .._primitives.codec import EXTENSIONS as EXTENSIONS
from .._primitives.codec import Codec as Codec

__all__ = ["Codec", "CODECS", "EXTENSIONS", "parse_compress", "trash_name", "work_names", "TMP_SUFFIX", "DEL_SUFFIX"]

DEL_SUFFIX = ".del"
_ALIASES = {"gz": "gzip", "bzip2": "bz2", "lzma": "xz", "zst": "zstd", "zstandard": "zstd"}
_CHOICES = ", ".join(repr(name) for name in CODECS)


def parse_compress(value: Any, option: str = "compress") -> Codec | None:
    """``compress``: ``"gzip"``, ``"bz2"``, ``"xz"``, ``"zstd"`` (or ``None``/``False`` for
    none). A codec this interpreter cannot write (zstd without its module) is refused here."""
    if value is None or value is False:
        return None
    if isinstance(value, str):
        name = _ALIASES.get(value.strip().lower(), value.strip().lower())
        if name in CODECS:
            codec = CODECS[name]
            missing = codec.missing()
            if missing is not None:
                raise ValueError(f"{option}={value!r}: {missing}")
            return codec
        if name in ("", "none", "no", "false"):
            return None
    raise ValueError(f"{option} must be one of {_CHOICES} or None; got {value!r}")


def trash_name(name: str, token: str | None = None) -> str:
    """The hidden name :meth:`.compressor.Compressor.trash` gives ``name`` until it is unlinked."""
    return f".{name}.{secrets.token_hex(6) if token is None else token}{DEL_SUFFIX}"


def work_names(backup: str, codec: Codec | None) -> list[tuple[str, str]]:
    """What and where the hidden files made beside ``backup`` are, at their longest: the temp
    file ``codec`` compresses it into (tagged with the backup's inode), and the name a backup
    (compressed or not) is renamed to when it is removed. For the name-length check."""
    directory, name = os.path.split(backup)
    ext = "" if codec is None else codec.ext
    names = [("removed backup", os.path.join(directory, trash_name(name + ext, "0" * 12)))]
    if codec is not None:
        tag = "f" * 16 + "-"  # the inode, in hex: 64 bits at most
        names.append(("compression temp file", os.path.join(directory, temp_name(name + ext, tag, "0" * 12))))
    return names
