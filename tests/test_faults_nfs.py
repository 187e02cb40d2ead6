"""Network file systems: the flock strategy detects NFS/SMB/CIFS/FUSE and warns once.

The detector reads the mount table; the tests hand it fake ``/proc/self/mountinfo`` text in
which the test's directory is a network mount.
"""

from __future__ import annotations

import warnings

import pytest

from safelog import FlockFileHandler, NetworkFileSystemWarning, SafeFileHandler
from safelog._primitives import fsdetect as _fsdetect
from safelog._primitives.fsdetect import mount_type, network_fs, parse_mounts

MOUNTINFO = r"""22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/vda rw
30 22 0:40 / /mnt/share rw,relatime shared:2 - nfs4 srv:/export rw,vers=4.2,addr=10.0.0.2
31 30 0:41 / /mnt/share/local rw - ext4 /dev/vdb rw
32 22 0:42 / /srv/with\040space rw master:3 - cifs //host/share rw,vers=3.0
33 22 0:43 / /home/u/remote rw - fuse.sshfs u@host:/ rw,user_id=0
34 22 0:44 / /mnt/shareX rw - xfs /dev/vdc rw
35 22 0:45 / /mnt/over rw - nfs srv:/a rw
36 22 0:46 / /mnt/over rw - ext4 /dev/vdd rw
"""

PROC_MOUNTS = """/dev/vda / ext4 rw,relatime 0 0
srv:/export /mnt/share nfs4 rw,vers=4.2 0 0
//host/s /mnt/smb smb3 rw 0 0
"""


@pytest.mark.parametrize(
    ("directory", "kind"),
    [
        ("/var/log", "ext4"),
        ("/mnt/share", "nfs4"),
        ("/mnt/share/app/logs", "nfs4"),
        ("/mnt/share/local/logs", "ext4"),  # a local mount below a network one
        ("/mnt/shareX/logs", "xfs"),  # a prefix of the name is not a parent directory
        ("/srv/with space/logs", "cifs"),  # \040 in the mount table is a space
        ("/home/u/remote/x", "fuse.sshfs"),
        ("/mnt/over/x", "ext4"),  # the later mount on the same point hides the earlier
    ],
)
def test_mountinfo_longest_prefix(directory, kind):
    """The file system of a directory is the one of its longest mount-point prefix."""
    assert mount_type(directory, MOUNTINFO) == kind


def test_proc_mounts_format_is_understood():
    """The older /proc/mounts format gives the same answers."""
    assert mount_type("/mnt/share/logs", PROC_MOUNTS) == "nfs4"
    assert mount_type("/mnt/smb", PROC_MOUNTS) == "smb3"
    assert mount_type("/tmp", PROC_MOUNTS) == "ext4"


def test_garbage_lines_are_skipped():
    """Unparsable lines do not break detection."""
    assert parse_mounts("garbage\n\n1 2 3 4 /x rw - \n") == []


@pytest.fixture
def on_nfs(tmp_path, monkeypatch):
    """Pretend tmp_path is an NFS mount, and forget earlier warnings."""
    fake = f"22 1 0:21 / / rw - ext4 /dev/vda rw\n30 22 0:40 / {tmp_path} rw - nfs4 srv:/x rw\n"
    monkeypatch.setattr(_fsdetect, "_read_mounts", lambda: fake)
    monkeypatch.setattr(_fsdetect, "_warned", set())
    return tmp_path


def test_flock_on_nfs_warns_once_recommending_per_process(on_nfs):
    """A flock handler on NFS warns once per directory, naming the file system and
    recommending per-process; further handlers there do not warn again."""
    with pytest.warns(NetworkFileSystemWarning, match=r"\(nfs4\).*strategy='per-process'") as rec:
        h1 = FlockFileHandler(str(on_nfs / "logs" / "app.log"))
    assert len(rec) == 1
    assert rec[0].filename == __file__, "the warning must point at the code that built the handler"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        h2 = FlockFileHandler(str(on_nfs / "logs" / "app.log"))
        h3 = FlockFileHandler(str(on_nfs / "logs" / "other.log"))
    for h in (h1, h2, h3):
        h.close()
    assert network_fs(str(on_nfs / "logs" / "app.log")) == "nfs4"


@pytest.mark.parametrize("strategy", ["thread", "per-process"])
def test_other_strategies_do_not_warn(on_nfs, strategy):
    """per-process is the recommended strategy there, and thread has a single writer: no
    warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        SafeFileHandler(str(on_nfs / "app.log"), strategy=strategy).close()


def test_lock_dir_on_nfs_warns(tmp_path, monkeypatch):
    """A local log whose lock_dir is on a network file system warns about the lock file."""
    nfs = tmp_path / "locks"
    nfs.mkdir()
    fake = f"22 1 0:21 / / rw - ext4 /dev/vda rw\n30 22 0:40 / {nfs} rw - cifs //h/s rw\n"
    monkeypatch.setattr(_fsdetect, "_read_mounts", lambda: fake)
    monkeypatch.setattr(_fsdetect, "_warned", set())
    with pytest.warns(NetworkFileSystemWarning, match="lock file.*cifs"):
        FlockFileHandler(str(tmp_path / "app.log"), lock_dir=str(nfs)).close()


def test_local_disk_does_not_warn(tmp_path, monkeypatch):
    """On this machine's real mount table the test directory is local: no warning."""
    monkeypatch.setattr(_fsdetect, "_warned", set())
    if network_fs(str(tmp_path / "app.log")):
        pytest.skip("the test directory really is on a network file system")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        FlockFileHandler(str(tmp_path / "app.log")).close()


@pytest.mark.parametrize(
    "kind", ["nfs", "nfs4", "cifs", "smb3", "ceph", "glusterfs", "lustre", "gpfs", "beegfs", "9p", "virtiofs",
             "fuse.sshfs", "fuse.s3fs", "fuse.gcsfuse", "fuse.glusterfs", "fuse.cephfs", "fuseblk"],
)  # fmt: skip
def test_every_network_type_is_detected(tmp_path, kind):
    """One table serves the flock warning and merge: each type either of them knew is a network one."""
    (tmp_path / "remote").mkdir()
    mounts = f"22 1 0:21 / / rw - ext4 /dev/vda rw\n30 22 0:40 / {tmp_path}/remote rw - {kind} src rw\n"
    assert network_fs(str(tmp_path / "remote" / "app.log"), mounts) == kind
    assert network_fs(str(tmp_path / "app.log"), mounts) is None
