"""Permissions: chmod/owner of created and rotated files, lock file mode, no symlink following."""

from __future__ import annotations

import grp
import logging
import os
import pwd
import stat
from collections.abc import Iterator
from typing import Any

import pytest

import safelog
from safelog._primitives.atomic import create_temp
from safelog._primitives.fileio import create_exclusive
from safelog._primitives.perms import Perms

BASE = 1_795_651_200.0


@pytest.fixture
def umask() -> Iterator[Any]:
    """Set the process umask for one test and restore it afterwards."""
    old = os.umask(0o022)
    os.umask(old)

    def use(value: int) -> None:
        os.umask(value)

    yield use
    os.umask(old)




def emit(handler: logging.Handler, rid: str, created: float) -> None:
    handler.handle(logging.makeLogRecord({"msg": f"id={rid}", "created": created}))


def modes(directory: Any) -> dict[str, int]:
    return {n: stat.S_IMODE(os.stat(directory / n).st_mode) for n in sorted(os.listdir(directory))}


@pytest.mark.parametrize("chmod", [0o640, "0640", "0o640"])
@pytest.mark.parametrize("strategy", ["thread", "flock", "per-process"])
def test_chmod_applies_to_created_rotated_lock_and_compressed_files(
    tmp_path: Any, make_handler: Any, umask: Any, strategy: str, chmod: Any
) -> None:
    """With a strict umask (077) chmod=0640 still gives exactly 0640 to the log, the file
    created after rotation and the compressed backup; the files that carry a lock (the lock
    file, a shard) get 0600, since chmod gives the group no write."""
    umask(0o077)
    path = str(tmp_path / "app.log")
    h = make_handler(path, strategy=strategy, when="H", utc=True, chmod=chmod, compress="gzip")
    emit(h, "a", BASE)
    emit(h, "b", BASE + 3600)
    assert safelog.wait_for_compression(30)
    got = modes(tmp_path)
    assert len(got) == (2 if strategy == "thread" else 3)
    locked = [n for n in got if n.endswith((".lock", ".shard", ".policy"))]
    assert len(locked) == {"thread": 0, "flock": 1, "per-process": 2}[strategy]
    assert {got.pop(n) for n in locked} <= {0o600}
    assert set(got.values()) == {0o640}, {n: oct(m) for n, m in got.items()}


@pytest.mark.parametrize("strategy", ["thread", "flock"])
def test_default_modes_follow_the_umask(tmp_path: Any, make_handler: Any, umask: Any, strategy: str) -> None:
    """Without chmod, files get 0666 minus the umask like logging.FileHandler; the compressed
    backup keeps the log's bits; the lock file is 0600 whatever the umask."""
    umask(0o027)
    path = str(tmp_path / "app.log")
    h = make_handler(path, strategy=strategy, when="H", utc=True, compress="gzip")
    emit(h, "a", BASE)
    emit(h, "b", BASE + 3600)
    assert safelog.wait_for_compression(30)
    got = modes(tmp_path)
    assert got.pop("app.log.lock", 0o600) == 0o600
    assert set(got.values()) == {0o640}


def test_chmod_does_not_change_an_existing_log(tmp_path: Any, make_handler: Any) -> None:
    """chmod applies to files safelog creates; a log that exists keeps the mode its owner gave it."""
    path = tmp_path / "app.log"
    path.write_text("")
    os.chmod(path, 0o600)
    h = make_handler(str(path), strategy="flock", chmod=0o644)
    emit(h, "a", BASE)
    assert modes(tmp_path) == {"app.log": 0o600, "app.log.lock": 0o600}


def test_owner_sets_user_and_group_of_created_files(tmp_path: Any, make_handler: Any) -> None:
    """owner='user:group' (names) gives created files that owner; here the current user."""
    user = pwd.getpwuid(os.getuid()).pw_name
    group = grp.getgrgid(os.getgid()).gr_name
    path = str(tmp_path / "app.log")
    h = make_handler(path, strategy="flock", owner=f"{user}:{group}", chmod=0o600)
    emit(h, "a", BASE)
    for n in ("app.log", "app.log.lock"):
        st = os.stat(tmp_path / n)
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (os.getuid(), os.getgid(), 0o600)


@pytest.mark.parametrize(
    ("kwargs", "exc", "named"),
    [
        ({"chmod": "rw-r-----"}, ValueError, "chmod"),
        ({"chmod": 0o10000}, ValueError, "chmod"),
        ({"chmod": 0o444}, ValueError, "chmod"),
        ({"chmod": True}, TypeError, "chmod"),
        ({"chmod": 6.4}, TypeError, "chmod"),
        ({"owner": "no-such-user-here"}, ValueError, "owner"),
        ({"owner": ":no-such-group-here"}, ValueError, "owner"),
        ({"owner": 0}, TypeError, "owner"),
    ],
)
def test_bad_permission_options_fail_at_construction(tmp_path: Any, kwargs: dict[str, Any], exc: type, named: str) -> None:
    """Bad chmod/owner values raise at configuration time, naming the option and the value."""
    with pytest.raises(exc, match=named):
        safelog.SafeFileHandler(str(tmp_path / "app.log"), **kwargs)


