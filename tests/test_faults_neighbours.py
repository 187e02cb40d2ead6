"""Another local user in the log's directory: planted links and files, lock files others could
hold, directories replaced, merges pointed at other files (the threat model in guarantees.md).

The other user is ``nobody``: each of its steps runs in a forked child that dropped to it
(root only; skipped otherwise). pytest's ``tmp_path`` is private to root, so that child is
handed a descriptor of the directory it acts in and works relative to it (``dir_fd``), as a
user who can reach the directory would. The directories are built inside ``tmp_path``: a
sticky world-writable one (like ``/tmp``) and one that belongs to ``nobody`` (not sticky, so the
kernel's ``fs.protected_symlinks`` never applies there: what is refused is refused by safelog).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import pickle
import stat
import subprocess
import sys
import textwrap
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import safelog
from safelog import FlockFileHandler, SafeFileHandler
from safelog._cli import main
from safelog._policy.compressor import COMPRESSOR
from safelog._primitives import fileio
from safelog._primitives.shard import ShardFrame, hostname, shard_path
from tests.faults_helpers import CountingHandler, exact, make_logger
from tests.helpers import check_paths_every, lock_path

NOBODY = 65534
T0 = 1_800_000_000.0
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="acting as another local user (nobody) needs root")


def as_nobody(directory: Path, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(dfd, *args)`` in a forked child that holds ``dfd``, a descriptor of ``directory``,
    and has dropped to user ``nobody`` (no supplementary groups); its result. An ``OSError``
    it raises comes back as ``("OSError", errno)``."""
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        code = 1
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            try:
                result: Any = fn(dfd, *args)
            except OSError as exc:
                result = ("OSError", exc.errno)
            os.write(w, pickle.dumps(result))
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    os.close(dfd)
    chunks = []
    while True:
        data = os.read(r, 1 << 16)
        if not data:
            break
        chunks.append(data)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    assert status == 0, f"the child acting as nobody failed (wait status {status})"
    return pickle.loads(b"".join(chunks))


def sticky(tmp_path: Path) -> Path:
    """A directory like /tmp: root's, sticky, world-writable."""
    d = tmp_path / "shared"
    d.mkdir()
    d.chmod(0o1777)
    return d


def theirs(tmp_path: Path) -> Path:
    """A directory that belongs to nobody (0755, not sticky): the kernel's symlink protection
    does not apply in it."""
    d = tmp_path / "theirs"
    d.mkdir()
    os.chown(d, NOBODY, NOBODY)
    return d


PLACES = {"sticky": sticky, "theirs": theirs}


def victim(tmp_path: Path, content: bytes = b"precious\n") -> Path:
    """A file of root's that no other user can read."""
    v = tmp_path / "victim"
    v.write_bytes(content)
    v.chmod(0o600)
    return v


def write_shard(path: Path, records: list[tuple[float, str]]) -> None:
    frame = ShardFrame("utf-8", "strict")
    with open(path, "wb") as f:
        for created, text in records:
            f.write(frame.encode(text, created))


def shard_bytes(records: list[tuple[float, str]]) -> bytes:
    frame = ShardFrame("utf-8", "strict")
    return b"".join(frame.encode(text, created) for created, text in records)


def _symlink(dfd: int, target: str, name: str) -> None:
    os.symlink(target, name, dir_fd=dfd)


def _write(dfd: int, name: str, data: bytes, mode: int = 0o644) -> None:
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode, dir_fd=dfd)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.chmod(name, mode, dir_fd=dfd)


def _can_open(dfd: int, name: str) -> Any:
    """Open ``name`` read-only (all ``flock`` needs); True, or the errno."""
    fd = os.open(name, os.O_RDONLY, dir_fd=dfd)
    os.close(fd)
    return True


# -- merge: the output, the journal, the inputs ---------------------------------------------------


