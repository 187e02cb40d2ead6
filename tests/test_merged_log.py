"""The merged log: appended in place across merges, read once by ``tail -F``."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest

import safelog
from safelog._primitives.shard import ShardFrame
from tests.faults_helpers import wait_until

T0 = 1_800_000_000.0


def write_batch(d: Path, k: int, n: int = 200) -> list[str]:
    """Two shards of batch ``k`` (ids ``b<k>-<i>``), later in time than every earlier batch, the
    last record ``end-<k>``; returns the ids in merged order."""
    ids = [f"b{k}-{i}" for i in range(n)] + [f"end-{k}"]
    for w in range(2):
        frame = ShardFrame("utf-8", "strict")
        with open(d / f"app.log.h.{100 * k + w}.shard", "wb") as f:
            for i, rid in enumerate(ids):
                if (w == 1) if rid.startswith("end-") else (i % 2 == w):
                    f.write(frame.encode(rid, T0 + 100 * k + i * 0.001))
    return ids


def lines(path: Path) -> list[str]:
    return path.read_text().split("\n")[:-1]


def names(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir())


def test_merged_log_keeps_its_inode_and_earlier_bytes(tmp_path: Path) -> None:
    """Three merges append three batches to the same file (same inode), earlier bytes untouched, and
    leave no temp file."""
    log = tmp_path / "app.log"
    expected: list[str] = []
    inode = None
    before = b""
    for k in range(3):
        expected += write_batch(tmp_path, k)
        report = safelog.merge(log)
        assert report.ok and report.records == 201
        assert inode is None or log.stat().st_ino == inode
        inode = log.stat().st_ino
        assert log.read_bytes().startswith(before)
        before = log.read_bytes()
    assert lines(log) == expected
    assert [n for n in names(tmp_path) if ".tmp" in n or ".shard" in n] == []


def _gnu_tail() -> str:
    tail = shutil.which("tail")
    if tail is None:
        pytest.skip("no tail")
    version = subprocess.run([tail, "--version"], capture_output=True, text=True).stdout
    if "GNU coreutils" not in version:
        pytest.skip("tail is not GNU coreutils")
    return tail


def test_tail_follows_the_merged_log_and_sees_each_record_once(tmp_path: Path) -> None:
    """A real ``tail -F`` on the merged log across three merges prints every record exactly once:
    the log is appended in place, never replaced."""
    tail = _gnu_tail()
    log = tmp_path / "app.log"
    seen = tmp_path / "seen.txt"
    expected = write_batch(tmp_path, 0)
    assert safelog.merge(log).records == 201
    with open(seen, "wb") as out:
        proc = subprocess.Popen(
            [tail, "-n", "+1", "-F", "-s", "0.05", str(log)], stdout=out, stderr=subprocess.DEVNULL
        )
    try:
        for k in range(3):
            if k:
                expected += write_batch(tmp_path, k)
                assert safelog.merge(log).records == 201
            # Each batch ends with its marker: wait until tail has printed it.
            wait_until(lambda: f"end-{k}\n" in seen.read_text(), timeout=30, what=f"tail to print end-{k}")
    finally:
        proc.terminate()
        proc.wait(10)
    got = lines(seen)
    assert [rid for rid, n in Counter(got).items() if n > 1] == []
    assert got == expected


def test_output_that_is_not_a_regular_file_is_refused(tmp_path: Path) -> None:
    """A FIFO at the output's name is refused (never opened for a blocking write, never truncated);
    the shards stay."""
    write_batch(tmp_path, 0)
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    with pytest.raises(safelog.MergeError, match="not a regular file"):
        safelog.merge(tmp_path / "app.log", fifo)
    assert len(list(tmp_path.glob("*.shard"))) == 2
