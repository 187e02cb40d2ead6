"""The merged log: appended in place across merges, read once by ``tail -F``, rotated, compressed
and pruned like a handler's log, and crash-safe through a rotation."""

from __future__ import annotations

import gzip
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import safelog
from safelog._cli import main
from safelog._primitives.shard import ShardFrame
from tests.faults_helpers import wait_until

ROOT = str(Path(__file__).resolve().parent.parent)
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


def gz_lines(path: Path) -> list[str]:
    with gzip.open(path, "rt") as f:
        return f.read().split("\n")[:-1]


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


@pytest.mark.parametrize("rotate", [False, True])
def test_tail_follows_the_merged_log_and_sees_each_record_once(tmp_path: Path, rotate: bool) -> None:
    """A real ``tail -F`` on the merged log across three merges (and with rotation, two renames)
    prints every record exactly once: the log is appended in place, never replaced."""
    tail = _gnu_tail()
    log = tmp_path / "app.log"
    seen = tmp_path / "seen.txt"
    options: dict[str, Any] = {"max_bytes": 1000, "backup_count": 5} if rotate else {}
    expected = write_batch(tmp_path, 0)
    assert safelog.merge(log, **options).records == 201
    with open(seen, "wb") as out:
        proc = subprocess.Popen(
            [tail, "-n", "+1", "-F", "-s", "0.05", str(log)], stdout=out, stderr=subprocess.DEVNULL
        )
    try:
        for k in range(3):
            if k:
                expected += write_batch(tmp_path, k)
                report = safelog.merge(log, **options)
                assert report.records == 201
                assert report.rotated == (str(log) + ".1" if rotate else "")
            # Each batch ends with its marker: wait until tail has printed it.
            wait_until(lambda k=k: f"end-{k}\n" in seen.read_text(), timeout=30, what=f"tail to print end-{k}")
    finally:
        proc.terminate()
        proc.wait(10)
    got = lines(seen)
    assert [rid for rid, n in Counter(got).items() if n > 1] == []
    assert got == expected
    if rotate:
        assert lines(log) == expected[-201:]
        assert lines(Path(str(log) + ".1")) == expected[201:402]
        assert lines(Path(str(log) + ".2")) == expected[:201]


def test_rotation_keeps_backup_count_compressed_backups(tmp_path: Path) -> None:
    """With a rotation at every merge, backup_count=2 and gzip, five merges leave the newest batch in
    the log and the two before it in .1.gz and .2.gz; older ones are pruned, nothing else is left."""
    log = tmp_path / "app.log"
    batches = []
    for k in range(5):
        batches.append(write_batch(tmp_path, k))
        report = safelog.merge(log, max_bytes="1 KB", backup_count=2, compress="gzip")
        assert report.ok and report.records == 201
        assert report.rotated == ("" if k == 0 else str(log) + ".1")
    assert names(tmp_path) == ["app.log", "app.log.1.gz", "app.log.2.gz", "app.log.merge-state", "app.log.merge.lock"]
    assert lines(log) == batches[4]
    assert gz_lines(tmp_path / "app.log.1.gz") == batches[3]
    assert gz_lines(tmp_path / "app.log.2.gz") == batches[2]


def test_rotation_comes_before_a_batch_that_would_pass_max_bytes(tmp_path: Path) -> None:
    """Batches are appended while the log has room for the next one (counted as its input bytes);
    the batch that would pass max_bytes starts a new file, and no file is split mid-batch."""
    log = tmp_path / "app.log"
    first = write_batch(tmp_path, 0)
    incoming = sum(p.stat().st_size for p in tmp_path.glob("*.shard"))
    out_size = sum(len(r) + 1 for r in first)
    limit = out_size + incoming + out_size // 2  # room for two batches, not three
    batches = [first]
    for k in range(3):
        if k:
            batches.append(write_batch(tmp_path, k))
        report = safelog.merge(log, max_bytes=limit, backup_count=3)
        assert report.rotated == ("" if k < 2 else str(log) + ".1")
    assert lines(Path(str(log) + ".1")) == batches[0] + batches[1]
    assert os.path.getsize(str(log) + ".1") <= limit
    assert lines(log) == batches[2]


