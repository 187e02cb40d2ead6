"""``safelog doctor``: each problem built for real (another process, a real crash), then the report
read back, on the screen and as JSON."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

import safelog
from safelog import _doctor, _proc
from safelog._cli import main
from safelog._doctor import PolicySeen, diagnose
from safelog._primitives.atomic import create_temp
from tests.helpers import take_lock

FORK = multiprocessing.get_context("fork")
DEADLINE = 60.0


def codes(found: _doctor.Diagnosis, level: str = "problem") -> list[str]:
    return sorted(f.code for f in found.findings if f.level == level)


def doctor_cli(log: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    """The command's exit status and output (the screen's wrapped lines joined again)."""
    status = main(["doctor", *extra, str(log)])
    out = capsys.readouterr().out
    return status, out if "--json" in extra else " ".join(out.split())


def hold_lock(path: str, held: Any, release: Any) -> None:
    """A process that takes the exclusive flock of ``path`` and keeps it until ``release``."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    take_lock(fd)
    held.set()
    release.wait(DEADLINE)
    os._exit(0)


def write_and_stay(path: str, n: int, written: Any, release: Any) -> None:
    """A per-process writer: ``n`` records, then it keeps its handler (and shard) open."""
    handler = safelog.PerProcessFileHandler(path)
    log = logging.Logger("doctor-writer")
    log.addHandler(handler)
    for i in range(n):
        log.info("record %d", i)
    written.set()
    release.wait(DEADLINE)
    handler.close()


def write_and_exit(path: str, n: int, **options: Any) -> None:
    handler = safelog.SafeFileHandler(path, **options)
    log = logging.Logger("doctor-writer")
    log.addHandler(handler)
    for i in range(n):
        log.info("record %d", i)
    handler.close()


