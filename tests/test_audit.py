"""The audit can fail: on damaged output it reports exactly which ids and lines are wrong."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

from safelog import AuditReport, audit, log_files
from safelog._primitives.shard import ShardFrame, shard_path

PATTERN = r"rec (?P<id>\d{4}) [a-z]{7}"
SHARD_PATTERN = r"rec (?P<id>\d{4}) [a-z]+(\n[a-z ]+)*"


def expected_ids(n: int) -> list[str]:
    return [f"{i:04d}" for i in range(n)]


class FaultyHandler(logging.Handler):
    """Writes one line per record, except that it drops, duplicates and tears chosen records.

    The torn record is written in two halves with the next record in between, which is what
    two unsynchronised writers produce.
    """

    def __init__(self, path: str, drop: set[int], duplicate: dict[int, str], tear: int) -> None:
        super().__init__()
        self.path = path
        self.drop = drop
        self.duplicate = duplicate  # record number -> file the second copy goes to
        self.tear = tear
        self.pending = b""

    def emit(self, record: logging.LogRecord) -> None:
        n = int(record.getMessage().split()[1])
        line = (self.format(record) + "\n").encode()
        if n in self.drop:
            return
        with open(self.path, "ab") as f:
            if n == self.tear:
                f.write(line[:10])
                self.pending = line[10:]
                return
            f.write(line)
            if self.pending:
                f.write(self.pending)
                self.pending = b""
        if n in self.duplicate:
            with open(self.duplicate[n], "ab") as f:
                f.write(line)


def test_audit_reports_exactly_the_faults_of_a_faulty_handler(log_path: str, logger: logging.Logger) -> None:
    """Dropped, duplicated (same file and across a backup) and torn records are all named."""
    backup = log_path + ".1"
    handler = FaultyHandler(log_path, drop={3, 17, 99}, duplicate={5: log_path, 42: backup}, tear=60)
    logger.addHandler(handler)
    for i in range(100):
        logger.info("rec %04d payload", i)
    report = audit(log_files(log_path), expected_ids(100), PATTERN)
    # Lines in app.log: 0..2 (3), 4, 5, 5 again, 6..16, 18..59 -> line numbers 1..60 hold records
    # 0..59 minus 3 and 17 plus the duplicate 5: the torn record 60 starts line 60.
    torn_line = 60
    assert report == AuditReport(
        files=2,
        records=100 - 3 - 2 + 2,  # 100, minus drops, minus the torn one and its victim, plus copies
        lost=["0003", "0017", "0060", "0061", "0099"],
        duplicated={"0005": 2, "0042": 2},
        unexpected=[],
        malformed=[
            (log_path, torn_line, "rec 0060 prec 0061 payload"),
            (log_path, torn_line + 1, "ayload"),
        ],
    )
    assert not report.ok
    assert report.summary() == "97 records in 2 files: 5 lost, 2 duplicated, 0 unexpected, 2 malformed"


def test_audit_reports_unexpected_ids_and_a_torn_last_line(log_path: str) -> None:
    """An id nobody logged is unexpected; a last line without its newline is malformed."""
    with open(log_path, "wb") as f:
        f.write(b"rec 0000 payload\nrec 7777 payload\nrec 0001 payl")
    report = audit([log_path], expected_ids(2), PATTERN)
    assert (report.lost, report.duplicated, report.unexpected) == (["0001"], {}, ["7777"])
    assert report.malformed == [(log_path, 3, "truncated line (no line end)")]


def test_audit_passes_the_same_sequence_through_safelog(
    strategy: str, log_path: str, logger: logging.Logger, make_handler: Callable[..., Any]
) -> None:
    """The control: the same 100 records through a safelog handler audit clean."""
    logger.addHandler(make_handler(log_path, strategy=strategy, max_bytes=500, backup_count=50))
    for i in range(100):
        logger.info("rec %04d payload", i)
    report = audit(log_files(log_path), expected_ids(100), PATTERN)
    assert report.ok and report.records == 100 and report.files > 3, report


def _frame(frame: ShardFrame, text: str) -> bytes:
    return frame.encode(text, 1_764_000_000.25)


def test_audit_reports_a_faulty_shard(log_path: str) -> None:
    """Broken shard framing and a truncated last record are malformed; only their ids are lost."""
    frame = ShardFrame("utf-8", "strict")
    good = [_frame(frame, f"rec {i:04d} payload") for i in range(3)]
    multi = _frame(frame, "rec 0003 start\nsecond line\nthird line")
    cut = _frame(frame, "rec 0005 payload")
    shard = shard_path(log_path, pid=4242, host="testhost")
    with open(shard, "wb") as f:
        f.write(b"\tcontinuation before any record\n")  # line 1
        f.write(good[0] + good[1])  # lines 2, 3
        f.write(b"garbage that is no record header\n")  # line 4
        f.write(b"\tcontinuation of the garbage\n")  # line 5
        f.write(good[2])  # line 6
        f.write(multi)  # lines 7-9
        f.write(_frame(frame, "rec 0004 payload"))  # line 10
        f.write(cut[: len(cut) // 2])  # line 11: the writer died mid-record
    report = audit(log_files(log_path), expected_ids(6), SHARD_PATTERN)
    assert report.lost == ["0005"]
    assert report.duplicated == {} and report.unexpected == []
    assert report.malformed == [
        (shard, 1, "continuation line without a record"),
        (shard, 4, "not a shard record"),
        (shard, 5, "continuation line without a record"),
        (shard, 11, "truncated record (no line end)"),
    ]
    assert report.records == 5 and report.files == 1


def test_audit_reports_a_shard_record_cut_inside_its_continuation(log_path: str) -> None:
    """A multi-line record cut after its first line is lost, not counted as whole."""
    frame = ShardFrame("utf-8", "strict")
    whole = _frame(frame, "rec 0000 payload")
    multi = _frame(frame, "rec 0001 start\nsecond line\nthird line")
    shard = shard_path(log_path, pid=4243, host="testhost")
    with open(shard, "wb") as f:
        f.write(whole)
        f.write(multi[: multi.index(b"third") + 2])  # header, first continuation, half the second
    report = audit([shard], expected_ids(2), SHARD_PATTERN)
    assert report.lost == ["0001"], report
    assert report.malformed == [(shard, 4, "truncated record (no line end)")]


def test_audit_reports_a_duplicate_shard_record_across_rotated_shards(log_path: str) -> None:
    """The same record in a shard and its rotated backup counts as duplicated."""
    frame = ShardFrame("utf-8", "strict")
    shard = shard_path(log_path, pid=4244, host="testhost")
    a, b = _frame(frame, "rec 0000 payload"), _frame(frame, "rec 0001 payload")
    with open(shard + ".1", "wb") as f:
        f.write(a + b)
    with open(shard, "wb") as f:
        f.write(b)
    report = audit(log_files(log_path), expected_ids(2), SHARD_PATTERN)
    assert (report.lost, report.duplicated, report.malformed) == ([], {"0001": 2}, [])
    assert sorted(os.path.basename(p) for p in log_files(log_path)) == [
        os.path.basename(shard), os.path.basename(shard) + ".1"
    ]