@as_root
@pytest.mark.parametrize("where", sorted(PLACES))
def test_merge_refuses_an_output_symlink_another_user_planted(tmp_path: Path, where: str) -> None:
    """A link another user planted at app.log (per-process never creates it) with a forged shard
    beside it is refused by the merge, which appends nothing to its target and creates nothing
    beside the target."""
    d = PLACES[where](tmp_path)
    v = victim(tmp_path)
    write_shard(d / "app.log.h.1.shard", [(T0, "root's record")])

    def plant(dfd: int) -> None:
        _symlink(dfd, str(v), "app.log")
        _write(dfd, "app.log.h.2.shard", shard_bytes([(T0 + 1, "ssh-ed25519 AAAA attacker")]))

    as_nobody(d, plant)
    with pytest.raises(safelog.MergeError, match="refusing to follow symlink"):
        safelog.merge(d / "app.log")
    assert v.read_bytes() == b"precious\n"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("victim")) == ["victim"]
    assert (d / "app.log.h.1.shard").exists()


@as_root
@pytest.mark.parametrize("where", sorted(PLACES))
def test_merge_journal_is_never_written_through_a_planted_symlink(tmp_path: Path, where: str) -> None:
    """A link planted at app.log.merge-state stops the merge: its target is never created and
    the shards stay."""
    d = PLACES[where](tmp_path)
    write_shard(d / "app.log.h.1.shard", [(T0, "r1")])
    target = tmp_path / "nologin"
    as_nobody(d, _symlink, str(target), "app.log.merge-state")
    with pytest.raises(safelog.MergeError, match="merge state"):
        safelog.merge(d / "app.log")
    assert not target.exists()
    assert (d / "app.log.h.1.shard").exists() and not (d / "app.log").exists()


def _journal_removing(path: Path) -> bytes:
    """A merge journal whose pending commit removes ``path`` (a merge that re-runs finishes it)."""
    st = path.stat()
    pending = {"stage": "commit", "output": [st.st_dev, st.st_ino], "size": 0, "end": 0, "offsets": {}}
    pending["actions"] = [["rm", str(path), st.st_size, ""]]
    return json.dumps({"version": 1, "output": None, "offsets": {}, "pending": pending}).encode()


@as_root
def test_merge_journal_of_another_user_is_refused(tmp_path: Path) -> None:
    """A journal another user wrote (asking to finish a commit by removing a file of root's) is
    refused before anything it says is done."""
    d = sticky(tmp_path)
    v = victim(tmp_path)
    write_shard(d / "app.log.h.1.shard", [(T0, "r1")])
    as_nobody(d, _write, "app.log.merge-state", _journal_removing(v))
    with pytest.raises(safelog.MergeError, match="merge state.*uid 65534"):
        safelog.merge(d / "app.log")
    assert v.read_bytes() == b"precious\n"


def test_merge_journal_removes_only_inputs_of_the_log(tmp_path: Path) -> None:
    """A journal's pending removals are carried out only for shards of this log, whoever wrote
    it: a path elsewhere is reported and left alone."""
    v = victim(tmp_path)
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "app.log.merge-state").write_bytes(_journal_removing(v))
    report = safelog.merge(logs / "app.log")
    assert v.read_bytes() == b"precious\n"
    assert any("not an input of this log" in p.message for p in report.problems)


@as_root
def test_atomic_write_refuses_another_users_symlink(tmp_path: Path) -> None:
    """safelog.atomic_write on a name that is another user's symlink (in a directory others can
    write) refuses it instead of replacing the file it points to."""
    d = sticky(tmp_path)
    v = victim(tmp_path)
    as_nobody(d, _symlink, str(v), "state.json")
    with pytest.raises(ValueError, match="refusing to follow symlink"):
        with safelog.atomic_write(d / "state.json") as f:
            f.write("{}")
    assert v.read_bytes() == b"precious\n"
    assert sorted(p.name for p in d.iterdir()) == ["state.json"]


def _secret(tmp_path: Path) -> Path:
    """A file of root's only root may read, shaped like a shard (so a merge would take it)."""
    s = tmp_path / "secret"
    s.write_bytes(shard_bytes([(T0 + 5, "SECRET-1")]) + b"not a record: SECRET-2\n")
    s.chmod(0o600)
    return s


def _plant_link(d: Path, tmp_path: Path) -> Path:
    as_nobody(d, _symlink, str(_secret(tmp_path)), "app.log.h.7.shard")
    return d / "app.log.h.7.shard"


def _plant_file(d: Path, tmp_path: Path) -> Path:
    as_nobody(d, _write, "app.log.h.7.shard", shard_bytes([(T0 + 5, "SECRET-1 forged")]))
    return d / "app.log.h.7.shard"