def test_retention_prunes_old_backups_of_the_merged_log(tmp_path: Path) -> None:
    """retention removes merged-log backups older than it at the next merge, even one with nothing to
    merge; younger ones stay."""
    log = tmp_path / "app.log"
    options: dict[str, Any] = {"max_bytes": 1000, "backup_count": 5, "retention": "1 hour"}
    for k in range(3):
        write_batch(tmp_path, k)
        safelog.merge(log, **options)
    assert names(tmp_path)[:3] == ["app.log", "app.log.1", "app.log.2"]
    old = time.time() - 7200
    os.utime(tmp_path / "app.log.2", (old, old))
    assert safelog.merge(log, **options).records == 0
    assert [n for n in names(tmp_path) if n.startswith("app.log.") and n[8:].isdigit()] == ["app.log.1"]


def test_cli_rotates_and_compresses_the_merged_log(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`safelog merge --max-bytes --backup-count --compress` bounds the merged log and says it rotated."""
    log = str(tmp_path / "app.log")
    first = write_batch(tmp_path, 0)
    args = ["merge", log, "--max-bytes", "1 KB", "--backup-count", "3", "--compress", "gzip"]
    assert main(args) == 0
    second = write_batch(tmp_path, 1)
    assert main(args) == 0
    assert f"rotated the old output to {log}.1" in capsys.readouterr().err
    assert gz_lines(tmp_path / "app.log.1.gz") == first
    assert lines(tmp_path / "app.log") == second


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--max-bytes", "ten", "--backup-count", "2"], "--max-bytes"),
        (["--max-bytes", "1 MB", "--backup-count", "two"], "--backup-count"),
        (["--max-bytes", "1 MB"], "--max-bytes '1 MB' needs --backup-count"),
        (["--max-bytes", "1 MB", "--backup-count", "0"], "--backup-count must be >= 1, got 0"),
        (["--max-bytes", "1 MB", "--backup-count", "-1"], "--backup-count must be >= 1, got -1"),
        (["--backup-count", "2"], "--backup-count '2' needs --max-bytes"),
        (["--max-bytes", "1 MB", "--backup-count", "2", "--compress", "zip"], "--compress"),
        (["--compress", "gzip"], "--compress"),
        (["--max-bytes", "1 MB", "--backup-count", "2", "--retention", "soon"], "--retention"),
    ],
)
def test_bad_rotation_values_are_refused_before_merging(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], option: str
) -> None:
    """A bad rotation value is one error line naming the command line's option (not the function's
    keyword), with the same bound for every bad --backup-count; exit 2, and nothing is touched."""
    write_batch(tmp_path, 0)
    before = names(tmp_path)
    assert main(["merge", str(tmp_path / "app.log"), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("safelog merge: error: ") and option in err and err.count("\n") == 1
    assert "_bytes" not in err and "_count" not in err
    assert names(tmp_path) == before


def test_bad_rotation_values_raise_from_the_function(tmp_path: Path) -> None:
    """merge() raises ValueError/TypeError naming the option, before it looks at any file."""
    with pytest.raises(ValueError, match="max_bytes"):
        safelog.merge(tmp_path / "app.log", max_bytes="ten", backup_count=1)
    with pytest.raises(TypeError, match="backup_count"):
        safelog.merge(tmp_path / "app.log", max_bytes=100, backup_count="x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="retention"):
        safelog.merge(tmp_path / "app.log", retention="14 days")
    assert names(tmp_path) == []


def test_output_that_is_not_a_regular_file_is_refused(tmp_path: Path) -> None:
    """A FIFO at the output's name is refused (never opened for a blocking write, never truncated);
    the shards stay."""
    write_batch(tmp_path, 0)
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    with pytest.raises(safelog.MergeError, match="not a regular file"):
        safelog.merge(tmp_path / "app.log", fifo)
    assert len(list(tmp_path.glob("*.shard"))) == 2


ROTATE_KILLER = textwrap.dedent(
    """
    import os, signal, sys
    import safelog
    real_replace = os.replace
    def replace(src, dst):
        real_replace(src, dst)
        if str(src).endswith("app.log") and str(dst).endswith("app.log.1"):
            os.kill(os.getpid(), signal.SIGKILL)
    os.replace = replace
    safelog.merge(sys.argv[1], keep=True, max_bytes=1000, backup_count=3)
    """
)


def test_merge_killed_right_after_rotating_keeps_the_merged_offsets(tmp_path: Path) -> None:
    """A merge SIGKILLed just after renaming the merged log to .1: the re-run adopts the new log,
    and kept shards already merged into the renamed one are not merged again."""
    log = tmp_path / "app.log"
    first = write_batch(tmp_path, 0)
    assert safelog.merge(log, keep=True, max_bytes=1000, backup_count=3).records == 201
    second = write_batch(tmp_path, 1)
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, "-c", ROTATE_KILLER, str(log)], env=env)
    assert proc.returncode == -signal.SIGKILL
    assert not log.exists() and lines(Path(str(log) + ".1")) == first
    report = safelog.merge(log, keep=True, max_bytes=1000, backup_count=3)
    assert report.ok and report.records == 201
    assert lines(log) == second and lines(Path(str(log) + ".1")) == first
    # The kept shards are finished: a plain merge removes them and adds nothing.
    assert safelog.merge(log).records == 0
    assert list(tmp_path.glob("*.shard")) == []


def test_backups_shifted_out_are_gone_when_the_merge_returns(tmp_path: Path) -> None:
    """Without compression or retention, the backup that rotation shifts past backup_count is removed
    before the merge returns (no hidden leftover)."""
    log = tmp_path / "app.log"
    batches = []
    for k in range(3):
        batches.append(write_batch(tmp_path, k))
        safelog.merge(log, max_bytes=1000, backup_count=1)
    assert names(tmp_path) == ["app.log", "app.log.1", "app.log.merge-state", "app.log.merge.lock"]
    assert lines(Path(str(log) + ".1")) == batches[1] and lines(log) == batches[2]


def test_a_rotation_waits_for_the_last_step_of_a_compression_under_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """merge --follow rotates again while the previous backup may still be compressing: a rotation
    that comes while the compressor is putting app.log.1.gz in place (and removing app.log.1)
    waits for it, so the merged log renamed to app.log.1 meanwhile is neither removed nor its
    backup compressed twice."""
    import threading

    from safelog._merge.report import MergeReport
    from safelog._merge.rotate import Rotator, parse_policy

    log = tmp_path / "app.log"
    rotator = Rotator(parse_policy(100, 10, "gzip", None), str(log), MergeReport(str(log)))
    log.write_text("first batch\n")
    rotator.rotate(log.stat().st_size)
    log.write_text("second batch\n")
    inside, release = threading.Event(), threading.Event()
    real_replace = os.replace

    def stalled_replace(src: Any, dst: Any) -> None:
        if str(src).endswith(".tmp"):  # the compressor putting its .gz in place
            inside.set()
            assert release.wait(60)
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", stalled_replace)
    rotator.tidy(True, wait=False)  # compresses app.log.1 in the background
    rotated = threading.Event()

    def second_rotation() -> None:
        rotator.rotate(log.stat().st_size)
        rotated.set()

    t = threading.Thread(target=second_rotation)
    try:
        assert inside.wait(60)
        t.start()
        # While the compressor is in its last step, the rotation does not happen; the bound only
        # ends the test when it (wrongly) does not wait.
        assert not rotated.wait(1.0), "a rotation went on while a backup was being put in place"
    finally:
        release.set()
        t.join(60)
    assert safelog.wait_for_compression(60)
    rotator.tidy(True)
    assert names(tmp_path) == ["app.log.1.gz", "app.log.2.gz"]
    assert gzip.decompress((tmp_path / "app.log.2.gz").read_bytes()) == b"first batch\n"
    assert gzip.decompress((tmp_path / "app.log.1.gz").read_bytes()) == b"second batch\n"