def test_a_lock_held_by_another_process_is_shown_with_its_pid_and_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Another process holds the flock log's lock file exclusively: doctor shows its pid and command
    line (a warning: held right now); stopped while holding it, it is a problem (every writer waits)."""
    log = tmp_path / "app.log"
    write_and_exit(str(log), 3, strategy="flock")
    held, release = FORK.Event(), FORK.Event()
    holder = FORK.Process(target=hold_lock, args=(str(log) + ".lock", held, release))
    holder.start()
    try:
        assert held.wait(DEADLINE)
        found = diagnose(str(log))
        [lock] = [h for h in found.locks if h["pid"] == holder.pid]
        assert lock["role"] == "lock file" and lock["mode"] == "exclusive" and not lock["waiting"]
        assert "pytest" in lock["command"] or "python" in lock["command"]
        assert found.strategy == "flock" and codes(found, "warning") == ["lock-held"] and found.ok
        status, text = doctor_cli(log, capsys)
        assert status == 0 and f"pid {holder.pid} (" in text and "holds exclusive on app.log.lock" in text
        os.kill(holder.pid, signal.SIGSTOP)
        try:
            end = time.monotonic() + DEADLINE
            while _proc.process(holder.pid)[1] != "stopped" and time.monotonic() < end:
                time.sleep(0.01)  # the kernel state is the handshake; the deadline bounds a failure
            status, text = doctor_cli(log, capsys)
            assert status == 1 and "is stopped while holding the lock exclusively" in text
            status, out = doctor_cli(log, capsys, "--json")
            assert status == 1 and [p["code"] for p in json.loads(out)["problems"]] == ["stopped-lock-holder"]
        finally:
            os.kill(holder.pid, signal.SIGCONT)
    finally:
        release.set()
        holder.join(DEADLINE)
    assert diagnose(str(log)).locks == []


def test_proc_locks_read_while_locks_change_shows_each_lock_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """/proc/locks comes a page per read() and shifts when any process locks meanwhile: a lock shown twice
    in one reading is one holder, and a lock one reading missed is taken from the other."""
    log = tmp_path / "app.log"
    write_and_exit(str(log), 3, strategy="flock")
    st = os.stat(str(log) + ".lock")
    where = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    holder = f"FLOCK  ADVISORY  WRITE {os.getpid()} {where} 0 EOF"
    other = "FLOCK  ADVISORY  READ  1 00:01:1 0 EOF"
    readings = iter([[f"1: {other}", f"2: {holder}", f"3: {holder}"], [f"1: {other}"]])
    monkeypatch.setattr(_proc, "read_proc_locks", lambda: next(readings))
    [lock] = diagnose(str(log)).locks
    assert lock["pid"] == os.getpid() and lock["mode"] == "exclusive" and lock["role"] == "lock file"
    readings = iter([[f"1: {other}"], [f"7: {holder}", f"8: {other}"]])
    [lock] = diagnose(str(log)).locks
    assert lock["pid"] == os.getpid()


def test_a_dead_process_shard_is_a_problem_a_live_one_is_not(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A per-process writer that exited left a shard waiting for a merge (a problem naming its pid); a
    running writer's shard is not one, and doctor shows it holding its shard's shared lock."""
    log = tmp_path / "app.log"
    gone = FORK.Process(target=write_and_exit, args=(str(log), 5), kwargs={"strategy": "per-process"})
    gone.start()
    gone.join(DEADLINE)
    written, release = FORK.Event(), FORK.Event()
    live = FORK.Process(target=write_and_stay, args=(str(log), 5, written, release))
    live.start()
    try:
        assert written.wait(DEADLINE)
        found = diagnose(str(log))
        assert found.strategy == "per-process" and codes(found) == ["dead-shard"]
        [dead] = [f for f in found.findings if f.code == "dead-shard"]
        assert dead.path.endswith(f".{gone.pid}.shard") and f"process {gone.pid} is gone" in dead.message
        [holder] = found.locks
        assert holder["pid"] == live.pid and holder["mode"] == "shared" and holder["role"] == "shard"
        assert any(w["pid"] == live.pid for w in found.writers)
        status, out = doctor_cli(log, capsys, "--json")
        report = json.loads(out)
        assert status == 1 and [p["code"] for p in report["problems"]] == ["dead-shard"]
        assert report["problems"][0]["path"] == dead.path
    finally:
        release.set()
        live.join(DEADLINE)
    assert safelog.merge(str(log)).ok
    found = diagnose(str(log))
    assert found.ok and found.strategy == "per-process" and codes(found, "warning") == []


def _compress_and_die(directory: str, name: str, held: Any, release: Any, die: bool) -> None:
    """A compressor's temp file, created and locked as the background compressor does it; the process
    then dies (its lock goes with it) or keeps it until ``release``."""
    tmp, fd = create_temp(directory, name + ".gz", 0o600, tag="1a2b-")
    take_lock(fd)
    os.write(fd, b"\x1f\x8b partial")
    held.set()
    if not die:
        release.wait(DEADLINE)
    os._exit(0)