def _plant_hard_link(d: Path, tmp_path: Path) -> Path:
    # As another user could where fs.protected_hardlinks is 0 (made here by root).
    os.link(_secret(tmp_path), d / "app.log.h.7.shard")
    return d / "app.log.h.7.shard"


@as_root
@pytest.mark.parametrize(
    ("where", "plant"),
    [("theirs", _plant_link), ("sticky", _plant_file), ("sticky", _plant_hard_link)],
    ids=["symlink", "another-users-file", "hard-link"],
)
def test_merge_skips_an_input_another_user_planted(tmp_path: Path, where: str, plant: Any) -> None:
    """A shard name another user filled (a link to a file only root may read, a file of theirs,
    a hard link) is skipped, reported by name without its content, and left in place, while the
    real shards are merged."""
    d = PLACES[where](tmp_path)
    write_shard(d / "app.log.h.1.shard", [(T0, "mine")])
    planted = plant(d, tmp_path)
    report = safelog.merge(d / "app.log")
    assert (d / "app.log").read_bytes() == b"mine\n"
    assert [p.path for p in report.problems] == [str(planted)]
    assert "skipped" in report.problems[0].message or "cannot read" in report.problems[0].message
    assert "SECRET" not in "".join(str(p) for p in report.problems + report.warnings)
    assert os.path.lexists(planted)
    if (tmp_path / "secret").exists():
        assert b"SECRET-2" in (tmp_path / "secret").read_bytes()


def test_merge_refuses_an_output_hard_linked_to_an_input(tmp_path: Path) -> None:
    """An output that is a hard link to a shard (the same file under another name) is refused by
    identity, and the shard is untouched."""
    write_shard(tmp_path / "app.log.h.1.shard", [(T0, "a"), (T0 + 1, "b")])
    before = (tmp_path / "app.log.h.1.shard").read_bytes()
    os.link(tmp_path / "app.log.h.1.shard", tmp_path / "out.log")
    with pytest.raises(safelog.MergeError, match="same file as the input"):
        safelog.merge(tmp_path / "app.log", tmp_path / "out.log")
    assert (tmp_path / "app.log.h.1.shard").read_bytes() == before
    assert main(["merge", str(tmp_path / "app.log"), "-o", str(tmp_path / "out.log"), "-q"]) == 2


# -- lock files and shards: nobody else can open them ----------------------------------------


def _flock_lock(d: Path) -> str:
    h = FlockFileHandler(str(d / "app.log"))
    make_logger(h).info("r")
    h.close()
    return "app.log.lock"


def _merge_lock(d: Path) -> str:
    write_shard(d / "app.log.h.1.shard", [(T0, "r")])
    safelog.merge(d / "app.log")
    return "app.log.merge.lock"


def _merge_state(d: Path) -> str:
    write_shard(d / "app.log.h.1.shard", [(T0, "r")])
    safelog.merge(d / "app.log")
    return "app.log.merge-state"


def _shard(d: Path) -> str:
    h = SafeFileHandler(str(d / "app.log"), strategy="per-process")
    make_logger(h).info("r")
    h.close()
    return os.path.basename(shard_path(str(d / "app.log")))


@pytest.fixture
def umask022() -> Any:
    old = os.umask(0o022)
    yield
    os.umask(old)


@as_root
@pytest.mark.parametrize("make", [_flock_lock, _merge_lock, _merge_state, _shard], ids=lambda f: f.__name__[1:])
def test_files_that_carry_a_lock_cannot_be_opened_by_other_users(tmp_path: Path, make: Any, umask022: Any) -> None:
    """The lock file, the merge lock and journal and a shard are created 0600 under the usual
    umask, so another user cannot open them (flock needs only a read descriptor)."""
    d = tmp_path / "logs"
    d.mkdir()
    name = make(d)
    assert stat.S_IMODE(os.stat(d / name).st_mode) == 0o600
    assert as_nobody(d, _can_open, name) == ("OSError", errno.EACCES)