@pytest.mark.parametrize("digits", ["640", "600", "644", "660", "664", "755"])
def test_a_decimal_chmod_is_refused_with_the_octal_spelling(tmp_path: Any, digits: str) -> None:
    """"chmod": 640 (JSON and YAML have no octal ints) is mode 0o1200, not 0o640: refused with the
    spellings that mean 0o640, and no file is created."""
    value = int(digits)
    with pytest.raises(ValueError) as exc:
        safelog.SafeFileHandler(str(tmp_path / "app.log"), chmod=value)
    assert str(exc.value) == (
        f"chmod={value} is the decimal number {value}, mode {oct(value)}, not 0o{digits}: write the "
        f"mode as the string '0{digits}' (JSON, YAML, INI) or as 0o{digits} in Python"
    )
    assert os.listdir(tmp_path) == []


def test_an_int_chmod_with_bits_beyond_0o777_is_refused(tmp_path: Any) -> None:
    """An int with set-id or sticky bits (900 is 0o1604) is not a log file's mode: refused with the octal spellings."""
    with pytest.raises(ValueError, match=r"chmod=900 is mode 0o1604, with bits beyond 0o777 .* the string '0640'"):
        safelog.SafeFileHandler(str(tmp_path / "app.log"), chmod=900)


@pytest.mark.parametrize(("value", "bits"), [(400, 0o620), (440, 0o670), (444, 0o674), (200, 0o310)])
def test_a_decimal_chmod_below_0o777_whose_bits_no_one_means_is_refused(tmp_path: Any, value: int, bits: int) -> None:
    """"chmod": 440 is mode 0o670 (group above owner), 400 is 0o620 (write without read): digits that
    read as a mode and bits no one would choose are refused with both spellings; no file is created."""
    with pytest.raises(ValueError) as exc:
        safelog.SafeFileHandler(str(tmp_path / "app.log"), chmod=value)
    assert str(exc.value) == (
        f"chmod={value} is the decimal number {value}, mode {oct(bits)}, not 0o{value}: write the mode as "
        f"the string '0{value}' (JSON, YAML, INI) or as 0o{value} in Python; if you do mean {oct(bits)}, "
        f"write the string '0{oct(bits)[2:]}'"
    )
    assert os.listdir(tmp_path) == []
    h = safelog.SafeFileHandler(str(tmp_path / "app.log"), strategy="thread", chmod=f"0{oct(bits)[2:]}")
    assert h.config.file.perms.chmod == bits
    h.close()


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o644, 0o660, 0o664, 0o666, 0o700, 0o750, 0o755, 0o775, 0o777])
def test_every_usual_python_octal_mode_is_taken(tmp_path: Any, mode: int) -> None:
    """The usual modes written as Python octal ints (some of whose decimal digits look octal:
    0o640 is 416, 0o777 is 511) are taken as they are."""
    h = safelog.SafeFileHandler(str(tmp_path / "app.log"), strategy="thread", chmod=mode)
    assert h.config.file.perms.chmod == mode
    h.close()


def test_python_octal_chmod_values_are_still_taken(tmp_path: Any, make_handler: Any) -> None:
    """0o644 is the int 420 and 0o640 the int 416: the octal ints Python code writes keep working."""
    h = make_handler(str(tmp_path / "a.log"), strategy="thread", chmod=0o644)
    assert stat.S_IMODE(os.stat(tmp_path / "a.log").st_mode) == 0o644
    h = make_handler(str(tmp_path / "b.log"), strategy="thread", chmod=416)
    assert h.config.file.perms.chmod == 0o640


@pytest.mark.parametrize(
    ("owner", "message"),
    [
        ("no-such-user-here", "owner='no-such-user-here': no user named 'no-such-user-here' on this system"),
        ("root:no-such-group", "owner='root:no-such-group': no group named 'no-such-group' on this system"),
        (":no-such-group", "owner=':no-such-group': no group named 'no-such-group' on this system"),
    ],
)
def test_an_unknown_owner_is_named_plainly(tmp_path: Any, owner: str, message: str) -> None:
    """An unknown user or group is named as such, with what to give instead (not getpwnam()'s text)."""
    with pytest.raises(ValueError) as exc:
        safelog.SafeFileHandler(str(tmp_path / "app.log"), owner=owner)
    assert str(exc.value) == message + "; give an existing name or a numeric id ('user', 'user:group', ':group')"


def test_symlink_planted_at_the_lock_path_is_not_followed(tmp_path: Any) -> None:
    """A symlink where the lock file goes makes the handler fail; its target is not created."""
    victim = tmp_path / "victim"
    os.symlink(victim, tmp_path / "app.log.lock")
    with pytest.raises(ValueError, match="cannot be opened"):
        safelog.SafeFileHandler(str(tmp_path / "app.log"), strategy="flock")
    assert not victim.exists()
    victim.write_text("precious\n")
    with pytest.raises(ValueError):
        safelog.SafeFileHandler(str(tmp_path / "app.log"), strategy="flock", chmod=0o600)
    assert victim.read_text() == "precious\n" and stat.S_IMODE(victim.stat().st_mode) != 0o600


def test_temp_files_are_created_exclusively_without_following_symlinks(tmp_path: Any) -> None:
    """The temp-file helper refuses a name a symlink already holds and never writes through it."""
    victim = tmp_path / "victim"
    os.symlink(victim, tmp_path / ".planted.tmp")
    with pytest.raises(FileExistsError):
        create_exclusive(str(tmp_path / ".planted.tmp"), os.O_WRONLY, 0o600, Perms(0o600))
    assert not victim.exists()
    name, fd = create_temp(str(tmp_path), "app.log.1.gz", 0o600)
    os.close(fd)
    base = os.path.basename(name)
    assert base.startswith(".app.log.1.gz.") and base.endswith(".tmp")
    assert stat.S_IMODE(os.stat(name).st_mode) == 0o600  # private until it gets the log's bits