def test_a_leftover_temp_file_is_a_problem_one_being_written_is_not(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A compression temp file whose process died is a leftover (a problem); one a live compressor
    holds is work in progress; a backup renamed away long ago and never unlinked is a leftover too."""
    log = tmp_path / "app.log"
    write_and_exit(str(log), 3, strategy="flock")
    (tmp_path / "app.log.1").write_text("old\n")
    held, release = FORK.Event(), FORK.Event()
    dead = FORK.Process(target=_compress_and_die, args=(str(tmp_path), "app.log.1", held, release, True))
    dead.start()
    dead.join(DEADLINE)
    assert held.is_set()
    found = diagnose(str(log))
    [leftover] = [f for f in found.findings if f.code == "leftover-temp"]
    assert os.path.basename(leftover.path).startswith(".app.log.1.gz.1a2b-") and not found.ok
    os.unlink(leftover.path)
    held.clear()
    busy = FORK.Process(target=_compress_and_die, args=(str(tmp_path), "app.log.1", held, release, False))
    busy.start()
    try:
        assert held.wait(DEADLINE)
        found = diagnose(str(log))
        assert found.ok and [f["kind"] for f in found.files if f["path"].endswith(".tmp")] == ["temp"]
    finally:
        release.set()
        busy.join(DEADLINE)
    trash = tmp_path / ".app.log.3.0123456789ab.del"
    trash.write_text("removed\n")
    assert "leftover-trash" not in codes(diagnose(str(log)))  # maybe being unlinked right now
    found = diagnose(str(log), now=time.time() + _doctor.TRASH_GRACE + 1)
    assert "leftover-trash" in codes(found)
    status, text = doctor_cli(log, capsys)
    assert status == 1


def test_names_that_fit_no_backup_naming_are_problems(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Backups of any size or time policy, compressed or not, fit; app.log.old and app.log.1.bak do not
    (retention never removes them), and another log whose name extends this one is not this log's."""
    log = tmp_path / "app.log"
    log.write_text("x\n")
    for name in ("app.log.1", "app.log.2.gz", "app.log.2026-12-07", "app.log.2026-12-07_13.1.xz", "app.log.old", "app.log.1.bak", "app.logger"):
        (tmp_path / name).write_text("y\n")
    found = diagnose(str(log))
    unknown = sorted(os.path.basename(f.path) for f in found.findings if f.code == "unknown-name")
    assert unknown == ["app.log.1.bak", "app.log.old"]
    kinds = {os.path.basename(f["path"]): f["kind"] for f in found.files}
    assert kinds == {
        "app.log": "log", "app.log.1": "backup", "app.log.2.gz": "backup", "app.log.2026-12-07": "backup",
        "app.log.2026-12-07_13.1.xz": "backup", "app.log.old": "unknown", "app.log.1.bak": "unknown",
    }  # fmt: skip
    status, text = doctor_cli(log, capsys)
    assert status == 1 and "app.log.old: named like a file of this log" in text


def test_policy_fingerprints_hook(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A thread log records no policy fingerprint: doctor says so; a flock log shows the one recorded;
    once the hook returns fingerprints, different ones in different processes are a problem naming them."""
    plain = tmp_path / "plain.log"
    write_and_exit(str(plain), 1, strategy="thread")
    status, text = doctor_cli(plain, capsys)
    assert status == 0 and "no fingerprint recorded" in text
    status, out = doctor_cli(plain, capsys, "--json")
    assert json.loads(out)["policies"] == {"fingerprints": [], "note": "no fingerprint recorded"}
    log = tmp_path / "app.log"
    write_and_exit(str(log), 1, strategy="flock", max_bytes="1 MB", backup_count=2)
    status, out = doctor_cli(log, capsys, "--json")
    [seen_now] = json.loads(out)["policies"]["fingerprints"]
    assert seen_now["pid"] == os.getpid() and "max_bytes=1000000" in seen_now["summary"]
    seen = [
        PolicySeen(11, "web1", "a1", "max_bytes=10 MB, backup_count=5"),
        PolicySeen(12, "web1", "b2", "max_bytes=1 MB, backup_count=5"),
        PolicySeen(13, "web1", "a1", "max_bytes=10 MB, backup_count=5"),
    ]
    monkeypatch.setattr(_doctor, "recorded_policies", lambda path, lock_dir=None: seen if path == str(log) else [])
    found = diagnose(str(log))
    [mismatch] = [f for f in found.findings if f.code == "policy-mismatch"]
    assert "max_bytes=1 MB, backup_count=5 (pid 12)" in mismatch.message and "(pid 11, 13)" in mismatch.message
    monkeypatch.setattr(_doctor, "recorded_policies", lambda path, lock_dir=None: seen[:1])
    found = diagnose(str(log))
    assert found.ok and "one policy in 1 process(es)" in found.render()


def test_flock_on_a_network_file_system_is_a_problem(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On an NFS mount (the mount table says so) flock and O_APPEND are not reliable: a problem for a
    flock log, fine for a per-process one."""
    mounts = f"40 1 0:50 / {tmp_path} rw - nfs4 server:/export rw\n"
    real = _doctor.mount
    monkeypatch.setattr(_doctor, "mount", lambda path: real(path, mounts))
    write_and_exit(str(tmp_path / "app.log"), 1, strategy="flock")
    found = diagnose(str(tmp_path / "app.log"))
    assert found.filesystem == {
        "type": "nfs4", "mount": str(tmp_path), "network": True, "flock_safe": False, "append_safe": False,
    }  # fmt: skip
    assert codes(found) == ["network-fs"]
    write_and_exit(str(tmp_path / "pp.log"), 1, strategy="per-process")
    assert "network-fs" not in codes(diagnose(str(tmp_path / "pp.log")))


def _open_for_writing(path: str, opened: Any, release: Any) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    opened.set()
    release.wait(DEADLINE)
    os.close(fd)


def test_several_processes_writing_a_log_without_a_lock_file(tmp_path: Path) -> None:
    """Two processes have a log without lock file open for writing (thread strategy, or the stdlib,
    in several processes): their writes are not coordinated."""
    log = tmp_path / "app.log"
    log.write_text("x\n")
    opened = [FORK.Event(), FORK.Event()]
    release = FORK.Event()
    procs = [FORK.Process(target=_open_for_writing, args=(str(log), e, release)) for e in opened]
    for p in procs:
        p.start()
    try:
        assert all(e.wait(DEADLINE) for e in opened)
        found = diagnose(str(log))
        assert found.strategy == "thread" and codes(found) == ["uncoordinated-writers"]
        assert sorted(w["pid"] for w in found.writers) == sorted(p.pid for p in procs)
    finally:
        release.set()
        for p in procs:
            p.join(DEADLINE)
    assert diagnose(str(log)).ok


def test_an_interrupted_merge_is_a_problem(tmp_path: Path) -> None:
    """A merge journal with a step pending and no merge running: the next merge finishes it."""
    log = tmp_path / "app.log"
    write_and_exit(str(log), 2, strategy="per-process")
    assert safelog.merge(str(log)).ok
    state = json.loads((tmp_path / "app.log.merge-state").read_text())
    state["pending"] = {"stage": "append", "output": state["output"], "size": log.stat().st_size}
    (tmp_path / "app.log.merge-state").write_text(json.dumps(state))
    [found] = [f for f in diagnose(str(log)).findings if f.level == "problem"]
    assert found.code == "merge-interrupted" and "(append)" in found.message
    assert safelog.merge(str(log)).ok
    assert diagnose(str(log)).ok


def test_json_schema_and_exit_statuses(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--json has the documented keys (schema 1); exit status 0 when nothing is wrong, 2 when there
    is no such directory."""
    log = tmp_path / "app.log"
    write_and_exit(str(log), 40, strategy="flock", max_bytes=200, backup_count=2)
    status, out = doctor_cli(log, capsys, "--json")
    report = json.loads(out)
    assert status == 0 and report["ok"] is True and report["schema"] == 1
    assert set(report) == {
        "schema", "log", "ok", "strategy", "filesystem", "locks", "writers", "policies", "files", "disk",
        "problems", "warnings", "notes",
    }  # fmt: skip
    assert report["strategy"]["name"] == "flock"
    assert set(report["disk"]) == {"log", "backups", "shards", "other", "total", "free"}
    assert report["disk"]["backups"] > 0 and report["disk"]["total"] == sum(f["bytes"] for f in report["files"])
    assert {f["kind"] for f in report["files"]} == {"log", "backup", "lock file"}
    assert main(["doctor", str(tmp_path / "nope" / "app.log")]) == 2
    assert "no such directory" in capsys.readouterr().err