def test_lock_file_gets_group_access_only_when_chmod_gives_the_group_write(tmp_path: Path, umask022: Any) -> None:
    """The lock file and shard get 0660 when chmod gives the group write (co-writers), 0600
    when it gives the group only read."""
    for chmod, want in ((0o664, 0o660), (0o640, 0o600)):
        d = tmp_path / f"m{chmod:o}"
        d.mkdir()
        for strategy in ("flock", "per-process"):
            h = SafeFileHandler(str(d / "app.log"), strategy=strategy, chmod=chmod)
            make_logger(h).info("r")
            h.close()
        locked = {p.name: stat.S_IMODE(p.stat().st_mode) for p in d.iterdir() if p.name != "app.log"}
        shard = os.path.basename(shard_path(str(d / "app.log")))
        assert locked == {"app.log.lock": want, shard: want, ".app.log.policy": want}
        assert stat.S_IMODE((d / "app.log").stat().st_mode) == chmod


def test_existing_lock_file_others_can_open_is_narrowed(tmp_path: Path) -> None:
    """A lock file of ours that others could open (0644, left by an older version) is narrowed
    to 0600 when a handler opens it."""
    lock = tmp_path / "app.log.lock"
    lock.write_bytes(b"")
    lock.chmod(0o644)
    h = FlockFileHandler(str(tmp_path / "app.log"))
    h.close()
    assert stat.S_IMODE(lock.stat().st_mode) == 0o600


@as_root
def test_lock_file_another_user_planted_is_refused(tmp_path: Path) -> None:
    """A lock file (or merge lock) another user created first, and may hold open, is refused
    with the reason, at configuration or by the merge."""
    d = sticky(tmp_path)
    as_nobody(d, _write, "app.log.lock", b"", 0o666)
    with pytest.raises(ValueError, match="uid 65534.*app.log.lock"):
        FlockFileHandler(str(d / "app.log"))
    write_shard(d / "app.log.h.1.shard", [(T0, "r")])
    as_nobody(d, _write, "app.log.merge.lock", b"", 0o666)
    with pytest.raises(safelog.MergeError, match="merge.lock.*uid 65534"):
        safelog.merge(d / "app.log")


def test_lock_file_others_can_open_that_we_cannot_narrow_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lock file others can open that belongs to another trusted user (root, seen from an
    ordinary user), and so cannot be narrowed, is refused with the fix in the message."""
    lock = tmp_path / "app.log.lock"
    lock.write_bytes(b"")
    lock.chmod(0o666)
    if os.geteuid() == 0:
        monkeypatch.setattr(os, "geteuid", lambda: 1000)  # as an ordinary user sees root's file
    else:
        pytest.skip("needs a lock file of another user: root makes one")
    with pytest.raises(fileio.Refused, match="lets other users open it.*chmod it to 0600"):
        fileio.create_or_open(str(lock), os.O_RDWR, 0o600, None, private=True)
    assert stat.S_IMODE(lock.stat().st_mode) == 0o666


# -- a log directory replaced ------------------------------------------------------------------


def _replace_by_link(dfd: int) -> None:
    os.rename("logs", "old", src_dir_fd=dfd, dst_dir_fd=dfd)
    os.mkdir("evil", 0o777, dir_fd=dfd)
    os.chmod("evil", 0o777, dir_fd=dfd)
    os.symlink("evil", "logs", dir_fd=dfd)


def _replace_by_directory(dfd: int) -> None:
    os.rename("logs", "old", src_dir_fd=dfd, dst_dir_fd=dfd)
    os.mkdir("logs", 0o777, dir_fd=dfd)
    os.chmod("logs", 0o777, dir_fd=dfd)


@as_root
@pytest.mark.parametrize("strategy", ["thread", "flock", "per-process"])
@pytest.mark.parametrize("replace", [_replace_by_link, _replace_by_directory], ids=["symlink", "directory"])
def test_log_directory_replaced_by_another_user_is_not_used(
    tmp_path: Path, strategy: str, replace: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the user who owns the parent replaces the log's directory by their symlink or
    their own directory, no record or lock file goes there (reported once), and writing
    resumes in a re-created directory once the name is free."""
    check_paths_every(monkeypatch, 0.0)
    parent = theirs(tmp_path)
    logs = parent / "logs"
    logs.mkdir()
    h = CountingHandler(str(logs / "app.log"), strategy=strategy)
    log = make_logger(h)
    log.info("rec 1")
    as_nobody(parent, replace)
    for i in range(2, 6):
        log.info("rec %d", i)
    planted = parent / ("evil" if replace is _replace_by_link else "logs")
    assert sorted(os.listdir(planted)) == []
    assert h.errors_reported == 1 and h.failed_ids == ["2", "3", "4", "5"]
    if replace is _replace_by_link:
        os.unlink(logs)
    else:
        os.rmdir(logs)
    log.info("rec 6")
    h.close()
    exact(str(logs / "app.log"), ["6", "safelog: 4"])
    assert os.stat(logs).st_uid == 0


