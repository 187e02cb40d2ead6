"""The shard format, defined once: what the writer frames, both readers decode back exactly."""

from __future__ import annotations

import io

from safelog._primitives.shard import (
    LINE_HEADER_RE,
    TIME_LEN,
    ShardFrame,
    decode_record,
    is_time,
    iter_records,
    split_records,
    unframe,
)

TEXTS = ["plain", "two\nlines", "", "a\n\nb\n", "tab\tinside", "\n\tafter a break", "x 12 y", "ünï 💡"]


def _encoded(texts: list[str]) -> list[bytes]:
    frame = ShardFrame("utf-8", "strict")
    return [frame.encode(t, 1_800_000_000.25 + i) for i, t in enumerate(texts)]


def test_line_reader_and_chunk_reader_decode_what_the_writer_wrote() -> None:
    """iter_records, split_records + unframe and decode_record all give back each text exactly."""
    records = _encoded(TEXTS)
    want = [t.encode() for t in TEXTS]
    got = list(iter_records(io.BytesIO(b"".join(records))))
    assert [r.text for r in got] == want  # type: ignore[union-attr]
    assert [r.seq for r in got] == list(range(1, len(TEXTS) + 1))  # type: ignore[union-attr]
    split = split_records(b"\n" + b"".join(records)[:-1])
    assert split is not None
    times, framed = split
    assert [unframe(t) for t in framed] == want
    assert times == [r.time for r in got]  # type: ignore[union-attr]
    decoded = [(r.time, r.seq, r.text) for r in got]  # type: ignore[union-attr]
    assert [decode_record(r[:-1]) for r in records] == decoded


def test_header_time_has_the_fixed_width_and_shape_readers_expect() -> None:
    """Every written time is TIME_LEN bytes of the time shape, and only header lines are found as headers."""
    data = b"".join(_encoded(TEXTS))
    heads = [m.group(1) for m in LINE_HEADER_RE.finditer(b"\n" + data)]
    assert len(heads) == len(TEXTS)
    assert all(len(t) == TIME_LEN and is_time(t) for t in heads)


def test_chunk_reader_declines_what_only_the_strict_reader_can_judge() -> None:
    """A text starting with a tab, a garbage line or a stray continuation makes split_records hand the
    chunk to the line-by-line path instead of guessing."""
    tab_first = _encoded(["\tstarts with a tab"])[0]
    good = _encoded(["ok"])[0]
    for part in (tab_first, b"garbage\n" + good, b"\tstray\n" + good):
        assert split_records(b"\n" + part[:-1]) is None
    assert decode_record(tab_first[:-1]) is not None


def test_a_shard_name_is_matched_whole() -> None:
    """A name that is a shard's plus a line break is not a shard (merge would take a stray file
    for one): names are matched whole, "$" also matches before a final line break."""
    from safelog._primitives.shard import parse_shard_name

    assert parse_shard_name("app.log", "app.log.host.12.shard") is not None
    for name in ("app.log.host.12.shard\n", "app.log.host.12.shard.3\n", "app.log.host.12.shard.3.gz\n"):
        assert parse_shard_name("app.log", name) is None, name
