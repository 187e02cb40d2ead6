"""The codec table: every codec written by compression is recognised and read back by extension."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from safelog._primitives.codec import BY_EXT, CODECS, codec_for, open_read
from safelog._primitives.shard import parse_shard_name


@pytest.mark.parametrize("name", sorted(CODECS))
def test_written_file_is_read_back_by_its_extension(tmp_path: Path, name: str) -> None:
    """What a codec's writer produces, open_read decodes from the file name alone, byte for byte."""
    codec = CODECS[name]
    data = b"".join(b"record %d\n" % i for i in range(5000))
    path = tmp_path / f"app.log.1{codec.ext}"
    with open(path, "wb") as raw:
        with codec.writer(raw, "app.log.1", 1_800_000_000.0) as out:
            out.write(data)
    assert codec_for(str(path)) is codec and BY_EXT[codec.ext] is codec
    with open_read(str(path)) as f:
        assert f.read() == data
    with open(path, "rb") as raw:
        stream = codec.reader(raw)
        assert stream.read() == data
        stream.close()
        assert not raw.closed  # a file object handed in stays open: merge follows its position


def test_plain_files_are_read_as_they_are(tmp_path: Path) -> None:
    """A name without a codec extension is opened unchanged."""
    path = tmp_path / "app.log.1"
    path.write_bytes(b"x\n")
    assert codec_for(str(path)) is None
    with open_read(str(path)) as f:
        assert isinstance(f, io.BufferedReader) and f.read() == b"x\n"


@pytest.mark.parametrize("ext", sorted(BY_EXT))
def test_shard_backups_are_recognised_with_every_extension(ext: str) -> None:
    """A compressed shard backup's name parses with its extension, for every codec."""
    parts = parse_shard_name("app.log", f"app.log.host.12.shard.3{ext}")
    assert parts is not None and parts["ext"] == ext[1:] and parts["n"] == "3"