def test_place_walk_refuses_a_symlink_at_any_component(tmp_path: Path) -> None:
    """A directory of the path that is a symlink now is refused by the walk, however deep."""
    (tmp_path / "a" / "b").mkdir(parents=True)
    place = fileio.Place(str(tmp_path / "a" / "b"))
    os.close(place.open())
    os.rename(tmp_path / "a", tmp_path / "a-old")
    (tmp_path / "elsewhere" / "b").mkdir(parents=True)
    os.symlink(tmp_path / "elsewhere", tmp_path / "a")
    with pytest.raises(fileio.Refused, match="symlink"):
        place.open(create=True)
    with pytest.raises(fileio.Refused):
        fileio.open_append(str(tmp_path / "a" / "b" / "x.log"), 0o644, place=place)
    assert os.listdir(tmp_path / "elsewhere" / "b") == []


# -- merge_on_exit: the merged log gets the handler's permissions -----------------------------


EXIT_MERGER = textwrap.dedent(
    """
    import logging, os, sys
    os.umask(0o022)
    import safelog
    path, chmod, owner = sys.argv[1], int(sys.argv[2], 8), sys.argv[3] or None
    h = safelog.SafeFileHandler(path, strategy="per-process", chmod=chmod, owner=owner, merge_on_exit=True)
    log = logging.getLogger("x")
    log.addHandler(h)
    log.warning("one")
    log.warning("two")
    """
)


def _run_exit_merger(path: Path, chmod: int, owner: str = "") -> None:
    subprocess.run([sys.executable, "-c", EXIT_MERGER, str(path), oct(chmod), owner], check=True, timeout=60)


@pytest.mark.parametrize("chmod", [0o600, 0o640])
def test_merge_on_exit_gives_the_merged_log_the_handlers_chmod(tmp_path: Path, chmod: int) -> None:
    """Shards written with chmod=0o600 (or 0o640) merge at exit into a log of that mode, not
    the umask's 0644."""
    _run_exit_merger(tmp_path / "app.log", chmod)
    assert (tmp_path / "app.log").read_text() == "one\ntwo\n"
    assert stat.S_IMODE((tmp_path / "app.log").stat().st_mode) == chmod


@as_root
def test_merge_on_exit_gives_the_merged_log_the_handlers_owner(tmp_path: Path) -> None:
    """owner= applies to the merged log a merge at exit creates, as to the handler's files."""
    _run_exit_merger(tmp_path / "app.log", 0o640, "nobody:nogroup")
    st = (tmp_path / "app.log").stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (NOBODY, NOBODY, 0o640)


def test_merge_cli_chmod_sets_the_mode_of_a_new_merged_log(tmp_path: Path, umask022: Any) -> None:
    """safelog merge --chmod gives a merged log it creates that mode."""
    write_shard(tmp_path / "app.log.h.1.shard", [(T0, "r")])
    assert main(["merge", str(tmp_path / "app.log"), "--chmod", "0600", "-q"]) == 0
    assert stat.S_IMODE((tmp_path / "app.log").stat().st_mode) == 0o600
    assert main(["merge", str(tmp_path / "app.log"), "--chmod", "rw", "-q"]) == 2


# -- lock_dir names ----------------------------------------------------------------------------


def test_lock_dir_names_are_distinct_for_paths_that_flatten_alike(tmp_path: Path) -> None:
    """The lock files of /x/a_b/app.log and /x/a/b_app.log (which flatten alike) differ, and
    still read as the path."""
    locks = tmp_path / "locks"
    a = lock_path(str(tmp_path / "a_b" / "app.log"), str(locks))
    b = lock_path(str(tmp_path / "a" / "b_app.log"), str(locks))
    assert a != b
    assert os.path.basename(a).startswith(str(tmp_path).strip("/").replace("/", "_") + "_a_b_app.log.")
    assert a.endswith(".lock") and b.endswith(".lock")


def test_two_logs_whose_paths_flatten_alike_rotate_on_their_own(tmp_path: Path) -> None:
    """Two flock logs that share a lock_dir and whose paths flatten alike keep their own lock
    files, so one's hourly rotation does not rotate the other."""
    (tmp_path / "a_b").mkdir()
    (tmp_path / "a").mkdir()
    locks = tmp_path / "locks"
    h1 = FlockFileHandler(str(tmp_path / "a_b" / "app.log"), lock_dir=str(locks), when="H", utc=True)
    h2 = FlockFileHandler(str(tmp_path / "a" / "b_app.log"), lock_dir=str(locks), when="H", utc=True)
    try:
        h1.handle(logging.makeLogRecord({"msg": "x", "created": T0}))
        h1.handle(logging.makeLogRecord({"msg": "y", "created": T0 + 3600}))
        h2.handle(logging.makeLogRecord({"msg": "z", "created": T0 + 1800}))
    finally:
        h1.close()
        h2.close()
    assert len(os.listdir(locks)) == 2
    assert (tmp_path / "a" / "b_app.log").read_text() == "z\n"
    assert sorted(os.listdir(tmp_path / "a")) == ["b_app.log"]


# -- names a merge creates ----------------------------------------------------------------------


def _name_max(d: Path) -> int:
    return os.pathconf(d, "PC_NAME_MAX")


def _longest_per_process_name(d: Path) -> int:
    """The longest log name a per-process handler accepts here (its shard name must fit)."""
    with open("/proc/sys/kernel/pid_max") as f:
        pid = int(f.read()) - 1
    return _name_max(d) - len(f".{hostname()}.{pid}.shard")


def test_merge_on_exit_refuses_a_name_its_merge_cannot_create(tmp_path: Path) -> None:
    """The longest name a per-process handler accepts, too long for the merge's journal temp
    file, is a ValueError with merge_on_exit when the handler is built, and accepted without."""
    name = "n" * _longest_per_process_name(tmp_path)
    with pytest.raises(ValueError, match="merge_on_exit.*over the"):
        SafeFileHandler(str(tmp_path / name), strategy="per-process", merge_on_exit=True)
    SafeFileHandler(str(tmp_path / name), strategy="per-process").close()
    assert os.listdir(tmp_path) == []


def test_longest_name_merge_on_exit_accepts_is_merged(tmp_path: Path) -> None:
    """A name exactly as long as merge_on_exit accepts is merged at exit."""
    name = "m" * (_name_max(tmp_path) - len(".merge-state.") - 12 - len(".tmp") - 1)
    _run_exit_merger(tmp_path / name, 0o644)
    assert (tmp_path / name).read_text() == "one\ntwo\n"
    assert sorted(os.listdir(tmp_path)) == sorted([name, name + ".merge-state", name + ".merge.lock", f".{name}.policy"])


def test_merge_of_a_name_it_cannot_create_files_for_fails_before_touching_anything(tmp_path: Path) -> None:
    """A merge into an output whose journal temp name is over the limit stops at once with the
    reason, creating nothing."""
    name = "o" * (_name_max(tmp_path) - 20)
    write_shard(tmp_path / "app.log.h.1.shard", [(T0, "r")])
    with pytest.raises(safelog.MergeError, match="over the"):
        safelog.merge(tmp_path / "app.log", tmp_path / name)
    assert os.listdir(tmp_path) == ["app.log.h.1.shard"]


# -- merge cost of a long record ----------------------------------------------------------------


def _peak_of_merging(d: Path, size: int, multiline: bool) -> int:
    text = ("x" * 99 + "\n") * (size // 100) if multiline else "x" * size
    write_shard(d / "app.log.h.1.shard", [(T0, "a"), (T0 + 1, text), (T0 + 2, "z")])
    tracemalloc.start()
    try:
        safelog.merge(d / "app.log")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    out = (d / "app.log").read_text()
    assert out == "a\n" + text + "\nz\n"
    return peak


@pytest.mark.parametrize("multiline", [False, True], ids=["one-line", "many-lines"])
def test_merging_a_long_record_holds_it_once(tmp_path: Path, multiline: bool) -> None:
    """A 16 MiB record (one line, or 160,000 continuation lines) is merged holding less than
    one and a half copies of it (three to six when every chunk re-copied what came before)."""
    size = 16 << 20
    peak = _peak_of_merging(tmp_path, size, multiline)
    assert peak < 1.5 * size, f"peak {peak / size:.2f}x the record"


@pytest.mark.timing
def test_merging_a_record_four_times_longer_takes_about_four_times_as_long(tmp_path: Path) -> None:
    """The CPU time of merging one long multi-line record grows about linearly with its length
    (a record 4x longer took 18x as long)."""
    import time

    def cpu(size: int, d: Path) -> float:
        d.mkdir()
        start = time.process_time()
        _peak_of_merging(d, size, True)
        return time.process_time() - start

    small = min(cpu(4 << 20, tmp_path / f"s{i}") for i in range(3))
    large = min(cpu(16 << 20, tmp_path / f"l{i}") for i in range(3))
    assert large / small < 8, f"{large / small:.1f}x"


# -- the rule, file by file -------------------------------------------------------------------
#
# Every name safelog creates or opens beside the log, planted first by another user in a sticky
# world-writable directory (as a symlink to a file of root's, or as a file of their own): the
# victim is never read, written, created or chmodded, and the planted file is never written.
# Each scenario returns what safelog reported, for a check of its own.


def _thread_log(d: Path) -> Any:
    try:
        h = CountingHandler(str(d / "app.log"), strategy="thread", delay=True)
    except ValueError as exc:
        return "refused" if "refusing to follow symlink" in str(exc) else str(exc)
    make_logger(h).info("rec 1")
    h.close()
    return "refused" if h.errors_reported == 1 and h.failed_ids == ["1"] else h.errors_reported


def _lock_file(d: Path) -> Any:
    with pytest.raises(ValueError, match="app.log.lock"):
        FlockFileHandler(str(d / "app.log"))
    return 1


def _own_shard(d: Path) -> Any:
    h = CountingHandler(str(d / "app.log"), strategy="per-process", delay=True)
    make_logger(h).info("rec 1")
    h.close()
    return h.errors_reported


def _rotate_twice(d: Path, **options: Any) -> CountingHandler:
    """Two records through a flock handler that rotates after each; compression finished."""
    h = CountingHandler(str(d / "app.log"), strategy="flock", max_bytes=10, **options)
    log = make_logger(h)
    log.info("rec 1")
    log.info("rec 2")
    h.close()
    assert safelog.wait_for_compression(30)
    return h


def _size_backup(d: Path) -> Any:
    assert _rotate_twice(d, backup_count=2).errors_reported == 0
    return (d / "app.log.1").read_bytes()


def _compressed_backup(d: Path) -> Any:
    _rotate_twice(d, backup_count=3, compress="gzip")
    return (d / "app.log.1.gz").stat().st_uid


def _backup_to_compress(d: Path) -> Any:
    errors: list[str] = []
    real = COMPRESSOR.report
    COMPRESSOR.report = lambda src, exc: errors.append(f"{src}: {exc}")  # type: ignore[assignment]
    try:
        _rotate_twice(d, backup_count=3, compress="gzip")
    finally:
        COMPRESSOR.report = real  # type: ignore[assignment]
    assert not (d / "app.log.2.gz").exists()
    return errors


def _compression_temp(d: Path) -> Any:
    return _compressed_backup(d)


def _merge_output(d: Path) -> Any:
    write_shard(d / "app.log.h.1.shard", [(T0, "r")])
    with pytest.raises(safelog.MergeError):
        safelog.merge(d / "app.log")
    return (d / "app.log.h.1.shard").exists()


def _merge_state(d: Path) -> Any:
    write_shard(d / "app.log.h.1.shard", [(T0, "r")])
    with pytest.raises(safelog.MergeError, match="merge state"):
        safelog.merge(d / "app.log")
    return (d / "app.log.h.1.shard").exists()


def _merge_lock(d: Path) -> Any:
    write_shard(d / "app.log.h.1.shard", [(T0, "r")])
    with pytest.raises(safelog.MergeError, match="merge.lock"):
        safelog.merge(d / "app.log")
    return (d / "app.log.h.1.shard").exists()


def _merge_input(d: Path) -> Any:
    write_shard(d / "app.log.h.1.shard", [(T0, "r")])
    report = safelog.merge(d / "app.log")
    assert (d / "app.log").read_bytes() == b"r\n"
    return [p.message.split(":")[0] for p in report.problems]


_TEMP = ".app.log.1.gz.abc-0123456789ab.tmp"  # a compression temp file's shape (inode abc)
_TRASH = ".app.log.3.0123456789ab.del"  # a removed backup's shape

# (kind, the name planted, the scenario, what it must report with a link / with a file planted)
RULE = [
    ("log file", "app.log", _thread_log, "refused", "refused"),
    ("lock file", "app.log.lock", _lock_file, 1, 1),
    ("shard", "SHARD", _own_shard, 1, 1),
    ("backup (renamed over)", "app.log.1", _size_backup, b"rec 1\n", None),
    ("compressed backup (replaced)", "app.log.1.gz", _compressed_backup, 0, 0),
    # Planted as app.log.1, shifted to app.log.2 by the rotation, then queued for compression.
    ("backup to compress", "app.log.1", _backup_to_compress, None, None),
    ("compression temp file", _TEMP, _compression_temp, 0, 0),
    ("removed backup", _TRASH, _compression_temp, 0, 0),
    ("merge output", "app.log", _merge_output, True, True),
    ("merge journal", "app.log.merge-state", _merge_state, True, True),
    ("merge lock", "app.log.merge.lock", _merge_lock, True, True),
    ("merge input", "app.log.h.2.shard", _merge_input, ["skipped"], ["skipped"]),
]


@as_root
@pytest.mark.parametrize("planted", ["symlink", "file"])
@pytest.mark.parametrize(("kind", "name", "scenario", "with_link", "with_file"), RULE, ids=[r[0] for r in RULE])
def test_every_file_beside_the_log_is_opened_under_the_rule(
    tmp_path: Path, kind: str, name: str, scenario: Any, with_link: Any, with_file: Any, planted: str
) -> None:
    """Each name safelog creates or opens beside the log, planted first by another user as a
    link to a file of root's or as a file of theirs, is refused, skipped or replaced as listed,
    never followed, written or read as safelog's."""
    d = sticky(tmp_path)
    v = victim(tmp_path)
    if name == "SHARD":
        name = os.path.basename(shard_path(str(d / "app.log")))
    if planted == "symlink":
        as_nobody(d, _symlink, str(v), name)
    else:
        as_nobody(d, _write, name, b"theirs\n", 0o666)
    got = scenario(d)
    want = with_link if planted == "symlink" else with_file
    if kind == "backup to compress":
        assert len(got) == 1 and ("refused" in got[0] or "symbolic links" in got[0]), got
    elif want is not None:
        assert got == want
    assert v.read_bytes() == b"precious\n" and stat.S_IMODE(v.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shared", "victim"]
    if planted == "file" and os.path.lexists(d / name) and os.lstat(d / name).st_uid == NOBODY:
        assert (d / name).read_bytes() == b"theirs\n", "another user's file must never be written"


@pytest.mark.parametrize("strategy", ["flock", "per-process"])
def test_every_file_safelog_creates_belongs_to_it_and_the_locked_ones_to_it_alone(
    tmp_path: Path, strategy: str, umask022: Any
) -> None:
    """After rotation, compression and a merge every file belongs to the process's user, the
    files that carry a lock (and shard backups) are 0600 and the others have the umask's mode."""
    path = tmp_path / "app.log"
    h = SafeFileHandler(str(path), strategy=strategy, max_bytes=200, backup_count=3, compress="gzip")
    log = make_logger(h)
    for i in range(40):
        log.info("record %d %s", i, "x" * 20)
    h.close()
    assert safelog.wait_for_compression(30)
    if strategy == "per-process":
        safelog.merge(path, keep=True)
    for p in tmp_path.iterdir():
        st = p.stat()
        assert st.st_uid == os.geteuid(), p.name
        private = ".shard" in p.name or p.name.endswith((".lock", ".merge-state", ".policy"))
        assert stat.S_IMODE(st.st_mode) == (0o600 if private else 0o644), p.name
